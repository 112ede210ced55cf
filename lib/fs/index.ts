// The filesystem layer: overlay mounts, the layer store, image import, safe paths.
export { OverlayMount, upperChanges, exportUpper } from './overlay.js';
export type { OverlayMountOptions, OverlayChange } from './overlay.js';

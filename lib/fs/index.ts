// The filesystem layer: overlay mounts, the layer store, image import, safe paths.
export { OverlayMount, upperChanges, exportUpper } from './overlay.js';
export type { OverlayMountOptions, OverlayChange } from './overlay.js';
export { LayerStore, Container } from './store.js';
export type { LayerInfo, ImageInfo, ImageRef, ImportLayerOptions, ImportImageOptions, CreateContainerOptions, LayerStoreOptions } from './store.js';
export type { ImageConfig } from './image.js';
export type { ImportProgress } from './extract.js';
export { readFile, writeFile, copyIn, copyOut, DEFAULT_MAX_BYTES } from './files.js';
export type { SafeReadOptions, SafeWriteOptions } from './files.js';
export { IMAGE_COMMAND } from './image.js';

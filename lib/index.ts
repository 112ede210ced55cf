// Public API: re-exports only.
export { NsboxError } from './errors.js';
export type { NsboxErrorInfo } from './errors.js';
export { spawnIsolated, IsolatedProcess } from './spawn/spawn.js';
export type {
  SpawnIsolatedOptions, IsolatedResult, IsolatedUsage, IdMap, Mount, NamespaceType, Propagation, Rlimits,
  RlimitValue, StdioOption,
} from './spawn/options.js';
export { Namespace } from './ns/namespace.js';
export { explain } from './spawn/explain.js';

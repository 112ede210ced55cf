// Public API: re-exports only.
export { NsboxError } from './errors.js';
export type { NsboxErrorInfo } from './errors.js';

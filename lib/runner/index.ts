// Public surface of the runner area: long-lived sandboxes and single-use pools.
export { Sandbox, DEFAULT_HOLDER, DEFAULT_STATE_DIR, defaultStateDir } from './sandbox.js';
export type { SandboxOptions, SandboxTemplate, ExecOptions, SandboxInfo, SandboxState, SandboxProcess, SandboxProgram, SandboxExit, SandboxStatus } from './sandbox.js';
export type { OciHook, OciHooks, OciState } from './hooks.js';
export { createPool, Pool } from './pool.js';
export type { PoolOptions, PoolStats, PoolRunOptions } from './pool.js';

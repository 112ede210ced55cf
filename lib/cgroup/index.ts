// Public surface of the cgroup area.
export { CGroup } from './cgroup.js';
export type { CGroupCreateOptions, CGroupDestroyOptions, CGroupEvents, CGroupOomEvent, CgroupStats, CgroupMode } from './cgroup.js';
export { validateLimits, parseByteSize } from './limits.js';
export type { Limits, SandboxLimits, ByteSize, IoMaxEntry, ResolvedLimits, ValidateOptions } from './limits.js';
export { prepareSandboxCgroup } from './sandbox.js';
export type { SandboxCgroup, SandboxUsage, PrepareSandboxCgroupOptions } from './sandbox.js';
export type { CgroupPlacement } from './drivers.js';

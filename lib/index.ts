// Public API: re-exports only. Nothing here runs at import: spawnIsolated composes its layers
// itself (lib/spawn/layers), so every entry point gets the same secure defaults.

export { NsboxError } from './errors.js';
export type { NsboxErrorInfo } from './errors.js';
export { spawnIsolated, IsolatedProcess, prepareIsolated, PreparedSandbox, type PreparedRunOptions } from './spawn/spawn.js';
export type {
  SpawnIsolatedOptions, IsolatedResult, IsolatedUsage, IdMap, Mount, DeviceNode, NamespaceType, Propagation, Rlimits,
  RlimitValue, StdioOption, Verdict, CapabilitySetsOption,
} from './plan/options.js';
export { explain } from './spawn/explain.js';
export type { ExplainedPlan } from './spawn/explain.js';
export type { EgressControl } from './spawn/layers/egress.js';
export { Namespace } from './ns/namespace.js';
export { Capabilities, CAPABILITY_NAMES } from './security/capabilities.js';
export type { CapabilityName, CapabilitySets, FileCapabilities, ProcessCapabilities } from './security/capabilities.js';
export * from './cgroup/index.js';
export * from './net/index.js';
export * from './security/seccomp/index.js';
export * from './security/doctor.js';
export { sandboxSelfTest, type SandboxAttack } from './runner/selftest.js';
export * from './fs/index.js';
export * from './runner/index.js';
export { gc, type GcReport, type GcOptions, type GcSkipped } from './gc.js';


// The planner: options in, one Plan out (see docs/architecture.md). What the spawn pipeline,
// Sandbox and the tests use of it.
export { ImageTemplateUnfit, buildPlan, forkPlan, needsCgroup, parseStdio, provideEtcFiles, signalNumber, DEFAULT_PATH } from './build.js';
export { encodeOps, encodeTemplate } from './encode.js';
export { disableViewTemplates, kernelAtLeast, realHost } from './host.js';
export { FALLBACK_RANGE_START, RANGE_SIZE, REGION_BLOCKS, callerRange, idBlockSource, sandboxIdMaps, subidFix, wantsCallerRange, wantsIdBlock, type IdBlockSource } from './ids.js';
export { carryMountPointContext, publicError } from './mountpoints.js';
export { MS, Op, type PlanOp } from './ops.js';
export type { HostFacts, IdBlock, ImageTemplate, Plan, PlanInput, PlanSummary, RootOverlay } from './types.js';
export { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './view.js';

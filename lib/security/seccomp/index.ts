// Public surface of nsbox's seccomp support: the profile types, the builder, the compiler, the
// default profile for untrusted code, and tools to read compiled programs.
export { Seccomp, type SeccompArgOptions } from './seccomp.js';
export { compileSeccomp, BPF_MAXINSNS } from './compile.js';
export { defaultProfile, CLONE_NAMESPACE_FLAGS } from './default-profile.js';
export {
  type SeccompAction, type SeccompArch, type SeccompArgOp, type SeccompArgComparison, type SeccompRule,
  type SeccompProfile, type ErrnoName, type NormalizedProfile, type NormalizedRule, type NormalizedArg,
  ERRNO_NUMBERS, SYSCALL_TABLES, AUDIT_ARCH, X32_SYSCALL_BIT, nativeArch, normalizeProfile,
} from './profile.js';
export { SYSCALL_GROUPS, expandGroups } from './groups.js';
export { evaluate, decode, encode, disassemble, describeVerdict, type BpfInsn, type SeccompData } from './bpf.js';
export { seccompTestRun, type SeccompTestResult } from './test-run.js';
export { resolveSeccompOption, summarizeSeccompOption, type SeccompOption, type SeccompSummary } from './option.js';



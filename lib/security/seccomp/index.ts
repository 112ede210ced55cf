// Public surface of nsbox's seccomp support: the profile types, the builder, the compiler, the
// default profile for untrusted code, and tools to read compiled programs.
export { compileSeccomp, BPF_MAXINSNS } from './compile.js';
export {
  type SeccompAction, type SeccompArch, type SeccompArgOp, type SeccompArgComparison, type SeccompRule,
  type SeccompProfile, type ErrnoName, type NormalizedProfile, type NormalizedRule, type NormalizedArg,
  ERRNO_NUMBERS, SYSCALL_TABLES, AUDIT_ARCH, X32_SYSCALL_BIT, nativeArch, normalizeProfile,
} from './profile.js';
export { SYSCALL_GROUPS, expandGroups } from './groups.js';
export { evaluate, decode, encode, disassemble, describeVerdict, type BpfInsn, type SeccompData } from './bpf.js';

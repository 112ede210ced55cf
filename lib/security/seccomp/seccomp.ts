// The typed builder: `Seccomp.profile({...})` validates a profile and hands it back frozen,
// `Seccomp.compile()` turns it into the BPF program the spawn plan carries.
import { describeVerdict, disassemble, evaluate } from './bpf.js';
import { compileSeccomp } from './compile.js';
import { defaultProfile } from './default-profile.js';
import { SYSCALL_GROUPS } from './groups.js';
import { seccompFromOCI } from './oci.js';
import {
  normalizeProfile, type ErrnoName, type SeccompAction, type SeccompArgComparison, type SeccompArgOp,
  type SeccompProfile,
} from './profile.js';

/** Options of one argument test made by `Seccomp.arg()`. */
export interface SeccompArgOptions {
  /** the mask, for `'masked-eq'`. */
  mask?: number | bigint;
  /** compare only the low 32 bits (for `int` arguments such as ioctl requests). */
  low32?: boolean;
}

/** Builds, checks and compiles seccomp profiles. */
export const Seccomp = Object.freeze({
  /**
   * Validates a profile (TypeError/RangeError naming the option) and returns it frozen.
   * Rules are tried in order; the first whose syscall and argument tests match decides.
   */
  profile(p: SeccompProfile): SeccompProfile {
    normalizeProfile(p);
    const act = <T>(a: T): T => (a !== null && typeof a === 'object' ? Object.freeze({ ...a }) : a);
    return Object.freeze({
      ...p,
      defaultAction: act(p.defaultAction),
      ...(p.badArchAction !== undefined ? { badArchAction: act(p.badArchAction) } : {}),
      rules: Object.freeze(p.rules.map((r) => Object.freeze({
        ...r,
        action: act(r.action),
        syscalls: typeof r.syscalls === 'string' ? r.syscalls : Object.freeze([...r.syscalls]),
        ...(r.args ? { args: Object.freeze(r.args.map((a) => Object.freeze({ ...a }))) } : {}),
      }))),
      ...(p.architectures ? { architectures: Object.freeze([...p.architectures]) } : {}),
    });
  },
  /**
   * A profile from an OCI runtime config's `linux.seccomp` object (or its JSON text), validated
   * and frozen like {@link Seccomp.profile}'s. Every OCI action is mapped (SCMP_ACT_NOTIFY is
   * refused: nsbox has no notification listener); fields nsbox does not apply are refused naming
   * them. See `seccompFromOCI` (lib/security/seccomp/oci.ts) for the mapping.
   */
  fromOCI(json: unknown): SeccompProfile {
    return Seccomp.profile(seccompFromOCI(json));
  },
  /** Compiles a profile into raw `struct sock_filter[]` bytes (the spawn plan's `seccomp`). */
  compile(p: SeccompProfile): Buffer {
    return compileSeccomp(p);
  },
  /** The action "fail with this errno". */
  errno(e: number | ErrnoName): SeccompAction {
    return { errno: e };
  },
  /** The action "notify the ptrace tracer with this message". */
  trace(msg: number): SeccompAction {
    return { trace: msg };
  },
  /** One argument test, e.g. `Seccomp.arg(1, 'eq', 0x5412, { low32: true })`. */
  arg(index: number, op: SeccompArgOp, value: number | bigint, opts: SeccompArgOptions = {}): SeccompArgComparison {
    return { index, op, value, ...opts };
  },
  /** nsbox's default profile for untrusted code. */
  defaultProfile,
  /** Named syscall groups (`@mount`, `@privileged`, ...). */
  groups: SYSCALL_GROUPS,
  /** Runs a compiled program on one input without a kernel (see `evaluate`). */
  evaluate,
  /** Words for a verdict, e.g. `'errno(1)'`. */
  describeVerdict,
  /** One line per instruction of a compiled program. */
  disassemble,
});

// Seccomp profiles as plain data: actions, rules, argument comparisons, architectures, and their
// validation (TypeError/RangeError naming the option, before anything is compiled).
import { ERRNOS } from '../../util/sys.js';
import { expandGroups } from './groups.js';
import { AARCH64, I386, X32, X86_64 } from './tables.js';

/** What the kernel does when a rule matches. */
export type SeccompAction =
  | 'allow'
  | 'kill-process'
  | 'kill-thread'
  | 'trap'
  | 'log'
  | { errno: number | ErrnoName }
  | { trace: number };

/** Architectures nsbox has syscall tables for. `x32` is the x86_64 ABI with 32-bit pointers. */
export type SeccompArch = 'x86_64' | 'x32' | 'i386' | 'aarch64';

/** Comparison operators for one syscall argument (unsigned, like the kernel's BPF jumps). */
export type SeccompArgOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'masked-eq';

/** One argument test; all tests of a rule must hold for the rule to match. */
export interface SeccompArgComparison {
  /** argument index, 0 to 5. */
  index: number;
  /** comparison; `'masked-eq'` tests `(arg & mask) === (value & mask)` (as libseccomp does). */
  op: SeccompArgOp;
  /** value to compare with; negative numbers are taken as 64-bit two's complement. */
  value: number | bigint;
  /** the mask for `'masked-eq'`. */
  mask?: number | bigint;
  /**
   * Compare only the low 32 bits. Use it for arguments the kernel reads as `int`/`unsigned int`
   * (an ioctl request, a socket family), so that setting high bits cannot step around the test.
   * On 32-bit architectures only the low 32 bits are ever compared.
   */
  low32?: boolean;
}

/** One rule: these syscalls (names or `@groups`), with these argument tests, get this action. */
export interface SeccompRule {
  /** syscall names and `@group` names. */
  syscalls: string | readonly string[];
  /** what happens when the rule matches. */
  action: SeccompAction;
  /** argument tests, all of which must hold. */
  args?: readonly SeccompArgComparison[];
  /** why the rule exists (kept with the data, printed by `nsbox explain`). */
  comment?: string;
}

/** A whole filter: the first matching rule wins, otherwise `defaultAction`. */
export interface SeccompProfile {
  /** action for syscalls no rule matches. */
  defaultAction: SeccompAction;
  /** rules, tried in order for each syscall. */
  rules: readonly SeccompRule[];
  /**
   * Architectures (ABIs) whose syscalls are allowed through to the rules. Default: the native one
   * only. Any other architecture, and on x86_64 the x32 ABI unless listed, gets `badArchAction`.
   */
  architectures?: readonly SeccompArch[];
  /** action for a syscall of an architecture not listed. Default `'kill-process'`. */
  badArchAction?: SeccompAction;
}

/** errno names accepted in `{ errno: ... }`, with their numbers (from os.constants.errno). */
export const ERRNO_NUMBERS = errnoNumbers(
  'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'ENXIO', 'E2BIG', 'ENOEXEC', 'EBADF', 'ECHILD',
  'EAGAIN', 'ENOMEM', 'EACCES', 'EFAULT', 'EBUSY', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR',
  'EISDIR', 'EINVAL', 'ENFILE', 'EMFILE', 'ENOTTY', 'ENOSPC', 'ESPIPE', 'EROFS', 'EPIPE',
  'ERANGE', 'ENOSYS', 'ENOTSUP', 'EOPNOTSUPP', 'EPROTONOSUPPORT', 'EAFNOSUPPORT',
);
function errnoNumbers<K extends string>(...names: K[]): Readonly<Record<K, number>> {
  return Object.freeze(Object.fromEntries(names.map((n) => [n, ERRNOS[n]!])) as Record<K, number>);
}
/** An errno name nsbox knows. */
export type ErrnoName = keyof typeof ERRNO_NUMBERS;

/** Syscall tables by architecture (name -> number). */
export const SYSCALL_TABLES: Readonly<Record<SeccompArch, Readonly<Record<string, number>>>> = Object.freeze({
  x86_64: X86_64, x32: X32, i386: I386, aarch64: AARCH64,
});

/** AUDIT_ARCH_* values the kernel reports in `seccomp_data.arch`. */
export const AUDIT_ARCH: Readonly<Record<SeccompArch, number>> = Object.freeze({
  x86_64: 0xc000003e, x32: 0xc000003e, i386: 0x40000003, aarch64: 0xc00000b7,
});

/** The x32 ABI marks its syscall numbers with this bit. */
export const X32_SYSCALL_BIT = 0x40000000;

const ARCHES: readonly SeccompArch[] = ['x86_64', 'x32', 'i386', 'aarch64'];
const OPS: readonly SeccompArgOp[] = ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'masked-eq'];

/** The architecture this Node runs on, as a seccomp architecture. */
export function nativeArch(): SeccompArch {
  switch (process.arch) {
    case 'x64': return 'x86_64';
    case 'ia32': return 'i386';
    case 'arm64': return 'aarch64';
    default: throw new RangeError(`seccomp: no syscall table for this architecture (${process.arch})`);
  }
}

/** Encodes an action as the 32-bit value a seccomp filter returns. */
export function actionValue(a: SeccompAction, option: string): number {
  if (typeof a === 'string') {
    switch (a) {
      case 'allow': return 0x7fff0000;
      case 'kill-process': return 0x80000000;
      case 'kill-thread': return 0;
      case 'trap': return 0x00030000;
      case 'log': return 0x7ffc0000;
      default: throw new RangeError(`${option}: unknown action '${a}' (allow, kill-process, kill-thread, trap, log, {errno}, {trace})`);
    }
  }
  if (a === null || typeof a !== 'object') throw new TypeError(`${option}: an action must be a string or { errno } / { trace }`);
  if ('errno' in a) {
    let n = a.errno;
    if (typeof n === 'string') {
      const v = (ERRNO_NUMBERS as Record<string, number>)[n];
      if (v === undefined) throw new RangeError(`${option}.errno: unknown errno name '${n}'`);
      n = v;
    }
    if (!Number.isInteger(n) || n < 0 || n > 4095) throw new RangeError(`${option}.errno: must be an integer 0..4095`);
    return (0x00050000 | n) >>> 0;
  }
  if ('trace' in a) {
    const n = a.trace;
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`${option}.trace: must be an integer 0..65535`);
    return (0x7ff00000 | n) >>> 0;
  }
  throw new TypeError(`${option}: an action object needs 'errno' or 'trace'`);
}

function toU64(v: unknown, option: string): bigint {
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RangeError(`${option}: must be a safe integer or a bigint`);
    b = BigInt(v);
  } else throw new TypeError(`${option}: must be a number or a bigint`);
  if (b < -(1n << 63n) || b >= 1n << 64n) throw new RangeError(`${option}: does not fit in 64 bits`);
  return BigInt.asUintN(64, b);
}

/** An argument test after validation: values as unsigned 64-bit bigints. */
export interface NormalizedArg {
  index: number;
  op: SeccompArgOp;
  value: bigint;
  mask: bigint;
  low32: boolean;
}

/** A rule after validation: group names expanded, action encoded. */
export interface NormalizedRule {
  syscalls: string[];
  action: number;
  args: NormalizedArg[];
  comment?: string;
}

/** A profile after validation. */
export interface NormalizedProfile {
  defaultAction: number;
  badArchAction: number;
  architectures: SeccompArch[];
  rules: NormalizedRule[];
}

const KNOWN = new Set<string>(ARCHES.flatMap((a) => Object.keys(SYSCALL_TABLES[a])));

/** Validates a profile and brings it into the form the compiler reads. */
export function normalizeProfile(p: SeccompProfile): NormalizedProfile {
  if (p === null || typeof p !== 'object') throw new TypeError('seccomp: the profile must be an object');
  const defaultAction = actionValue(p.defaultAction, 'seccomp.defaultAction');
  const badArchAction = actionValue(p.badArchAction ?? 'kill-process', 'seccomp.badArchAction');
  let architectures: SeccompArch[];
  if (p.architectures === undefined) architectures = [nativeArch()];
  else {
    if (!Array.isArray(p.architectures) || p.architectures.length === 0) throw new TypeError('seccomp.architectures: must be a non-empty array');
    for (const a of p.architectures) if (!ARCHES.includes(a)) throw new RangeError(`seccomp.architectures: unknown architecture '${a}' (${ARCHES.join(', ')})`);
    architectures = [...new Set(p.architectures)];
  }
  const rulesIn: readonly SeccompRule[] = p.rules;
  if (!Array.isArray(rulesIn)) throw new TypeError('seccomp.rules: must be an array');
  const rules = (p.rules as readonly SeccompRule[]).map((r: SeccompRule, i: number): NormalizedRule => {
    const opt = `seccomp.rules[${i}]`;
    if (r === null || typeof r !== 'object') throw new TypeError(`${opt}: must be an object`);
    const names = typeof r.syscalls === 'string' ? [r.syscalls] : r.syscalls;
    if (!Array.isArray(names) || names.length === 0) throw new TypeError(`${opt}.syscalls: must be a name or a non-empty array of names`);
    for (const n of names) if (typeof n !== 'string') throw new TypeError(`${opt}.syscalls: names must be strings`);
    const syscalls = expandGroups(names, `${opt}.syscalls`);
    // a plain name must exist on some architecture (a typo is an error); members of a group
    // may be missing everywhere here (other architectures' calls)
    for (const n of names) if (!n.startsWith('@') && !KNOWN.has(n)) throw new RangeError(`${opt}.syscalls: unknown syscall '${n}'`);
    const args = (r.args ?? []).map((c: SeccompArgComparison, j: number): NormalizedArg => {
      const o = `${opt}.args[${j}]`;
      if (c === null || typeof c !== 'object') throw new TypeError(`${o}: must be an object`);
      if (!Number.isInteger(c.index) || c.index < 0 || c.index > 5) throw new RangeError(`${o}.index: must be 0..5`);
      if (!OPS.includes(c.op)) throw new RangeError(`${o}.op: unknown operator '${c.op}' (${OPS.join(', ')})`);
      let value = toU64(c.value, `${o}.value`);
      let mask = (1n << 64n) - 1n;
      if (c.op === 'masked-eq') {
        if (c.mask === undefined) throw new TypeError(`${o}.mask: required for 'masked-eq'`);
        mask = toU64(c.mask, `${o}.mask`);
        // as libseccomp reads it: (arg & mask) === (value & mask)
        value &= mask;
      } else if (c.mask !== undefined) throw new TypeError(`${o}.mask: only for 'masked-eq'`);
      const low32 = c.low32 === true;
      if (c.low32 !== undefined && typeof c.low32 !== 'boolean') throw new TypeError(`${o}.low32: must be a boolean`);
      return { index: c.index, op: c.op, value, mask, low32 };
    });
    return { syscalls, action: actionValue(r.action, `${opt}.action`), args, ...(r.comment ? { comment: r.comment } : {}) };
  });
  return { defaultAction, badArchAction, architectures, rules };
}

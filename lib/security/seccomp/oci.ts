// OCI's `linux.seccomp` (runtime-spec config-linux.md, "Seccomp") read into nsbox's profile.
// Every action OCI lists is mapped or refused with words saying why; every field nsbox does not
// apply is refused naming it, never ignored.
import { nativeArch, SYSCALL_TABLES, type SeccompAction, type SeccompArch, type SeccompArgComparison, type SeccompArgOp, type SeccompProfile, type SeccompRule } from './profile.js';

const EPERM = 1;

/** OCI architecture names nsbox has syscall tables for. */
const ARCH: Record<string, SeccompArch> = {
  SCMP_ARCH_X86_64: 'x86_64', SCMP_ARCH_X86: 'i386', SCMP_ARCH_X32: 'x32', SCMP_ARCH_AARCH64: 'aarch64',
};
/**
 * OCI architecture names nsbox has no tables for. A profile may list them (podman lists
 * SCMP_ARCH_ARM beside SCMP_ARCH_AARCH64): they are left out, so that their system calls get
 * the bad-architecture action (kill-process), which is stricter than the profile, never looser.
 */
const OTHER_ARCH = new Set([
  'SCMP_ARCH_ARM', 'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64', 'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390', 'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64', 'SCMP_ARCH_LOONGARCH64', 'SCMP_ARCH_M68K', 'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
]);
const OPS: Record<string, SeccompArgOp> = {
  SCMP_CMP_NE: 'ne', SCMP_CMP_LT: 'lt', SCMP_CMP_LE: 'le', SCMP_CMP_EQ: 'eq', SCMP_CMP_GE: 'ge', SCMP_CMP_GT: 'gt', SCMP_CMP_MASKED_EQ: 'masked-eq',
};
const TOP_KEYS = ['defaultAction', 'defaultErrnoRet', 'architectures', 'flags', 'syscalls', 'listenerPath', 'listenerMetadata'];
const SYSCALL_KEYS = ['names', 'action', 'errnoRet', 'args'];
const ARG_KEYS = ['index', 'value', 'valueTwo', 'op'];
const KNOWN_NAMES = new Set(Object.values(SYSCALL_TABLES).flatMap((t) => Object.keys(t)));

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function keys(o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new TypeError(`${where}.${k}: not an OCI seccomp field nsbox applies (known: ${allowed.join(', ')})`);
  }
}
function errnoRet(v: unknown, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 4095) throw new RangeError(`${where}: must be an errno number 0..4095 (got ${String(v)})`);
  return v;
}
function u64(v: unknown, where: string): number | bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new TypeError(`${where}: must be a non-negative integer (got ${String(v)})`);
  // JSON numbers past 2^53 have lost their low bits already: refuse rather than compare another value
  if (!Number.isSafeInteger(v)) throw new RangeError(`${where}: ${v} is past 2^53 and was rounded by JSON.parse; give it as a bigint`);
  return v;
}

/** An OCI action with its errno (or tracer message) as nsbox's action. */
function action(v: unknown, ret: number | undefined, where: string): SeccompAction {
  switch (v) {
    case 'SCMP_ACT_ALLOW': return 'allow';
    // libseccomp's SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD
    case 'SCMP_ACT_KILL': case 'SCMP_ACT_KILL_THREAD': return 'kill-thread';
    case 'SCMP_ACT_KILL_PROCESS': return 'kill-process';
    case 'SCMP_ACT_TRAP': return 'trap';
    case 'SCMP_ACT_LOG': return 'log';
    // as runc: the errno (or the tracer's message) defaults to EPERM
    case 'SCMP_ACT_ERRNO': return { errno: ret ?? EPERM };
    case 'SCMP_ACT_TRACE': return { trace: ret ?? EPERM };
    case 'SCMP_ACT_NOTIFY':
      throw new RangeError(`${where}: SCMP_ACT_NOTIFY is not supported by nsbox (it has no seccomp user-notification listener to hand the fd to); use SCMP_ACT_ERRNO or SCMP_ACT_TRACE`);
    default:
      throw new RangeError(`${where}: unknown action ${JSON.stringify(v)} (SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_ERRNO, SCMP_ACT_TRACE, SCMP_ACT_ALLOW, SCMP_ACT_LOG)`);
  }
}

/**
 * The profile for OCI's `linux.seccomp` object (a parsed object or its JSON text). Mapping:
 * SCMP_ACT_KILL and SCMP_ACT_KILL_THREAD → `'kill-thread'`, SCMP_ACT_KILL_PROCESS →
 * `'kill-process'`, SCMP_ACT_TRAP → `'trap'`, SCMP_ACT_ERRNO → `{ errno: errnoRet }` (the
 * default action's from `defaultErrnoRet`; EPERM when absent), SCMP_ACT_TRACE → `{ trace:
 * errnoRet }` (EPERM when absent, as runc), SCMP_ACT_ALLOW → `'allow'`, SCMP_ACT_LOG → `'log'`;
 * SCMP_ACT_NOTIFY (and `listenerPath`) is refused. Arguments: SCMP_CMP_* as the operators of
 * the same name, SCMP_CMP_MASKED_EQ with `value` as the mask and `valueTwo` as the value
 * (libseccomp's order). Arguments of one rule must all hold, except where two test the same
 * argument index: then each is a rule of its own (either may hold), as runc does. A system
 * call's rules with argument tests are tried before its rules without. Architectures nsbox has
 * no table for are left out (their calls meet the bad-architecture action, kill-process);
 * syscall names nsbox does not know are left out of `SCMP_ACT_ALLOW` rules (denied by the
 * default action instead) and refused in any other rule. `flags`: SECCOMP_FILTER_FLAG_TSYNC is
 * taken (the sandbox installs its filter single-threaded); any other flag is refused. Throws a
 * TypeError/RangeError naming the field for anything else.
 */
export function seccompFromOCI(json: unknown): SeccompProfile {
  let o = json;
  if (typeof o === 'string') {
    try { o = JSON.parse(o) as unknown; } catch (e) { throw new TypeError(`seccomp (OCI): not JSON: ${(e as Error).message}`); }
  }
  const w = 'linux.seccomp';
  if (!isObj(o)) throw new TypeError(`${w}: must be an object (OCI linux.seccomp)`);
  keys(o, TOP_KEYS, w);
  if (o.listenerPath !== undefined || o.listenerMetadata !== undefined) {
    throw new RangeError(`${w}.${o.listenerPath !== undefined ? 'listenerPath' : 'listenerMetadata'}: seccomp user notification (SCMP_ACT_NOTIFY) is not supported by nsbox`);
  }
  const defaultErrno = errnoRet(o.defaultErrnoRet, `${w}.defaultErrnoRet`);
  if (o.defaultAction === undefined) throw new TypeError(`${w}.defaultAction: required`);
  const defaultAction = action(o.defaultAction, defaultErrno, `${w}.defaultAction`);
  if (defaultErrno !== undefined && o.defaultAction !== 'SCMP_ACT_ERRNO' && o.defaultAction !== 'SCMP_ACT_TRACE') {
    throw new RangeError(`${w}.defaultErrnoRet: only for a defaultAction SCMP_ACT_ERRNO or SCMP_ACT_TRACE (got ${String(o.defaultAction)})`);
  }

  let architectures: SeccompArch[] | undefined;
  if (o.architectures !== undefined) {
    if (!Array.isArray(o.architectures)) throw new TypeError(`${w}.architectures: must be an array of SCMP_ARCH_* names`);
    const list: SeccompArch[] = [];
    o.architectures.forEach((a: unknown, i) => {
      if (typeof a === 'string' && ARCH[a]) list.push(ARCH[a]!);
      else if (typeof a !== 'string' || !OTHER_ARCH.has(a)) throw new RangeError(`${w}.architectures[${i}]: unknown architecture ${JSON.stringify(a)} (${[...Object.keys(ARCH), ...OTHER_ARCH].join(', ')})`);
    });
    // none nsbox knows (or none given): the native one, as libseccomp does
    const native = nativeArch();
    architectures = [...new Set(list.length ? list : [native])];
    if (!architectures.includes(native)) architectures.unshift(native);
  }
  if (o.flags !== undefined) {
    if (!Array.isArray(o.flags)) throw new TypeError(`${w}.flags: must be an array of SECCOMP_FILTER_FLAG_* names`);
    o.flags.forEach((f: unknown, i) => {
      if (f === 'SECCOMP_FILTER_FLAG_TSYNC') return;
      if (f === 'SECCOMP_FILTER_FLAG_LOG' || f === 'SECCOMP_FILTER_FLAG_SPEC_ALLOW' || f === 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV') {
        throw new RangeError(`${w}.flags[${i}]: ${f} is not supported by nsbox (only SECCOMP_FILTER_FLAG_TSYNC, which a single-threaded sandbox needs not)`);
      }
      throw new RangeError(`${w}.flags[${i}]: unknown flag ${JSON.stringify(f)}`);
    });
  }

  const withArgs: SeccompRule[] = [], plain: SeccompRule[] = [];
  const syscalls = o.syscalls ?? [];
  if (!Array.isArray(syscalls)) throw new TypeError(`${w}.syscalls: must be an array`);
  syscalls.forEach((s: unknown, i) => {
    const ws = `${w}.syscalls[${i}]`;
    if (!isObj(s)) throw new TypeError(`${ws}: must be an object { names, action, errnoRet?, args? }`);
    keys(s, SYSCALL_KEYS, ws);
    if (!Array.isArray(s.names) || s.names.length === 0 || s.names.some((n) => typeof n !== 'string' || n === '')) {
      throw new TypeError(`${ws}.names: must be a non-empty array of system call names`);
    }
    const act = action(s.action, errnoRet(s.errnoRet, `${ws}.errnoRet`), `${ws}.action`);
    if (s.errnoRet !== undefined && s.action !== 'SCMP_ACT_ERRNO' && s.action !== 'SCMP_ACT_TRACE') {
      throw new RangeError(`${ws}.errnoRet: only for SCMP_ACT_ERRNO or SCMP_ACT_TRACE (got ${String(s.action)})`);
    }
    const names = (s.names as string[]).filter((n, j) => {
      if (KNOWN_NAMES.has(n)) return true;
      // left out, the call gets the default action: fine for an allow rule, and for any rule
      // when the default denies (podman's profile names calls in an errno rule under an errno
      // default); refused where leaving it out would let the call through
      if (act === 'allow' || (defaultAction !== 'allow' && defaultAction !== 'log')) return false;
      throw new RangeError(`${ws}.names[${j}]: unknown system call '${n}' (nsbox's tables know no such call: left out, the default action (which allows) would let it through; only allow rules, or any rule under a denying default action, may name one, and it is left out)`);
    });
    if (names.length === 0) return;
    const args: SeccompArgComparison[] = [];
    if (s.args !== undefined) {
      if (!Array.isArray(s.args)) throw new TypeError(`${ws}.args: must be an array`);
      s.args.forEach((a: unknown, j) => {
        const wa = `${ws}.args[${j}]`;
        if (!isObj(a)) throw new TypeError(`${wa}: must be an object { index, value, valueTwo?, op }`);
        keys(a, ARG_KEYS, wa);
        if (typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw new RangeError(`${wa}.index: must be 0..5 (got ${String(a.index)})`);
        const op = typeof a.op === 'string' ? OPS[a.op] : undefined;
        if (!op) throw new RangeError(`${wa}.op: unknown operator ${JSON.stringify(a.op)} (${Object.keys(OPS).join(', ')})`);
        const value = u64(a.value ?? 0, `${wa}.value`);
        const two = a.valueTwo === undefined ? 0 : u64(a.valueTwo, `${wa}.valueTwo`);
        if (op === 'masked-eq') args.push({ index: a.index, op, mask: value, value: two });
        else {
          if (two !== 0 && two !== 0n) throw new RangeError(`${wa}.valueTwo: only for SCMP_CMP_MASKED_EQ`);
          args.push({ index: a.index, op, value });
        }
      });
    }
    if (args.length === 0) { plain.push({ syscalls: names, action: act }); return; }
    const indices = args.map((a) => a.index);
    if (new Set(indices).size === indices.length) withArgs.push({ syscalls: names, action: act, args });
    else for (const a of args) withArgs.push({ syscalls: names, action: act, args: [a] });
  });
  return { defaultAction, rules: [...withArgs, ...plain], ...(architectures ? { architectures } : {}) };
}

// With `allowNewPrivileges: true` the spawn child installs the seccomp filter before it drops
// its privileges (the kernel takes a filter without no_new_privs only from a process holding
// CAP_SYS_ADMIN in its user namespace; runc does the same). Everything the child does from
// there to execve then runs under the filter, so the filter must allow it. These are those
// calls (addon/src/child.cc, Setup from SetCredentials on, and nsbox-init's start), with the
// arguments a filter might test. A custom profile is checked against them when the spawn is
// asked for, so a profile that would refuse one fails with a TypeError before anything is made
// instead of a setup step failing (or being killed) inside the sandbox. The working directory
// is opened before the filter (openat2 is not among them); only a directory that root cannot
// enter but the program's user can is opened again under it.
import { SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_LOG, decode, describeVerdict, evaluate } from './bpf.js';
import { AUDIT_ARCH, SYSCALL_TABLES, nativeArch } from './profile.js';

const PR_SET_PDEATHSIG = 1, PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24, PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;
const F_SETFD = 2;

/** One call the spawn child makes after an early filter, and what it is for. */
export interface EarlyCall {
  syscall: string;
  args?: readonly bigint[];
  why: string;
  /** What the child does instead when this call fails with an errno (not when it is killed). */
  orElse?: EarlyCall;
}

/** The calls made under an early filter for a sandbox running as `uid`/`gid`. */
export function seccompEarlyCalls(uid: number, gid: number): EarlyCall[] {
  const u = BigInt(uid), g = BigInt(gid);
  return [
    { syscall: 'prctl', args: [BigInt(PR_CAPBSET_DROP), 0n], why: 'dropping capabilities from the bounding set' },
    { syscall: 'prctl', args: [BigInt(PR_SET_KEEPCAPS), 1n], why: 'keeping capabilities across the uid change' },
    { syscall: 'setgroups', args: [0n], why: 'setting the supplementary groups' },
    { syscall: 'setresgid', args: [g, g, g], why: 'setting the gid' },
    { syscall: 'setresuid', args: [u, u, u], why: 'setting the uid' },
    { syscall: 'capset', why: 'setting the capabilities kept' },
    { syscall: 'prctl', args: [BigInt(PR_SET_KEEPCAPS), 0n], why: 'clearing keep-capabilities' },
    { syscall: 'prctl', args: [BigInt(PR_CAP_AMBIENT), BigInt(PR_CAP_AMBIENT_CLEAR_ALL)], why: 'clearing ambient capabilities' },
    { syscall: 'prctl', args: [BigInt(PR_CAP_AMBIENT), BigInt(PR_CAP_AMBIENT_RAISE)], why: 'raising ambient capabilities' },
    { syscall: 'prctl', args: [BigInt(PR_SET_PDEATHSIG), 9n], why: 'the parent-death signal' },
    { syscall: 'ppoll', why: 'checking that the parent is alive' },
    { syscall: 'fchdir', why: 'entering the working directory' },
    { syscall: 'close', why: 'closing descriptors' },
    { syscall: 'recvmsg', why: 'receiving the network namespace' },
    { syscall: 'sched_setaffinity', why: 'restoring the CPU affinity' },
    {
      syscall: 'close_range', why: 'marking descriptors close-on-exec',
      orElse: { syscall: 'fcntl', args: [3n, BigInt(F_SETFD)], why: 'marking descriptors close-on-exec one by one' },
    },
    { syscall: 'fcntl', args: [3n, BigInt(F_SETFD)], why: 'passing descriptors to nsbox-init' },
    { syscall: 'rt_sigprocmask', why: 'unblocking signals' },
    { syscall: 'write', why: 'reporting a setup failure' },
    { syscall: 'exit_group', why: 'exiting after a setup failure' },
    { syscall: 'execveat', why: 'starting nsbox-init' },
    { syscall: 'execve', why: 'starting the program' },
  ];
}

const checked = new WeakSet<Buffer>();

/**
 * Throws a TypeError naming `option` when `program` (a compiled filter) would not allow one of
 * the calls the spawn child makes after installing it early (see the file header). Programs of
 * the same Buffer that passed once with uid/gid 0 are not checked again.
 */
export function checkSeccompEarly(program: Buffer, uid: number, gid: number, option = 'options.seccomp'): void {
  const cacheable = uid === 0 && gid === 0;
  if (cacheable && checked.has(program)) return;
  const arch = nativeArch();
  const table = SYSCALL_TABLES[arch];
  // decoded once for the ~25 calls (a Buffer is decoded again by every evaluate: podman's
  // default profile made that ~13 ms of create's CPU, medians of 12)
  const insns = decode(program);
  const verdict = (c: EarlyCall): number | undefined => {
    const nr = table[c.syscall];
    return nr === undefined ? undefined : evaluate(insns, { nr, arch: AUDIT_ARCH[arch], args: c.args });
  };
  const allowed = (v: number): boolean => {
    const action = (v & SECCOMP_RET_ACTION_FULL) >>> 0;
    return action === SECCOMP_RET_ALLOW || action === SECCOMP_RET_LOG;
  };
  for (const c of seccompEarlyCalls(uid, gid)) {
    const v = verdict(c);
    if (v === undefined) continue;
    if (!allowed(v) && c.orElse && ((v & SECCOMP_RET_ACTION_FULL) >>> 0) === SECCOMP_RET_ERRNO) {
      const alt = verdict(c.orElse);
      if (alt === undefined || allowed(alt)) continue;
    }
    if (!allowed(v)) {
      throw new TypeError(`${option}: with allowNewPrivileges: true the filter is installed before nsbox drops privileges ` +
        `(the kernel requires it), so it must allow ${c.syscall} (${c.why}); this profile gives ${describeVerdict(v)}`);
    }
  }
  if (cacheable) checked.add(program);
}

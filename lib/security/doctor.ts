// `doctor()`: what this host lets nsbox do, and what a user can change when it does not.
// `selfTest()`: the seccomp attack battery, run on this host under a profile.
// Every probe runs in a forked child of the addon (addon/src/seccomp.cc), so the Node process
// changes nothing about itself; nothing here spawns a command.
import { closeSync, constants as fsConstants, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { release, userInfo } from 'node:os';
import { detectLayout, type CgroupLayout } from '../cgroup/detect.js';
import { cgroupPermissionFix, mayCreateIn, v2DefaultParent } from '../cgroup/cgroup.js';
import { errnoError } from '../errors.js';
import { errnoName } from '../util/sys.js';
import { findIdMapHelpers } from '../util/idmap.js';
import { native } from '../native.js';
import { ownsNetworkNamespace } from '../ns/namespace.js';
import { compileSeccomp } from './seccomp/compile.js';
import { SECCOMP_RET_ACTION_FULL, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, describeVerdict, evaluate } from './seccomp/bpf.js';
import { defaultProfile } from './seccomp/default-profile.js';
import { AUDIT_ARCH, type SeccompProfile } from './seccomp/profile.js';

interface ProbeOut { ok: boolean; errno: number; value: number; signal?: number }
interface DoctorNative {
  hostProbe(name: string, arg?: string): ProbeOut;
  seccompSelfTest(filter: Buffer | null): { id: number; errno: number; ret: number; signal: number }[];
}
const addon = () => native() as unknown as DoctorNative;

/** Outcome of one host check. */
export type DoctorStatus = 'ok' | 'warn' | 'fail' | 'unknown';

/** One thing the host allows or not. */
export interface DoctorCheck {
  /** stable id, e.g. `'userns'`, `'landlock'`. */
  id: string;
  /** short title. */
  title: string;
  /** `ok`: usable; `warn`: usable with a limit, or usable by root only; `fail`: not available; `unknown`: could not tell. */
  status: DoctorStatus;
  /** what was found, in words. */
  detail: string;
  /** what a user can do about it (set unless `ok`). */
  fix?: string;
}

/** What `doctor()` found. */
export interface DoctorReport {
  /** `uname -r`. */
  kernel: string;
  /** whether this process runs as root. */
  root: boolean;
  checks: DoctorCheck[];
  /** no check failed. */
  ok: boolean;
  /**
   * the default spawn (`spawnIsolated(file, args)` with no options) can work here: none of the
   * checks it depends on failed (user namespaces, seccomp filters, cgroup namespaces). What
   * `nsbox doctor`'s exit code says.
   */
  defaultSpawn: boolean;
}

/** Checks the default spawn depends on: a `fail` in one of them means it cannot work. */
const DEFAULT_SPAWN_NEEDS = ['userns', 'seccomp', 'cgroupns'];

/** The errno of a permission refusal (EPERM, EACCES). */
const denied = (errno: number) => errno === 1 || errno === 13;

const en = (e: number) => errnoName(e) ?? `errno ${e}`;

function sysctl(path: string): string | undefined {
  try { return readFileSync(path, 'utf8').trim(); } catch { return undefined; }
}

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release());
  if (!m) return false;
  const a = Number(m[1]), b = Number(m[2]);
  return a > major || (a === major && b >= minor);
}

function probe(name: string, arg?: string): ProbeOut {
  return addon().hostProbe(name, arg);
}

function checkUserns(root: boolean): DoctorCheck {
  const p = probe('userns');
  const max = sysctl('/proc/sys/user/max_user_namespaces');
  const debian = sysctl('/proc/sys/kernel/unprivileged_userns_clone');
  const apparmor = sysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  const limits: string[] = [];
  const fixes: string[] = [];
  if (max === '0') { limits.push('user.max_user_namespaces is 0'); fixes.push('sysctl -w user.max_user_namespaces=15000'); }
  if (debian === '0') { limits.push('kernel.unprivileged_userns_clone is 0 (users other than root cannot create user namespaces)'); fixes.push('sysctl -w kernel.unprivileged_userns_clone=1'); }
  // this process's AppArmor confinement: an unconfined one is what the restriction is about
  const confined = (sysctl('/proc/self/attr/apparmor/current') ?? sysctl('/proc/self/attr/current') ?? 'unconfined') !== 'unconfined';
  const restricted = apparmor === '1' && !root && !confined;
  if (apparmor === '1') {
    limits.push('kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 24.04+: unconfined programs get a user namespace without capabilities)');
    fixes.push('give node an AppArmor profile with the "userns," rule (/etc/apparmor.d/), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0');
  }
  if (!p.ok) {
    return {
      id: 'userns', title: 'user namespaces', status: 'fail',
      detail: `unshare(CLONE_NEWUSER) failed: ${en(p.errno)}${limits.length ? `; ${limits.join('; ')}` : ''}`,
      fix: fixes.join('; ') || 'use a kernel built with CONFIG_USER_NS=y',
    };
  }
  if (restricted) {
    // unshare succeeds, but the namespace has no capabilities: the sandbox cannot mount its /proc
    return {
      id: 'userns', title: 'user namespaces', status: 'fail',
      detail: `this unconfined process gets user namespaces without capabilities: ${limits.join('; ')}`, fix: fixes.join('; '),
    };
  }
  if (limits.length) {
    return {
      id: 'userns', title: 'user namespaces', status: 'warn',
      detail: `available to this process${root ? ' (root)' : ''}, but ${limits.join('; ')}`, fix: fixes.join('; '),
    };
  }
  return { id: 'userns', title: 'user namespaces', status: 'ok', detail: `available${max ? ` (max ${max})` : ''}` };
}

/** /dev/net/tun, which user-mode networking's helpers (pasta, slirp4netns) open for the sandbox's tap. */
function checkTun(root: boolean): DoctorCheck {
  const base = { id: 'tun', title: "/dev/net/tun (network: { mode: 'user' })" };
  let mode: number;
  try { mode = statSync('/dev/net/tun').mode & 0o777; } catch {
    return { ...base, status: 'fail', detail: '/dev/net/tun is missing', fix: 'load the tun module (modprobe tun) or use a kernel with CONFIG_TUN' };
  }
  const m = mode.toString(8).padStart(4, '0');
  const fix = 'make it 0666 as Debian does (chmod 0666 /dev/net/tun, or a udev rule: KERNEL=="tun", MODE="0666")';
  if (!root) {
    try { closeSync(openSync('/dev/net/tun', fsConstants.O_RDWR)); } catch (e) {
      return { ...base, status: 'fail', detail: `mode ${m}: this user cannot open it (${(e as NodeJS.ErrnoException).code}), so user-mode networking fails`, fix: `${fix}, or run as root` };
    }
    return { ...base, status: 'ok', detail: `mode ${m}: this user can open it` };
  }
  if ((mode & 0o006) !== 0o006) return { ...base, status: 'warn', detail: `mode ${m}: only root (and its group) can open it: user-mode networking fails for other users`, fix };
  return { ...base, status: 'ok', detail: `mode ${m}: every user can open it` };
}

function checkCgroups(layout: CgroupLayout | undefined, err: unknown): DoctorCheck {
  if (!layout) return { id: 'cgroup', title: 'cgroups', status: 'fail', detail: `no cgroup hierarchy found (${(err as Error)?.message})`, fix: 'mount cgroup2 at /sys/fs/cgroup' };
  if (layout.mode === 'v2') {
    let controllers = '';
    try { controllers = readFileSync(`${layout.v2OwnDir}/cgroup.controllers`, 'utf8').trim(); } catch { /* */ }
    const missing = ['memory', 'cpu', 'pids'].filter((c) => !controllers.split(' ').includes(c));
    if (missing.length) {
      return {
        id: 'cgroup', title: 'cgroups', status: 'warn', detail: `cgroup v2 at ${layout.v2Mount}; own cgroup ${layout.v2OwnDir} lacks ${missing.join(', ')}`,
        fix: 'ask for delegation: run under `systemd-run --user --scope -p Delegate=yes`, or as root enable the controllers in the parent\'s cgroup.subtree_control',
      };
    }
    return { id: 'cgroup', title: 'cgroups', status: 'ok', detail: `cgroup v2 at ${layout.v2Mount}, controllers: ${controllers}` };
  }
  const names = layout.v1.flatMap((h) => h.controllers).join(', ');
  return {
    id: 'cgroup', title: 'cgroups', status: 'warn',
    detail: `${layout.mode === 'hybrid' ? 'hybrid (v1 controllers, cgroup2 without controllers)' : 'cgroup v1'}: ${names}. Attaching to v1 cgroups can wait an RCU grace period; CLONE_INTO_CGROUP does not apply`,
    fix: 'boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) for CLONE_INTO_CGROUP and delegation',
  };
}


/**
 * Whether this caller can get the cgroups that limits (and CGroup.create) need, where nsbox
 * makes them by default: on v2 the place {@link v2DefaultParent} picks (beside the caller, in
 * the nearest ancestor without processes it may use) or the blocker it names (not delegated; a
 * delegated subtree it cannot move processes into; a container's cgroup namespace root holding
 * processes; a read-only cgroup mount). On v1 (non-root only) its own cgroup in every hierarchy.
 * Sandboxes without limits need none.
 */
function checkCgroupDelegation(layout: CgroupLayout | undefined, root: boolean): DoctorCheck | undefined {
  if (!layout) return undefined;
  const base = { id: 'cgroup-delegation', title: root ? 'cgroups for limits' : 'cgroups for limits (this user)' };
  if (layout.mode === 'v2') {
    const own = layout.v2OwnDir ?? layout.v2Mount!;
    const where = v2DefaultParent(layout);
    if ('dir' in where) return { ...base, status: 'ok', detail: `sandboxes' cgroups are made in ${where.dir}${where.dir === own ? " (the caller's own cgroup)" : ` (beside the caller's ${own})`}` };
    return { ...base, status: 'warn', detail: `${where.cause}: limits and CGroup.create fail; sandboxes without limits work`, fix: where.fix };
  }
  if (root) return undefined;
  const refused = layout.v1.filter((h) => !mayCreateIn(h.ownDir));
  if (!refused.length) return { ...base, status: 'ok', detail: 'this user may create cgroups in every v1 hierarchy nsbox uses' };
  return {
    ...base, status: 'warn',
    detail: `this user may not create cgroups in the ${refused.map((h) => h.controllers.join(',')).join(', ')} hierarchies: limits and CGroup.create fail; sandboxes without limits work`,
    fix: cgroupPermissionFix(true),
  };
}

/** A subordinate id range for this user in /etc/subuid and /etc/subgid (by name or by uid). */
function checkSubids(): DoctorCheck | undefined {
  const uid = process.geteuid?.() ?? 0;
  let name: string | undefined;
  try { name = userInfo().username; } catch { /* no passwd entry */ }
  const base = { id: 'subuid', title: 'subordinate ids (/etc/subuid, /etc/subgid)' };
  const has = (file: string) => (sysctl(file) ?? '').split('\n').some((l) => {
    const [who, , count] = l.split(':');
    return (who === name || who === String(uid)) && Number(count) > 0;
  });
  const missing = ['/etc/subuid', '/etc/subgid'].filter((f) => !has(f));
  if (!missing.length && !findIdMapHelpers()) {
    return {
      ...base, status: 'warn',
      detail: `${name ?? uid} has a range in /etc/subuid and /etc/subgid, but newuidmap/newgidmap are not installed: it will not be used (a sandbox maps only this user's own id; options.uid/gid other than 0 are refused; images are squashed to this user)`,
      fix: 'apt install uidmap (dnf install shadow-utils)',
    };
  }
  if (!missing.length) return { ...base, status: 'ok', detail: `${name ?? uid} has a range in /etc/subuid and /etc/subgid and newuidmap/newgidmap are installed: sandboxes that need more ids than this user's own (options.uid/gid/groups, images) map it (0 = this user, 1.. = the range), and this user's layer store keeps images' owners in it` };
  return {
    ...base, status: 'warn',
    detail: `no range for ${name ?? `uid ${uid}`} in ${missing.join(' and ')}: a sandbox maps only this user's own id (root inside), so options.uid/gid other than 0 are refused and images are squashed to this user (their other owners are dropped)`,
    fix: `add one as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name ?? '<user>'}`,
  };
}

function checkCloneIntoCgroup(layout: CgroupLayout | undefined): DoctorCheck {
  const title = 'CLONE_INTO_CGROUP';
  if (!layout?.v2OwnDir) return { id: 'clone-into-cgroup', title, status: 'fail', detail: 'no cgroup2 hierarchy mounted', fix: 'mount cgroup2 (boot with systemd.unified_cgroup_hierarchy=1)' };
  const p = probe('clone-into-cgroup', layout.v2OwnDir);
  if (!p.ok && denied(p.errno) && kernelAtLeast(5, 7)) {
    // the kernel has it; this user may not put processes in that cgroup
    return {
      id: 'clone-into-cgroup', title, status: 'warn',
      detail: `this kernel has it (5.7+), but this user may not start processes in ${layout.v2OwnDir} (${en(p.errno)}): a permission matter, not an old kernel`,
      fix: layout.mode === 'v2' ? cgroupPermissionFix(false) : 'nothing to do for sandboxes without limits; on this host limits use cgroup v1 (see "cgroups for limits")',
    };
  }
  if (!p.ok) return { id: 'clone-into-cgroup', title, status: 'fail', detail: `clone3(CLONE_INTO_CGROUP) into ${layout.v2OwnDir} failed: ${en(p.errno)}`, fix: 'Linux 5.7 or later, with cgroup v2' };
  if (layout.mode !== 'v2') return { id: 'clone-into-cgroup', title, status: 'warn', detail: 'works, but the cgroup2 hierarchy has no controllers on this host, so nsbox attaches through v1', fix: 'boot with systemd.unified_cgroup_hierarchy=1' };
  return { id: 'clone-into-cgroup', title, status: 'ok', detail: 'clone3 can start a child directly in its cgroup' };
}

function simple(id: string, title: string, p: ProbeOut, okDetail: string, fix: string): DoctorCheck {
  return p.ok ? { id, title, status: 'ok', detail: okDetail } : { id, title, status: 'fail', detail: `${title}: ${en(p.errno)}`, fix };
}

/**
 * Checks what this host allows nsbox to do: user namespaces (incl. Debian's and Ubuntu's
 * sysctl/AppArmor restrictions), cgroup mode and delegation, overlay in a user namespace,
 * idmapped mounts, clone3, CLONE_INTO_CGROUP, pidfd, seccomp, nftables and the Landlock ABI,
 * each with a fix a user can apply. Probes run in forked children; nothing is left behind.
 */
export function doctor(): DoctorReport {
  const root = process.geteuid?.() === 0;
  const checks: DoctorCheck[] = [];
  checks.push(checkUserns(root));
  let layout: CgroupLayout | undefined;
  let lerr: unknown;
  try { layout = detectLayout(); } catch (e) { lerr = e; }
  checks.push(checkCgroups(layout, lerr));

  const ov = probe('overlay-userns');
  checks.push(ov.ok
    ? { id: 'overlay-userns', title: 'overlayfs in a user namespace', status: 'ok', detail: 'mounts with userxattr' }
    : { id: 'overlay-userns', title: 'overlayfs in a user namespace', status: 'fail', detail: `overlay mount in a user namespace failed: ${en(ov.errno)}`, fix: 'Linux 5.11 or later (overlay with userxattr); otherwise give nsbox a writable copy of the rootfs instead of layers' });

  const mapi = probe('mount-api');
  checks.push(!mapi.ok && !root && denied(mapi.errno) && kernelAtLeast(5, 2)
    ? {
      // the kernel has it: fsopen needs CAP_SYS_ADMIN in the host's namespaces, which a sandbox's
      // user namespace gives nsbox for the sandbox's own mounts
      id: 'idmapped-mounts', title: 'new mount API and idmapped mounts', status: 'warn',
      detail: `fsopen: ${en(mapi.errno)}: this kernel has the new mount API${kernelAtLeast(5, 12) ? ' and idmapped mounts' : ''}, but mounting on the host needs root (a permission matter, not an old kernel); sandboxes mount inside their own user namespace`,
      fix: 'mounts on the host (OverlayMount, image import, idmapped layers) need root; sandboxes without them are unaffected',
    }
    : !mapi.ok
    ? { id: 'idmapped-mounts', title: 'new mount API and idmapped mounts', status: 'fail', detail: `fsopen: ${en(mapi.errno)}`, fix: 'Linux 5.2+ for the new mount API, 5.12+ for idmapped mounts; nsbox falls back to mount(2) and chown' }
    : mapi.value === 2 && kernelAtLeast(5, 12)
      ? { id: 'idmapped-mounts', title: 'new mount API and idmapped mounts', status: 'ok', detail: 'fsopen and mount_setattr present (idmapping support also depends on the filesystem: ext4/xfs/btrfs 5.12-5.15+, tmpfs 6.3+, overlay 5.19+)' }
      : { id: 'idmapped-mounts', title: 'new mount API and idmapped mounts', status: 'warn', detail: 'new mount API present, mount_setattr missing', fix: 'Linux 5.12 or later for idmapped mounts' });

  checks.push(simple('clone3', 'clone3', probe('clone3'), 'present', 'Linux 5.3 or later; nsbox falls back to clone()'));
  checks.push(checkCloneIntoCgroup(layout));
  checks.push(simple('pidfd', 'pidfd', probe('pidfd'), 'pidfd_open works: exits are watched without SIGCHLD', 'Linux 5.3 or later'));

  const sc = probe('seccomp-actions');
  const ACTS = ['kill-process', 'kill-thread', 'trap', 'errno', 'user-notif', 'trace', 'log', 'allow'];
  const have = ACTS.filter((_, i) => sc.value & (1 << i));
  const status = /^Seccomp:\s*(\d)/m.exec(sysctl('/proc/self/status') ?? '')?.[1];
  if (!sc.ok || !['kill-process', 'errno', 'allow'].every((a) => have.includes(a))) {
    checks.push({ id: 'seccomp', title: 'seccomp filters', status: 'fail', detail: sc.ok ? `actions available: ${have.join(', ')}` : `SECCOMP_GET_ACTION_AVAIL: ${en(sc.errno)}`, fix: 'a kernel with CONFIG_SECCOMP_FILTER=y, Linux 4.14 or later' });
  } else {
    checks.push({
      id: 'seccomp', title: 'seccomp filters', status: status === '2' ? 'warn' : 'ok',
      detail: `actions: ${have.join(', ')}${status === '2' ? '; this Node process already runs under a filter (a container?): its rules apply inside every sandbox too' : ''}`,
      ...(status === '2' ? { fix: 'if sandboxes fail with EPERM where nsbox allows a call, relax the outer runtime\'s profile' } : {}),
    });
  }

  const nft = probe('nftables');
  checks.push(nft.ok
    ? { id: 'nftables', title: 'nftables', status: 'ok', detail: 'nf_tables answers over netlink' }
    : nft.errno === 1 && !root
      ? { id: 'nftables', title: 'nftables', status: 'unknown', detail: 'needs CAP_NET_ADMIN to ask', fix: 'run doctor as root to check' }
      : nft.errno === 1 && !ownsNetworkNamespace()
        ? { id: 'nftables', title: 'nftables', status: 'warn', detail: "root in a user namespace that does not own this network namespace (a container): no CAP_NET_ADMIN here, so no nftables and no bridge networking", fix: "use network: 'user' (pasta or slirp4netns), or give the container a network namespace of its own" }
      : { id: 'nftables', title: 'nftables', status: 'fail', detail: `nf_tables over netlink: ${en(nft.errno)}`, fix: 'load the nf_tables module (modprobe nf_tables) or use a kernel with CONFIG_NF_TABLES' });

  const ll = probe('landlock');
  checks.push(ll.ok
    ? { id: 'landlock', title: 'Landlock', status: 'ok', detail: `ABI version ${ll.value}` }
    : ll.errno === 95
      ? { id: 'landlock', title: 'Landlock', status: 'fail', detail: 'built in but not enabled', fix: 'add landlock to the lsm= kernel parameter (e.g. lsm=landlock,lockdown,yama,apparmor,bpf)' }
      : { id: 'landlock', title: 'Landlock', status: 'fail', detail: `landlock_create_ruleset: ${en(ll.errno)}`, fix: 'Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK=y' });

  checks.push(checkTun(root));
  const d = checkCgroupDelegation(layout, root);
  if (d) checks.push(d);
  if (!root) {
    const s = checkSubids();
    if (s) checks.push(s);
  }

  if (!existsSync('/proc/self/ns/cgroup')) {
    checks.push({ id: 'cgroupns', title: 'cgroup namespaces', status: 'fail', detail: '/proc/self/ns/cgroup missing', fix: 'Linux 4.6 or later with CONFIG_CGROUPS' });
  }
  return {
    kernel: release(), root, checks, ok: checks.every((c) => c.status !== 'fail'),
    defaultSpawn: checks.every((c) => c.status !== 'fail' || !DEFAULT_SPAWN_NEEDS.includes(c.id)),
  };
}

/** One attack of the self-test battery and what the kernel answered. */
export interface SelfTestAttack {
  /** stable id, e.g. `'unshare-user'`. */
  id: string;
  /** what the attack tries. */
  title: string;
  /** the answer that means "denied": an errno name, or `'SIGSYS'` for a kill. */
  expect: string;
  /** what it got: an errno name, `'ok'` (the call succeeded), `'SIGSYS'`/`'signal N'`, or `'n/a'`. */
  got: string;
  /** got === expect (or, for an attack this host cannot make at all, see `note`). */
  denied: boolean;
  /**
   * Set when the host itself makes the attack impossible (e.g. no i386 system calls at all):
   * why, and for a filter, its verdict read from the program (which then decides `denied`).
   */
  note?: string;
}

/** What the host does with an i386 system call (int 0x80) with no filter at all. */
export interface I386Support {
  /** the call ran. */
  ok: boolean;
  /** the signal the probe died of (SIGSEGV where the host faults int 0x80), if any. */
  signal?: number;
  /** why it did not run, in words. */
  reason?: string;
}

let i386Cache: I386Support | undefined;
/**
 * Whether this host makes i386 system calls through int 0x80 at all, without any filter
 * (x86_64 only). Some cannot: IA32 emulation off (`ia32_emulation=0`), or a hypervisor that
 * faults int 0x80; there a process doing it dies of SIGSEGV before any seccomp filter sees the
 * call, and the attack is impossible. Probed once, in a forked child.
 */
export function hostI386Syscalls(): I386Support {
  if (i386Cache) return i386Cache;
  if (process.arch !== 'x64') return (i386Cache = { ok: false, reason: `not an x86_64 host (${process.arch})` });
  const p = probe('i386');
  if (p.ok) return (i386Cache = { ok: true });
  const how = p.signal ? `int 0x80 gets ${p.signal === 11 ? 'SIGSEGV' : `signal ${p.signal}`}` : `int 0x80 fails with ${en(p.errno)}`;
  return (i386Cache = { ok: false, signal: p.signal, reason: `this host cannot make i386 system calls (${how} even without a filter)` });
}

const ATTACKS: [string, string, string][] = [
  ['unshare-user', 'unshare(CLONE_NEWUSER)', 'EPERM'],
  ['unshare-mount', 'unshare(CLONE_NEWNS)', 'EPERM'],
  ['setns', 'setns()', 'EPERM'],
  ['clone-newuser', 'clone(CLONE_NEWUSER)', 'EPERM'],
  ['clone3', 'clone3 (flags out of the filter\'s sight)', 'ENOSYS'],
  ['mount', 'mount(tmpfs)', 'EPERM'],
  ['fsopen', 'fsopen()', 'EPERM'],
  ['open-tree', 'open_tree()', 'EPERM'],
  ['bpf', 'bpf(BPF_PROG_LOAD)', 'EPERM'],
  ['perf-event-open', 'perf_event_open()', 'EPERM'],
  ['keyctl', 'keyctl()', 'EPERM'],
  ['userfaultfd', 'userfaultfd()', 'EPERM'],
  ['io-uring', 'io_uring_setup()', 'EPERM'],
  ['af-alg', 'socket(AF_ALG)', 'EAFNOSUPPORT'],
  ['af-vsock', 'socket(AF_VSOCK)', 'EAFNOSUPPORT'],
  ['tiocsti', 'ioctl(TIOCSTI) on a pty', 'EPERM'],
  ['tiocsti-high-bits', 'ioctl(TIOCSTI | 1<<32) on a pty', 'EPERM'],
  ['tioclinux', 'ioctl(TIOCLINUX)', 'EPERM'],
  ['open-by-handle-at', 'open_by_handle_at()', 'EPERM'],
  ['ptrace', 'ptrace()', 'EPERM'],
  ['kexec-load', 'kexec_load()', 'EPERM'],
  ['init-module', 'init_module()', 'EPERM'],
  ['int80', 'i386 syscall through int 0x80', 'SIGSYS'],
  ['x32', 'x32 syscall (bit 30)', 'SIGSYS'],
];

/**
 * Runs the seccomp attack battery on this host in a forked child under `profile` (default:
 * nsbox's default profile), or under no filter with `null` (to see what the host alone allows).
 * Each attack runs in a process of its own with arguments that change nothing even if the call
 * gets through. `nsbox doctor --self-test` prints this.
 */
export function selfTest(profile: SeccompProfile | null = defaultProfile): SelfTestAttack[] {
  const filter = profile === null ? null : compileSeccomp(profile);
  const raw = addon().seccompSelfTest(filter);
  return ATTACKS.map(([id, title, expect], i) => {
    const r = raw.find((x) => x.id === i + 1);
    let got: string;
    if (!r) got = 'n/a';
    else if (r.signal) got = r.signal === 31 ? 'SIGSYS' : `signal ${r.signal}`;
    else if (r.errno === -1) got = 'n/a';
    else if (r.ret >= 0 && r.errno === 0) got = 'ok';
    else got = en(r.errno);
    if (id === 'int80' && got !== expect && r?.signal) {
      // the same fault without a filter: the host refuses i386 calls before seccomp sees them
      const host = hostI386Syscalls();
      if (!host.ok && host.signal === r.signal) {
        if (!filter) return { id, title, expect, got: 'n/a', denied: true, note: `${host.reason}: denied by the host` };
        // what the filter would do where they run, read from its program
        const v = evaluate(filter, { nr: 20 /* i386 getpid */, arch: AUDIT_ARCH.i386 });
        const action = (v & SECCOMP_RET_ACTION_FULL) >>> 0;
        const kills = action === SECCOMP_RET_KILL_PROCESS || action === SECCOMP_RET_KILL_THREAD;
        return { id, title, expect, got: 'n/a', denied: kills, note: `${host.reason}, so the attack is impossible here; the filter's verdict for one: ${describeVerdict(v)}` };
      }
    }
    return { id, title, expect, got, denied: got === expect };
  });
}

/** Throws an NsboxError naming the first attack the profile let through (for CLIs and CI). */
export function assertSelfTest(profile: SeccompProfile = defaultProfile): void {
  const bad = selfTest(profile).find((a) => !a.denied);
  if (bad) throw errnoError(1, 'self-test', bad.id, undefined, `${bad.title}: expected ${bad.expect}, got ${bad.got}`);
}

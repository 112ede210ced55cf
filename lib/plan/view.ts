// The sandbox's filesystem view as ops: the per-spawn view (a rootfs or the default view of
// the host's system directories, with the caller's mounts, devices, masks and read-only
// paths) and the view template (DESIGN.md, "view template") of the default view. The parts
// both are made of are one list each here (system directories, tmpfs dirs, device nodes and
// links, devpts and shm, masks). Default views are made once a second and shared.
import { posix } from 'node:path';
import type { NamespaceType } from '../ns/namespace.js';
import { shareOps } from './encode.js';
import { MS, Op, type PlanOp } from './ops.js';
import type { HostFacts, ImageTemplate, RootOverlay } from './types.js';

/** Host system directories the default view shows read-only (missing ones are skipped, symlinks copied). */
export const DEFAULT_RO_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'];
/** Fresh, empty tmpfs directories of the default view. */
export const DEFAULT_TMPFS: Array<[string, string]> = [
  ['/tmp', 'mode=1777'], ['/home', 'mode=0755'], ['/root', 'mode=0700'], ['/run', 'mode=0755'], ['/var/tmp', 'mode=1777'],
];
const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
/** Their device numbers (fixed by Linux's devices.txt), for a view template's /dev: major << 8 | minor. */
const DEV_NUMBERS: Record<string, number> = { null: 0x103, zero: 0x105, full: 0x107, random: 0x108, urandom: 0x109, tty: 0x500 };
/** Masked by default: host kernel state (Docker's list). Each becomes an empty read-only file or directory. */
export const DEFAULT_MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
/** Read-only by default (they would be writable through the sandbox's own procfs). */
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
/** Where the runtime-owned empty file and directory masks are bound from: a read-only tmpfs on
 * the scratch root (detached with it), never a path of the rootfs. */
const MASK_DIR = '/nsbox-mask';

/** Links of the default /dev (name, target). */
const DEV_LINKS: ReadonlyArray<readonly [string, string]> = [
  ['ptmx', 'pts/ptmx'], ['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2'],
];
/** /dev's own devpts instance and shm, per sandbox (path under /dev, fstype, flags, options). */
const DEV_MOUNTS: ReadonlyArray<readonly [string, string, number, string]> = [
  ['pts', 'devpts', MS.NOSUID | MS.NOEXEC, 'newinstance,ptmxmode=0666,mode=0620'],
  ['shm', 'tmpfs', MS.NOSUID | MS.NODEV | MS.NOEXEC, 'mode=1777'],
];
const SYSFS_FLAGS = MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC;
const PROC_FLAGS = MS.NOSUID | MS.NODEV | MS.NOEXEC;
const MASK_TMPFS = 'mode=0555,size=4k,nr_inodes=4';

/** The host's system directories of the default view at `root`: read-only binds from `from`, symlinks made again. */
function systemDirOps(host: HostFacts, root: string, from: string): PlanOp[] {
  const ops: PlanOp[] = [];
  for (const dir of DEFAULT_RO_DIRS) {
    const k = host.pathKind(dir);
    if (k.kind === 'symlink') ops.push({ op: Op.Symlink, source: k.target, path: root + dir });
    else if (k.kind === 'dir') ops.push({ op: Op.Bind, source: from + dir, path: root + dir, readonly: true, recursive: true, flags: MS.NOSUID | MS.NODEV });
  }
  return ops;
}

function underSys(p: string): boolean {
  return p === '/sys' || p.startsWith('/sys/');
}

/** Whether a masked or read-only path is the kernel's (in the sandbox's proc or sysfs, looked at on the host). */
function kernelPath(p: string): boolean {
  return p.startsWith('/proc/') || p === '/proc' || underSys(p);
}

/**
 * The masked and read-only paths (those under /sys or the others), in order. A path of the
 * kernel's (/proc, /sys) is looked at on the host: one missing there or a symlink is left out.
 * Any other lies in the rootfs, the default view's host directories or a caller's mount: it is
 * looked at by the child, inside the root, when it is masked (`present`: left out where the
 * sandbox has no such path; file or directory as it is there).
 */
function maskEntries(host: HostFacts, maskedPaths: readonly string[], readonlyPaths: readonly string[], wantSys: boolean): Array<{ path: string; dir: boolean; mask: boolean; present?: boolean }> {
  const out: Array<{ path: string; dir: boolean; mask: boolean; present?: boolean }> = [];
  for (const [list, mask] of [[maskedPaths, true], [readonlyPaths, false]] as const) {
    for (const p of list) {
      if (underSys(p) !== wantSys) continue;
      if (!kernelPath(p)) {
        out.push({ path: p, dir: false, mask, present: true });
        continue;
      }
      const k = host.pathKind(p);
      if (k.kind === 'missing' || k.kind === 'symlink') continue;
      out.push({ path: p, dir: k.kind === 'dir', mask });
    }
  }
  return out;
}

/** A read-only path: bound onto itself, read-only. */
function readonlyOp(at: string, dir: boolean): PlanOp {
  return { op: Op.Bind, source: at, path: at, file: !dir, recursive: true, readonly: true, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC };
}

/** A caller's mount, parsed (plan/build.ts, parseMount). */
export interface ParsedMount {
  type: string;
  source?: string;
  /** a bind's source with the host's symlinks resolved (the child looks it up under /oldroot) */
  hostSource?: string;
  target: string;
  readonly: boolean;
  propagation: 'private' | 'shared' | 'slave' | 'unbindable';
  options?: string;
  file: boolean;
  noexec: boolean;
  nosuid: boolean;
  nodev: boolean;
  /** tmpfs: starts with a copy of what the directory under it holds (OCI tmpcopyup) */
  copyUp: boolean;
}

/** mount(2) flags of a caller's mount as given (nosuid and nodev unless relaxed). */
function callerFlags(m: ParsedMount): number {
  return (m.nosuid ? MS.NOSUID : 0) | (m.nodev ? MS.NODEV : 0) | (m.noexec ? MS.NOEXEC : 0) | (m.readonly ? MS.RDONLY : 0);
}

/**
 * The view's own mount points and the type a caller's mount there must have to replace nsbox's
 * mount (made in its place, with the caller's flags and options) rather than go over it.
 */
const OWN_POINTS: Record<string, string> = { '/proc': 'proc', '/dev': 'tmpfs', '/dev/pts': 'devpts', '/dev/shm': 'tmpfs', '/sys': 'sysfs', '/tmp': 'tmpfs' };

/** What shapes a view: the validated options and namespaces. */
export interface ViewSpec {
  /** the namespaces made (not joined) */
  ns: ReadonlySet<NamespaceType>;
  joinedPid: boolean;
  joinedMount: boolean;
  /**
   * a joined network namespace owned by the joined user namespace: the sandbox holds
   * CAP_SYS_ADMIN over it once it has joined both, so it mounts a sysfs of that namespace
   * (user-mode networking's holder). Any other joined one gets the host's /sys.
   */
  joinedOwnNet: boolean;
  rootPropagation: 'private' | 'slave' | 'shared' | 'unbindable';
  rootfs: string | null;
  rootfsReadonly: boolean;
  /** a fresh tmpfs on the rootfs's /tmp (options.rootfs.tmp) */
  rootfsTmp?: boolean;
  /** the rootfs is this overlay, mounted by the child (PlanInput.rootOverlay) */
  rootOverlay?: RootOverlay;
  /** a root caller's image as a view template (PlanInput.imageTemplate; needs `template`) */
  image?: ImageTemplate;
  mounts: ParsedMount[];
  devices: Array<{ path: string; target: string; readonly: boolean; node?: { type: 'c' | 'b' | 'p'; major: number; minor: number; mode: number; uid: number; gid: number } }>;
  maskedPaths: string[];
  readonlyPaths: string[];
  /** whether the caller's own option lists replaced the default masked/read-only paths */
  ownPathLists: boolean;
  /** the sandbox has a cgroup of its own and a cgroup namespace (its cgroup at /sys/fs/cgroup) */
  ownCgroup: boolean;
  nestedUserNamespaces: boolean;
  /** trees are cloned by the caller (root) rather than bound from /oldroot by the child */
  attach: boolean;
  /**
   * the caller's bind mounts too (root with a user namespace, new or joined: the sandbox's root
   * may not reach the source). Without one the child is root and binds them itself, in their
   * place in the order: a tree cloned before clone has an older mount id, and Linux 6.8+ lists
   * mountinfo by mount id, so it would show before the mounts made ahead of it in the list.
   */
  attachBinds: boolean;
  /** the default view may come from a view template, with this owner of its root (host ids) */
  template: { rootOwner: readonly [number | undefined, number | undefined] | null; holder?: true } | null;
}

export interface View {
  ops: PlanOp[];
  /** `rootfs`: a caller's rootfs (not shared between views; see rootfsTemplateView) */
  template?: { build: readonly PlanOp[]; child: PlanOp[]; rootfs?: true; image?: true };
  masked: string[];
  readonly: string[];
}

/**
 * Default views by key (see planView), with when they were made or last checked, and the host
 * facts they were made from (each read of `host`: the property or method, its arguments, and
 * what it gave, as JSON).
 */
const viewCache = new Map<string, { at: number; ops: readonly PlanOp[]; template?: { build: readonly PlanOp[]; child: readonly PlanOp[]; rootfs?: true; image?: true }; masked: string[]; readonly: string[]; facts: HostRead[] }>();
type HostRead = [key: PropertyKey, args: unknown[] | null, result: string | null];

/** A host fact as text to compare; null when it cannot be told (then the view is made again). */
function factText(v: unknown): string | null {
  try { return JSON.stringify(v) ?? 'undefined'; } catch { return null; }
}

/** `host`, noting every property read and method call (and what it gave) in `log`. */
function recordingHost(host: HostFacts, log: HostRead[]): HostFacts {
  return new Proxy(host, {
    get(target, key) {
      const v: unknown = Reflect.get(target, key, target);
      if (typeof v !== 'function') {
        log.push([key, null, factText(v)]);
        return v;
      }
      return (...args: unknown[]) => {
        const out: unknown = (v as (...a: unknown[]) => unknown).apply(target, args);
        log.push([key, args, factText(out)]);
        return out;
      };
    },
  });
}

/** Whether every host fact a cached view was made from reads the same now. */
function factsHold(host: HostFacts, facts: readonly HostRead[]): boolean {
  const h = host as unknown as Record<PropertyKey, unknown>;
  for (const [key, args, was] of facts) {
    const v = h[key];
    const now = args === null ? v : typeof v === 'function' ? (v as (...a: unknown[]) => unknown).apply(host, args) : undefined;
    if (was === null || factText(now) !== was) return false;
  }
  return true;
}
const NS_ORDER: NamespaceType[] = ['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'time'];

/**
 * The view's ops. The default view (no rootfs, caller mounts, devices or own mask lists)
 * depends only on which namespaces are made or joined, a few flags and host facts kept for a
 * second: with `shared`, its ops are made once and shared (frozen; each view gets its own
 * array of them). A cached view older than a second is used again only after the host facts it
 * was made from were read again and found the same (a few lstat calls: a spawn after a pause
 * does not make the whole view again, about 0.5 ms of cold JavaScript).
 */
export function planView(s: ViewSpec, host: HostFacts, shared: boolean): View {
  const plain = s.mounts.length === 0 && s.devices.length === 0 && !s.ownPathLists;
  const defaultView = !s.rootfs && plain;
  // a rootfs's view with a template is kept too, by the rootfs's path and directory identity
  // (and, as the default view's host facts, for a second: what its directories are)
  const rootfsId = shared && plain && s.rootfs && s.template && !s.rootOverlay ? host.dirId?.(s.rootfs) : undefined;
  // an image's template view: by everything it is made of (the layers' identities among it)
  const imageKey = shared && s.image && plain && s.template ? JSON.stringify(s.image) : undefined;
  const key = shared && (defaultView || rootfsId || imageKey)
    ? `${NS_ORDER.map((t) => (s.ns.has(t) ? 1 : 0)).join('')}${s.joinedPid ? 1 : 0}${s.joinedMount ? 1 : 0}${s.joinedOwnNet ? 1 : 0}|${s.ownCgroup}|${s.nestedUserNamespaces}|${s.rootPropagation}|${s.template ? `t${s.template.rootOwner}${s.template.holder ? 'h' : ''}` : ''}${rootfsId ? `|r${s.rootfsReadonly}${s.rootfsTmp}${s.attach}|${rootfsId}|${s.rootfs}` : ''}${imageKey ? `|i${imageKey}` : ''}`
    : undefined;
  const cached = key === undefined ? undefined : viewCache.get(key);
  if (cached && (performance.now() - cached.at < 1000 || (factsHold(host, cached.facts) && (cached.at = performance.now())))) {
    return {
      ops: [...cached.ops],
      template: cached.template && { ...cached.template, child: [...cached.template.child] },
      masked: [...cached.masked],
      readonly: [...cached.readonly],
    };
  }
  const facts: HostRead[] = [];
  const v = makeView(s, key === undefined ? host : recordingHost(host, facts));
  // a rootfs's first view has no template (rootfsTemplateView): not kept, the next one may
  if (key === undefined || (rootfsId && !v.template)) return v;
  const template = v.template && { ...v.template, build: shareOps(v.template.build), child: shareOps(v.template.child) };
  const ops = shareOps(v.ops);
  // keys differ by the template's root owner, i.e. per id block: stale views are dropped
  // before the map grows past a few dozen
  if (viewCache.size >= 64) for (const [k, e] of viewCache) if (performance.now() - e.at >= 1000) viewCache.delete(k);
  viewCache.set(key, { at: performance.now(), ops, template, masked: [...v.masked], readonly: [...v.readonly], facts });
  return { ops: [...ops], template: template && { ...template, child: [...template.child] }, masked: v.masked, readonly: v.readonly };
}

/** Whether the view mounts a sysfs of the sandbox's own network namespace at /sys (else the host's /sys is bound). */
export function freshSysfs(s: Pick<ViewSpec, 'ns' | 'joinedOwnNet'>): boolean {
  return s.ns.has('net') || s.joinedOwnNet;
}

function makeView(s: ViewSpec, host: HostFacts): View {
  if (s.image) return imageTemplateView(host, s);
  const ops: PlanOp[] = [];
  const masked: string[] = [];
  const readonly: string[] = [];
  if (s.ns.has('mount')) {
    const N = '/newroot', OLD = '/oldroot';
    // 'shared' is built as 'slave' and 'unbindable' as 'private'; the root gets its own after the pivot
    const slave = s.rootPropagation === 'slave' || s.rootPropagation === 'shared';
    // the caller's mounts that replace one of the view's own (OWN_POINTS), by target (the
    // first at a target; a later one there goes over it, as the caller's list says)
    const own = new Map<string, ParsedMount>();
    const rootTmp = s.rootfs !== null && host.pathKind(`${s.rootfs}/tmp`).kind !== 'symlink';
    for (const m of s.mounts) if (OWN_POINTS[m.target] === m.type && !own.has(m.target)) own.set(m.target, m);
    // a caller's /tmp replaces nsbox's only where nsbox makes one (not a rootfs's /tmp that is a symlink)
    if (s.rootfs && !rootTmp) own.delete('/tmp');
    const ownOp = (target: string, dflt: PlanOp): PlanOp => {
      const m = own.get(target);
      if (!m) return dflt;
      return { ...dflt, op: Op.Mount, source: m.source ?? m.type, fstype: m.type, data: m.options, flags: callerFlags(m), ...(m.copyUp ? { copyUp: true } : {}) };
    };
    // the ops of the caller's mounts (not those replacing nsbox's): resolved inside the root
    const callerOps = new Set<PlanOp>();
    ops.push({ op: Op.Propagation, path: '/', flags: MS.REC | (slave ? MS.SLAVE : MS.PRIVATE) });
    // a scratch tmpfs becomes the root for a moment; the host tree stays reachable under /oldroot
    ops.push({ op: Op.Mount, source: 'nsbox-base', path: '/tmp', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755,size=64k' });
    ops.push({ op: Op.Mkdir, path: `/tmp${N}`, mode: 0o755 }, { op: Op.Mkdir, path: `/tmp${OLD}`, mode: 0o755 });
    ops.push({ op: Op.PivotRoot, path: '/tmp', putOld: OLD.slice(1) });
    if (s.rootfs) {
      // root: the tree is cloned by the parent (the sandbox's root, an unprivileged host id,
      // may not be able to reach it: a rootfs or image store in a 0700 directory)
      if (s.rootOverlay) {
        // an unprivileged caller's image: overlay in the sandbox's user namespace (Linux 5.11+)
        const o = s.rootOverlay;
        ops.push({ op: Op.Mount, source: 'nsbox-image', path: N, fstype: 'overlay', flags: MS.NODEV, data: `lowerdir=${o.lower.map((l) => OLD + l).join(':')},upperdir=${OLD + o.upper},workdir=${OLD + o.work},userxattr` });
      } else ops.push(s.attach ? { op: Op.Attach, source: s.rootfs, path: N, recursive: true, flags: slave ? MS.SLAVE : 0 } : { op: Op.Bind, source: OLD + s.rootfs, path: N, recursive: true });
    } else {
      ops.push({ op: Op.Mount, source: 'nsbox-root', path: N, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755' });
      ops.push(...systemDirOps(host, N, OLD));
      for (const [dir, mode] of DEFAULT_TMPFS) {
        // a caller's /tmp comes where the caller's list has it (the tmp step below)
        if (dir === '/tmp' && own.has('/tmp')) continue;
        ops.push({ op: Op.Mount, source: 'tmpfs', path: N + dir, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: mode });
      }
    }
    // The view's own points, each one step. A step the caller replaces (a mount of its own
    // there) is made where the caller's list has that mount, among the caller's other mounts,
    // so that the mount table shows them in the caller's order (OCI: mounts in the order of
    // config.json's list); nsbox's defaults the caller does not replace are made before the
    // caller's mounts, as before. A step is always made before a caller's mount at or below
    // its target, and a step below another (/dev/pts below /dev) after that one.
    interface Step { target: string; parent?: Step; run: () => void; done?: boolean }
    const steps: Step[] = [];
    const step = (target: string, run: () => void, parent?: Step): Step => {
      const st: Step = { target, run, parent };
      steps.push(st);
      return st;
    };
    // /proc: a fresh one for a new pid namespace
    step('/proc', () => {
      if (s.ns.has('pid') || s.joinedPid) {
        ops.push(ownOp('/proc', { op: Op.Mount, source: 'proc', path: `${N}/proc`, fstype: 'proc', flags: PROC_FLAGS, real: true }));
      } else {
        const m = own.get('/proc');
        ops.push({ op: Op.Bind, source: `${OLD}/proc`, path: `${N}/proc`, recursive: true, flags: m ? callerFlags(m) & ~MS.RDONLY : MS.NOSUID | MS.NODEV | MS.NOEXEC, readonly: m?.readonly ?? false, real: true });
      }
      // no user namespaces inside the sandbox's own (besides seccomp): its limit is set to 0.
      // Only ever for a user namespace of the sandbox's own: the file is the host's otherwise.
      if (s.ns.has('user') && !s.nestedUserNamespaces) {
        ops.push({ op: Op.WriteFile, path: `${N}/proc/sys/user/max_user_namespaces`, data: '0\n', mode: 0o644 });
      }
    });
    // /dev: tmpfs with the harmless nodes bound from the host, a private devpts and shm
    // /proc, /dev and /sys of a rootfs must be real directories: a symlink there is refused
    // (the child resolves every target inside the root, with no symlinks at all for these)
    const dev = step('/dev', () => {
      ops.push(ownOp('/dev', { op: Op.Mount, source: 'nsbox-dev', path: `${N}/dev`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NOEXEC, data: 'mode=0755,size=64k', real: true }));
      // no nosuid/noexec remount on these: they are character devices, which nothing can exec
      // and which carry no set-id bits (it would cost a syscall each per spawn)
      for (const d of DEV_NODES) ops.push({ op: Op.Bind, source: `${OLD}/dev/${d}`, path: `${N}/dev/${d}`, file: true, recursive: false, flags: 0 });
      for (const d of s.devices) {
        if (d.node) {
          // made by number (root, no user namespace: build.ts; a FIFO anywhere): the userspace dev_t encoding
          const { type, major, minor, mode, uid, gid } = d.node;
          const dv = ((major & 0xfff) << 8 | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0;
          ops.push({ op: Op.Mknod, path: `${N}${d.target}`, mode: (type === 'c' ? 0o20000 : type === 'b' ? 0o60000 : 0o10000) | mode, dev: type === 'p' ? 0 : dv });
          if (uid !== 0 || gid !== 0) ops.push({ op: Op.Chown, path: `${N}${d.target}`, uid, gid });
          continue;
        }
        ops.push({ op: Op.Bind, source: `${OLD}${d.path}`, path: `${N}${d.target}`, file: true, recursive: false, readonly: d.readonly, flags: MS.NOSUID | MS.NOEXEC });
      }
      for (const [l, t] of DEV_LINKS) ops.push({ op: Op.Symlink, source: t, path: `${N}/dev/${l}` });
    });
    for (const [d, fstype, flags, data] of DEV_MOUNTS) {
      step(`/dev/${d}`, () => ops.push(ownOp(`/dev/${d}`, { op: Op.Mount, source: d === 'pts' ? 'devpts' : d, path: `${N}/dev/${d}`, fstype, flags, data })), dev);
    }
    // /sys: read-only; a fresh sysfs shows the network namespace it is mounted in and needs
    // CAP_SYS_ADMIN over that namespace's owner: one made for the sandbox, or one joined
    // together with the user namespace that owns it (the child has joined both by now). Any
    // other (the host's, or one joined across user namespaces) gets the host's /sys bound.
    // The addon may make a new namespace beside the child while it builds the rest of the
    // view, so with no caller mounts (which may go under /sys) /sys comes as late as it can:
    // after the masks and read-only paths outside it.
    const sys = step('/sys', () => {
      const from = ops.length;
      const m = own.get('/sys');
      if (freshSysfs(s)) {
        ops.push({ op: Op.Mount, source: 'sysfs', path: `${N}/sys`, fstype: 'sysfs', flags: m ? callerFlags(m) : SYSFS_FLAGS, ...(m?.options ? { data: m.options } : {}), real: true, netSysfs: true });
      } else {
        ops.push({ op: Op.Bind, source: `${OLD}/sys`, path: `${N}/sys`, readonly: m?.readonly ?? true, recursive: true, flags: m ? callerFlags(m) & ~MS.RDONLY : MS.NOSUID | MS.NODEV | MS.NOEXEC, real: true });
      }
      // the sandbox's own cgroup, read-only, at /sys/fs/cgroup (the cgroup namespace is rooted there)
      if (s.ownCgroup) ops.push(...cgroupViewOps(host, `${N}/sys/fs/cgroup`, !freshSysfs(s)));
      // what nsbox mounts here is its own (a rootfs's /sys is resolved in the root)
      if (!s.rootfs) for (let i = from; i < ops.length; i++) ops[i].trusted = true;
    });
    const sysLate = s.mounts.length === 0;
    // /tmp: a rootfs gets a fresh one where it has a real /tmp directory (unless rootfs.tmp is
    // false); a /tmp that is a symlink is left as the image made it (it resolves inside the
    // rootfs). The child refuses a /tmp that turned into a symlink since this look. A caller's
    // tmpfs at /tmp is made here instead, with its own flags (the default view's own /tmp is
    // made with its other tmpfs directories above).
    if (s.rootfs ? rootTmp && (s.rootfsTmp !== false || own.has('/tmp')) : own.has('/tmp')) {
      step('/tmp', () => ops.push(ownOp('/tmp', { op: Op.Mount, source: 'tmpfs', path: `${N}/tmp`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=1777', real: true })));
    }
    const make = (st: Step): void => {
      if (st.done) return;
      if (st.parent) make(st.parent);
      st.done = true;
      st.run();
      // the steps below it that the caller does not replace come with it
      for (const c of steps) if (c.parent === st && !own.has(c.target)) make(c);
    };
    const within = (dir: string, p: string) => p === dir || p.startsWith(`${dir}/`);
    // nsbox's own defaults first (a /sys with no caller mounts at all comes late, below)
    for (const st of steps) if (!own.has(st.target) && !(st === sys && sysLate)) make(st);
    // the caller's mounts, in their order, each after the steps at or above its target
    for (const m of s.mounts) {
      for (const st of steps) if (within(st.target, m.target)) make(st);
      if (own.get(m.target) === m) continue;
      const from = ops.length;
      if (m.type === 'bind') {
        // root: cloned by the parent, like a rootfs (a source below a 0700 directory)
        const flags = callerFlags(m) & ~MS.RDONLY;
        ops.push(s.attachBinds
          ? { op: Op.Attach, source: m.hostSource, path: N + m.target, readonly: m.readonly, file: m.file, recursive: true, flags: flags | (slave ? MS.SLAVE : 0) }
          : { op: Op.Bind, source: OLD + m.hostSource, path: N + m.target, readonly: m.readonly, file: m.file, recursive: true, flags });
      } else {
        ops.push({ op: Op.Mount, source: m.source ?? m.type, path: N + m.target, fstype: m.type, data: m.options, flags: callerFlags(m), ...(m.copyUp ? { copyUp: true } : {}) });
      }
      if (m.propagation !== 'private') {
        const pf = { shared: MS.SHARED, slave: MS.SLAVE, unbindable: MS.UNBINDABLE, private: MS.PRIVATE }[m.propagation];
        ops.push({ op: Op.Propagation, path: N + m.target, flags: pf });
      }
      for (let i = from; i < ops.length; i++) callerOps.add(ops[i]);
    }
    for (const st of steps) if (!(st === sys && sysLate)) make(st);
    // what comes next (masks and read-only paths, a caller's) is resolved in the root
    const ownEnd = ops.length;
    // kernel state the sandbox has no business reading (masked: an empty read-only file or
    // directory owned by nsbox, never a path of the rootfs) or changing (read-only)
    let maskDir = false;
    const maskOps = (wantSys: boolean) => {
      for (const e of maskEntries(host, s.maskedPaths, s.readonlyPaths, wantSys)) {
        if (!e.mask) {
          ops.push({ ...readonlyOp(N + e.path, e.dir), ...(e.present ? { present: true } : {}) });
          readonly.push(e.path);
          continue;
        }
        if (!maskDir) {
          // one small read-only tmpfs on the scratch root holds an empty file and an empty
          // directory; every mask is a bind of one of them, inheriting its ro,nosuid,nodev,noexec
          ops.push({ op: Op.Mount, source: 'nsbox-mask', path: MASK_DIR, fstype: 'tmpfs', flags: PROC_FLAGS, data: MASK_TMPFS });
          ops.push({ op: Op.WriteFile, path: `${MASK_DIR}/file`, data: '', mode: 0o444 });
          ops.push({ op: Op.Mkdir, path: `${MASK_DIR}/dir`, mode: 0o555 });
          ops.push({ op: Op.RemountRo, path: MASK_DIR, recursive: false });
          maskDir = true;
        }
        ops.push(e.present
          ? { op: Op.Bind, source: `${MASK_DIR}/file`, dir: `${MASK_DIR}/dir`, path: N + e.path, file: true, recursive: false, flags: 0, present: true }
          : { op: Op.Bind, source: `${MASK_DIR}/${e.dir ? 'dir' : 'file'}`, path: N + e.path, file: !e.dir, recursive: false, flags: 0 });
        masked.push(e.path);
      }
    };
    maskOps(false);
    make(sys);
    maskOps(true);
    // the root itself read-only (its submounts keep their own flags)
    if (!s.rootfs || s.rootfsReadonly) ops.push({ op: Op.RemountRo, path: N, recursive: false });
    // Targets inside what nsbox itself made (its tmpfs root and the host's system dirs of the
    // default view, its /dev, a fresh proc or sysfs) are trusted: the child mounts on them by
    // name. Everything else (a rootfs, the caller's mounts elsewhere) is resolved inside the
    // root, through fds, since a symlink there may have been planted by an earlier sandbox.
    const inRoot = `${N}/`, kernelDirs = [`${N}/dev/`, `${N}/proc/`, `${N}/sys/`];
    for (let i = 0; i < ops.length; i++) {
      const t = ops[i].op === Op.PivotRoot ? undefined : ops[i].path;
      if (t === undefined || !t.startsWith(inRoot)) continue;
      if ((!s.rootfs && i < ownEnd && !callerOps.has(ops[i])) || t.startsWith(kernelDirs[0]) || t.startsWith(kernelDirs[1]) || t.startsWith(kernelDirs[2])) ops[i].trusted = true;
    }
    // the final pivot detaches the scratch root and, with it, the host tree under /oldroot
    // (MNT_DETACH takes the whole subtree): one detach, so one RCU grace period, not two
    ops.push({ op: Op.PivotRoot, path: N });
    // the root's own propagation, once it is the root (pivot_root refuses a shared one)
    if (s.rootPropagation === 'shared' || s.rootPropagation === 'unbindable') {
      ops.push({ op: Op.Propagation, path: '/', flags: MS.REC | (s.rootPropagation === 'shared' ? MS.SHARED : MS.UNBINDABLE) });
    }
  }
  if (s.ns.has('net')) ops.unshift({ op: Op.LoopbackUp });
  const template = s.template ? templateView(host, s) : undefined;
  return { ops, template, masked, readonly };
}

/** The sandbox's own cgroup, read-only, at `CG` (its /sys/fs/cgroup; the cgroup namespace is rooted there). */
function cgroupViewOps(host: HostFacts, CG: string, overHost = false): PlanOp[] {
  const cg = host.cgroups();
  const flags = SYSFS_FLAGS;
  if (cg.version === 2) {
    const own: PlanOp = { op: Op.Mount, source: 'cgroup2', path: CG, fstype: 'cgroup2', flags };
    // over the host's /sys (bound: a joined network namespace), CG is the host's cgroup2 mount,
    // and the kernel refuses the same superblock on the same mount point (EBUSY): a small
    // tmpfs goes between
    if (overHost) return [{ op: Op.Mount, source: 'nsbox-cgroup', path: CG, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=0755,size=16k' }, own];
    return [own];
  }
  return [
    { op: Op.Mount, source: 'nsbox-cgroup', path: CG, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=0755,size=16k' },
    ...cg.v1.map((ctrls): PlanOp => ({ op: Op.Mount, source: 'cgroup', path: `${CG}/${ctrls.join(',')}`, fstype: 'cgroup', flags, data: ctrls.join(',') })),
    { op: Op.RemountRo, path: CG, recursive: false },
  ];
}

/**
 * The default view as a view template (`build`, run once by the addon in a mount namespace of
 * its own) and what each sandbox does in its copy of it (`child`).
 *
 * The template holds what every sandbox of the view shares, all of it read-only: the root
 * tmpfs (owned by the sandbox's root) with the host's system directories bound read-only and
 * the mount points of the rest; /dev with the device nodes bound from the host, read-only
 * (its pts and shm come per sandbox); the masks' empty file and directory, on a tmpfs at
 * /proc that the sandbox's own proc covers. Each superblock is read-only too, not only its
 * mounts. The copy each sandbox gets is owned by its user namespace, so the kernel locks
 * every mount in it: none can be unmounted, moved or made writable from inside, whatever
 * capabilities the sandbox keeps.
 *
 * A user namespace may mount proc and sysfs only where an instance of each is already fully
 * visible in its mount namespace. The template keeps one of each at /dev/proc and /dev/sys,
 * mounted before /dev's tmpfs covers them: they count for that rule, and since the covering
 * mount is locked in every copy, no sandbox can reach them.
 *
 * Per sandbox: fresh tmpfs on /tmp, /home, /root, /run and /var/tmp, its proc (with the masks
 * and read-only paths), devpts and shm, its sysfs (and cgroup). No pivot: entering the copy
 * makes its root the sandbox's.
 */
function templateView(host: HostFacts, v: ViewSpec): { build: PlanOp[]; child: PlanOp[]; rootfs?: true } | undefined {
  if (v.rootfs) return rootfsTemplateView(host, v);
  const N = '/newroot', OLD = '/oldroot';
  const [ru, rg] = v.template?.rootOwner ?? [undefined, undefined];
  const own = ru !== undefined && rg !== undefined ? `,uid=${ru},gid=${rg}` : '';
  const b: PlanOp[] = [
    { op: Op.Propagation, path: '/', flags: MS.REC | MS.PRIVATE },
    { op: Op.Mount, source: 'nsbox-base', path: '/tmp', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755,size=64k' },
    { op: Op.Mkdir, path: `/tmp${N}`, mode: 0o755 }, { op: Op.Mkdir, path: `/tmp${OLD}`, mode: 0o755 },
    { op: Op.PivotRoot, path: '/tmp', putOld: OLD.slice(1) },
    { op: Op.Mount, source: 'nsbox-root', path: N, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: `mode=0755${own}` },
  ];
  b.push(...systemDirOps(host, N, OLD));
  for (const [dir] of DEFAULT_TMPFS) b.push({ op: Op.Mkdir, path: N + dir, mode: 0o755 });
  if (own) {
    // what the sandbox sees of the skeleton belongs to its root (the mount points are covered)
    for (const [dir] of DEFAULT_TMPFS) {
      const parent = posix.dirname(dir);
      if (parent !== '/') b.push({ op: Op.Chown, path: N + parent, uid: ru, gid: rg });
    }
  }
  b.push({ op: Op.Mkdir, path: `${N}/sys`, mode: 0o755 });
  b.push(...maskSourceOps(N));
  // the hidden proc and sysfs, then /dev over them
  b.push(...hiddenProcSysOps(N, v.template?.holder), ...devSkeletonOps(N, own, v.template?.holder));
  b.push(
    { op: Op.Mount, path: N, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV },
    { op: Op.PivotRoot, path: N },
  );
  for (const op of b) op.trusted = true;

  const c: PlanOp[] = [
    { op: Op.LoopbackUp },
    { op: Op.MaskOpen, path: '/proc/file', dir: '/proc/dir' },
  ];
  for (const [dir, mode] of DEFAULT_TMPFS) c.push({ op: Op.Mount, source: 'tmpfs', path: dir, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: mode });
  return { build: b, child: templateChild(host, v, c) };
}

/** A template's masks' sources: an empty file and directory on a small read-only tmpfs at the root's /proc (the sandbox's proc covers it). */
function maskSourceOps(N: string): PlanOp[] {
  return [
    { op: Op.Mount, source: 'nsbox-mask', path: `${N}/proc`, fstype: 'tmpfs', flags: PROC_FLAGS, data: MASK_TMPFS },
    { op: Op.WriteFile, path: `${N}/proc/file`, data: '', mode: 0o444 },
    { op: Op.Mkdir, path: `${N}/proc/dir`, mode: 0o555 },
    { op: Op.Mount, path: `${N}/proc`, flags: MS.REMOUNT | MS.RDONLY | PROC_FLAGS },
  ];
}

/**
 * The hidden proc and sysfs a template keeps at /dev/proc and /dev/sys (templateView), under
 * /dev's tmpfs. In nsbox's own user namespace (`holder`, an unprivileged caller's) it may not
 * mount a proc (the host's pid namespace is not its own): the host's, bound whole, counts as
 * well; its sysfs is that of a network namespace the builder makes there (addon, TemplateMain).
 */
function hiddenProcSysOps(N: string, holder?: true): PlanOp[] {
  if (holder) {
    return [
      { op: Op.Bind, source: '/oldroot/proc', path: `${N}/dev/proc`, recursive: true, flags: PROC_FLAGS },
      { op: Op.Mount, source: 'sysfs', path: `${N}/dev/sys`, fstype: 'sysfs', flags: SYSFS_FLAGS },
    ];
  }
  return [
    { op: Op.Mount, source: 'proc', path: `${N}/dev/proc`, fstype: 'proc', flags: PROC_FLAGS },
    { op: Op.Mount, source: 'sysfs', path: `${N}/dev/sys`, fstype: 'sysfs', flags: SYSFS_FLAGS },
  ];
}

/** A template's /dev: nsbox's tmpfs (owned by the sandbox's root: `own`) with its nodes, links and mount points, then read-only. */
function devSkeletonOps(N: string, own: string, holder?: true): PlanOp[] {
  const b: PlanOp[] = [{ op: Op.Mount, source: 'nsbox-dev', path: `${N}/dev`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NOEXEC, data: `mode=0755,size=64k${own}` }];
  // the nodes themselves, not binds of the host's: six mounts fewer in every copy (the
  // superblock is ours, in the initial user namespace, so they work; nothing inside can make more).
  // In nsbox's own user namespace (`holder`) nodes would not work there: the host's, bound, as
  // in an unprivileged caller's own view
  if (holder) for (const d of DEV_NODES) b.push({ op: Op.Bind, source: `/oldroot/dev/${d}`, path: `${N}/dev/${d}`, file: true, recursive: false, flags: 0 });
  else for (const d of DEV_NODES) b.push({ op: Op.Mknod, path: `${N}/dev/${d}`, mode: 0o20666, dev: DEV_NUMBERS[d] });
  for (const [d] of DEV_MOUNTS) b.push({ op: Op.Mkdir, path: `${N}/dev/${d}`, mode: 0o755 });
  for (const [l, t] of DEV_LINKS) b.push({ op: Op.Symlink, source: t, path: `${N}/dev/${l}` });
  b.push({ op: Op.Mount, path: `${N}/dev`, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NOEXEC });
  return b;
}

/** What a sandbox does in its copy of a view template after its own tmpfs mounts `c`: proc, /dev's mounts, sysfs, the masks. */
function templateChild(host: HostFacts, v: ViewSpec, c: PlanOp[]): PlanOp[] {
  c.push({ op: Op.Mount, source: 'proc', path: '/proc', fstype: 'proc', flags: PROC_FLAGS });
  if (!v.nestedUserNamespaces) c.push({ op: Op.WriteFile, path: '/proc/sys/user/max_user_namespaces', data: '0\n', mode: 0o644 });
  for (const [d, fstype, flags, data] of DEV_MOUNTS) c.push({ op: Op.Mount, source: d === 'pts' ? 'devpts' : d, path: `/dev/${d}`, fstype, flags, data });
  const masks = (wantSys: boolean) => {
    for (const e of maskEntries(host, v.maskedPaths, v.readonlyPaths, wantSys)) {
      c.push(e.mask ? { op: Op.MaskBind, path: e.path, file: !e.dir } : readonlyOp(e.path, e.dir));
    }
  };
  masks(false);
  c.push({ op: Op.Mount, source: 'sysfs', path: '/sys', fstype: 'sysfs', flags: SYSFS_FLAGS, netSysfs: true });
  if (v.ownCgroup) c.push(...cgroupViewOps(host, '/sys/fs/cgroup'));
  masks(true);
  for (const op of c) op.trusted = true;
  return c;
}

/** Rootfs directories (path and identity) planned lately, with when: a template is made for one seen before (ROOTFS_SEEN_MS), not for a root that serves one sandbox. */
const rootfsSeen = new Map<string, number>();
const ROOTFS_SEEN_MS = 30_000;
function seenBefore(key: string): boolean {
  const now = performance.now(), at = rootfsSeen.get(key);
  if (rootfsSeen.size >= 256) for (const [k, t] of rootfsSeen) if (now - t >= ROOTFS_SEEN_MS) rootfsSeen.delete(k);
  rootfsSeen.set(key, now);
  return at !== undefined && now - at < ROOTFS_SEEN_MS;
}

/**
 * A caller's directory root (`rootfs`, root callers) as a view template: the rootfs bound (its
 * content stays live: a bind, not a copy), read-only unless the caller asked for a writable
 * one, with nsbox's /dev, the masks' sources on its /proc and the hidden proc and sysfs, as in
 * the default view's template (the hidden instances sit on a small tmpfs of nsbox's at /dev,
 * under /dev's own: nothing is made in the caller's directory). Per sandbox, as in a fresh
 * view: /tmp (where the rootfs has a real /tmp and rootfs.tmp is not false), proc, /dev's
 * mounts, sysfs, the masks.
 *
 * Only for a rootfs whose /proc, /dev and /sys (and /tmp where one is mounted) are real
 * directories (nothing to make in it), from its second sandbox on (within 30 s): a root
 * made for one sandbox gets no template. The template is keyed by its build ops, which carry the
 * rootfs's path and the identity (device and inode) of its directory, so a directory put in
 * its place is a new template; a mount point of the template removed from the rootfs (the
 * kernel then detaches it in every namespace) drops the template (addon, EnsureTemplate).
 * The child resolves its targets by name: in the copy the rootfs is its root already, so no
 * path, symlinks included, leads out of it.
 */
function rootfsTemplateView(host: HostFacts, v: ViewSpec): { build: PlanOp[]; child: PlanOp[]; rootfs: true } | undefined {
  const rootfs = v.rootfs!;
  const id = host.dirId?.(rootfs);
  if (!id || v.rootOverlay || !seenBefore(`${rootfs}\0${id}`)) return undefined;
  const tmp = host.pathKind(`${rootfs}/tmp`).kind;
  const wantTmp = tmp !== 'symlink' && v.rootfsTmp !== false;
  for (const d of ['proc', 'dev', 'sys', ...(wantTmp ? ['tmp'] : [])]) if (host.pathKind(`${rootfs}/${d}`).kind !== 'dir') return undefined;
  const N = '/newroot', OLD = '/oldroot';
  const [ru, rg] = v.template?.rootOwner ?? [undefined, undefined];
  const own = ru !== undefined && rg !== undefined ? `,uid=${ru},gid=${rg}` : '';
  const t = (op: PlanOp): PlanOp => ({ ...op, trusted: true });
  // in the rootfs: resolved inside it, no symlinks on the way
  const r = (op: PlanOp): PlanOp => ({ ...op, real: true });
  const b: PlanOp[] = [
    t({ op: Op.Propagation, path: '/', flags: MS.REC | MS.PRIVATE }),
    t({ op: Op.Mount, source: 'nsbox-base', path: '/tmp', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755,size=64k' }),
    t({ op: Op.Mkdir, path: `/tmp${N}`, mode: 0o755 }), t({ op: Op.Mkdir, path: `/tmp${OLD}`, mode: 0o755 }),
    t({ op: Op.PivotRoot, path: '/tmp', putOld: OLD.slice(1) }),
    // data: the directory's identity, for the key only (a bind has no data)
    t({ op: Op.Bind, source: OLD + rootfs, path: N, recursive: true, flags: 0, data: `nsbox-root=${id}` }),
    // the hidden proc and sysfs on a tmpfs of ours, then /dev over them
    r({ op: Op.Mount, source: 'nsbox-hide', path: `${N}/dev`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=0755,size=16k' }),
    t({ op: Op.Mkdir, path: `${N}/dev/proc`, mode: 0o755 }), t({ op: Op.Mkdir, path: `${N}/dev/sys`, mode: 0o755 }),
    ...hiddenProcSysOps(N).map(t),
    t({ op: Op.Mount, path: `${N}/dev`, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC }),
    ...devSkeletonOps(N, own).map(t),
  ];
  // the masks' sources, on the rootfs's /proc (its mount resolved in the rootfs; the rest is ours)
  const [maskTmpfs, ...maskRest] = maskSourceOps(N);
  b.push(r(maskTmpfs!), ...maskRest.map(t));
  if (v.rootfsReadonly) b.push(t({ op: Op.RemountRo, path: N, recursive: false }));
  b.push(t({ op: Op.PivotRoot, path: N }));
  const c: PlanOp[] = [
    { op: Op.LoopbackUp },
    { op: Op.MaskOpen, path: '/proc/file', dir: '/proc/dir' },
  ];
  if (wantTmp) c.push({ op: Op.Mount, source: 'tmpfs', path: '/tmp', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=1777' });
  return { build: b, child: templateChild(host, v, c), rootfs: true };
}

/**
 * A root caller's image as a view template (PlanInput.imageTemplate): nothing of it is made on
 * the host, neither once nor per sandbox.
 *
 * The template (built once per image, id block, hostname and tmpfs size, in a mount namespace
 * of its own): on a small tmpfs root, each layer of the image bound at /l/<i>, idmapped with the
 * sandbox's maps (a file of the image's root belongs to the sandbox's root), an init layer on a
 * tmpfs of its own (/etc/hostname, /etc/hosts, /etc/resolv.conf, the mount points the image
 * lacks, owned by the sandbox's root), and the read-only overlay of them all at /newroot
 * (mounted by root in the initial user namespace: the layers' trusted.overlay metadata counts,
 * as in the host's overlay of a container); nsbox's /dev over the hidden proc and sysfs, and the
 * masks' sources at /proc, as in the other templates.
 *
 * Per sandbox, in its copy: a tmpfs at /rw (the writable layer, `tmpfsSize`), the sandbox's own
 * overlay over /newroot (the image, read-only) with its upper and work dirs there (userxattr:
 * mounted in the sandbox's user namespace), then in it nsbox's /dev (a bind of the template's),
 * /tmp, proc, devpts, shm, sysfs, the masks, all resolved inside the new root; at the end that
 * overlay is moved onto / and the namespace entered again (MoveRoot), so it is the root. The
 * template's tree stays below it, covered, every mount of it locked; the writable layer goes with
 * the sandbox's mount namespace. Linux 6.6 (user xattrs on tmpfs); the layers' filesystem must
 * take idmapped mounts (the image layer checks both before it asks for this view).
 */
function imageTemplateView(host: HostFacts, v: ViewSpec): View {
  const im = v.image!;
  const N = '/newroot', OLD = '/oldroot';
  const [ru, rg] = v.template?.rootOwner ?? [undefined, undefined];
  const own = ru !== undefined && rg !== undefined ? `,uid=${ru},gid=${rg}` : '';
  const mine = (path: string): PlanOp[] => (ru !== undefined && rg !== undefined ? [{ op: Op.Chown, path, uid: ru, gid: rg }] : []);
  const init = `${N}/l/init`;
  const b: PlanOp[] = [
    { op: Op.Propagation, path: '/', flags: MS.REC | MS.PRIVATE },
    { op: Op.Mount, source: 'nsbox-base', path: '/tmp', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755,size=64k' },
    { op: Op.Mkdir, path: `/tmp${N}`, mode: 0o755 }, { op: Op.Mkdir, path: `/tmp${OLD}`, mode: 0o755 },
    { op: Op.PivotRoot, path: '/tmp', putOld: OLD.slice(1) },
    { op: Op.Mount, source: 'nsbox-root', path: N, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755,size=64k' },
    { op: Op.Mkdir, path: `${N}/newroot`, mode: 0o755 }, { op: Op.Mkdir, path: `${N}/rw`, mode: 0o755 },
  ];
  im.layers.forEach((l, i) => {
    b.push({ op: Op.Mkdir, path: `${N}/l/${i}`, mode: 0o755 });
    // data: the directory's identity, for the template's key only (a layer imported again is a new directory)
    b.push({ op: Op.IdmapBind, source: OLD + l.path, path: `${N}/l/${i}`, fd: im.userNsFd, readonly: true, data: `nsbox-layer=${l.id}` });
  });
  b.push({ op: Op.Mount, source: 'nsbox-init', path: init, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: `mode=0755,size=256k${own}` });
  b.push({ op: Op.Mkdir, path: `${init}/etc`, mode: 0o755 });
  if (im.etcMode !== null) b.push({ op: Op.Chmod, path: `${init}/etc`, mode: im.etcMode & 0o7777 });
  b.push(...mine(`${init}/etc`));
  for (const [name, text] of Object.entries(im.etc)) {
    b.push({ op: Op.WriteFile, path: `${init}/etc/${name}`, data: text, mode: 0o644 }, ...mine(`${init}/etc/${name}`));
  }
  for (const [d, mode] of im.dirs) {
    b.push({ op: Op.Mkdir, path: `${init}/${d}`, mode: 0o755 }, { op: Op.Chmod, path: `${init}/${d}`, mode }, ...mine(`${init}/${d}`));
  }
  b.push({ op: Op.Mount, path: init, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV });
  const lower = [init, ...im.layers.map((_, i) => `${N}/l/${i}`)].join(':');
  b.push({ op: Op.Mount, source: 'nsbox-image', path: `${N}${N}`, fstype: 'overlay', flags: MS.RDONLY | MS.NODEV, data: `lowerdir=${lower},redirect_dir=off,metacopy=off,index=off` });
  // the hidden proc and sysfs on a tmpfs of ours, then nsbox's /dev over them; the masks' sources
  b.push(
    { op: Op.Mount, source: 'nsbox-hide', path: `${N}/dev`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=0755,size=16k' },
    { op: Op.Mkdir, path: `${N}/dev/proc`, mode: 0o755 }, { op: Op.Mkdir, path: `${N}/dev/sys`, mode: 0o755 },
    ...hiddenProcSysOps(N),
    { op: Op.Mount, path: `${N}/dev`, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC },
    ...devSkeletonOps(N, own),
    ...maskSourceOps(N),
    { op: Op.RemountRo, path: N, recursive: false },
    { op: Op.PivotRoot, path: N },
  );
  for (const op of b) op.trusted = true;

  // per sandbox
  const c: PlanOp[] = [
    { op: Op.LoopbackUp },
    { op: Op.MaskOpen, path: '/proc/file', dir: '/proc/dir' },
    { op: Op.Mount, source: 'nsbox-layer', path: '/rw', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: `mode=0755${im.tmpfsSize !== undefined ? `,size=${im.tmpfsSize}` : ''}` },
    { op: Op.Mkdir, path: '/rw/upper', mode: 0o755 }, { op: Op.Mkdir, path: '/rw/work', mode: 0o700 },
    { op: Op.Mount, source: 'nsbox-image', path: N, fstype: 'overlay', flags: MS.NODEV, data: `lowerdir=${N},upperdir=/rw/upper,workdir=/rw/work,userxattr` },
  ];
  for (const op of c) op.trusted = true;
  // in the sandbox's root from here on: resolved in it (its /dev, /proc, /sys are real
  // directories, the init layer's where the image has none)
  const first = c.length;
  c.push({ op: Op.Bind, source: '/dev', path: `${N}/dev`, recursive: true, flags: 0, real: true });
  for (const [d, fstype, flags, data] of DEV_MOUNTS) c.push({ op: Op.Mount, source: d === 'pts' ? 'devpts' : d, path: `${N}/dev/${d}`, fstype, flags, data });
  if (im.tmp) c.push({ op: Op.Mount, source: 'tmpfs', path: `${N}/tmp`, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=1777', real: true });
  c.push({ op: Op.Mount, source: 'proc', path: `${N}/proc`, fstype: 'proc', flags: PROC_FLAGS, real: true });
  if (!v.nestedUserNamespaces) c.push({ op: Op.WriteFile, path: `${N}/proc/sys/user/max_user_namespaces`, data: '0\n', mode: 0o644 });
  const masked: string[] = [], readonly: string[] = [];
  const masks = (wantSys: boolean) => {
    for (const e of maskEntries(host, v.maskedPaths, v.readonlyPaths, wantSys)) {
      c.push(e.mask ? { op: Op.MaskBind, path: N + e.path, file: !e.dir } : readonlyOp(N + e.path, e.dir));
      (e.mask ? masked : readonly).push(e.path);
    }
  };
  masks(false);
  c.push({ op: Op.Mount, source: 'sysfs', path: `${N}/sys`, fstype: 'sysfs', flags: SYSFS_FLAGS, netSysfs: true, real: true });
  if (v.ownCgroup) c.push(...cgroupViewOps(host, `${N}/sys/fs/cgroup`));
  masks(true);
  // what lies in nsbox's /dev, the fresh proc and sysfs is nsbox's: by name (as in makeView)
  for (let i = first; i < c.length; i++) {
    const t = c[i]!.path ?? '';
    if (t.startsWith(`${N}/dev/`) || t.startsWith(`${N}/proc/`) || t.startsWith(`${N}/sys/`)) c[i]!.trusted = true;
  }
  c.push({ op: Op.MoveRoot, path: N, dir: `${N}/proc/self/ns/mnt`, trusted: true });
  return { ops: [], template: { build: b, child: c, image: true }, masked, readonly };
}

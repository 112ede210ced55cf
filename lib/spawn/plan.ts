// Options -> a validated, fully resolved, serialisable Plan (DESIGN.md §1). Nothing here
// touches the kernel except reading host facts (ids, /etc/subuid, which system dirs exist);
// those reads go through `HostFacts` so unit tests can plan for any host.
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { isAbsolute, posix } from 'node:path';
import { SIGNALS } from '../util/sys.js';
import { Capabilities } from '../security/capabilities.js';
import { CLONE_FLAGS } from '../ns/namespace.js';
import { detectLayout } from '../cgroup/detect.js';
import { validateLimits } from '../cgroup/limits.js';
import { errnoError } from '../errors.js';
import type { Namespace } from '../ns/namespace.js';
import { carryMountPointContext, placeMountPoints, setMountPointContext, type DirInfo } from './mountpoints.js';
import type { IdMap, IsolationReport, Mount, NamespaceType, Rlimits, SpawnIsolatedOptions, StdioOption } from './options.js';

// ---- kernel constants --------------------------------------------------------------------
const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, REMOUNT: 32, BIND: 4096, REC: 16384,
  UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20,
} as const;

/** Op codes shared with addon/src/plan.h (OpKind). */
export const Op = {
  Mkdir: 1, Mount: 2, Bind: 3, Symlink: 4, WriteFile: 5, Propagation: 6, RemountRo: 7,
  PivotRoot: 8, Chmod: 9, Umount: 10, LoopbackUp: 11, Chown: 12, MaskOpen: 13, MaskBind: 14,
  Unlink: 15, Mknod: 16, Attach: 17,
} as const;

const RLIMIT: Record<keyof Rlimits, number> = {
  cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7, memlock: 8, as: 9,
  locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15,
};

const NS_TYPES: NamespaceType[] = ['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'time'];
/** Joined namespaces are entered in this order by an unprivileged caller: user first (it grants the rights for the rest), mount last. */
const JOIN_ORDER: NamespaceType[] = ['user', 'net', 'uts', 'ipc', 'cgroup', 'time', 'pid', 'mount'];
/**
 * Root enters the others while its rights in its own user namespace still cover them all, and
 * the user namespace just before pid and mount: a sandbox's network namespace may belong to
 * nsbox's user namespace rather than the sandbox's (Plan.netPremade), and from inside the
 * sandbox's user namespace it could not be entered.
 */
const ROOT_JOIN_ORDER: NamespaceType[] = ['net', 'uts', 'ipc', 'cgroup', 'time', 'user', 'pid', 'mount'];

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Sandbox root's host uid/gid when root has no /etc/subuid range for `remapUser`: the last 64Ki block of systemd's container id range. */
export const FALLBACK_RANGE_START = 0x6fff0000;
export const RANGE_SIZE = 65536;
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

// ---- the plan the addon executes -----------------------------------------------------------
export interface PlanOp {
  op: number;
  a?: string;
  b?: string;
  c?: string;
  d?: string | Uint8Array;
  flags?: number;
  mode?: number;
  readonly?: boolean;
  file?: boolean;
  recursive?: boolean;
  /** the target and every component on its way must not be a symlink */
  real?: boolean;
  /** the target lies in what nsbox made itself: mounted by name, not resolved in the root */
  trusted?: boolean;
  /** a Mount of the sysfs of the sandbox's own network namespace (made ahead: moved in; made beside the child: joined first) */
  netSysfs?: boolean;
}

export interface Plan {
  cloneFlags: number;
  unshareFlags: number;
  lateUnshare: number;
  twoStage: boolean;
  newPidAtStage2: boolean;
  joins: Array<{ fd: number; nstype: number; type: NamespaceType }>;
  uidMap?: string;
  gidMap?: string;
  setgroupsDeny: boolean;
  stdio: Array<{ kind: number; fd: number }>;
  ops: PlanOp[];
  /**
   * The view template (DESIGN.md, "view template"): ops that build a mount namespace holding
   * the read-only part of the default view, run once and kept by the addon (keyed by their
   * encoding), and the ops the child runs instead of `ops` in a copy of it. `ops` stays the
   * fallback when the template cannot be used.
   */
  template?: { build: readonly PlanOp[]; child: PlanOp[] };
  /** The new network namespace may be one made ahead by nsbox (lo up), owned by nsbox's user namespace rather than the sandbox's: for sandboxes that keep no capabilities. */
  netPremade: boolean;
  hostname?: string;
  domainname?: string;
  timeOffsets?: string;
  rlimits: Array<{ resource: number; soft: number; hard: number }>;
  earlyIds: boolean;
  earlyUid: number;
  earlyGid: number;
  setIds: boolean;
  uid: number;
  gid: number;
  groups: number[];
  setGroups: boolean;
  dropCaps: boolean;
  lastCap: number;
  capsKeepLo: number;
  capsKeepHi: number;
  ambient: boolean;
  noNewPrivs: boolean;
  seccomp?: Buffer;
  pdeathsig: number;
  /** pid 1 is nsbox-init, which forks the program */
  init: boolean;
  /** a pty from the sandbox's devpts on 0..2 (the addon hands back its master) */
  tty: boolean;
  /** prepared: nsbox-init waits for one run on a socket (prepareIsolated) */
  serve?: boolean;
  ttyRows: number;
  ttyCols: number;
  cwd: string;
  argv: string[];
  envp: string[];
  exec: string[];
  /** For people and `nsbox explain`: what the plan means, not read by the addon. */
  summary: PlanSummary;
}

/** What the plan means for people (see IsolationReport); later layers fill seccomp, network, cgroup. */
export type PlanSummary = Omit<IsolationReport, 'limits'>;

/** Host facts the planner reads; replaceable in unit tests. */
export interface HostFacts {
  euid: number;
  egid: number;
  lastCap: number;
  /** subordinate ranges of a user from /etc/subuid or /etc/subgid */
  subordinate(file: 'subuid' | 'subgid', user: string): { start: number; count: number } | null;
  /** cgroup version in use and, for v1, the controller sets of the hierarchies nsbox uses */
  cgroups(): { version: 1 | 2; v1: string[][] };
  /** what a host path is: missing, a directory, a file, or a symlink (with its content) */
  pathKind(path: string): { kind: 'missing' | 'dir' | 'file' | 'other' } | { kind: 'symlink'; target: string };
  /** whether default views may come from a view template (root with full capabilities in the initial user namespace) */
  viewTemplates?(): boolean;
  /** a host path with the host's symlinks resolved (a caller's bind source) */
  realPath?(path: string): string;
  /** a directory's mode, owner and entries (for mount points missing in it), or null */
  dirInfo?(path: string): DirInfo | null;
  /** a joined user namespace's setgroups ('allow' or 'deny'), when it can be told */
  setgroupsOf?(ns: Namespace): 'allow' | 'deny' | undefined;
}

export const realHost: HostFacts = {
  euid: process.geteuid?.() ?? 0,
  egid: process.getegid?.() ?? 0,
  get lastCap() { return Capabilities.lastCap(); },
  subordinate(file, user) {
    // the parsed answer is what is kept for a second, not only the file's text
    return recent(`${file}:${user}`, () => subordinateRange(file, user));
  },
  cgroups() {
    const l = detectLayout();
    return l.mode === 'v2' ? { version: 2, v1: [] } : { version: 1, v1: l.v1.map((h) => h.controllers) };
  },
  setgroupsOf: (ns) => ns.setgroups,
  pathKind(path) {
    // /proc and /sys entries (the masked and read-only paths) are the kernel's: the same for
    // the life of the process, so they are looked at once
    // the host's system directories of the default view: looked at again after a second
    if (DEFAULT_RO_DIRS.includes(path)) return recent(`kind:${path}`, () => lstatKind(path));
    if (path.startsWith('/proc/') || path.startsWith('/sys/')) {
      let k = kernelPathKinds.get(path);
      if (!k) kernelPathKinds.set(path, (k = lstatKind(path)));
      return k;
    }
    return lstatKind(path);
  },
  realPath(path) {
    try { return realpathSync(path); } catch { return path; }
  },
  dirInfo(path) {
    return readDirInfo(path);
  },
  viewTemplates() {
    if (templatesOff) return false;
    if (templatesOk === undefined) templatesOk = initialNamespaceRoot() && process.env.NSBOX_VIEW_TEMPLATE !== '0';
    return templatesOk;
  },
};

let templatesOk: boolean | undefined;
let templatesOff = false;
/** Turns view templates off for this process (after one failed: the full view is made each time instead). */
export function disableViewTemplates(): void { templatesOff = true; }

/**
 * Root in the initial user namespace with CAP_SYS_ADMIN and CAP_SYS_CHROOT (what building a
 * view template and entering it take), on Linux 5.8 or later (clone3 with CLONE_INTO_CGROUP,
 * the new mount API, setns by pidfd: the template path has no fallbacks for them).
 */
function kernelAtLeast(major: number, minor: number): boolean {
  const [maj = 0, min = 0] = (/^(\d+)\.(\d+)/.exec(osRelease()) ?? []).slice(1).map(Number);
  return maj > major || (maj === major && min >= minor);
}

function initialNamespaceRoot(): boolean {
  if (process.geteuid?.() !== 0) return false;
  const [maj = 0, min = 0] = (/^(\d+)\.(\d+)/.exec(osRelease()) ?? []).slice(1).map(Number);
  if (maj < 5 || (maj === 5 && min < 8)) return false;
  try {
    if (readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') !== '0 0 4294967295') return false;
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (!eff) return false;
    const need = (1n << 21n) | (1n << 18n); // CAP_SYS_ADMIN, CAP_SYS_CHROOT
    return (BigInt(`0x${eff[1]}`) & need) === need;
  } catch {
    return false;
  }
}

const kernelPathKinds = new Map<string, ReturnType<HostFacts['pathKind']>>();

/** Default views by key (see buildPlan), with when they were made. */
const viewCache = new Map<string, { at: number; ops: readonly PlanOp[]; template?: { build: readonly PlanOp[]; child: readonly PlanOp[] }; masked: string[]; readonly: string[] }>();
/** A shared view's op array, by its first op (encodeOps recognises a plan made of one). */
const viewOf = new WeakMap<PlanOp, readonly PlanOp[]>();

/** The subordinate range of `user` in /etc/subuid or /etc/subgid (at most RANGE_SIZE ids). */
function subordinateRange(file: 'subuid' | 'subgid', user: string): { start: number; count: number } | null {
  let text: string;
  try { text = readFileSync(`/etc/${file}`, 'utf8'); } catch { return null; }
  let uidName: string | undefined;
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (!name || start === undefined || count === undefined) continue;
    if (name === user || (uidName !== undefined && name === uidName)) {
      const s = Number(start), c = Number(count);
      if (Number.isInteger(s) && Number.isInteger(c) && c > 0) return { start: s, count: Math.min(c, RANGE_SIZE) };
    }
  }
  return null;
}

// Host facts that change rarely (/etc/subuid, the layout of /usr, /bin...) are read at most
// once a second: a spawn costs no file reads for them in between.
const recentCache = new Map<string, { at: number; v: unknown }>();
function recent<V>(key: string, read: () => V): V {
  const now = performance.now();
  const c = recentCache.get(key);
  if (c && now - c.at < 1000) return c.v as V;
  const v = read();
  recentCache.set(key, { at: now, v });
  return v;
}

/** A directory's mode, owner and entries; null when it is not a plain directory or a name is not UTF-8. */
function readDirInfo(path: string): DirInfo | null {
  try {
    const st = lstatSync(path);
    if (!st.isDirectory()) return null;
    const entries: DirInfo['entries'] = [];
    for (const raw of readdirSync(path, { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) return null;
      const e = lstatSync(`${path}/${name}`);
      if (e.isSymbolicLink()) {
        const t = readlinkSync(`${path}/${name}`, { encoding: 'buffer' });
        const target = t.toString('utf8');
        if (!Buffer.from(target, 'utf8').equals(t)) return null;
        entries.push({ name, kind: 'symlink', target });
      } else entries.push({ name, kind: e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other' });
    }
    return { mode: st.mode, uid: st.uid, gid: st.gid, entries };
  } catch {
    return null;
  }
}

function lstatKind(path: string): ReturnType<HostFacts['pathKind']> {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(path) };
    if (st.isDirectory()) return { kind: 'dir' };
    if (st.isFile()) return { kind: 'file' };
    return { kind: 'other' };
  } catch {
    return { kind: 'missing' };
  }
}

// ---- validation helpers ---------------------------------------------------------------------
function fail(option: string, what: string, Err: typeof TypeError = TypeError): never {
  throw new Err(`${option} ${what}`);
}
function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function checkKeys(option: string, v: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(option, `has an unknown key '${k}' (allowed: ${allowed.join(', ')})`);
}
function str(option: string, v: unknown, { nonEmpty = false } = {}): string {
  if (typeof v !== 'string') fail(option, `must be a string (got ${typeof v})`);
  if (v.includes('\0')) fail(option, 'must not contain a NUL byte');
  if (nonEmpty && v.length === 0) fail(option, 'must not be empty');
  return v;
}
function uint(option: string, v: unknown, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(option, `must be an integer (got ${String(v)})`);
  if (v < 0 || v > max) fail(option, `must be between 0 and ${max} (got ${v})`, RangeError);
  return v;
}
/** An absolute path that stays where it says: no `..` component, normalised. */
function absPath(option: string, v: unknown): string {
  const s = str(option, v, { nonEmpty: true });
  if (!isAbsolute(s)) fail(option, `must be an absolute path (got '${s}')`);
  if (s.split('/').includes('..')) fail(option, `must not contain '..' (got '${s}')`);
  return posix.normalize(s).replace(/(.)\/$/, '$1');
}

export function signalNumber(option: string, v: unknown): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 1 || v > 64) fail(option, `must be a signal number 1-64 (got ${v})`, RangeError);
    return v;
  }
  if (typeof v === 'string' && SIGNALS[v] !== undefined) return SIGNALS[v]!;
  return fail(option, `must be a signal name like 'SIGTERM' or a number (got ${String(v)})`);
}

/** Validated id maps of an option (TypeError/RangeError naming it). */
export function parseIdMaps(option: string, v: unknown): IdMap[] {
  if (!Array.isArray(v) || v.length === 0) fail(option, 'must be a non-empty array of { inside, outside, count }');
  if (v.length > 340) fail(option, 'may have at most 340 entries (kernel limit)', RangeError);
  const maps = v.map((m, i) => {
    if (!isPlainObject(m)) fail(`${option}[${i}]`, 'must be an object { inside, outside, count }');
    checkKeys(`${option}[${i}]`, m, ['inside', 'outside', 'count']);
    const count = uint(`${option}[${i}].count`, m.count);
    if (count === 0) fail(`${option}[${i}].count`, 'must be at least 1', RangeError);
    const inside = uint(`${option}[${i}].inside`, m.inside);
    const outside = uint(`${option}[${i}].outside`, m.outside);
    if (inside + count > 0x100000000 || outside + count > 0x100000000) fail(`${option}[${i}]`, 'range runs past 2^32', RangeError);
    return { inside, outside, count };
  });
  for (const key of ['inside', 'outside'] as const) {
    const sorted = [...maps].sort((a, b) => a[key] - b[key]);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!, cur = sorted[i]!;
      if (prev[key] + prev.count > cur[key]) {
        fail(option, `has overlapping ${key} ranges (${prev[key]}+${prev.count} and ${cur[key]}+${cur.count})`, RangeError);
      }
    }
  }
  return maps;
}

/**
 * The id maps of the user namespace a spawn with these options makes, or null when it makes
 * none of its own, joins one, or the caller is not root (its namespace maps only the caller).
 * Image layers are idmapped with them, so the files an image's root owns are the sandbox
 * root's. Throws like buildPlan for bad maps.
 */
export function sandboxIdMaps(o: Pick<SpawnIsolatedOptions, 'user' | 'namespaces' | 'join' | 'remapUser' | 'network'>, host: HostFacts = realHost): { uidMap: IdMap[]; gidMap: IdMap[] } | null {
  if (o.user === false || o.namespaces?.user === false || (o.join as Record<string, unknown> | undefined)?.user !== undefined || host.euid !== 0) return null;
  if (isPlainObject(o.user)) return { uidMap: parseIdMaps('options.user.uidMap', o.user.uidMap), gidMap: parseIdMaps('options.user.gidMap', o.user.gidMap) };
  return remappedRoot(o.remapUser, host);
}

/** A root caller's default maps: root inside onto `remapUser`'s subordinate range (or the fallback), as dockerd --userns-remap. */
function remappedRoot(remapUser: unknown, host: HostFacts): { uidMap: IdMap[]; gidMap: IdMap[] } {
  const remap = remapUser === undefined ? 'nsbox' : str('options.remapUser', remapUser, { nonEmpty: true });
  const su = host.subordinate('subuid', remap) ?? { start: FALLBACK_RANGE_START, count: RANGE_SIZE };
  const sg = host.subordinate('subgid', remap) ?? { start: FALLBACK_RANGE_START, count: RANGE_SIZE };
  return { uidMap: [{ inside: 0, outside: su.start, count: su.count }], gidMap: [{ inside: 0, outside: sg.start, count: sg.count }] };
}

/** In a new or joined user namespace the child first becomes its root (or the target ids when 0 is not mapped). */
function earlyIds(userNs: boolean, uidMaps: IdMap[] | null, gidMaps: IdMap[] | null, uid: number, gid: number) {
  if (!userNs) return { earlyIds: false, earlyUid: 0, earlyGid: 0 };
  const u = !uidMaps || mapped(uidMaps, 0) ? 0 : uid;
  const g = !gidMaps || mapped(gidMaps, 0) ? 0 : gid;
  return { earlyIds: true, earlyUid: u, earlyGid: g };
}

function mapped(maps: IdMap[], id: number): boolean {
  return maps.some((m) => id >= m.inside && id < m.inside + m.count);
}

/** The maps as /proc/<pid>/uid_map text. */
export function formatMaps(maps: readonly IdMap[]): string {
  return maps.map((m) => `${m.inside} ${m.outside} ${m.count}\n`).join('');
}

const OPTION_KEYS = [
  'rootfs', 'hostname', 'domainname', 'cwd', 'env', 'uid', 'gid', 'groups', 'namespaces', 'user', 'remapUser',
  'rootPropagation', 'mounts', 'maskedPaths', 'readonlyPaths', 'devices', 'join', 'capabilities', 'allowNewPrivileges', 'rlimits', 'timeOffsets', 'stdio', 'input',
  'encoding', 'buffer', 'all', 'timeout', 'signal', 'killSignal', 'forceKillAfterMs', 'parentDeathSignal', 'init', 'tty', 'nestedUserNamespaces',
  'viewTemplate',
  // filled by later layers (cgroups, networking, images, seccomp); validated there
  'limits', 'onOutputLimit', 'cgroup', 'cgroupParent', 'network', 'image', 'seccomp',
] as const;

export interface PlanInput {
  file: string;
  args: string[];
  options: SpawnIsolatedOptions;
}

/** Validated stdio, as the spawn layer needs it. */
export function parseStdio(v: SpawnIsolatedOptions['stdio']): [StdioOption, StdioOption, StdioOption] {
  const one = (o: string, x: unknown): StdioOption => {
    if (x === 'pipe' || x === 'inherit' || x === 'ignore') return x;
    if (typeof x === 'number') return uint(o, x, 0x7fffffff);
    return fail(o, `must be 'pipe', 'inherit', 'ignore' or an fd number (got ${String(x)})`);
  };
  if (v === undefined) return ['pipe', 'pipe', 'pipe'];
  if (Array.isArray(v)) {
    if (v.length !== 3) fail('options.stdio', 'as an array must have exactly 3 entries');
    return [one('options.stdio[0]', v[0]), one('options.stdio[1]', v[1]), one('options.stdio[2]', v[2])];
  }
  const s = one('options.stdio', v);
  return [s, s, s];
}

/**
 * Builds the plan for one sandbox. Throws TypeError/RangeError naming the option for any
 * mistake; creates nothing.
 */
export function buildPlan(input: PlanInput, host: HostFacts = realHost): Plan {
  const { file, args } = input;
  let o = input.options ?? {};
  if (!isPlainObject(o)) fail('options', 'must be an object');
  checkKeys('options', o as Record<string, unknown>, OPTION_KEYS);
  str('file', file, { nonEmpty: true });
  if (!Array.isArray(args)) fail('args', 'must be an array of strings');
  const argv = [file, ...args.map((a, i) => str(`args[${i}]`, a))];

  // --- namespaces
  const ns = new Set<NamespaceType>(['pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'user']);
  if (o.namespaces !== undefined) {
    if (!isPlainObject(o.namespaces)) fail('options.namespaces', 'must be an object of booleans');
    checkKeys('options.namespaces', o.namespaces, NS_TYPES);
    for (const [k, v] of Object.entries(o.namespaces)) {
      if (typeof v !== 'boolean') fail(`options.namespaces.${k}`, 'must be a boolean');
      if (v) ns.add(k as NamespaceType); else ns.delete(k as NamespaceType);
    }
  }
  if (o.user === false) ns.delete('user');
  else if (o.user !== undefined && !isPlainObject(o.user)) fail('options.user', 'must be false or { uidMap, gidMap }');
  if (o.timeOffsets !== undefined) ns.add('time');
  // network: 'none' and 'loopback' keep the new namespace (lo up); 'host' shares the host's;
  // { join } enters one; bridge mode is prepared by lib/net (a spawn extension)
  const network = (o as SpawnIsolatedOptions).network;
  if (network === 'host') ns.delete('net');
  let joinNet: Namespace | undefined;
  if (typeof network === 'object' && network !== null && 'join' in network) joinNet = (network as { join: Namespace }).join;

  const joins: Plan['joins'] = [];
  const joined: NamespaceType[] = [];
  if (joinNet) {
    if ((o.join as Record<string, unknown> | undefined)?.net !== undefined) fail('options.network', 'cannot be { join } together with options.join.net');
    o = { ...o, join: { ...(o.join as object), net: joinNet } };
  }
  if (o.join !== undefined) {
    if (!isPlainObject(o.join)) fail('options.join', 'must be an object { type: Namespace }');
    checkKeys('options.join', o.join, NS_TYPES);
    for (const t of host.euid === 0 ? ROOT_JOIN_ORDER : JOIN_ORDER) {
      const n = (o.join as Record<string, Namespace | undefined>)[t];
      if (n === undefined) continue;
      if (typeof n !== 'object' || n === null || typeof (n as Namespace).fd !== 'number' || (n as Namespace).type === undefined) {
        fail(`options.join.${t}`, 'must be a Namespace (Namespace.ofProcess / Namespace.open)');
      }
      if (n.type !== t) fail(`options.join.${t}`, `is a ${n.type} namespace, not ${t}`);
      joins.push({ fd: n.fd, nstype: CLONE_FLAGS[t], type: t });
      joined.push(t);
      ns.delete(t);
    }
  }
  if (joined.includes('user') && o.user !== undefined && o.user !== false) fail('options.user', 'cannot set id maps while joining a user namespace');

  const privileged = host.euid === 0 || ns.has('user') || joined.includes('user');
  const ownCgroup = needsCgroup(o);
  const mountNs = ns.has('mount') || joined.includes('mount');

  // --- ids and maps
  let uidMaps: IdMap[] | null = null, gidMaps: IdMap[] | null = null, setgroupsDeny = false;
  if (ns.has('user')) {
    if (isPlainObject(o.user)) {
      checkKeys('options.user', o.user, ['uidMap', 'gidMap']);
      uidMaps = parseIdMaps('options.user.uidMap', o.user.uidMap);
      gidMaps = parseIdMaps('options.user.gidMap', o.user.gidMap);
      if (host.euid !== 0) setgroupsDeny = true;
    } else if (host.euid === 0) {
      ({ uidMap: uidMaps, gidMap: gidMaps } = remappedRoot(o.remapUser, host));
    } else {
      uidMaps = [{ inside: 0, outside: host.euid, count: 1 }];
      gidMaps = [{ inside: 0, outside: host.egid, count: 1 }];
      setgroupsDeny = true;
    }
  }
  const uid = o.uid === undefined ? 0 : uint('options.uid', o.uid, 0xfffffffe);
  const gid = o.gid === undefined ? uid : uint('options.gid', o.gid, 0xfffffffe);
  const groups = o.groups === undefined ? [] : (Array.isArray(o.groups) ? o.groups : fail('options.groups', 'must be an array of gids'))
    .map((g, i) => uint(`options.groups[${i}]`, g, 0xfffffffe));
  if (uidMaps && !mapped(uidMaps, uid)) fail('options.uid', `${uid} is not mapped by the user namespace's uid map`, RangeError);
  if (gidMaps && !mapped(gidMaps, gid)) fail('options.gid', `${gid} is not mapped by the user namespace's gid map`, RangeError);
  for (const g of groups) if (gidMaps && !mapped(gidMaps, g)) fail('options.groups', `gid ${g} is not mapped by the gid map`, RangeError);
  if (setgroupsDeny && groups.length > 0) fail('options.groups', 'cannot be set by an unprivileged caller (setgroups is denied in its user namespace)');
  // a joined user namespace allows setgroups(2) only when it says 'allow' (an unprivileged
  // maker's says 'deny': EPERM even with every capability in it). Not known (a persisted file):
  // root calls it as before, another caller only for the groups it asked (the kernel answers)
  const joinedUser = joined.includes('user') ? (o.join as Record<string, Namespace>).user : undefined;
  const joinedSetgroups = joinedUser ? host.setgroupsOf?.(joinedUser) : undefined;
  if (joinedSetgroups === 'deny' && groups.length > 0) fail('options.groups', 'cannot be set in the joined user namespace (setgroups is denied in it)');
  const joinSetGroups = !joinedUser || joinedSetgroups === 'allow' || (joinedSetgroups === undefined && (host.euid === 0 || groups.length > 0));
  if (!privileged && (o.uid !== undefined || o.gid !== undefined)) {
    if (uid !== host.euid || gid !== host.egid) fail('options.uid', 'can only be changed with a user namespace or as root');
  }

  // --- capabilities
  const capsList = o.capabilities === undefined ? [] : Array.isArray(o.capabilities) ? o.capabilities : fail('options.capabilities', 'must be an array of capability names');
  capsList.forEach((c, i) => str(`options.capabilities[${i}]`, c));
  let mask: bigint;
  try { mask = Capabilities.toMask(capsList as string[]); } catch (e) { throw new TypeError(`options.capabilities: ${(e as Error).message}`); }
  const capNames = Capabilities.fromMask(mask);
  const lastCap = host.lastCap;

  // --- environment and exec candidates
  let env: Record<string, string>;
  if (o.env !== undefined) {
    if (!isPlainObject(o.env)) fail('options.env', 'must be an object of strings');
    env = {};
    for (const [k, v] of Object.entries(o.env)) {
      if (k === '' || k.includes('=') || k.includes('\0')) fail('options.env', `has an invalid name '${k}'`);
      env[k] = str(`options.env.${k}`, v);
    }
  } else {
    env = { PATH: DEFAULT_PATH, HOME: uid === 0 ? '/root' : '/' };
  }
  const envp = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const exec = file.includes('/') ? [file] : (env.PATH ?? DEFAULT_PATH).split(':').map((d) => `${d === '' ? '.' : d}/${file}`);

  // --- rlimits
  const rl: Rlimits = { core: 0, ...(o.rlimits === undefined ? {} : isPlainObject(o.rlimits) ? o.rlimits : fail('options.rlimits', 'must be an object')) };
  checkKeys('options.rlimits', rl as Record<string, unknown>, Object.keys(RLIMIT));
  const rlimits = Object.entries(rl).map(([k, v]) => {
    const opt = `options.rlimits.${k}`;
    const lim = (x: unknown, o2: string) => (x === Infinity ? -1 : uint(o2, x, Number.MAX_SAFE_INTEGER));
    if (typeof v === 'number') return { resource: RLIMIT[k as keyof Rlimits], soft: lim(v, opt), hard: lim(v, opt) };
    if (!isPlainObject(v)) fail(opt, 'must be a number or { soft, hard }');
    const soft = lim(v.soft, `${opt}.soft`), hard = lim(v.hard, `${opt}.hard`);
    if (hard !== -1 && (soft === -1 || soft > hard)) fail(opt, 'soft must not exceed hard', RangeError);
    return { resource: RLIMIT[k as keyof Rlimits], soft, hard };
  });

  // --- time namespace
  let timeOffsets: string | undefined;
  if (o.timeOffsets !== undefined) {
    if (!isPlainObject(o.timeOffsets)) fail('options.timeOffsets', 'must be { monotonic?, boottime? } in seconds');
    checkKeys('options.timeOffsets', o.timeOffsets, ['monotonic', 'boottime']);
    const lines: string[] = [];
    for (const k of ['monotonic', 'boottime'] as const) {
      const v = o.timeOffsets[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isInteger(v)) fail(`options.timeOffsets.${k}`, 'must be an integer number of seconds');
      lines.push(`${k} ${v} 0\n`);
    }
    timeOffsets = lines.join('') || undefined;
  }

  // --- hostname
  let hostname: string | undefined, domainname: string | undefined;
  if (o.hostname !== undefined || o.domainname !== undefined) {
    if (!ns.has('uts')) fail(o.hostname !== undefined ? 'options.hostname' : 'options.domainname', 'needs a new uts namespace');
  }
  if (ns.has('uts')) {
    hostname = o.hostname === undefined ? 'nsbox' : str('options.hostname', o.hostname, { nonEmpty: true });
    if (Buffer.byteLength(hostname) > 64) fail('options.hostname', 'may be at most 64 bytes', RangeError);
    if (o.domainname !== undefined) {
      domainname = str('options.domainname', o.domainname);
      if (Buffer.byteLength(domainname) > 64) fail('options.domainname', 'may be at most 64 bytes', RangeError);
    }
  }

  // --- filesystem view
  const ops: PlanOp[] = [];
  if (o.image !== undefined) {
    fail('options.image', o.rootfs !== undefined ? 'and options.rootfs exclude each other' : "needs nsbox's filesystem layer, which the package's main entry registers");
  }
  let rootfsPath: string | null = null;
  let rootfsReadonly = true;
  if (o.rootfs !== undefined) {
    if (typeof o.rootfs === 'string') rootfsPath = absPath('options.rootfs', o.rootfs);
    else if (isPlainObject(o.rootfs)) {
      checkKeys('options.rootfs', o.rootfs, ['path', 'readonly']);
      rootfsPath = absPath('options.rootfs.path', o.rootfs.path);
      if (o.rootfs.readonly !== undefined) {
        if (typeof o.rootfs.readonly !== 'boolean') fail('options.rootfs.readonly', 'must be a boolean');
        rootfsReadonly = o.rootfs.readonly;
      }
    } else fail('options.rootfs', 'must be an absolute path or { path, readonly? }');
    if (rootfsPath === '/') fail('options.rootfs', "must not be '/' (use the default view instead)");
    const k = host.pathKind(rootfsPath);
    if (k.kind !== 'dir') fail('options.rootfs', `must be an existing directory (${rootfsPath} is ${k.kind === 'missing' ? 'missing' : `a ${k.kind}`})`);
  }
  const mounts = o.mounts === undefined ? [] : Array.isArray(o.mounts) ? o.mounts : fail('options.mounts', 'must be an array');
  const cwd = o.cwd === undefined ? '/' : absPath('options.cwd', o.cwd);
  const rootProp = o.rootPropagation ?? 'private';
  if (rootProp !== 'private' && rootProp !== 'slave') fail('options.rootPropagation', "must be 'private' or 'slave'");
  if (!mountNs) {
    if (rootfsPath) fail('options.rootfs', 'needs a new mount namespace');
    if (mounts.length) fail('options.mounts', 'need a new mount namespace');
  }
  const parsedMounts = mounts.map((m, i) => parseMount(`options.mounts[${i}]`, m, host));
  const maskedPaths = pathList('options.maskedPaths', o.maskedPaths, DEFAULT_MASKED_PATHS);
  const readonlyPaths = pathList('options.readonlyPaths', o.readonlyPaths, DEFAULT_READONLY_PATHS);
  const devices = parseDevices(o.devices, host);
  if (!ns.has('mount')) {
    if (o.maskedPaths !== undefined && maskedPaths.length) fail('options.maskedPaths', 'need a new mount namespace');
    if (o.readonlyPaths !== undefined && readonlyPaths.length) fail('options.readonlyPaths', 'need a new mount namespace');
    if (devices.length) fail('options.devices', 'need a new mount namespace');
  }
  const summaryMasked: string[] = [];
  const summaryReadonly: string[] = [];
  // The default view (no rootfs, caller mounts, devices or own mask lists) depends only on
  // which namespaces are made or joined, a few flags and host facts kept for a second: its
  // ops are made once a second and shared (frozen; a plan gets its own array of them).
  const defaultView = !rootfsPath && parsedMounts.length === 0 && devices.length === 0 && o.maskedPaths === undefined && o.readonlyPaths === undefined;
  // A default view with new user, mount, pid and network namespaces (none joined) may come
  // from a view template: the addon builds its read-only part once, in a mount namespace of
  // its own, and each sandbox gets a copy (see templateView).
  if (o.viewTemplate !== undefined && typeof o.viewTemplate !== 'boolean') fail('options.viewTemplate', 'must be a boolean');
  const useTemplate = defaultView && o.viewTemplate !== false && rootProp === 'private' && joins.length === 0 && ns.has('user') && ns.has('mount') && ns.has('pid') && ns.has('net') && (host.viewTemplates?.() ?? false);
  const rootOwner = useTemplate && uidMaps && gidMaps ? [outsideOf(uidMaps, 0), outsideOf(gidMaps, 0)] as const : null;
  const viewKey = defaultView
    ? `${NS_TYPES.map((t) => (ns.has(t) ? 1 : 0)).join('')}${joined.includes('pid') ? 1 : 0}${joined.includes('mount') ? 1 : 0}|${ownCgroup}|${o.nestedUserNamespaces === true}|${rootProp}|${useTemplate ? `t${rootOwner}` : ''}`
    : undefined;
  let template: Plan['template'];
  const sharedView = viewKey === undefined ? undefined : viewCache.get(viewKey);
  if (sharedView && performance.now() - sharedView.at < 1000 && host === realHost) {
    ops.push(...sharedView.ops);
    if (sharedView.template) template = { build: sharedView.template.build, child: [...sharedView.template.child] };
    summaryMasked.push(...sharedView.masked);
    summaryReadonly.push(...sharedView.readonly);
  } else {
    if (ns.has('mount')) {
      const N = '/newroot', OLD = '/oldroot';
      ops.push({ op: Op.Propagation, b: '/', flags: MS.REC | (rootProp === 'slave' ? MS.SLAVE : MS.PRIVATE) });
      // a scratch tmpfs becomes the root for a moment; the host tree stays reachable under /oldroot
      ops.push({ op: Op.Mount, a: 'nsbox-base', b: '/tmp', c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: 'mode=0755,size=64k' });
      ops.push({ op: Op.Mkdir, a: `/tmp${N}`, mode: 0o755 }, { op: Op.Mkdir, a: `/tmp${OLD}`, mode: 0o755 });
      ops.push({ op: Op.PivotRoot, a: '/tmp', b: OLD.slice(1) });
      if (rootfsPath) {
        // root: the tree is cloned by the parent (the sandbox's root, an unprivileged host id,
        // may not be able to reach it: a rootfs or image store in a 0700 directory)
        ops.push(host.euid === 0 ? { op: Op.Attach, a: rootfsPath, b: N, recursive: true, flags: rootProp === 'slave' ? MS.SLAVE : 0 } : { op: Op.Bind, a: OLD + rootfsPath, b: N, recursive: true });
      } else {
        ops.push({ op: Op.Mount, a: 'nsbox-root', b: N, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: 'mode=0755' });
        for (const dir of DEFAULT_RO_DIRS) {
          const k = host.pathKind(dir);
          if (k.kind === 'symlink') ops.push({ op: Op.Symlink, a: k.target, b: N + dir });
          else if (k.kind === 'dir') ops.push({ op: Op.Bind, a: OLD + dir, b: N + dir, readonly: true, recursive: true, flags: MS.NOSUID | MS.NODEV });
        }
        for (const [dir, mode] of DEFAULT_TMPFS) {
          ops.push({ op: Op.Mount, a: 'tmpfs', b: N + dir, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: mode });
        }
      }
      // /proc: a fresh one for a new pid namespace
      if (ns.has('pid') || joined.includes('pid')) {
        ops.push({ op: Op.Mount, a: 'proc', b: `${N}/proc`, c: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, real: true });
      } else {
        ops.push({ op: Op.Bind, a: `${OLD}/proc`, b: `${N}/proc`, recursive: true, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, real: true });
      }
      // no user namespaces inside the sandbox's own (besides seccomp): its limit is set to 0.
      // Only ever for a user namespace of the sandbox's own: the file is the host's otherwise.
      if (ns.has('user') && o.nestedUserNamespaces !== true) {
        ops.push({ op: Op.WriteFile, a: `${N}/proc/sys/user/max_user_namespaces`, d: '0\n', mode: 0o644 });
      }
      // /dev: tmpfs with the harmless nodes bound from the host, a private devpts and shm
      // /proc, /dev and /sys of a rootfs must be real directories: a symlink there is refused
      // (the child resolves every target inside the root, with no symlinks at all for these)
      ops.push({ op: Op.Mount, a: 'nsbox-dev', b: `${N}/dev`, c: 'tmpfs', flags: MS.NOSUID | MS.NOEXEC, d: 'mode=0755,size=64k', real: true });
      // no nosuid/noexec remount on these: they are character devices, which nothing can exec
      // and which carry no set-id bits (it would cost a syscall each per spawn)
      for (const d of DEV_NODES) ops.push({ op: Op.Bind, a: `${OLD}/dev/${d}`, b: `${N}/dev/${d}`, file: true, recursive: false, flags: 0 });
      for (const d of devices) {
        ops.push({ op: Op.Bind, a: `${OLD}${d.path}`, b: `${N}${d.target}`, file: true, recursive: false, readonly: d.readonly, flags: MS.NOSUID | MS.NOEXEC });
      }
      ops.push({ op: Op.Mount, a: 'devpts', b: `${N}/dev/pts`, c: 'devpts', flags: MS.NOSUID | MS.NOEXEC, d: 'newinstance,ptmxmode=0666,mode=0620' });
      ops.push({ op: Op.Symlink, a: 'pts/ptmx', b: `${N}/dev/ptmx` });
      ops.push({ op: Op.Mount, a: 'shm', b: `${N}/dev/shm`, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, d: 'mode=1777' });
      for (const [l, t] of [['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2']]) {
        ops.push({ op: Op.Symlink, a: t, b: `${N}/dev/${l}` });
      }
      // /sys: read-only; a fresh sysfs needs a network namespace of our own. The addon makes
      // that namespace beside the child while it builds the rest of the view, so with no
      // caller mounts (which may go under /sys) /sys comes as late as it can: after the masks
      // and read-only paths outside it.
      const sysOps = () => {
        const from = ops.length;
        if (ns.has('net')) {
          ops.push({ op: Op.Mount, a: 'sysfs', b: `${N}/sys`, c: 'sysfs', flags: MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, real: true, netSysfs: true });
        } else {
          ops.push({ op: Op.Bind, a: `${OLD}/sys`, b: `${N}/sys`, readonly: true, recursive: true, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, real: true });
        }
        // the sandbox's own cgroup, read-only, at /sys/fs/cgroup (the cgroup namespace is rooted there)
        if (ownCgroup && ns.has('cgroup')) ops.push(...cgroupViewOps(host, `${N}/sys/fs/cgroup`));
        // what nsbox mounts here is its own (a rootfs's /sys is resolved in the root)
        if (!rootfsPath) for (let i = from; i < ops.length; i++) ops[i].trusted = true;
      };
      const sysLate = parsedMounts.length === 0;
      if (!sysLate) sysOps();
      // a rootfs gets a fresh /tmp where it has a real /tmp directory; a /tmp that is a symlink
      // is left as the image made it (it resolves inside the rootfs). The child refuses a /tmp
      // that turned into a symlink since this look.
      if (rootfsPath && host.pathKind(`${rootfsPath}/tmp`).kind !== 'symlink') {
        ops.push({ op: Op.Mount, a: 'tmpfs', b: `${N}/tmp`, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: 'mode=1777', real: true });
      }
      const callerStart = ops.length;
      // the caller's mounts
      for (const m of parsedMounts) {
        if (m.type === 'bind') {
          // root: cloned by the parent, like a rootfs (a source below a 0700 directory)
          const flags = MS.NOSUID | MS.NODEV | (m.noexec ? MS.NOEXEC : 0);
          ops.push(host.euid === 0
            ? { op: Op.Attach, a: m.hostSource, b: N + m.target, readonly: m.readonly, file: m.file, recursive: true, flags: flags | (rootProp === 'slave' ? MS.SLAVE : 0) }
            : { op: Op.Bind, a: OLD + m.hostSource, b: N + m.target, readonly: m.readonly, file: m.file, recursive: true, flags });
        } else {
          ops.push({ op: Op.Mount, a: m.source ?? m.type, b: N + m.target, c: m.type, d: m.options, flags: MS.NOSUID | MS.NODEV | (m.noexec ? MS.NOEXEC : 0) | (m.readonly ? MS.RDONLY : 0) });
        }
        if (m.propagation !== 'private') {
          const pf = { shared: MS.SHARED, slave: MS.SLAVE, unbindable: MS.UNBINDABLE, private: MS.PRIVATE }[m.propagation];
          ops.push({ op: Op.Propagation, b: N + m.target, flags: pf });
        }
      }
      // kernel state the sandbox has no business reading (masked: an empty read-only file or
      // directory owned by nsbox, never a path of the rootfs) or changing (read-only)
      const underSys = (p: string) => p === '/sys' || p.startsWith('/sys/');
      let maskDir = false;
      const maskOps = (wantSys: boolean) => {
        for (const m of maskedPaths) {
          if (underSys(m) !== wantSys) continue;
          const k = host.pathKind(m);
          if (k.kind === 'missing' || k.kind === 'symlink') continue;
          if (!maskDir) {
            // one small read-only tmpfs on the scratch root holds an empty file and an empty
            // directory; every mask is a bind of one of them, inheriting its ro,nosuid,nodev,noexec
            ops.push({ op: Op.Mount, a: 'nsbox-mask', b: MASK_DIR, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, d: 'mode=0555,size=4k,nr_inodes=4' });
            ops.push({ op: Op.WriteFile, a: `${MASK_DIR}/file`, d: '', mode: 0o444 });
            ops.push({ op: Op.Mkdir, a: `${MASK_DIR}/dir`, mode: 0o555 });
            ops.push({ op: Op.RemountRo, b: MASK_DIR, recursive: false });
            maskDir = true;
          }
          const dir = k.kind === 'dir';
          ops.push({ op: Op.Bind, a: `${MASK_DIR}/${dir ? 'dir' : 'file'}`, b: N + m, file: !dir, recursive: false, flags: 0 });
          summaryMasked.push(m);
        }
        for (const m of readonlyPaths) {
          if (underSys(m) !== wantSys) continue;
          const k = host.pathKind(m);
          if (k.kind === 'missing' || k.kind === 'symlink') continue;
          ops.push({ op: Op.Bind, a: N + m, b: N + m, file: k.kind !== 'dir', recursive: true, readonly: true, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
          summaryReadonly.push(m);
        }
      };
      maskOps(false);
      if (sysLate) sysOps();
      maskOps(true);
      // the root itself read-only (its submounts keep their own flags)
      if (!rootfsPath || rootfsReadonly) ops.push({ op: Op.RemountRo, b: N, recursive: false });
      // Targets inside what nsbox itself made (its tmpfs root and the host's system dirs of the
      // default view, its /dev, a fresh proc or sysfs) are trusted: the child mounts on them by
      // name. Everything else (a rootfs, the caller's mounts elsewhere) is resolved inside the
      // root, through fds, since a symlink there may have been planted by an earlier sandbox.
      const inRoot = `${N}/`, kernelDirs = [`${N}/dev/`, `${N}/proc/`, `${N}/sys/`];
      for (let i = 0; i < ops.length; i++) {
        const t = ops[i].op === Op.Mkdir || ops[i].op === Op.WriteFile || ops[i].op === Op.Chmod ? ops[i].a : ops[i].b;
        if (t === undefined || !t.startsWith(inRoot)) continue;
        if ((!rootfsPath && i < callerStart) || t.startsWith(kernelDirs[0]) || t.startsWith(kernelDirs[1]) || t.startsWith(kernelDirs[2])) ops[i].trusted = true;
      }
      // the final pivot detaches the scratch root and, with it, the host tree under /oldroot
      // (MNT_DETACH takes the whole subtree): one detach, so one RCU grace period, not two
      ops.push({ op: Op.PivotRoot, a: N });
    }
    if (ns.has('net')) ops.unshift({ op: Op.LoopbackUp });
    if (useTemplate) {
      template = templateView(host, {
        ownCgroup: ownCgroup && ns.has('cgroup'), nestedUserNamespaces: o.nestedUserNamespaces === true, rootOwner, maskedPaths, readonlyPaths,
      });
    }
    if (viewKey !== undefined && host === realHost) {
      const share = (list: readonly PlanOp[]) => {
        for (const op of list) Object.freeze(op);
        const shared = Object.freeze([...list]);
        if (shared.length > 0) viewOf.set(shared[0]!, shared);
        return shared;
      };
      const sharedTemplate = template && { build: share(template.build), child: share(template.child) };
      viewCache.set(viewKey, { at: performance.now(), ops: share(ops), template: sharedTemplate, masked: [...summaryMasked], readonly: [...summaryReadonly] });
      if (sharedTemplate) template = { build: sharedTemplate.build, child: [...sharedTemplate.child] };
    }
  }

  // --- stdio
  const stdio = parseStdio(o.tty ? 'ignore' : (o as SpawnIsolatedOptions).stdio).map((s) => (s === 'pipe' ? { kind: 0, fd: -1 } : s === 'inherit' ? { kind: 1, fd: -1 } : s === 'ignore' ? { kind: 2, fd: -1 } : { kind: 3, fd: s }));
  // `all` with both outputs piped: fd 2 is fd 1's socket (kind 4), one queue in write order
  if ((o as SpawnIsolatedOptions).all === true && !o.tty && stdio[1].kind === 0 && stdio[2].kind === 0) stdio[2] = { kind: 4, fd: -1 };

  // --- flags
  let cloneFlags = 0, unshareFlags = 0, lateUnshare = 0;
  let newFlags = [...ns].reduce((f, t) => (t === 'time' ? f : f | CLONE_FLAGS[t]), 0);
  if (ownCgroup && ns.has('cgroup')) {
    // created once the parent has placed the process, so its root is the sandbox's cgroup
    newFlags &= ~CLONE_FLAGS.cgroup;
    lateUnshare = CLONE_FLAGS.cgroup;
  }
  const twoStage = joins.length > 0;
  if (twoStage) unshareFlags = newFlags & ~CLONE_FLAGS.pid;
  else cloneFlags = newFlags;

  const pdeathsig = o.parentDeathSignal === false ? 0 : signalNumber('options.parentDeathSignal', o.parentDeathSignal ?? 'SIGKILL');
  if (o.allowNewPrivileges !== undefined && typeof o.allowNewPrivileges !== 'boolean') fail('options.allowNewPrivileges', 'must be a boolean');
  if (o.init !== undefined && typeof o.init !== 'boolean') fail('options.init', 'must be a boolean');
  if (o.nestedUserNamespaces !== undefined && typeof o.nestedUserNamespaces !== 'boolean') fail('options.nestedUserNamespaces', 'must be a boolean');
  const init = o.init ?? ns.has('pid');
  if (timeOffsets && !init && !kernelAtLeast(6, 2)) {
    // before 6.2 exec does not enter the time namespace made for children (nsbox-init then
    // starts the program by fork, which does): only the program's own children would see
    // the offsets
    throw errnoError(95, 'time', 'unshare(CLONE_NEWTIME)', undefined,
      `timeOffsets with init: false needs Linux 6.2 (this is ${osRelease()}; before 6.2 exec does not enter the time namespace): keep init on`);
  }
  const tty = parseTty(o.tty);
  if (tty && !ns.has('mount') && !joined.includes('mount')) fail('options.tty', "needs a mount namespace of the sandbox's own, new or joined (its devpts instance)");

  const plan: Plan = {
    cloneFlags,
    unshareFlags,
    lateUnshare,
    twoStage,
    newPidAtStage2: twoStage && ns.has('pid'),
    joins,
    uidMap: uidMaps ? formatMaps(uidMaps) : undefined,
    gidMap: gidMaps ? formatMaps(gidMaps) : undefined,
    setgroupsDeny,
    // the network namespace may be a spare nsbox made ahead, owned by nsbox's user namespace:
    // only where nothing inside could tell (a view template, no capabilities kept)
    netPremade: template !== undefined && mask === 0n,
    stdio,
    ops,
    template,
    hostname,
    domainname,
    timeOffsets,
    rlimits,
    ...earlyIds(ns.has('user') || joined.includes('user'), uidMaps, gidMaps, uid, gid),
    setIds: privileged,
    uid,
    gid,
    groups,
    setGroups: privileged && !setgroupsDeny && joinSetGroups,
    dropCaps: privileged,
    lastCap,
    capsKeepLo: Number(mask & 0xffffffffn),
    capsKeepHi: Number(mask >> 32n),
    ambient: uid !== 0 && mask !== 0n,
    noNewPrivs: o.allowNewPrivileges !== true,
    pdeathsig,
    init,
    tty: tty !== null,
    ttyRows: tty?.rows ?? 24,
    ttyCols: tty?.cols ?? 80,
    cwd,
    argv,
    envp,
    exec,
    summary: {
      namespaces: NS_TYPES.filter((t) => ns.has(t)),
      joined,
      uidMap: uidMaps,
      gidMap: gidMaps,
      rootfs: rootfsPath,
      capabilities: capNames,
      noNewPrivs: o.allowNewPrivileges !== true,
      uid,
      gid,
      maskedPaths: summaryMasked,
      readonlyPaths: summaryReadonly,
      devices: devices.map((d) => d.path),
      seccomp: 'none',
      network: !ns.has('net') ? (joined.includes('net') ? 'joined' : 'host') : 'none',
      cgroup: null,
      init,
    },
  };
  if (ns.has('mount') && (rootfsPath || parsedMounts.length > 0)) {
    // mount points missing in a root the sandbox must not write (see mountpoints.ts)
    setMountPointContext(plan, {
      host, rootfsReadonly, uidMaps, gidMaps,
      rootUid: uidMaps ? outsideOf(uidMaps, 0) : joined.includes('user') ? undefined : host.euid,
      rootGid: gidMaps ? outsideOf(gidMaps, 0) : joined.includes('user') ? undefined : host.egid,
      callerMounts: parsedMounts.map((m) => ({ target: m.target, source: m.source, resolved: m.hostSource })),
    });
    placeMountPoints(plan);
  }
  return plan;
}

/** The sandbox's own cgroup, read-only, at `CG` (its /sys/fs/cgroup; the cgroup namespace is rooted there). */
function cgroupViewOps(host: HostFacts, CG: string): PlanOp[] {
  const cg = host.cgroups();
  const flags = MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC;
  if (cg.version === 2) return [{ op: Op.Mount, a: 'cgroup2', b: CG, c: 'cgroup2', flags }];
  return [
    { op: Op.Mount, a: 'nsbox-cgroup', b: CG, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, d: 'mode=0755,size=16k' },
    ...cg.v1.map((ctrls): PlanOp => ({ op: Op.Mount, a: 'cgroup', b: `${CG}/${ctrls.join(',')}`, c: 'cgroup', flags, d: ctrls.join(',') })),
    { op: Op.RemountRo, b: CG, recursive: false },
  ];
}

function outsideOf(maps: readonly IdMap[], id: number): number | undefined {
  const m = maps.find((x) => id >= x.inside && id < x.inside + x.count);
  return m ? m.outside + (id - m.inside) : undefined;
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
function templateView(host: HostFacts, v: {
  ownCgroup: boolean; nestedUserNamespaces: boolean; rootOwner: readonly [number | undefined, number | undefined] | null;
  maskedPaths: string[]; readonlyPaths: string[];
}): { build: PlanOp[]; child: PlanOp[] } {
  const N = '/newroot', OLD = '/oldroot';
  const [ru, rg] = v.rootOwner ?? [undefined, undefined];
  const own = ru !== undefined && rg !== undefined ? `,uid=${ru},gid=${rg}` : '';
  const b: PlanOp[] = [
    { op: Op.Propagation, b: '/', flags: MS.REC | MS.PRIVATE },
    { op: Op.Mount, a: 'nsbox-base', b: '/tmp', c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: 'mode=0755,size=64k' },
    { op: Op.Mkdir, a: `/tmp${N}`, mode: 0o755 }, { op: Op.Mkdir, a: `/tmp${OLD}`, mode: 0o755 },
    { op: Op.PivotRoot, a: '/tmp', b: OLD.slice(1) },
    { op: Op.Mount, a: 'nsbox-root', b: N, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: `mode=0755${own}` },
  ];
  for (const dir of DEFAULT_RO_DIRS) {
    const k = host.pathKind(dir);
    if (k.kind === 'symlink') b.push({ op: Op.Symlink, a: k.target, b: N + dir });
    else if (k.kind === 'dir') b.push({ op: Op.Bind, a: OLD + dir, b: N + dir, readonly: true, recursive: true, flags: MS.NOSUID | MS.NODEV });
  }
  for (const [dir] of DEFAULT_TMPFS) b.push({ op: Op.Mkdir, a: N + dir, mode: 0o755 });
  if (own) {
    // what the sandbox sees of the skeleton belongs to its root (the mount points are covered)
    for (const [dir] of DEFAULT_TMPFS) {
      const parent = posix.dirname(dir);
      if (parent !== '/') b.push({ op: Op.Chown, a: N + parent, flags: ru, mode: rg });
    }
  }
  b.push({ op: Op.Mkdir, a: `${N}/sys`, mode: 0o755 });
  // the masks' sources, under the sandbox's proc
  b.push(
    { op: Op.Mount, a: 'nsbox-mask', b: `${N}/proc`, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, d: 'mode=0555,size=4k,nr_inodes=4' },
    { op: Op.WriteFile, a: `${N}/proc/file`, d: '', mode: 0o444 },
    { op: Op.Mkdir, a: `${N}/proc/dir`, mode: 0o555 },
    { op: Op.Mount, b: `${N}/proc`, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC },
  );
  // the hidden proc and sysfs, then /dev over them
  b.push(
    { op: Op.Mount, a: 'proc', b: `${N}/dev/proc`, c: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC },
    { op: Op.Mount, a: 'sysfs', b: `${N}/dev/sys`, c: 'sysfs', flags: MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC },
    { op: Op.Mount, a: 'nsbox-dev', b: `${N}/dev`, c: 'tmpfs', flags: MS.NOSUID | MS.NOEXEC, d: `mode=0755,size=64k${own}` },
  );
  // the nodes themselves, not binds of the host's: six mounts fewer in every copy (the
  // superblock is ours, in the initial user namespace, so they work; nothing inside can make more)
  for (const d of DEV_NODES) b.push({ op: Op.Mknod, a: `${N}/dev/${d}`, mode: 0o20666, flags: DEV_NUMBERS[d] });
  b.push({ op: Op.Mkdir, a: `${N}/dev/pts`, mode: 0o755 }, { op: Op.Mkdir, a: `${N}/dev/shm`, mode: 0o755 });
  for (const [l, t] of [['ptmx', 'pts/ptmx'], ['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2']]) {
    b.push({ op: Op.Symlink, a: t, b: `${N}/dev/${l}` });
  }
  b.push(
    { op: Op.Mount, b: `${N}/dev`, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NOEXEC },
    { op: Op.Mount, b: N, flags: MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV },
    { op: Op.PivotRoot, a: N },
  );
  for (const op of b) op.trusted = true;

  const c: PlanOp[] = [
    { op: Op.LoopbackUp },
    { op: Op.MaskOpen, a: '/proc/file', b: '/proc/dir' },
  ];
  for (const [dir, mode] of DEFAULT_TMPFS) c.push({ op: Op.Mount, a: 'tmpfs', b: dir, c: 'tmpfs', flags: MS.NOSUID | MS.NODEV, d: mode });
  c.push({ op: Op.Mount, a: 'proc', b: '/proc', c: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
  if (!v.nestedUserNamespaces) c.push({ op: Op.WriteFile, a: '/proc/sys/user/max_user_namespaces', d: '0\n', mode: 0o644 });
  c.push(
    { op: Op.Mount, a: 'devpts', b: '/dev/pts', c: 'devpts', flags: MS.NOSUID | MS.NOEXEC, d: 'newinstance,ptmxmode=0666,mode=0620' },
    { op: Op.Mount, a: 'shm', b: '/dev/shm', c: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, d: 'mode=1777' },
  );
  const underSys = (p: string) => p === '/sys' || p.startsWith('/sys/');
  const masks = (wantSys: boolean) => {
    for (const m of v.maskedPaths) {
      if (underSys(m) !== wantSys) continue;
      const k = host.pathKind(m);
      if (k.kind === 'missing' || k.kind === 'symlink') continue;
      c.push({ op: Op.MaskBind, b: m, file: k.kind !== 'dir' });
    }
    for (const m of v.readonlyPaths) {
      if (underSys(m) !== wantSys) continue;
      const k = host.pathKind(m);
      if (k.kind === 'missing' || k.kind === 'symlink') continue;
      c.push({ op: Op.Bind, a: m, b: m, file: k.kind !== 'dir', recursive: true, readonly: true, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
    }
  };
  masks(false);
  c.push({ op: Op.Mount, a: 'sysfs', b: '/sys', c: 'sysfs', flags: MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, netSysfs: true });
  if (v.ownCgroup) c.push(...cgroupViewOps(host, '/sys/fs/cgroup'));
  masks(true);
  for (const op of c) op.trusted = true;
  return { build: b, child: c };
}

/**
 * The ops in the binary form the addon reads (addon/src/plan.cc, DecodeOps): one buffer
 * instead of a dozen property reads per op through N-API. Little-endian; per op: u8 kind,
 * u8 bits (1 readonly, 2 file, 4 recursive, 8 real, 16 trusted), u16 0, u32 flags, u32 mode,
 * then a, b, c, d, each an i32 byte length (-1: absent) and the bytes. The result is a view of
 * a buffer the next call reuses: hand it to the addon at once.
 */
let opsScratch = Buffer.allocUnsafe(16384);
/** Encodings of shared default views (buildPlan), by their frozen op array. */
const encodedViews = new WeakMap<readonly PlanOp[], Buffer>();
export function encodeOps(ops: readonly PlanOp[]): Buffer {
  // a plan whose ops are exactly a shared default view: its encoding is made once
  const view = ops.length > 0 ? viewOf.get(ops[0]!) : undefined;
  if (view && view.length === ops.length && view.every((op, i) => op === ops[i])) {
    let b = encodedViews.get(view);
    if (!b) encodedViews.set(view, (b = encodeOpsInto(view, true)));
    return b;
  }
  return encodeOpsInto(ops);
}

/**
 * The view template's build ops, encoded: their own buffer (the addon keeps templates by it),
 * made once per shared array. Never the scratch buffer: the child's ops encoded just before
 * (encodeOps) are still in it, waiting for the addon.
 */
export function encodeTemplate(ops: readonly PlanOp[]): Buffer {
  let b = encodedViews.get(ops);
  if (!b) {
    b = encodeOpsInto(ops, true);
    if (Object.isFrozen(ops)) encodedViews.set(ops, b);
  }
  return b;
}

/** Encodes into the reused scratch buffer (a view of it), or with `own` into a buffer of its own. */
function encodeOpsInto(ops: readonly PlanOp[], own = false): Buffer {
  // sizes are bounds (3 bytes per UTF-16 unit); plain index writes: this runs on every spawn
  let room = 4;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    room += 28 + ((op.a?.length ?? 0) + (op.b?.length ?? 0) + (op.c?.length ?? 0)) * 3;
    if (op.d !== undefined) room += typeof op.d === 'string' ? op.d.length * 3 : op.d.length;
  }
  // one buffer, reused: the addon copies what it reads before spawn() returns
  if (!own && opsScratch.length < room) opsScratch = Buffer.allocUnsafe(Math.max(room, opsScratch.length * 2));
  const buf = own ? Buffer.allocUnsafe(room) : opsScratch;
  let off = 0;
  const u32 = (v: number) => {
    buf[off] = v; buf[off + 1] = v >>> 8; buf[off + 2] = v >>> 16; buf[off + 3] = v >>> 24;
    off += 4;
  };
  const put = (v: string | Uint8Array | undefined) => {
    if (v === undefined) { u32(0xffffffff); return; }
    const at = off + 4;
    let n = v.length;
    if (typeof v !== 'string') buf.set(v, at);
    else {
      // ASCII (nearly every path) byte by byte; anything else through the UTF-8 encoder
      for (let i = 0; i < n; i++) {
        const c = v.charCodeAt(i);
        if (c > 0x7f) { n = buf.write(v, at, 'utf8'); break; }
        buf[at + i] = c;
      }
    }
    u32(n);
    off = at + n;
  };
  u32(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    buf[off] = op.op;
    buf[off + 1] = (op.readonly ? 1 : 0) | (op.file ? 2 : 0) | (op.recursive ?? true ? 4 : 0) | (op.real ? 8 : 0) | (op.trusted ? 16 : 0) | (op.netSysfs ? 32 : 0);
    buf[off + 2] = 0;
    buf[off + 3] = 0;
    off += 4;
    u32((op.flags ?? 0) >>> 0);
    u32(op.mode ?? 0o755);
    put(op.a); put(op.b); put(op.c); put(op.d);
  }
  return buf.subarray(0, off);
}

/**
 * A copy of `plan` whose op lists can be added to (the original and the view cache it shares
 * lists with stay as they were), for the pipeline to compose the final plan from.
 */
export function forkPlan(plan: Plan, extra: Partial<Plan> = {}): Plan {
  const p: Plan = { ...plan, ...extra, ops: [...plan.ops], ...(plan.template ? { template: { build: plan.template.build, child: [...plan.template.child] } } : {}) };
  carryMountPointContext(plan, p);
  return p;
}

/**
 * Puts files over /etc/<name> inside the sandbox (read-only binds of files written into the
 * scratch root, which live on after it is detached). Used for /etc/hosts and /etc/resolv.conf.
 * Does nothing when the sandbox has no mount namespace of its own.
 */
export function provideEtcFiles(plan: Plan, files: Record<string, string>): void {
  if (plan.template) {
    // in a copy of the view template: written on the sandbox's fresh /run, bound, unlinked
    const ops: PlanOp[] = [];
    for (const [name, text] of Object.entries(files)) {
      if (!/^[a-z0-9._-]+$/i.test(name)) throw new TypeError(`etc file name '${name}' is not a plain file name`);
      const tmp = `/run/.nsbox-etc-${name}`;
      ops.push({ op: Op.WriteFile, a: tmp, d: text, mode: 0o644, trusted: true });
      ops.push({ op: Op.Bind, a: tmp, b: `/etc/${name}`, file: true, readonly: true, recursive: false, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, trusted: true });
      ops.push({ op: Op.Unlink, a: tmp, trusted: true });
    }
    plan.template.child.push(...ops);
  }
  // before the final pivot into the new root (the host tree is reachable until then)
  const at = plan.ops.findIndex((op) => op.op === Op.PivotRoot && op.a === '/newroot');
  if (at < 0) return;
  const ops: PlanOp[] = [];
  for (const [name, text] of Object.entries(files)) {
    if (!/^[a-z0-9._-]+$/i.test(name)) throw new TypeError(`etc file name '${name}' is not a plain file name`);
    ops.push({ op: Op.WriteFile, a: `/nsbox-etc/${name}`, d: text, mode: 0o644 });
    ops.push({ op: Op.Bind, a: `/nsbox-etc/${name}`, b: `/newroot/etc/${name}`, file: true, readonly: true, recursive: false, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
  }
  // before the root is made read-only (a missing /etc/<name> must still be creatable)
  const ro = plan.ops.findIndex((op) => op.op === Op.RemountRo && op.b === '/newroot');
  plan.ops.splice(ro >= 0 && ro < at ? ro : at, 0, ...ops);
  // a rootfs without /etc/<name> (or /etc): made on a mirror, never written into the rootfs
  placeMountPoints(plan);
}

/** Whether the options give the sandbox a cgroup (limits the cgroup enforces, cpuTimeMs, or an explicit cgroup). */
export function needsCgroup(o: SpawnIsolatedOptions): boolean {
  if (o.cgroup !== undefined) return true;
  if (o.limits === undefined) return false;
  validateLimits(o.limits);
  return Object.keys(o.limits).some((k) => k !== 'wallTimeMs' && k !== 'outputBytes' && (o.limits as Record<string, unknown>)[k] !== undefined);
}

interface ParsedMount {
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
}

function parseMount(option: string, m: unknown, host: HostFacts): ParsedMount {
  if (!isPlainObject(m)) fail(option, 'must be an object { type, source?, target, ... }');
  checkKeys(option, m, ['type', 'source', 'target', 'readonly', 'propagation', 'options', 'file', 'noexec']);
  const type = str(`${option}.type`, m.type, { nonEmpty: true });
  if (!/^[a-z0-9_.-]+$/.test(type)) fail(`${option}.type`, `is not a filesystem type name (got '${type}')`);
  const target = absPath(`${option}.target`, m.target);
  if (target === '/') fail(`${option}.target`, "must not be '/' (use rootfs)");
  const readonly = m.readonly === undefined ? false : typeof m.readonly === 'boolean' ? m.readonly : fail(`${option}.readonly`, 'must be a boolean');
  const noexec = m.noexec === undefined ? false : typeof m.noexec === 'boolean' ? m.noexec : fail(`${option}.noexec`, 'must be a boolean');
  const propagation = (m.propagation ?? 'private') as ParsedMount['propagation'];
  if (!['private', 'shared', 'slave', 'unbindable'].includes(propagation)) fail(`${option}.propagation`, "must be 'private', 'shared', 'slave' or 'unbindable'");
  const options = m.options === undefined ? undefined : str(`${option}.options`, m.options);
  let source: string | undefined;
  let file = false;
  if (type === 'bind') {
    source = absPath(`${option}.source`, m.source);
    const k = host.pathKind(source);
    if (k.kind === 'missing') fail(`${option}.source`, `does not exist (${source})`);
    file = m.file === undefined ? (k.kind === 'file' || k.kind === 'other' || (k.kind === 'symlink' && isFileTarget(source))) : typeof m.file === 'boolean' ? m.file : fail(`${option}.file`, 'must be a boolean');
    if (options !== undefined) fail(`${option}.options`, 'does not apply to bind mounts');
  } else if (m.source !== undefined) {
    source = str(`${option}.source`, m.source);
  }
  const hostSource = type === 'bind' && source !== undefined ? host.realPath?.(source) ?? source : undefined;
  return { type, source, hostSource, target, readonly, propagation, options, file, noexec };
}

function isFileTarget(p: string): boolean {
  try { return !statSync(p).isDirectory(); } catch { return false; }
}

function pathList(option: string, v: unknown, def: string[]): string[] {
  if (v === undefined) return def;
  if (!Array.isArray(v)) fail(option, 'must be an array of absolute paths');
  return v.map((p, i) => {
    const a = absPath(`${option}[${i}]`, p);
    if (a === '/') fail(`${option}[${i}]`, "must not be '/'");
    return a;
  });
}

function parseDevices(v: unknown, host: HostFacts): Array<{ path: string; target: string; readonly: boolean }> {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail('options.devices', "must be an array of host device paths or { path, target?, readonly? }");
  return v.map((d, i) => {
    const opt = `options.devices[${i}]`;
    let path: string, target: string | undefined, readonly = false;
    if (typeof d === 'string') path = absPath(opt, d);
    else if (isPlainObject(d)) {
      checkKeys(opt, d, ['path', 'target', 'readonly']);
      path = absPath(`${opt}.path`, d.path);
      if (d.target !== undefined) target = absPath(`${opt}.target`, d.target);
      if (d.readonly !== undefined) {
        if (typeof d.readonly !== 'boolean') fail(`${opt}.readonly`, 'must be a boolean');
        readonly = d.readonly;
      }
    } else fail(opt, 'must be a host device path or { path, target?, readonly? }');
    if (!path.startsWith('/dev/')) fail(opt, `must be a device under /dev (got ${path})`);
    const k = host.pathKind(path);
    if (k.kind !== 'other') fail(opt, `must be an existing device node (${path} is ${k.kind === 'missing' ? 'missing' : `a ${k.kind}`})`);
    target ??= path;
    if (!target.startsWith('/dev/')) fail(`${opt}.target`, `must be under /dev (got ${target})`);
    return { path, target, readonly };
  });
}

function parseTty(v: unknown): { rows: number; cols: number } | null {
  if (v === undefined || v === false) return null;
  if (v === true) return { rows: 24, cols: 80 };
  if (!isPlainObject(v)) fail('options.tty', 'must be a boolean or { rows?, cols? }');
  checkKeys('options.tty', v, ['rows', 'cols']);
  const dim = (k: 'rows' | 'cols', def: number) => {
    const x = v[k];
    if (x === undefined) return def;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 65535) fail(`options.tty.${k}`, 'must be an integer 1..65535', RangeError);
    return x;
  };
  return { rows: dim('rows', 24), cols: dim('cols', 80) };
}

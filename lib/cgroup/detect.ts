// Detects the cgroup layout once: which version is mounted where, and the caller's own
// cgroup in each hierarchy (from /proc/self/mountinfo and /proc/self/cgroup).
import { readFileSync } from 'node:fs';
import { errnoError } from '../errors.js';

/** How the host mounts cgroups: pure v2, pure v1, or v1 controllers plus an empty-ish cgroup2 (hybrid). */
export type CgroupMode = 'v1' | 'v2' | 'hybrid';

/** A mounted v1 hierarchy. */
export interface V1Hierarchy {
  /** controllers bound to it, e.g. `['cpu', 'cpuacct']` */
  controllers: string[];
  /** where it is mounted */
  mount: string;
  /** the caller's own cgroup directory in it */
  ownDir: string;
}

/** What detection found. */
export interface CgroupLayout {
  mode: CgroupMode;
  /** v2: the cgroup2 mount point (also set on hybrid hosts, where nsbox does not use it) */
  v2Mount?: string;
  /** v2: the caller's own cgroup directory */
  v2OwnDir?: string;
  /** v1/hybrid: hierarchies holding the controllers nsbox uses */
  v1: V1Hierarchy[];
  /** v1/hybrid: the devices hierarchy, used only for a cgroup with device rules (`limits.devices`) */
  v1Devices?: V1Hierarchy;
  /**
   * v1/hybrid: the hierarchies of {@link V1_EXTRA} controllers mounted as v1, by controller,
   * used only for a cgroup with such a limit (`limits.hugetlb`, `netClassId`, `netPriorities`);
   * `controllers` lists the extra controllers of that hierarchy
   */
  v1Extra?: Record<string, V1Hierarchy>;
}

/** v1 controllers nsbox creates a directory for. */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'freezer', 'blkio'];

/** v1 controllers nsbox makes a directory in only for a cgroup with a limit of theirs. */
export const V1_EXTRA = ['hugetlb', 'net_cls', 'net_prio'];

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

interface MountEntry { root: string; mountPoint: string; fstype: string; superOpts: string[] }

/** Parses /proc/self/mountinfo text into the cgroup and cgroup2 entries. */
export function parseCgroupMounts(mountinfo: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 0 || dash + 3 > f.length) continue;
    const fstype = f[dash + 1];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    out.push({ root: unescapeMount(f[3]), mountPoint: unescapeMount(f[4]), fstype, superOpts: (f[dash + 3] ?? '').split(',') });
  }
  return out;
}

/** Parses /proc/self/cgroup text: hierarchy controller list (`''` for v2) to path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const a = line.indexOf(':');
    const b = line.indexOf(':', a + 1);
    if (a < 0 || b < 0) continue;
    m.set(line.slice(a + 1, b), line.slice(b + 1));
  }
  return m;
}

function join(mount: string, root: string, own: string): string {
  // inside the mount, the caller's path is relative to the mount's root
  let rel = own;
  if (root !== '/' && (own === root || own.startsWith(root + '/'))) rel = own.slice(root.length);
  rel = rel.replace(/\/+$/, '');
  return rel === '' || rel === '/' ? mount : mount + (rel.startsWith('/') ? rel : '/' + rel);
}

/** Builds the layout from the two files' text (exported for unit tests). */
export function layoutFrom(mountinfo: string, procCgroup: string): CgroupLayout {
  const mounts = parseCgroupMounts(mountinfo);
  const own = parseProcCgroup(procCgroup);
  const v1: V1Hierarchy[] = [];
  let devices: V1Hierarchy | undefined;
  const extra: Record<string, V1Hierarchy> = {};
  const seen = new Set<string>();
  for (const m of mounts) {
    if (m.fstype !== 'cgroup') continue;
    const ctrls = m.superOpts.filter((o) => V1_CONTROLLERS.includes(o) || o === 'devices' || o === 'hugetlb' || o === 'net_cls' || o === 'net_prio' || o === 'perf_event' || o === 'rdma' || o === 'misc');
    const used = ctrls.filter((c) => V1_CONTROLLERS.includes(c));
    const extras = ctrls.filter((c) => V1_EXTRA.includes(c));
    if (used.length === 0 && !ctrls.includes('devices') && extras.length === 0) continue;
    const key = ctrls.slice().sort().join(',');
    if (seen.has(key)) continue; // the same hierarchy mounted twice
    // /proc/self/cgroup lists the hierarchy by its controllers in kernel order
    let path: string | undefined;
    for (const [k, v] of own) {
      if (k && k.split(',').slice().sort().join(',') === key) path = v;
    }
    if (path === undefined) continue;
    seen.add(key);
    if (ctrls.includes('devices') && used.length === 0) devices = { controllers: ['devices'], mount: m.mountPoint, ownDir: join(m.mountPoint, m.root, path) };
    for (const c of extras) extra[c] = { controllers: extras, mount: m.mountPoint, ownDir: join(m.mountPoint, m.root, path) };
    if (used.length) v1.push({ controllers: used, mount: m.mountPoint, ownDir: join(m.mountPoint, m.root, path) });
  }
  // cgroup2: the first mount point, and there the last mount (the one in sight: a container
  // mounts its own cgroup namespace's on top of an inherited one), preferring mounts whose root
  // lies inside this process's cgroup namespace (an inherited one shows as '/..')
  const c2s = mounts.filter((m) => m.fstype === 'cgroup2');
  const inside = (m: MountEntry) => !m.root.startsWith('/..');
  const first = c2s.find(inside) ?? c2s[0];
  const c2 = first && ([...c2s].reverse().find((m) => m.mountPoint === first.mountPoint && inside(m)) ?? first);
  const layout: CgroupLayout = { mode: v1.length ? (c2 ? 'hybrid' : 'v1') : 'v2', v1, ...(v1.length && devices ? { v1Devices: devices } : {}), ...(v1.length && Object.keys(extra).length ? { v1Extra: extra } : {}) };
  if (c2) {
    layout.v2Mount = c2.mountPoint;
    const p = own.get('');
    if (p !== undefined) layout.v2OwnDir = join(c2.mountPoint, c2.root, p);
  }
  if (!v1.length && !c2) throw errnoError(2, 'cgroup-detect', 'open', '/proc/self/mountinfo', 'no cgroup or cgroup2 file system is mounted');
  return layout;
}

let cached: CgroupLayout | undefined;

/** Forgets the detected layout (after this process moved to another cgroup: CGroup.enterLeaf). */
export function forgetLayout(): void {
  cached = undefined;
}

/** The host's cgroup layout, detected once per process. */
export function detectLayout(): CgroupLayout {
  if (!cached) cached = layoutFrom(readFileSync('/proc/self/mountinfo', 'utf8'), readFileSync('/proc/self/cgroup', 'utf8'));
  return cached;
}

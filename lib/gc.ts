// gc() / `nsbox gc`: removes what nsbox processes that died without cleaning up (SIGKILL, a
// crash, SIGTERM without a handler) left on the host. Only objects that carry nsbox's name AND
// an owner that is gone are touched (see lib/owner.ts); a cgroup that still holds processes is
// never emptied. Safe to run at any time, alongside live nsbox processes.
//
//   cgroups     every v1 hierarchy and the v2 tree, at any depth (the caller's own cgroup, its
//               parent, cgroupParent directories): nsbox-<pid>-<start>-<n>, nsbox-sbx-<pid>-...,
//               and the older nsbox-<pid>-<n>, with their (empty) sub-groups
//   mounts      store container views mounted with source nsbox-<pid>-<start>-overlay
//   stores      every store in the registry, seen in the mount table or given: LayerStore.gc()
//   sandboxes   Sandbox state files whose holder and creator are both gone (cgroup, container,
//               a created sandbox's start socket and exit record)
//   network     sweepNetwork(): veths, IPAM entries, DNAT entries, forgotten bridges
//   files       temporary directories of dead processes (nsbox-ovl-*, nsbox-usernet-*)
//   idBlocks    id block claims of dead processes (/run/nsbox/idblocks/<uid> -> nsbox-<pid>-<start>-ids)
import { readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cgroupOwner, mountOwner, ownerGone, processStart } from './owner.js';
import { LayerStore, isMountPoint, registeredStores, defaultStoreRoot } from './fs/store.js';
import { fsNative } from './fs/native.js';
import { sweepNetwork, type NetworkSweepReport } from './net/gc.js';
import { netNative } from './net/native.js';
import { parseOwnedName } from './net/link.js';
import { sweepIdBlocks } from './ns/idblocks.js';
import { defaultStateDir } from './runner/sandbox.js';

/** Something gc found but left, and why. */
export interface GcSkipped {
  kind: 'cgroup' | 'mount' | 'store' | 'sandbox' | 'network' | 'file';
  /** the path, link name or store root */
  what: string;
  /** why it stays, e.g. `'has processes'` or `'needs root (CAP_SYS_ADMIN)'` */
  reason: string;
  /** true when it stays only for lack of privilege (root would remove it) */
  needsPrivilege: boolean;
}

/** What {@link gc} removed (each list empty when there was nothing of its kind). */
export interface GcReport extends NetworkSweepReport {
  // from NetworkSweepReport: links, ipam, published, bridges, tables, and `files` (temporary
  // directories of dead processes, the network's and the store's)
  /** cgroup directories removed (one per v1 hierarchy a group was in). */
  cgroups: string[];
  /** Mount points unmounted (container views of dead processes). */
  mounts: string[];
  /** Store containers removed, as `<store root>: <name>`. */
  containers: string[];
  /** Other store leftovers removed: temporary and unrecorded layer directories, dangling links. */
  storeFiles: string[];
  /** Sandbox state files removed (with the sandbox's cgroup and container). */
  sandboxes: string[];
  /** Id block claims removed (the blocks are free for other sandboxes again). */
  idBlocks: string[];
  /** What was found but left (a live process inside, no privilege, ...). */
  skipped: GcSkipped[];
}

/** Options of {@link gc}. */
export interface GcOptions {
  /** Also sweep these stores (roots or LayerStore objects), whole even with `owners`; registered stores are always swept. */
  stores?: Array<string | LayerStore>;
  /** Sandbox state directories to sweep. Default: the caller's default one (`defaultStateDir()`: `/run/nsbox/sandboxes` for root). */
  sandboxStateDirs?: string[];
  /** Also delete the default bridge when no live sandbox uses it (see sweepNetwork). Default false. */
  idleDefaultBridge?: boolean;
  /**
   * Only what these processes left (pids of nsbox processes known to be gone, e.g. a crashed
   * worker's). Objects that name no owner (unrecorded store directories, bridges) are then left
   * alone. Default: everything of every dead owner.
   */
  owners?: number[];
}

/** Whether an owner pid is among those asked for. */
type Filter = (pid: number) => boolean;

function isRoot(): boolean {
  return process.geteuid?.() === 0;
}

function privErr(code: string | undefined): boolean {
  return code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

interface MountLine { root: string; mountPoint: string; fstype: string; source: string }

function mountLines(): MountLine[] {
  const out: MountLine[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6 || dash + 2 >= f.length) continue;
    out.push({ root: unescapeMount(f[3]!), mountPoint: unescapeMount(f[4]!), fstype: f[dash + 1]!, source: unescapeMount(f[dash + 2]!) });
  }
  return out;
}

// ------------------------------------------------------------------ cgroups

/** Mount points of the cgroup hierarchies (each hierarchy once). */
function cgroupMounts(): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const m of mountLines()) {
    if (m.fstype !== 'cgroup' && m.fstype !== 'cgroup2') continue;
    let key: string;
    try { key = `${statSync(m.mountPoint).dev}:${m.root}`; } catch { continue; }
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(m.mountPoint);
  }
  return out;
}

function cgroupHasProcs(dir: string): boolean {
  try { return readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() !== ''; } catch { return false; }
}

/** rmdir of one cgroup directory; true when it is gone. */
function removeCgroupDir(dir: string, r: GcReport): boolean {
  if (cgroupHasProcs(dir)) {
    r.skipped.push({ kind: 'cgroup', what: dir, reason: 'has processes', needsPrivilege: false });
    return false;
  }
  try {
    rmdirSync(dir);
    r.cgroups.push(dir);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true; // another gc, or the owner after all
    r.skipped.push({ kind: 'cgroup', what: dir, reason: privErr(code) ? `needs privilege (${code})` : code === 'EBUSY' ? 'busy (has sub-groups or processes)' : String(code), needsPrivilege: privErr(code) });
    return false;
  }
}

function sweepCgroups(r: GcReport, mine: Filter): void {
  const walk = (dir: string, depth: number, deadAbove: boolean) => {
    if (depth > 64) return;
    let entries;
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const child = join(dir, e.name);
      const o = cgroupOwner(e.name);
      // a group of its own owner follows that owner; other sub-groups belong to the group above
      const dead = o ? mine(o.pid) && ownerGone(o.pid, o.start) : deadAbove;
      walk(child, depth + 1, dead);
      if (dead) removeCgroupDir(child, r);
    }
  };
  for (const m of cgroupMounts()) walk(m, 0, false);
}

// ------------------------------------------------------------------ mounts and stores

/** Unmounts container views of dead owners; returns the store roots seen in the mount table. */
function sweepMounts(r: GcReport, mine: Filter): Set<string> {
  const roots = new Set<string>();
  // deepest first: a view inside a tmpfs layer goes before it
  const lines = mountLines().sort((a, b) => b.mountPoint.length - a.mountPoint.length);
  for (const m of lines) {
    const o = mountOwner(m.source);
    const legacy = m.source === 'nsbox-overlay' || m.source === 'nsbox-layer';
    if (!o && !legacy) continue;
    const kind = o?.kind ?? (m.source === 'nsbox-layer' ? 'layer' : 'overlay');
    const root = kind === 'layer' ? dirname(m.mountPoint) : dirname(dirname(m.mountPoint));
    if (isStoreRoot(root)) roots.add(root);
    // an owner-marked view of a dead owner goes; a tmpfs layer holds a container's files:
    // only its store removes it (with an ephemeral container)
    if (!o || kind !== 'overlay' || !mine(o.pid) || !ownerGone(o.pid, o.start)) continue;
    if (!isRoot()) {
      r.skipped.push({ kind: 'mount', what: m.mountPoint, reason: 'needs root (CAP_SYS_ADMIN)', needsPrivilege: true });
      continue;
    }
    try {
      fsNative().fsUmount(m.mountPoint, true);
      r.mounts.push(m.mountPoint);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EINVAL' || code === 'ENOENT') continue; // unmounted meanwhile
      r.skipped.push({ kind: 'mount', what: m.mountPoint, reason: String(code), needsPrivilege: privErr(code) });
    }
  }
  return roots;
}

function ownerUid(path: string): number | undefined {
  try { return statSync(path).uid; } catch { return undefined; }
}

function isStoreRoot(dir: string): boolean {
  try { return statSync(join(dir, 'nsbox-store.lock')).isFile() || statSync(join(dir, 'nsbox-store.json')).isFile(); } catch { return false; }
}

const STORE_FILE_RE = /^(?:nsbox-tmp-|nsbox-store\.json\.|[a-f0-9]{64}(?:-init)?$|l\/)/;

async function sweepStore(root: string, r: GcReport, owners: number[] | undefined): Promise<void> {
  try {
    const removed = await LayerStore.open(root).gc(owners ? { owners } : {});
    for (const n of removed) {
      if (STORE_FILE_RE.test(n)) r.storeFiles.push(join(root, n));
      else r.containers.push(`${root}: ${n}`);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    r.skipped.push({ kind: 'store', what: root, reason: privErr(code) ? `needs privilege (${code})` : (e as Error).message, needsPrivilege: privErr(code) });
  }
}

// ------------------------------------------------------------------ sandboxes

interface StateFile {
  id?: string; holderPid?: number; holderStart?: number; creatorPid?: number; creatorStart?: number;
  cgroup?: Record<string, string>; image?: { store: string; container: string } | null;
  /** a cgroupPath sandbox: the directories nsbox made at the caller's path (no nsbox name) */
  cgroupMade?: string[];
}

async function sweepSandboxes(dirs: string[], r: GcReport, mine: Filter): Promise<void> {
  for (const dir of dirs) {
    let names: string[];
    try { names = readdirSync(dir); } catch { continue; }
    for (const n of names) {
      const file = join(dir, n);
      const tmp = /\.nsbox-tmp-(\d+)$/.exec(n);
      if (tmp) {
        if (mine(Number(tmp[1])) && ownerGone(Number(tmp[1]))) { rmSync(file, { force: true }); r.files.push(file); }
        continue;
      }
      if (!n.endsWith('.json')) continue;
      let s: StateFile;
      try { s = JSON.parse(readFileSync(file, 'utf8')) as StateFile; } catch { continue; }
      if (typeof s.creatorPid !== 'number') continue; // an older reservation: its maker is unknown
      if (!mine(s.creatorPid) || !ownerGone(s.creatorPid, s.creatorStart)) continue;
      if (s.id && typeof s.holderPid === 'number' && processStart(s.holderPid) === s.holderStart) continue; // still running
      let ok = true;
      // a cgroupPath: exactly what nsbox made there, deepest first (a parent with other children stays)
      for (const d of Array.isArray(s.cgroupMade) ? s.cgroupMade : []) {
        if (typeof d !== 'string' || !d.startsWith('/sys/fs/cgroup/')) continue;
        let children = false;
        try { children = readdirSync(d, { withFileTypes: true }).some((e) => e.isDirectory()); } catch { continue; }
        if (!children && !removeCgroupDir(d, r)) ok = false;
      }
      for (const d of new Set(Object.values(s.cgroup ?? {}))) {
        if (!d.split('/').pop()!.includes('nsbox')) continue;
        try { statSync(d); } catch { continue; }
        // its sub-groups first (a program inside may have made some)
        const sub = (p: string): boolean => {
          let all = true;
          try {
            for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory() && !(sub(join(p, e.name)) && removeCgroupDir(join(p, e.name), r))) all = false;
          } catch { /* gone */ }
          return all;
        };
        if (!sub(d) || !removeCgroupDir(d, r)) ok = false;
      }
      if (s.image?.store && s.image.container && isStoreRoot(s.image.store)) {
        try {
          const store = LayerStore.open(s.image.store);
          if (store.containers().includes(s.image.container)) {
            const c = store.container(s.image.container);
            if (isMountPoint(c.mergedDir)) fsNative().fsUmount(c.mergedDir, true);
            await c.remove();
            r.containers.push(`${s.image.store}: ${s.image.container}`);
          }
        } catch (e) {
          ok = false;
          const code = (e as NodeJS.ErrnoException).code;
          r.skipped.push({ kind: 'sandbox', what: file, reason: `its container: ${(e as Error).message}`, needsPrivilege: privErr(code) });
        }
      }
      if (!ok) continue; // kept, so that a later gc tries again
      // a created sandbox's start socket and exit record beside it
      for (const ext of ['.sock', '.exit']) {
        const f = join(dir, n.slice(0, -'.json'.length) + ext);
        try { rmSync(f); r.files.push(f); } catch { /* none */ }
      }
      rmSync(file, { force: true });
      r.sandboxes.push(file);
    }
  }
}

// ------------------------------------------------------------------ temporary files

function sweepTmp(r: GcReport, mine: Filter): void {
  let names: string[];
  try { names = readdirSync(tmpdir()); } catch { return; }
  for (const n of names) {
    const m = /^nsbox-ovl-(\d+)-(?:(\d+)-)?[A-Za-z0-9]{6}$/.exec(n);
    if (!m || !mine(Number(m[1])) || !ownerGone(Number(m[1]), m[2] === undefined ? undefined : Number(m[2]))) continue;
    try {
      rmSync(join(tmpdir(), n), { recursive: true, force: true });
      r.files.push(join(tmpdir(), n));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      r.skipped.push({ kind: 'file', what: join(tmpdir(), n), reason: String(code), needsPrivilege: privErr(code) });
    }
  }
}

// ------------------------------------------------------------------ network

async function sweepNet(r: GcReport, idleDefaultBridge: boolean, mine: Filter, owners: number[] | undefined): Promise<void> {
  if (!isRoot()) {
    // links of dead owners are visible to anyone; deleting them (and IPAM, nftables) needs root
    try {
      for (const l of netNative().netlinkLinks()) {
        const pid = parseOwnedName(l.name);
        if (pid !== undefined && mine(pid) && ownerGone(pid)) r.skipped.push({ kind: 'network', what: l.name, reason: 'needs root (CAP_NET_ADMIN)', needsPrivilege: true });
      }
    } catch { /* no netlink here */ }
    return;
  }
  let n;
  try {
    n = await sweepNetwork(owners ? { idleDefaultBridge, owners } : { idleDefaultBridge });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    r.skipped.push({ kind: 'network', what: 'network sweep', reason: (e as Error).message, needsPrivilege: privErr(code) });
    return;
  }
  r.links.push(...n.links);
  r.ipam.push(...n.ipam);
  r.published.push(...n.published);
  r.bridges.push(...n.bridges);
  r.tables.push(...n.tables);
  r.files.push(...n.files);
}

// ------------------------------------------------------------------ gc

/**
 * Removes what dead nsbox processes left on this host: cgroups (v1 and v2, wherever nsbox made
 * them), container views and ephemeral containers of image sandboxes (in every registered
 * store, every store seen in the mount table, and `options.stores`), Sandbox state of sandboxes
 * whose holder and creator are gone, veths, IPAM and nftables entries, and temporary
 * directories, and id block claims. Only objects named by nsbox whose owner process is gone are touched (the name
 * records the owner's pid and start time), so it is safe while other nsbox processes run.
 * Without root it removes what the caller may (its own delegated cgroups, its own stores) and
 * lists the rest in `skipped`.
 */
export async function gc(options: GcOptions = {}): Promise<GcReport> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  for (const k of Object.keys(options)) {
    if (!['stores', 'sandboxStateDirs', 'idleDefaultBridge', 'owners'].includes(k)) throw new TypeError(`options has an unknown key '${k}'`);
  }
  const stores = options.stores ?? [];
  if (!Array.isArray(stores)) throw new TypeError('options.stores must be an array of store roots or LayerStore objects');
  const extra = stores.map((s, i) => {
    if (s instanceof LayerStore) return s.root;
    if (typeof s !== 'string' || !s.startsWith('/')) throw new TypeError(`options.stores[${i}] must be an absolute path or a LayerStore`);
    return s;
  });
  // a default state dir refused (another user's /tmp/nsbox-<uid>) is not swept
  let own: string[] = [];
  try { own = [defaultStateDir()]; } catch { /* refused: nothing of the caller's is there */ }
  const stateDirs = options.sandboxStateDirs ?? own;
  if (!Array.isArray(stateDirs) || stateDirs.some((d) => typeof d !== 'string' || !d.startsWith('/'))) throw new TypeError('options.sandboxStateDirs must be an array of absolute paths');
  if (options.idleDefaultBridge !== undefined && typeof options.idleDefaultBridge !== 'boolean') throw new TypeError('options.idleDefaultBridge must be a boolean');
  if (options.owners !== undefined && (!Array.isArray(options.owners) || !options.owners.every((p) => Number.isInteger(p) && p > 0))) throw new TypeError('options.owners must be an array of pids');
  const only = options.owners === undefined ? undefined : new Set(options.owners);
  const f: Filter = (pid) => !only || only.has(pid);

  const r: GcReport = { cgroups: [], mounts: [], containers: [], storeFiles: [], sandboxes: [], idBlocks: [], links: [], ipam: [], published: [], bridges: [], tables: [], files: [], skipped: [] };
  // views first (a mounted container cannot be removed), then what they belong to
  const seen = sweepMounts(r, f);
  await sweepSandboxes(stateDirs, r, f);
  // the caller's default store too (a non-root caller's is in no registry it may write)
  let mine: string[] = [];
  try { mine = [defaultStoreRoot()]; } catch { /* no home: no default store */ }
  const roots = new Set<string>([...registeredStores(), ...seen, ...extra, ...mine]);
  for (const root of [...roots].sort()) {
    if (!isStoreRoot(root)) continue;
    // without root, another user's store is not the caller's to sweep (nor to report)
    if (!isRoot() && !extra.includes(root) && ownerUid(root) !== process.geteuid?.()) continue;
    // a store the caller names is swept whole (also what names no owner)
    await sweepStore(root, r, extra.includes(root) ? undefined : options.owners);
  }
  sweepCgroups(r, f);
  await sweepNet(r, options.idleDefaultBridge ?? false, f, options.owners);
  sweepTmp(r, f);
  // last: a block is free for others once what its sandboxes left is gone
  if (isRoot()) r.idBlocks.push(...sweepIdBlocks(f));
  return r;
}

// ------------------------------------------------------------------ the CLI's text

const GROUPS: Array<[keyof Omit<GcReport, 'skipped'>, string]> = [
  ['cgroups', 'cgroups'], ['mounts', 'mounts'], ['containers', 'store containers'], ['storeFiles', 'store leftovers'],
  ['sandboxes', 'sandbox state files'], ['idBlocks', 'id block claims'], ['links', 'network links'], ['ipam', 'IPAM entries'], ['published', 'published ports (nftables)'],
  ['bridges', 'bridges forgotten'], ['tables', 'nftables tables'], ['files', 'temporary directories'],
];

/** @internal `nsbox gc`'s text for a person: what was removed, grouped with counts, then what stayed. */
export function formatGcReport(r: GcReport, max = 20): string {
  const lines: string[] = [];
  const total = GROUPS.reduce((n, [k]) => n + r[k].length, 0);
  lines.push(total === 0 ? 'nsbox gc: nothing to remove' : `nsbox gc: removed ${total} leftover${total === 1 ? '' : 's'} of dead nsbox processes`);
  for (const [k, title] of GROUPS) {
    const items = r[k];
    if (!items.length) continue;
    let head = `  ${title}: ${items.length}`;
    if (k === 'cgroups') {
      const groups = new Set(items.map((p) => p.split('/').pop()));
      if (groups.size !== items.length) head += ` (${groups.size} group${groups.size === 1 ? '' : 's'} across hierarchies)`;
    }
    lines.push(head);
    for (const i of items.slice(0, max)) lines.push(`    ${i}`);
    if (items.length > max) lines.push(`    ... and ${items.length - max} more (--json lists all)`);
  }
  if (r.skipped.length) {
    lines.push(`  left in place: ${r.skipped.length}`);
    for (const s of r.skipped.slice(0, max)) lines.push(`    ${s.kind} ${s.what}: ${s.reason}`);
    if (r.skipped.length > max) lines.push(`    ... and ${r.skipped.length - max} more (--json lists all)`);
  }
  return `${lines.join('\n')}\n`;
}

/** @internal The one line `nsbox gc` ends with when privilege was missing, or undefined. */
export function gcPrivilegeLine(r: GcReport): string | undefined {
  const need = r.skipped.filter((s) => s.needsPrivilege);
  if (!need.length) return undefined;
  const kinds = [...new Set(need.map((s) => s.kind))].join(', ');
  return `nsbox gc: ${need.length} leftover${need.length === 1 ? '' : 's'} (${kinds}) need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run it as root`;
}

// CGroup: one interface over the v1 and v2 drivers, detected once.
import { EventEmitter } from 'node:events';
import { accessSync, constants, existsSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { errnoError, NsboxError } from '../errors.js';
import { detectLayout, type CgroupMode, type CgroupLayout } from './detect.js';
import {
  V1Driver, V2Driver, V2_WANTED, attach, mkdirCg, readOpt, v2ControllersFor, v2Enable,
  type CgroupStats, type Driver, type LimitCounters, type CgroupPlacement,
} from './drivers.js';
import { validateLimits, type Limits, type ResolvedLimits } from './limits.js';

export type { CgroupStats } from './drivers.js';
export type { CgroupMode } from './detect.js';

/** Options of {@link CGroup.create}. */
export interface CGroupCreateOptions {
  /**
   * Where to create it. Default: the caller's own cgroup (per hierarchy on v1). On v2, when
   * the caller's cgroup holds processes (so the no-internal-processes rule forbids enabling
   * controllers in it) the group is created beside it, in its parent. A string is a cgroup
   * path (`/a/b`, resolved in every hierarchy) or a directory under a cgroup mount.
   */
  parent?: string | CGroup;
  /** Limits applied before `create` resolves. */
  limits?: Limits;
}

/** Options of {@link CGroup.destroy}. */
export interface CGroupDestroyOptions {
  /** Kill every task first (default false: wait for them to leave). */
  kill?: boolean;
  /** How long to wait for the cgroup to become empty, ms (default 10000). */
  timeoutMs?: number;
}

/** Payload of the `'oom'` event. */
export interface CGroupOomEvent {
  /** OOM kills since the last event (at least 1). */
  count: number;
  /** OOM kills in this cgroup's lifetime. */
  oomKill: number;
}

/** Events a CGroup emits (listening starts the kernel watch; both are delivered on the event loop). */
export interface CGroupEvents {
  /** The OOM killer killed a task in this cgroup. */
  oom: [CGroupOomEvent];
  /** The last task left (populated 1 -> 0). On v1 this is polled every 50 ms. */
  empty: [];
}

const NAME_RE = /^[A-Za-z0-9._@:+-]{1,200}$/;

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
  if (!NAME_RE.test(name) || name === '.' || name === '..') {
    throw new TypeError(`name '${name}' is not a valid cgroup name (1-200 of A-Z a-z 0-9 . _ @ : + -)`);
  }
  const full = name.includes('nsbox') ? name : `nsbox-${name}`;
  if (full.length > 200) throw new RangeError(`name '${name}' is too long`);
  return full;
}

function checkPid(pid: unknown): number {
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) throw new TypeError(`pid must be a positive integer, got ${String(pid)}`);
  if (pid === process.pid) throw new RangeError('nsbox never moves the calling process into a cgroup; pass a child pid');
  return pid;
}

/** v1: the relative cgroup path of a string parent, or null when it is not under a mount. */
function relativeUnder(path: string, mount: string): string | null {
  if (path === mount) return '';
  if (path.startsWith(mount + '/')) return path.slice(mount.length);
  return null;
}

/**
 * A control group, on cgroup v1 or v2 behind one interface.
 *
 * Make one with {@link CGroup.create} (nsbox owns it: `destroy()`/`await using` removes it)
 * or {@link CGroup.open} (an existing group). It is an EventEmitter of {@link CGroupEvents}:
 * `cg.on('oom', e => ...)`, `cg.on('empty', () => ...)`. Watches are unref'd, so a
 * listener never keeps the process alive by itself. Every name nsbox creates contains `nsbox`.
 */
export class CGroup extends EventEmitter<CGroupEvents> {
  /** The cgroup's name (last path component). */
  readonly name: string;
  /** 1 or 2: which driver runs it. */
  readonly version: 1 | 2;
  /** Whether nsbox created it (and so removes it on dispose). */
  readonly owned: boolean;
  private readonly driver: Driver;
  private destroyedFlag = false;
  private stopWatch: (() => void) | undefined;
  private lastCounters: LimitCounters | undefined;
  private lastPopulated = false;

  private constructor(driver: Driver, name: string, owned: boolean) {
    super();
    this.driver = driver;
    this.name = name;
    this.version = driver.version;
    this.owned = owned;
    const plain = this as unknown as EventEmitter;
    plain.on('newListener', (ev: string) => {
      if ((ev === 'oom' || ev === 'empty') && !this.stopWatch && !this.destroyedFlag) this.startWatch();
    });
    plain.on('removeListener', () => {
      if (this.listenerCount('oom') + this.listenerCount('empty') === 0) this.endWatch();
    });
  }

  /** How the host mounts cgroups; on `'hybrid'` hosts nsbox uses the v1 controllers. */
  static mode(): CgroupMode {
    return detectLayout().mode;
  }

  /**
   * Creates a cgroup (named `nsbox-<name>` unless `name` already contains `nsbox`) and
   * applies `limits`. Bad limits reject with TypeError/RangeError before anything is created;
   * a limit the host cannot apply rejects with an NsboxError naming the controller, and the
   * half-made group is removed. Never moves any process.
   */
  static async create(name: string, options: CGroupCreateOptions = {}): Promise<CGroup> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const full = checkName(name);
    const limits = validateLimits(options.limits, { cgroupOnly: true });
    const parent = options.parent;
    if (parent !== undefined && typeof parent !== 'string' && !(parent instanceof CGroup)) throw new TypeError('options.parent must be a path or a CGroup');
    const layout = detectLayout();
    return layout.mode === 'v2' ? createV2(layout, full, limits, parent) : createV1(layout, full, limits, parent);
  }

  /**
   * Opens an existing cgroup: a directory under a cgroup mount, or a cgroup path such as
   * `/a/b` (on v1 looked up in every hierarchy), or on v1 a map controller -> directory.
   * The result is not owned: disposing it stops its watches but does not remove it.
   */
  static async open(path: string | Record<string, string>): Promise<CGroup> {
    const layout = detectLayout();
    if (typeof path === 'object' && path !== null) {
      if (layout.mode === 'v2') throw new TypeError('CGroup.open: a controller map is for cgroup v1 only');
      const dirs: Record<string, string> = {};
      for (const [c, d] of Object.entries(path)) {
        if (!existsSync(`${d}/cgroup.procs`)) throw errnoError(2, 'cgroup-open', 'open', d, 'not a cgroup directory');
        dirs[c] = d;
      }
      return new CGroup(new V1Driver(dirs), basename(Object.values(dirs)[0] ?? ''), false);
    }
    if (typeof path !== 'string' || path === '') throw new TypeError('CGroup.open: path must be a non-empty string');
    if (layout.mode === 'v2') {
      const m = layout.v2Mount!;
      const dir = relativeUnder(resolve(path), m) !== null ? resolve(path) : resolve(m + '/' + path);
      if (!existsSync(`${dir}/cgroup.procs`)) throw errnoError(2, 'cgroup-open', 'open', dir, 'not a cgroup directory');
      return new CGroup(new V2Driver(dir), basename(dir), false);
    }
    let rel = path;
    for (const h of layout.v1) {
      const r = relativeUnder(resolve(path), h.mount);
      if (r !== null) rel = r;
    }
    const dirs: Record<string, string> = {};
    for (const h of layout.v1) {
      const d = h.mount + (rel.startsWith('/') ? rel : '/' + rel).replace(/\/+$/, '');
      if (existsSync(`${d}/cgroup.procs`)) for (const c of h.controllers) dirs[c] = d;
    }
    if (!Object.keys(dirs).length) throw errnoError(2, 'cgroup-open', 'open', path, 'no hierarchy has this cgroup');
    return new CGroup(new V1Driver(dirs), basename(rel), false);
  }

  /** @internal used by create */
  static fromDriver(driver: Driver, name: string): CGroup {
    return new CGroup(driver, name, true);
  }

  /** The main directory (v2: the cgroup; v1: the memory hierarchy's, else the first). */
  get path(): string {
    const d = this.driver.dirs;
    return d.unified ?? d.memory ?? Object.values(d)[0];
  }

  /** Controller -> directory (v2: `{ unified: dir }`). */
  get paths(): Readonly<Record<string, string>> {
    return { ...this.driver.dirs };
  }

  /** The `cgroup.procs` files a parent writes a child's pid into (one per v1 hierarchy). */
  get procsPaths(): string[] {
    return this.driver.procsPaths();
  }

  /** How a spawn puts its child into this cgroup (see {@link CgroupPlacement}). */
  get placement(): CgroupPlacement {
    return this.driver.placement();
  }

  /** True once destroy() finished. */
  get destroyed(): boolean {
    return this.destroyedFlag;
  }

  private alive(what: string): void {
    if (this.destroyedFlag) throw errnoError(2, `cgroup-${what}`, what, this.path, 'the cgroup was destroyed');
  }

  /** Changes limits (validated first; same vocabulary as create). */
  async update(limits: Limits): Promise<void> {
    const r = validateLimits(limits, { cgroupOnly: true });
    this.alive('update');
    this.driver.apply(r);
  }

  /** Moves a process (never the caller) into this cgroup, in every hierarchy. */
  async addProcess(pid: number): Promise<void> {
    checkPid(pid);
    this.alive('attach');
    attach(this.driver.procsPaths(), pid);
  }

  /** The processes inside (tgids). */
  async pids(): Promise<number[]> {
    this.alive('pids');
    return this.driver.pids();
  }

  /** Usage figures; see {@link CgroupStats}. */
  async stats(): Promise<CgroupStats> {
    this.alive('stats');
    return this.driver.stats();
  }

  /** Limit counters: OOM kills and pids.max refusals. */
  async counters(): Promise<LimitCounters> {
    this.alive('stats');
    return this.driver.counters();
  }

  /** CPU time used so far, ms (cheap: one file read). */
  async cpuUsageMs(): Promise<number | null> {
    this.alive('stats');
    const us = this.driver.cpuUsageUs();
    return us === null ? null : us / 1000;
  }

  /** Stops every task (v2 `cgroup.freeze`, v1 freezer); resolves once frozen. */
  async freeze(): Promise<void> {
    this.alive('freeze');
    await this.driver.freeze();
  }

  /** Lets the tasks run again. */
  async thaw(): Promise<void> {
    this.alive('thaw');
    await this.driver.thaw();
  }

  /**
   * SIGKILLs every task (v2 `cgroup.kill`; v1: freeze, signal every task, thaw, until
   * empty) and resolves when the cgroup is empty.
   */
  async kill(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.destroyedFlag) return;
    await this.driver.kill(options.timeoutMs ?? 10000);
  }

  /**
   * Kills the tasks if asked, waits until empty, removes the directories. Idempotent; a
   * directory already gone counts as removed.
   */
  async destroy(options: CGroupDestroyOptions = {}): Promise<void> {
    if (this.destroyedFlag) return;
    const timeoutMs = options.timeoutMs ?? 10000;
    this.endWatch();
    if (options.kill) {
      await this.driver.kill(timeoutMs);
    } else {
      const end = Date.now() + timeoutMs;
      while (this.driver.populated()) {
        if (Date.now() > end) throw errnoError(16, 'cgroup-remove', 'rmdir', this.path, `still has tasks after ${timeoutMs} ms (pass { kill: true })`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await this.driver.remove();
    this.destroyedFlag = true;
    this.removeAllListeners('oom');
    this.removeAllListeners('empty');
  }

  /** `await using cg = await CGroup.create(...)`: owned groups are killed and removed, opened ones only unwatched. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.owned) await this.destroy({ kill: true });
    else this.endWatch();
  }

  private check(): void {
    if (this.destroyedFlag) return;
    let c: LimitCounters;
    let populated: boolean;
    try {
      c = this.driver.counters();
      populated = this.driver.populated();
    } catch {
      return;
    }
    const prev = this.lastCounters;
    this.lastCounters = c;
    if (prev && c.oomKill > prev.oomKill) this.emit('oom', { count: c.oomKill - prev.oomKill, oomKill: c.oomKill });
    if (this.lastPopulated && !populated) this.emit('empty');
    this.lastPopulated = populated;
  }

  private startWatch(): void {
    this.lastCounters = this.driver.counters();
    this.lastPopulated = this.driver.populated();
    this.stopWatch = this.driver.watch(() => this.check());
  }

  private endWatch(): void {
    const s = this.stopWatch;
    this.stopWatch = undefined;
    s?.();
  }
}

// ------------------------------------------------------------------ creation

/** Whether this process may make a cgroup in `dir` (write and search it). */
export function mayCreateIn(dir: string): boolean {
  try { accessSync(dir, constants.W_OK | constants.X_OK); return true; } catch { return false; }
}

/** `limits.memory, limits.pids` of the limits asked, or '' for none. */
function limitNames(limits: ResolvedLimits): string {
  return Object.entries(limits).filter(([, v]) => v !== undefined).map(([k]) => `limits.${k}`).join(', ');
}

/** What a user who may not make cgroups can do: on v2 delegation, on v1 a cgroupParent of their own. */
export function cgroupPermissionFix(v1: boolean, uid = process.geteuid?.() ?? 0): string {
  return v1
    ? `cgroup v1 has no delegation: pass cgroupParent naming a cgroup you own in each hierarchy (as root: mkdir it under each /sys/fs/cgroup/<controller>/ and chown it to uid ${uid}), or run as root`
    : 'run under a delegated subtree (`systemd-run --user --scope -p Delegate=yes <command>`, or a unit with Delegate=yes), or pass cgroupParent naming a cgroup directory you own';
}

/**
 * The error for a caller that may not make the cgroup: names the hierarchy it was refused in
 * (on v1, the one of the limit asked when that one refused too), the directory the user can
 * act on, and the fix. Never the cgroup nsbox meant to make.
 */
function deniedError(v1: boolean, dirs: { controllers: string[]; dir: string }[], limits: ResolvedLimits, errno = 13): NsboxError {
  const uid = process.geteuid?.() ?? 0;
  const asked = limitNames(limits);
  const want = v2ControllersFor(limits).map((c) => (v1 && c === 'io' ? 'blkio' : c));
  const first = dirs.find((d) => d.controllers.some((c) => want.includes(c))) ?? dirs[0]!;
  const others = dirs.filter((d) => d !== first).map((d) => d.controllers.join(','));
  const what = `cannot make a cgroup${asked ? ` for ${asked}` : ''}: uid ${uid} may not create cgroups in ${first.dir}`;
  const detail = v1
    ? `${what} (the ${first.controllers.join(',')} hierarchy${others.length ? `; nor in the ${others.join(', ')} hierarchies: nsbox makes its cgroup in each v1 hierarchy` : ''}). ${cgroupPermissionFix(true, uid)}`
    : `${what} (not delegated to this user): ${cgroupPermissionFix(false, uid)}`;
  const e = errnoError(errno, 'cgroup-create', 'mkdir', first.dir, detail);
  e.message = detail;
  return e;
}

/** A non-root caller's mkdir refused (EACCES, EPERM) as {@link deniedError}, else the error itself. */
function asDenied(e: unknown, v1: boolean, dirs: { controllers: string[]; dir: string }[], limits: ResolvedLimits): unknown {
  const errno = (e as NsboxError).errno;
  if (!(e instanceof NsboxError) || e.syscall !== 'mkdir' || (errno !== 13 && errno !== 1) || (process.geteuid?.() ?? 0) === 0) return e;
  const refused = dirs.filter((d) => !mayCreateIn(d.dir));
  return deniedError(v1, refused.length ? refused : dirs, limits, errno);
}

function parentDirV2(layout: CgroupLayout, parent: string | CGroup | undefined): string {
  const m = layout.v2Mount!;
  if (parent instanceof CGroup) return parent.path;
  if (typeof parent === 'string') return relativeUnder(resolve(parent), m) !== null ? resolve(parent) : resolve(m + '/' + parent);
  return layout.v2OwnDir ?? m;
}

function hasProcs(dir: string): boolean {
  return (readOpt(`${dir}/cgroup.procs`) ?? '').trim() !== '';
}

async function createV2(layout: CgroupLayout, name: string, limits: ResolvedLimits, parent: string | CGroup | undefined): Promise<CGroup> {
  const mount = layout.v2Mount!;
  let pdir = parentDirV2(layout, parent);
  if (!existsSync(`${pdir}/cgroup.procs`)) throw errnoError(2, 'cgroup-create', 'open', pdir, 'the parent is not a cgroup');
  const needed = v2ControllersFor(limits);
  const wanted = [...new Set([...needed, ...V2_WANTED])];
  // The caller's own cgroup usually holds processes (this one, at least), and then no
  // controller can be enabled for its children: use its parent, the closest place v2 allows.
  if (parent === undefined && pdir !== mount && hasProcs(pdir)) {
    const sub = (readOpt(`${pdir}/cgroup.subtree_control`) ?? '').split(/\s+/);
    if (!wanted.every((c) => sub.includes(c) || !(readOpt(`${pdir}/cgroup.controllers`) ?? '').includes(c))) pdir = dirname(pdir);
  }
  // a caller that may not make cgroups here: said before anything is tried
  const here = [{ controllers: ['cgroup2'], dir: pdir }];
  if ((process.geteuid?.() ?? 0) !== 0 && !mayCreateIn(pdir)) throw deniedError(false, here, limits);
  const failed = v2Enable(pdir, mount, wanted);
  for (const c of needed) {
    if (failed.has(c)) {
      const e = errnoError(19, `cgroup-${c}`, 'write', `${pdir}/cgroup.subtree_control`, `controller ${c}: ${failed.get(c)}`);
      e.message = `cgroup controller '${c}' cannot apply these limits: ${failed.get(c)}`;
      throw e;
    }
  }
  const dir = `${pdir}/${name}`;
  try { mkdirCg(dir); } catch (e) { throw asDenied(e, false, here, limits); }
  const drv = new V2Driver(dir);
  try {
    drv.apply(limits);
  } catch (e) {
    await drv.remove().catch(() => {});
    throw e;
  }
  return CGroup.fromDriver(drv, name);
}

async function createV1(layout: CgroupLayout, name: string, limits: ResolvedLimits, parent: string | CGroup | undefined): Promise<CGroup> {
  if (limits.memorySwap !== undefined && limits.memory === undefined) {
    throw new TypeError('limits.memorySwap needs limits.memory on cgroup v1 (memory.memsw.limit_in_bytes counts both)');
  }
  // parent directory per hierarchy
  const parents: { controllers: string[]; dir: string }[] = [];
  for (const h of layout.v1) {
    let p: string | undefined;
    if (parent instanceof CGroup) {
      p = h.controllers.map((c) => parent.paths[c]).find(Boolean);
      if (!p) continue; // the parent group has no directory in this hierarchy
    } else if (typeof parent === 'string') {
      let rel: string | null = null;
      for (const x of layout.v1) rel ??= relativeUnder(resolve(parent), x.mount);
      rel ??= parent;
      p = (h.mount + (rel.startsWith('/') ? rel : '/' + rel)).replace(/\/+$/, '');
    } else {
      p = h.ownDir;
    }
    if (!existsSync(`${p}/cgroup.procs`)) throw errnoError(2, 'cgroup-create', 'open', p, `the parent is not a cgroup in the ${h.controllers.join(',')} hierarchy`);
    parents.push({ controllers: h.controllers, dir: p });
  }
  // a caller that may not make cgroups in some hierarchy: said before any directory is made
  if ((process.geteuid?.() ?? 0) !== 0) {
    const refused = parents.filter((p) => !mayCreateIn(p.dir));
    if (refused.length) throw deniedError(true, refused, limits);
  }
  const made: string[] = [];
  const dirs: Record<string, string> = {};
  const drv = new V1Driver(dirs);
  try {
    for (const p of parents) {
      const dir = `${p.dir}/${name}`;
      mkdirCg(dir);
      made.push(dir);
      for (const c of p.controllers) dirs[c] = dir;
      if (p.controllers.includes('cpuset')) {
        // a v1 cpuset starts empty and refuses tasks until cpus and mems are set
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          const own = f === 'cpuset.cpus' ? limits.cpuset : limits.cpusetMems;
          const v = own ?? (readOpt(`${p.dir}/${f}`) ?? '').trim();
          if (v) {
            try {
              writeFileSync(`${dir}/${f}`, v);
            } catch (e) {
              throw errnoError(Math.abs((e as NodeJS.ErrnoException).errno ?? 5), 'cgroup-cpuset', 'write', `${dir}/${f}`, `controller cpuset: '${v}' refused`);
            }
          }
        }
      }
    }
    drv.apply(limits);
  } catch (e) {
    for (const d of made.reverse()) await removeQuiet(d);
    throw asDenied(e, true, parents, limits);
  }
  return CGroup.fromDriver(drv, name);
}

async function removeQuiet(dir: string): Promise<void> {
  try {
    rmdirSync(dir);
  } catch {
    /* best effort on the failure path */
  }
}

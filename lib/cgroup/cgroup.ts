// CGroup: one interface over the v1 and v2 drivers, detected once.
import { EventEmitter } from 'node:events';
import { accessSync, constants, existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { rmdir as rmdirAsync } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { errnoError, fromNodeError, NsboxError } from '../errors.js';
import { detectLayout, forgetLayout, type CgroupMode, type CgroupLayout } from './detect.js';
import {
  V1Driver, V2Driver, V2_WANTED, attach, mkdirCg, recordLimitWrites, rmdirRetry, readOpt, readPids, v2ControllersFor, v2Enable,
  type CgroupStats, type Driver, type LimitCounters, type CgroupPlacement,
} from './drivers.js';
import { hugePageSizes, validateLimits, type Limits, type ResolvedLimits } from './limits.js';
import { cgNative } from './native.js';

export type { CgroupStats } from './drivers.js';
export type { CgroupMode } from './detect.js';

/** Options of {@link CGroup.create}. */
export interface CGroupCreateOptions {
  /**
   * Where to create it. Default: the caller's own cgroup (per hierarchy on v1). On v2, when
   * the caller's cgroup holds processes (so the no-internal-processes rule forbids enabling
   * controllers in it) the group is created beside it, in the nearest ancestor without
   * processes that this caller may use (see {@link v2DefaultParent}). A string is a cgroup
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
  /** createAt: the directories nsbox made for it, deepest first (the leaf among them unless it existed) */
  private made: string[] | undefined;

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
   * The controllers nsbox can apply limits with here: v2, those of the cgroup2 root; v1 and
   * hybrid, those of the v1 hierarchies (`devices`, `hugetlb`, `net_cls`, `net_prio` where
   * mounted as v1).
   */
  static controllers(): string[] {
    return availableControllers();
  }

  /** The huge page sizes of this host as `limits.hugetlb` names them (`'2MB'`, `'1GB'`). */
  static hugePageSizes(): string[] {
    return hugePageSizes();
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
    for (const h of [...layout.v1, ...(layout.v1Devices ? [layout.v1Devices] : []), ...Object.values(layout.v1Extra ?? {})]) {
      const d = h.mount + (rel.startsWith('/') ? rel : '/' + rel).replace(/\/+$/, '');
      if (existsSync(`${d}/cgroup.procs`)) for (const c of h.controllers) dirs[c] = d;
    }
    if (!Object.keys(dirs).length) throw errnoError(2, 'cgroup-open', 'open', path, 'no hierarchy has this cgroup');
    return new CGroup(new V1Driver(dirs), basename(rel), false);
  }

  /**
   * cgroup v2: moves this process (with `all`, every process of its cgroup) into a new child
   * leaf `<own cgroup>/<name>` (default `leaf`), so that its cgroup holds no process and nsbox
   * can make sandboxes' cgroups beside the leaf. Needed where the caller's cgroup is the top of
   * what it may use and holds processes: inside a container (the root of its cgroup namespace,
   * as Docker and Kubernetes start a service) and in a systemd service with `Delegate=yes`.
   * nsbox never does this by itself: a limited spawn there fails with an NsboxError naming
   * this call. In the host's root cgroup (which may hold processes) nothing moves. Resolves to
   * the leaf (opened, not owned).
   */
  static async enterLeaf(options: { name?: string; all?: boolean } = {}): Promise<CGroup> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const name = options.name ?? 'leaf';
    if (typeof name !== 'string' || !NAME_RE.test(name) || name === '.' || name === '..') throw new TypeError(`options.name '${String(name)}' is not a valid cgroup name (1-200 of A-Z a-z 0-9 . _ @ : + -)`);
    if (options.all !== undefined && typeof options.all !== 'boolean') throw new TypeError('options.all must be a boolean');
    const layout = detectLayout();
    if (layout.mode !== 'v2') {
      const e = errnoError(95, 'cgroup-leaf', 'open', layout.v2Mount ?? '/sys/fs/cgroup', `this host mounts cgroups as ${layout.mode}`);
      e.message = `CGroup.enterLeaf is for cgroup v2 only: this host mounts cgroups as ${layout.mode === 'hybrid' ? 'hybrid (v1 controllers)' : 'v1'}, where a process's cgroup may hold processes and children alike`;
      throw e;
    }
    const mount = layout.v2Mount!;
    const own = layout.v2OwnDir ?? mount;
    if (own === mount && isTrueRoot(own)) return CGroup.open(own);
    const leaf = `${own}/${name}`;
    if (!existsSync(`${leaf}/cgroup.procs`)) mkdirCg(leaf);
    const move = (pid: number) => {
      try {
        writeFileSync(`${leaf}/cgroup.procs`, String(pid));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ESRCH') return; // gone meanwhile
        throw fromNodeError(e, 'cgroup-leaf');
      }
    };
    move(process.pid);
    // the others may fork meanwhile: a few passes until the cgroup is empty
    for (let i = 0; options.all && i < 10; i++) {
      const left = readPids(`${own}/cgroup.procs`);
      if (!left.length) break;
      left.forEach(move);
    }
    forgetLayout();
    return CGroup.open(leaf);
  }

  /** @internal used by create */
  static fromDriver(driver: Driver, name: string): CGroup {
    return new CGroup(driver, name, true);
  }

  /**
   * A cgroup at exactly `path` (a cgroup path such as `/machine/ctr1`, the same in every v1
   * hierarchy, or a directory under a cgroup mount), as OCI's `linux.cgroupsPath` asks: the
   * sandbox's cgroup *is* that path, not a child made inside it. The path is the caller's, so
   * it carries no nsbox name: nsbox makes the directories missing on the way (on v1 a new
   * cpuset level gets its parent's cpus and mems; on v2 the controllers the limits need are
   * enabled down to it), applies `limits`, and `destroy()` removes exactly the directories it
   * made, deepest first (a parent that got other children meanwhile stays). An existing
   * directory is used when it holds no process (and stays on destroy); one with processes is
   * an NsboxError (EBUSY). `madeDirs` lists what nsbox made. Root, or a caller who may make
   * cgroups there. `intent(dirs)`, when given, is called with the directories about to be made
   * (deepest first) before the first of them is, to record them where a cleanup after a crash
   * finds them (Sandbox.create writes them into its state file for `gc`).
   */
  static async createAt(path: string, options: { limits?: Limits; intent?: (dirs: readonly string[]) => void } = {}): Promise<CGroup> {
    if (typeof path !== 'string' || path === '') throw new TypeError('CGroup.createAt: path must be a non-empty string');
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (path.split('/').some((p) => p === '..' || p === '.')) throw new TypeError(`CGroup.createAt: path '${path}' may not contain '.' or '..'`);
    const limits = validateLimits(options.limits, { cgroupOnly: true });
    const layout = detectLayout();
    const mounts = layout.mode === 'v2' ? [layout.v2Mount!] : v1Hierarchies(layout, limits).map((h) => h.mount);
    let rel: string | null = null;
    for (const m of mounts) rel ??= relativeUnder(resolve(path), m);
    rel = (rel ?? path).replace(/^\/*/, '/').replace(/\/+$/, '');
    if (rel === '' || rel === '/') throw new TypeError(`CGroup.createAt: path '${path}' is a hierarchy's root`);
    for (const part of rel.split('/').filter(Boolean)) if (!NAME_RE.test(part)) throw new TypeError(`CGroup.createAt: '${part}' of path '${path}' is not a valid cgroup name (1-200 of A-Z a-z 0-9 . _ @ : + -)`);
    if (options.intent !== undefined && typeof options.intent !== 'function') throw new TypeError('CGroup.createAt: options.intent must be a function');
    const made: string[] = [];
    const undo = async () => { for (const d of [...made].reverse()) await removeQuiet(d); };
    // what is missing of the path in every hierarchy, deepest first: handed to `intent` before
    // the first mkdir, so that a record of it (the sandbox's state file) exists before any of
    // them does, and gc finds them after a crash in between
    if (options.intent) {
      const missing: string[] = [];
      for (const m of mounts) {
        let dir = m;
        for (const part of rel.split('/').filter(Boolean)) {
          dir = `${dir}/${part}`;
          if (!existsSync(`${dir}/cgroup.procs`)) missing.push(dir);
        }
      }
      options.intent(missing.reverse());
    }
    // mkdir -p below `mount`; `level(parent, dir)` runs before each new directory is made
    const makePath = (mount: string, level: (parent: string) => void): string => {
      let dir = mount;
      for (const part of rel!.split('/').filter(Boolean)) {
        const parent = dir;
        dir = `${dir}/${part}`;
        if (existsSync(`${dir}/cgroup.procs`)) continue;
        level(parent);
        mkdirCg(dir);
        made.push(dir);
        if (existsSync(`${dir}/cpuset.cpus`)) {
          for (const f of ['cpuset.cpus', 'cpuset.mems']) {
            if ((readOpt(`${dir}/${f}`) ?? '').trim() !== '') continue;
            const v = (readOpt(`${parent}/${f}`) ?? '').trim();
            if (v) writeFileSync(`${dir}/${f}`, v);
          }
        }
      }
      if (readPids(`${dir}/cgroup.procs`).length) throw errnoError(16, 'cgroup-create', 'open', dir, 'the cgroup holds processes (a sandbox\'s cgroupPath must be empty)');
      return dir;
    };
    try {
      let drv: Driver;
      let name: string;
      if (layout.mode === 'v2') {
        const wanted = [...new Set([...v2ControllersFor(limits), ...V2_WANTED])];
        const needed = v2ControllersFor(limits);
        const dir = makePath(layout.v2Mount!, () => {});
        // the controllers, enabled from the leaf's parent up (v2Enable walks up as needed)
        const failed = v2Enable(dirname(dir), layout.v2Mount!, wanted);
        for (const c of needed) {
          if (failed.has(c)) {
            const e = errnoError(19, `cgroup-${c}`, 'write', `${dirname(dir)}/cgroup.subtree_control`, `controller ${c}: ${failed.get(c)}`);
            e.message = `cgroup controller '${c}' cannot apply these limits: ${failed.get(c)}`;
            throw e;
          }
        }
        drv = new V2Driver(dir);
        name = basename(dir);
      } else {
        const dirs: Record<string, string> = {};
        for (const h of v1Hierarchies(layout, limits)) {
          const dir = makePath(h.mount, () => {});
          for (const c of h.controllers) dirs[c] = dir;
        }
        drv = new V1Driver(dirs);
        name = basename(rel);
      }
      if (limits.cpuset !== undefined || limits.cpusetMems !== undefined || Object.keys(limits).length) drv.apply(limits);
      const cg = new CGroup(drv, name, true);
      cg.made = made.reverse();
      return cg;
    } catch (e) {
      await undo();
      throw e;
    }
  }

  /** The directories `createAt` made (deepest first), removed by destroy; undefined for a cgroup of `create`/`open`. */
  get madeDirs(): readonly string[] | undefined {
    return this.made ? [...this.made] : undefined;
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

  /** @internal Writes limits validated already (a spare taken for a sandbox: lib/cgroup/spares.ts). */
  _apply(r: ResolvedLimits, fresh = false): void {
    this.alive('update');
    this.driver.apply(r, fresh);
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

  /** @internal The figures a spawn's result reports, and no more (fewer files to read), with the limit counters (the OOM kill count read once for both). */
  async _finalFigures(): Promise<{ stats: CgroupStats; counters: LimitCounters }> {
    this.alive('stats');
    const stats = this.driver.stats(true);
    return { stats, counters: this.driver.counters(stats) };
  }

  /** @internal Whether the cgroup is empty, from one file (see Driver.emptyAtAGlance); a removed one is. */
  _emptyAtAGlance(): boolean {
    return this.destroyedFlag || this.driver.emptyAtAGlance();
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
    if (this.made) await removeMade(this.made);
    else await this.driver.remove();
    this.destroyedFlag = true;
    this.removeAllListeners('oom');
    this.removeAllListeners('empty');
  }

  /**
   * @internal Removes a cgroup already seen empty (a settled sandbox's: lib/cgroup/sandbox.ts),
   * without the kill and the look into every hierarchy that destroy({ kill: true }) makes first:
   * rmdir itself refuses a cgroup that has a task, and then that full destroy runs.
   */
  async _removeEmpty(): Promise<void> {
    if (this.destroyedFlag) return;
    this.endWatch();
    try {
      if (this.made) await removeMade(this.made);
      else await this.driver.remove();
    } catch {
      await this.destroy({ kill: true });
      return;
    }
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

function hasProcs(dir: string): boolean {
  return (readOpt(`${dir}/cgroup.procs`) ?? '').trim() !== '';
}

/** The host's root cgroup (no `cgroup.type`): it may hold processes and enable controllers alike. */
function isTrueRoot(dir: string): boolean {
  return !existsSync(`${dir}/cgroup.type`);
}

const isRootUser = () => (process.geteuid?.() ?? 0) === 0;

function mayWrite(file: string): boolean {
  try { accessSync(file, constants.W_OK); return true; } catch { return false; }
}

/** The deepest directory that contains both `a` and `b`. */
function commonAncestor(a: string, b: string): string {
  const x = a.split('/');
  const y = b.split('/');
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return x.slice(0, i).join('/') || '/';
}

/** Whether the cgroup2 mount at `mount` is read-only (containers usually get it so). */
function readOnlyMount(mount: string): boolean {
  try {
    // the last mount on that point is the one in sight
    const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === mount && / - cgroup2 /.test(l)).pop();
    return !!line && line.split(' ')[5]!.split(',').includes('ro');
  } catch {
    return false;
  }
}

/** Why a v2 sandbox cgroup cannot be made where nsbox would make it, and what to do. */
export interface V2Refusal {
  errno: number;
  /** the directory or file the user can act on */
  path: string;
  /** what blocks it, in words */
  cause: string;
  /** what to run or change */
  fix: string;
}

const DELEGATE_FIX = 'start the service inside a delegated subtree: `systemd-run --user --scope -p Delegate=yes <command>` (systemd moves it there), or a unit with Delegate=yes';
const LEAF_FIX = 'call `await CGroup.enterLeaf({ all: true })` once at startup (it moves the processes of that cgroup into a child leaf, as docker:dind\'s entrypoint does; nsbox never moves them by itself), or pass cgroupParent naming a cgroup without processes, or spawn without cgroup limits';

/** The user's systemd user manager's delegated cgroup (`user@UID.service`), when it exists. */
function userService(mount: string, uid: number): string | undefined {
  const d = `${mount}/user.slice/user-${uid}.slice/user@${uid}.service`;
  return existsSync(`${d}/cgroup.procs`) ? d : undefined;
}

/** A non-root caller may not use `dir` (or move processes there from `own`): why, and the fix. */
function notDelegated(mount: string, own: string, dir: string): V2Refusal {
  const uid = process.geteuid?.() ?? 0;
  // its own cgroup is delegated to it, but holds processes: a leaf makes room
  if (own !== dir && mayCreateIn(own) && mayWrite(`${own}/cgroup.procs`)) {
    return {
      errno: 16, path: `${own}/cgroup.procs`,
      cause: `uid ${uid}'s cgroup ${own} is delegated to it but holds processes, so cgroup v2 lets no controller be enabled below it (no-internal-processes rule), and uid ${uid} may not create cgroups beside it in ${dir}`,
      fix: LEAF_FIX,
    };
  }
  const svc = userService(mount, uid);
  if (svc && mayCreateIn(svc) && !own.startsWith(svc + '/')) {
    const ca = commonAncestor(own, svc);
    return {
      errno: 13, path: `${ca}/cgroup.procs`,
      cause: `uid ${uid} may create cgroups in ${svc} (delegated to it by systemd), but may not put processes there from ${own}: cgroup v2 moves a process only for a writer of the common ancestor's ${ca}/cgroup.procs, which is not delegated (a login session's scope is root's)`,
      fix: `${DELEGATE_FIX}; or pass cgroupParent naming a cgroup under the caller's own delegated cgroup`,
    };
  }
  return {
    errno: 13, path: dir,
    cause: `uid ${uid} may not create cgroups in ${dir} (not delegated to this user)`,
    fix: `${DELEGATE_FIX}; or pass cgroupParent naming a cgroup directory you own`,
  };
}

/**
 * Where a v2 sandbox cgroup goes by default, or why it cannot go anywhere. The caller's own
 * cgroup when it holds no process (or is the host's root cgroup); otherwise beside the caller,
 * in the nearest ancestor without processes (a systemd scope's slice, e.g.
 * `user@UID.service/app.slice` for a caller in `app.slice/x.scope`). A non-root caller must be
 * able to create cgroups there and to write its `cgroup.procs` (cgroup v2's rule for moving a
 * process: the common ancestor of source and target). Decided from the tree as it is, before
 * any controller is enabled.
 */
export function v2DefaultParent(layout: CgroupLayout): { dir: string } | V2Refusal {
  const mount = layout.v2Mount!;
  const own = layout.v2OwnDir ?? mount;
  const root = isRootUser();
  if (readOnlyMount(mount)) {
    return {
      errno: 30, path: mount,
      cause: `the cgroup file system at ${mount} is mounted read-only (container runtimes mount it so: Docker unless --privileged, Kubernetes always)`,
      fix: 'spawn without cgroup limits (set the container\'s own limits instead), or give the container a writable cgroup2 mount of its cgroup namespace (Docker: --privileged, or --cgroupns=private with /sys/fs/cgroup remounted rw by a privileged entrypoint; Podman: --systemd=always)',
    };
  }
  const free = (d: string) => !hasProcs(d) || (d === mount && isTrueRoot(d));
  const usable = (d: string) => root || (mayCreateIn(d) && mayWrite(`${d}/cgroup.procs`));
  if (free(own)) return usable(own) ? { dir: own } : notDelegated(mount, own, own);
  let d = own;
  for (;;) {
    if (d === mount) {
      const busy = readPids(`${d}/cgroup.procs`);
      return {
        errno: 16, path: `${d}/cgroup.subtree_control`,
        cause: `${d === own ? "the caller's cgroup" : 'the cgroup'} ${d} is the root of its cgroup namespace (a container) and holds processes (${busy.slice(0, 5).join(', ')}${busy.length > 5 ? ', ...' : ''}), so cgroup v2 lets no controller be enabled for a sandbox's cgroup in it (no-internal-processes rule) and nothing above it is visible`,
        fix: LEAF_FIX,
      };
    }
    d = dirname(d);
    if (!usable(d)) return notDelegated(mount, own, d);
    if (free(d)) return { dir: d };
  }
}

/** A {@link V2Refusal} as the NsboxError a limited spawn or CGroup.create gives. */
function refusalError(r: V2Refusal, limits: ResolvedLimits): NsboxError {
  const asked = limitNames(limits);
  const msg = `cannot make a cgroup${asked ? ` for ${asked}` : ''}: ${r.cause}. Fix: ${r.fix}`;
  const e = errnoError(r.errno, 'cgroup-create', r.errno === 16 ? 'write' : 'mkdir', r.path, msg);
  e.message = msg;
  return e;
}

function parentDirV2(layout: CgroupLayout, parent: string | CGroup | undefined): string {
  const m = layout.v2Mount!;
  if (parent instanceof CGroup) return parent.path;
  if (typeof parent === 'string') return relativeUnder(resolve(parent), m) !== null ? resolve(parent) : resolve(m + '/' + parent);
  return layout.v2OwnDir ?? m;
}

/** v2: the directory a cgroup named `name` goes in (the checks of {@link CGroup.create}, before anything is made). */
function v2ParentDir(layout: CgroupLayout, name: string, limits: ResolvedLimits, parent: string | CGroup | undefined): string {
  const mount = layout.v2Mount!;
  let pdir: string;
  if (parent === undefined) {
    // placement is decided before any controller is enabled (enabling them changes what the
    // caller's cgroup lists, which once sent the first spawn in a fresh subtree into it)
    const where = v2DefaultParent(layout);
    if (!('dir' in where)) throw refusalError(where, limits);
    pdir = where.dir;
  } else {
    pdir = parentDirV2(layout, parent);
    if (!existsSync(`${pdir}/cgroup.procs`)) throw errnoError(2, 'cgroup-create', 'open', pdir, 'the parent is not a cgroup');
    if (!isRootUser()) {
      const own = layout.v2OwnDir ?? mount;
      if (!mayCreateIn(pdir)) throw refusalError(notDelegated(mount, own, pdir), limits);
      // cgroup v2 puts the child there only for a writer of the common ancestor's cgroup.procs
      const ca = commonAncestor(own, `${pdir}/${name}`);
      if (!mayWrite(`${ca}/cgroup.procs`)) {
        const r = notDelegated(mount, own, pdir);
        throw refusalError(r.errno === 13 && r.path.endsWith('/cgroup.procs') ? r : {
          errno: 13, path: `${ca}/cgroup.procs`,
          cause: `cgroupParent ${pdir} is not reachable from the caller's cgroup ${own}: cgroup v2 moves a process only for a writer of the common ancestor's ${ca}/cgroup.procs`,
          fix: `name a cgroupParent under a cgroup you own that contains the caller's own cgroup, or ${DELEGATE_FIX}`,
        }, limits);
      }
    }
  }
  return pdir;
}

async function createV2(layout: CgroupLayout, name: string, limits: ResolvedLimits, parent: string | CGroup | undefined): Promise<CGroup> {
  const mount = layout.v2Mount!;
  const pdir = v2ParentDir(layout, name, limits, parent);
  const needed = v2ControllersFor(limits);
  const wanted = [...new Set([...needed, ...V2_WANTED])];
  const here = [{ controllers: ['cgroup2'], dir: pdir }];
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

/** Controllers of {@link V1_EXTRA} a limit needs, with the limit's name. */
const V1_EXTRA_FOR: Array<[keyof ResolvedLimits, string]> = [['hugetlb', 'hugetlb'], ['netClassId', 'net_cls'], ['netPriorities', 'net_prio']];

/**
 * The v1 hierarchies a cgroup gets a directory in: nsbox's, devices for device rules, and
 * hugetlb, net_cls, net_prio for a limit of theirs (a hierarchy mounted with one of nsbox's
 * controllers gets one directory, with the controllers of both).
 */
function v1Hierarchies(layout: CgroupLayout, limits: ResolvedLimits): CgroupLayout['v1'] {
  const out = [...layout.v1];
  if (limits.devices !== undefined) {
    if (!layout.v1Devices) throw errnoError(19, 'cgroup-devices', 'open', '/sys/fs/cgroup/devices', 'device rules need the cgroup v1 devices controller, and no hierarchy has it mounted');
    out.push(layout.v1Devices);
  }
  for (const [key, c] of V1_EXTRA_FOR) {
    if (limits[key] === undefined) continue;
    const h = layout.v1Extra?.[c];
    if (!h) {
      const e = errnoError(19, `cgroup-${c}`, 'open', `/sys/fs/cgroup/${c}`, `no cgroup v1 hierarchy has the ${c} controller mounted`);
      e.message = `limits.${key}: cgroup controller '${c}' cannot apply this limit: no cgroup v1 hierarchy has it mounted${layout.mode === 'hybrid' ? ' (on this hybrid host it may be bound to the cgroup2 hierarchy, which nsbox does not place cgroups in)' : ''}`;
      throw e;
    }
    const i = out.findIndex((x) => x.mount === h.mount);
    if (i < 0) out.push(h);
    else if (!out[i]!.controllers.includes(c)) out[i] = { ...out[i]!, controllers: [...new Set([...out[i]!.controllers, ...h.controllers])] };
  }
  return out;
}

/**
 * The cgroup controllers nsbox can apply limits with on this host: v2, those of the cgroup2
 * root; v1 and hybrid, those of the v1 hierarchies nsbox uses (with devices, hugetlb,
 * net_cls, net_prio where mounted as v1).
 */
export function availableControllers(): string[] {
  const layout = detectLayout();
  if (layout.mode === 'v2') return (readOpt(`${layout.v2Mount}/cgroup.controllers`) ?? '').trim().split(/\s+/).filter(Boolean);
  const c = new Set(layout.v1.flatMap((h) => h.controllers));
  if (layout.v1Devices) c.add('devices');
  for (const k of Object.keys(layout.v1Extra ?? {})) c.add(k);
  return [...c];
}

function checkV1Limits(limits: ResolvedLimits): void {
  if (limits.memorySwap !== undefined && limits.memory === undefined) {
    throw new TypeError('limits.memorySwap needs limits.memory on cgroup v1 (memory.memsw.limit_in_bytes counts both)');
  }
}

/** v1: the parent directory per hierarchy (the checks of {@link CGroup.create}, before anything is made). */
function v1Parents(layout: CgroupLayout, limits: ResolvedLimits, parent: string | CGroup | undefined): { controllers: string[]; dir: string }[] {
  const parents: { controllers: string[]; dir: string }[] = [];
  for (const h of v1Hierarchies(layout, limits)) {
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
  return parents;
}

async function createV1(layout: CgroupLayout, name: string, limits: ResolvedLimits, parent: string | CGroup | undefined): Promise<CGroup> {
  checkV1Limits(limits);
  const parents = v1Parents(layout, limits, parent);
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

/**
 * The directories `createAt` made, deepest first: the leaves (of every hierarchy) waiting for
 * the kernel as a sandbox's own cgroup does; a parent that has other children now is left.
 */
export async function removeMade(dirs: readonly string[]): Promise<void> {
  for (const d of dirs) {
    if (hasChildDir(d)) continue;
    await rmdirRetry(d);
  }
}

function hasChildDir(d: string): boolean {
  try { return readdirSync(d, { withFileTypes: true }).some((e) => e.isDirectory()); } catch { return false; }
}

/** A spare's limit writes were refused (see {@link makeSpareCgroup}); nothing of it is left. */
export class SpareLimitsRefused extends Error {}

/**
 * @internal An empty cgroup made ahead for a later sandbox (the spare pool, lib/cgroup/spares.ts):
 * made where {@link CGroup.create} would make it (the caller's own cgroup per hierarchy, or
 * `parent`), with the same checks; its directories are made (and a v1 cpuset's cpus and mems
 * copied from its parent) by one job on the thread pool (the addon's `cgroupBatch`). With
 * `limits` whose writes {@link recordLimitWrites} can list (and, on v2, whose controllers the
 * parent gives), the same job writes them after the mkdirs, in the order `apply(limits, true)`
 * writes them: `written` says so. Writes refused reject with {@link SpareLimitsRefused}, after
 * the directories are removed. v2: `controllers` are those its parent gives it. `before` gets
 * the directories' paths before any is made, for the caller's teardown record: a thread that
 * ends while the job runs still removes them (Node finishes a thread's thread-pool work before
 * its cleanup hooks run, but runs no JS after them).
 */
export async function makeSpareCgroup(name: string, parent: string | undefined, before: (dirs: string[]) => void, limits?: ResolvedLimits): Promise<{ cgroup: CGroup; controllers: Set<string> | undefined; written: boolean }> {
  const layout = detectLayout();
  const none: ResolvedLimits = {};
  const ops: string[] = [];
  let drv: Driver;
  let controllers: Set<string> | undefined;
  let dirs: string[];
  if (layout.mode === 'v2') {
    const pdir = v2ParentDir(layout, name, none, parent);
    const failed = v2Enable(pdir, layout.v2Mount!, V2_WANTED);
    controllers = new Set(V2_WANTED.filter((c) => !failed.has(c)));
    dirs = [`${pdir}/${name}`];
    ops.push('m', dirs[0]!, '');
    drv = new V2Driver(dirs[0]!);
  } else {
    const byCtrl: Record<string, string> = {};
    const parents = v1Parents(layout, none, parent);
    dirs = parents.map((p) => `${p.dir}/${name}`);
    for (const p of parents) {
      const dir = `${p.dir}/${name}`;
      ops.push('m', dir, '');
      for (const c of p.controllers) byCtrl[c] = dir;
      // a v1 cpuset starts empty and refuses tasks until cpus and mems are set: the parent's
      if (p.controllers.includes('cpuset')) for (const f of ['cpuset.cpus', 'cpuset.mems']) ops.push('c', `${dir}/${f}`, `${p.dir}/${f}`);
    }
    drv = new V1Driver(byCtrl);
  }
  const made = ops.length / 3;
  let writes: Array<[string, string]> | undefined;
  if (limits && Object.keys(limits).length && spareFitsQuiet(limits, controllers)) {
    try { writes = recordLimitWrites(drv, limits); } catch { writes = undefined; }
    for (const [path, value] of writes ?? []) ops.push('w', path, value);
  }
  before(dirs);
  let failedAt: number, errno: number;
  try {
    [failedAt, errno] = await cgNative().cgroupBatch(ops);
  } catch (e) {
    await Promise.all(dirs.map((d) => rmdirAsync(d).catch(() => {})));
    throw e;
  }
  if (failedAt >= 0) {
    // the directories the job made: every 'm' before the failed op
    const mk = [];
    for (let i = 0; i < Math.min(failedAt, made); i++) if (ops[i * 3] === 'm') mk.push(ops[i * 3 + 1]!);
    await Promise.all(mk.map((d) => rmdirAsync(d).catch(() => {})));
    const path = ops[failedAt * 3 + 1]!;
    if (failedAt >= made) throw new SpareLimitsRefused(`${path}: ${errno}`);
    throw errnoError(errno, 'cgroup-create', ops[failedAt * 3] === 'm' ? 'mkdir' : 'write', path);
  }
  return { cgroup: CGroup.fromDriver(drv, name), controllers, written: writes !== undefined };
}

function spareFitsQuiet(limits: ResolvedLimits, controllers: Set<string> | undefined): boolean {
  try { return spareFits(limits, controllers); } catch { return false; }
}

/**
 * @internal Whether a spare (see {@link makeSpareCgroup}) can take `limits` as a cgroup made by
 * {@link CGroup.create} would: on v2, every controller they need is given by its parent.
 * Throws what create() throws for limits the host never takes (v1 memorySwap without memory).
 */
export function spareFits(limits: ResolvedLimits, controllers: Set<string> | undefined): boolean {
  // device rules: v1 needs the devices hierarchy, which a spare has no directory in; so do the
  // limits of v1's hugetlb, net_cls and net_prio hierarchies
  if (limits.devices !== undefined || limits.hugetlb !== undefined || limits.netClassId !== undefined || limits.netPriorities !== undefined) return false;
  if (controllers === undefined) {
    checkV1Limits(limits);
    return true;
  }
  return v2ControllersFor(limits).every((c) => controllers.has(c));
}

async function removeQuiet(dir: string): Promise<void> {
  try {
    rmdirSync(dir);
  } catch {
    /* best effort on the failure path */
  }
}

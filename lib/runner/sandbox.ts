// A long-lived sandbox: one holder process (pid 1 of the sandbox) keeps its namespaces,
// cgroup, root filesystem and network alive; exec() runs more programs inside it by joining
// the holder's namespaces and cgroup through spawnIsolated's `join` and `cgroup` options.
// The Sandbox owns its cgroup, its container (image sandboxes) and its state file; the
// holder's spawnIsolated owns the network (released when the holder exits).
import { processStart } from '../net/ipam.js';
import { ownerTag, selfOwnerMark } from '../owner.js';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { SIGNALS } from '../util/sys.js';
import { spawnIsolated, IsolatedProcess } from '../spawn/spawn.js';
import type { IsolatedResult, NamespaceType, SpawnIsolatedOptions, Verdict } from '../plan/options.js';
import { Namespace } from '../ns/namespace.js';
import { CGroup } from '../cgroup/cgroup.js';
import { spawnLimitKeys, validateLimits, type Limits, type SandboxLimits } from '../cgroup/limits.js';
import type { CgroupStats } from '../cgroup/drivers.js';
import { LayerStore, refString, type Container } from '../fs/store.js';
import { applyImageConfig } from '../spawn/layers/image.js';
import { errnoError, NsboxError } from '../errors.js';
import { buildPlan, idBlockSource, realHost, sandboxIdMaps, signalNumber, wantsIdBlock } from '../plan/index.js';
import { acquireIdBlock, type IdBlockClaim } from '../ns/idblocks.js';
import { onTeardown } from '../teardown.js';
import { bool, checkOptions, fail, isObject } from '../util/validate.js';
import { defaultStateDir } from './statedir.js';

export { DEFAULT_STATE_DIR, defaultStateDir } from './statedir.js';

/**
 * The program that holds a sandbox open: a shell loop that sleeps. With a new pid namespace
 * nsbox-init is pid 1 above it (the spawn core's `init`, default on): it reaps the orphans of
 * exec'd processes and forwards SIGTERM, which ends the loop. With `init: false` the loop is
 * pid 1 itself: the trap makes it exit on SIGTERM and `wait` reaps what is reparented to it.
 */
export const DEFAULT_HOLDER = { file: '/bin/sh', args: ['-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done'] };

const JOINABLE: NamespaceType[] = ['user', 'mount', 'pid', 'net', 'ipc', 'uts', 'cgroup'];
const PROC_NS: Record<string, string> = { user: 'user', mount: 'mnt', pid: 'pid', net: 'net', ipc: 'ipc', uts: 'uts', cgroup: 'cgroup' };

/** Spawn options a sandbox is made with; they apply to the holder and (where they make sense) to every exec. */
export type SandboxTemplate = Omit<SpawnIsolatedOptions,
  'stdio' | 'input' | 'encoding' | 'buffer' | 'all' | 'tty' | 'timeout' | 'signal' | 'killSignal' | 'forceKillAfterMs' | 'join' | 'cgroup' | 'onOutputLimit' | 'parentDeathSignal'>;

/** Options of {@link Sandbox.create}. */
export interface SandboxOptions extends SandboxTemplate {
  /** Name of the sandbox (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64). Default `nsbox-<12 hex>`. */
  id?: string;
  /** The holder program (pid 1). Default {@link DEFAULT_HOLDER}. `stdio` defaults to `'ignore'`. */
  holder?: { file: string; args?: string[]; stdio?: SpawnIsolatedOptions['stdio'] };
  /**
   * Let the sandbox outlive this process (no parent-death signal on the holder; its exit
   * watch does not keep the event loop alive). Another process finds it with
   * {@link Sandbox.list} and takes it over with {@link Sandbox.attach}. Default `false`.
   */
  keepAlive?: boolean;
  /**
   * Directory of the state files. Default {@link defaultStateDir}: `/run/nsbox/sandboxes` for
   * root, else `$XDG_RUNTIME_DIR/nsbox/sandboxes` or `/tmp/nsbox-<uid>/sandboxes`.
   */
  stateDir?: string;
}

/** Options of {@link Sandbox.exec}: what may differ between the processes of one sandbox. */
export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  uid?: number;
  gid?: number;
  groups?: number[];
  stdio?: SpawnIsolatedOptions['stdio'];
  input?: SpawnIsolatedOptions['input'];
  encoding?: SpawnIsolatedOptions['encoding'];
  buffer?: boolean;
  /** passed through to spawnIsolated (the spawn core's merged output stream) */
  all?: SpawnIsolatedOptions['all'];
  /** passed through to spawnIsolated (a pty from the sandbox's devpts; see its docs) */
  tty?: SpawnIsolatedOptions['tty'];
  timeout?: number;
  signal?: AbortSignal;
  killSignal?: NodeJS.Signals | number;
  forceKillAfterMs?: number;
  parentDeathSignal?: NodeJS.Signals | number | false;
  /** Per-process limits: `wallTimeMs`, `cpuTimeMs` (the sandbox cgroup's CPU time since this exec started), `outputBytes`. Cgroup limits belong to the sandbox. */
  limits?: Pick<SandboxLimits, 'wallTimeMs' | 'cpuTimeMs' | 'outputBytes'>;
  onOutputLimit?: 'kill' | 'truncate';
  /** The process's umask (see spawnIsolated's `umask`). Default: the sandbox's. */
  umask?: number;
  /** The process's oom_score_adj (see spawnIsolated's `oomScoreAdj`). Default: the sandbox's. */
  oomScoreAdj?: number;
  /**
   * The process's own capabilities, no_new_privs, rlimits and seccomp filter (as `runc exec
   * --cap`, `--no-new-privs`, ...; see spawnIsolated's options of these names). Default: the
   * sandbox's. More capabilities than the sandbox was made with are an explicit relaxation and
   * show in the result's `isolation`.
   */
  capabilities?: SpawnIsolatedOptions['capabilities'];
  allowNewPrivileges?: boolean;
  rlimits?: SpawnIsolatedOptions['rlimits'];
  seccomp?: SpawnIsolatedOptions['seccomp'];
}

const EXEC_KEYS = ['env', 'cwd', 'uid', 'gid', 'groups', 'stdio', 'input', 'encoding', 'buffer', 'all', 'tty', 'timeout', 'signal', 'killSignal',
  'forceKillAfterMs', 'parentDeathSignal', 'limits', 'onOutputLimit', 'umask', 'oomScoreAdj', 'capabilities', 'allowNewPrivileges', 'rlimits', 'seccomp'];
/** Template keys that exec inherits (same ids, caps, seccomp, rlimits, env, cwd, umask, oom_score_adj). */
const INHERITED = ['env', 'cwd', 'uid', 'gid', 'groups', 'capabilities', 'allowNewPrivileges', 'rlimits', 'seccomp', 'umask', 'oomScoreAdj'] as const;

/** What a state file holds (JSON). */
export interface SandboxState {
  id: string;
  holderPid: number;
  /** start time of the holder (field 22 of /proc/<pid>/stat): a reused pid has another */
  holderStart: number;
  creatorPid: number;
  /** start time of the creator (absent in older state files) */
  creatorStart?: number;
  created: string;
  keepAlive: boolean;
  /** the cgroup: v2 `{ unified: dir }`, v1 controller -> dir */
  cgroup: Record<string, string>;
  /** the image container, when made from an image */
  image: { store: string; container: string; ref: string } | null;
  /** exec defaults (serialisable part of the template) */
  exec: Record<string, unknown>;
}

/** One entry of {@link Sandbox.list}. */
export interface SandboxInfo {
  id: string;
  /** `'running'` while the holder lives, else `'exited'` (its resources stay until destroy). */
  status: 'running' | 'exited';
  holderPid: number;
  creatorPid: number;
  created: string;
  keepAlive: boolean;
  image: string | null;
  cgroup: string;
}

/** isObject without narrowing the caller's type. */
function plain(v: unknown): boolean {
  return isObject(v);
}
function checkId(option: string, id: unknown): string {
  if (typeof id !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/.test(id)) fail(option, `must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 64 characters) (got ${String(id)})`);
  return id;
}
function checkStateDir(v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0') || v.split('/').includes('..')) fail('options.stateDir', 'must be an absolute path without ..');
  return v.replace(/\/+$/, '');
}


function selfNsInodes(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of JOINABLE) {
    const ns = Namespace.open(`/proc/self/ns/${PROC_NS[t]}`);
    out[t] = ns.inode;
    ns.close();
  }
  return out;
}

/** The process an exec started: an IsolatedProcess whose result also carries the sandbox's verdicts (cpu-time, memory, pids). */
export type SandboxProcess<T extends string | Buffer = string> = IsolatedProcess<T>;

/**
 * A long-lived sandbox (like a container): `Sandbox.create(options)`, then `exec()` as often
 * as needed, then `destroy()` (or `await using`). Emits `'exit'` (code, signal) when the
 * holder ends, after which exec fails with ESRCH until destroy() removes what is left.
 */
export class Sandbox extends EventEmitter {
  /** The sandbox's name. */
  readonly id: string;
  /**
   * The sandbox's cgroup, or null when it has none: one is made for cgroup limits or a
   * `cgroupParent`; without either, where the host lets this caller make one (root, a delegated
   * subtree), and otherwise the sandbox goes without (stats, pause and resume then say why).
   */
  readonly cgroup: CGroup | null;
  /** The image container (image sandboxes), else null. */
  readonly container: Container | null;
  #state: SandboxState;
  #stateFile: string;
  #holder: IsolatedProcess | undefined;
  #ns: Partial<Record<NamespaceType, Namespace>> = {};
  #execDefaults: Record<string, unknown>;
  #active = new Set<Promise<unknown>>();
  #exited: Promise<void>;
  #exitedFlag = false;
  #destroying: Promise<void> | undefined;
  #spawnLimits: Pick<SandboxLimits, 'wallTimeMs' | 'cpuTimeMs' | 'outputBytes'>;
  #killing: Promise<void> | undefined;
  /** drop this sandbox's records of the thread's teardown (see create) */
  #dropNsFds = () => {};
  #dropCgroup = () => {};
  /** why the sandbox has no cgroup (the host refused one nobody asked for) */
  #noCgroup: NsboxError | undefined;
  /** exec'd processes still running (killed with the holder when there is no cgroup to kill) */
  #procs = new Set<IsolatedProcess<string | Buffer>>();

  private constructor(p: {
    id: string; cgroup: CGroup | null; container: Container | null; state: SandboxState; stateFile: string; holder?: IsolatedProcess;
    ns: Partial<Record<NamespaceType, Namespace>>; execDefaults: Record<string, unknown>; exited: Promise<void>;
    spawnLimits: Pick<SandboxLimits, 'wallTimeMs' | 'cpuTimeMs' | 'outputBytes'>;
  }) {
    super();
    this.id = p.id;
    this.cgroup = p.cgroup;
    this.container = p.container;
    this.#state = p.state;
    this.#stateFile = p.stateFile;
    this.#holder = p.holder;
    this.#ns = p.ns;
    this.#execDefaults = p.execDefaults;
    this.#spawnLimits = p.spawnLimits;
    this.#exited = p.exited.then(() => { this.#exitedFlag = true; });
  }

  /** Host pid of the holder (pid 1 inside). */
  get pid(): number {
    return this.#state.holderPid;
  }

  /** Whether the holder still runs. */
  get running(): boolean {
    return !this.#exitedFlag && processStart(this.#state.holderPid) === this.#state.holderStart;
  }

  /** Whether destroy() was called. */
  get destroyed(): boolean {
    return this.#destroying !== undefined;
  }

  /** Resolves when the holder has exited. */
  wait(): Promise<void> {
    return this.#exited;
  }

  /**
   * Makes the sandbox: its cgroup (cgroup limits of `options.limits`), its container when
   * `options.image` is given, then the holder with the other options (network included).
   * Argument mistakes throw TypeError/RangeError before anything is made; kernel failures
   * reject with NsboxError and leave nothing behind.
   */
  /**
   * Checks sandbox options the way {@link Sandbox.create} does, synchronously, making nothing
   * (createPool checks its template with it). Throws TypeError/RangeError naming the option.
   */
  static validate(options: SandboxOptions) {
    if (!plain(options)) fail('options', 'must be an object');
    const o = { ...options };
    const id = o.id === undefined ? `nsbox-${randomBytes(6).toString('hex')}` : checkId('options.id', o.id);
    const stateDir = o.stateDir === undefined ? undefined : checkStateDir(o.stateDir);
    if (o.keepAlive !== undefined && typeof o.keepAlive !== 'boolean') fail('options.keepAlive', 'must be a boolean');
    const keepAlive = o.keepAlive ?? false;
    for (const k of ['stdio', 'input', 'encoding', 'buffer', 'all', 'tty', 'timeout', 'signal', 'killSignal', 'forceKillAfterMs', 'join', 'cgroup', 'onOutputLimit', 'parentDeathSignal']) {
      if ((o as Record<string, unknown>)[k] !== undefined) fail(`options.${k}`, k === 'stdio' ? 'is per process: give it to exec() (or holder.stdio)' : 'does not apply to a sandbox (give it to exec() where it applies)');
    }
    let holderFile = DEFAULT_HOLDER.file, holderArgs = DEFAULT_HOLDER.args;
    let holderStdio: SpawnIsolatedOptions['stdio'] = 'ignore';
    if (o.holder !== undefined) {
      if (!plain(o.holder)) fail('options.holder', 'must be { file, args?, stdio? }');
      for (const k of Object.keys(o.holder)) if (!['file', 'args', 'stdio'].includes(k)) fail('options.holder', `has an unknown key '${k}'`);
      if (typeof o.holder.file !== 'string' || o.holder.file === '') fail('options.holder.file', 'must be a non-empty string');
      if (o.holder.args !== undefined && (!Array.isArray(o.holder.args) || o.holder.args.some((a) => typeof a !== 'string'))) fail('options.holder.args', 'must be an array of strings');
      holderFile = o.holder.file;
      holderArgs = o.holder.args ?? [];
      if (options.holder?.stdio !== undefined) holderStdio = options.holder.stdio;
    }
    // limits: cgroup keys go on the sandbox's cgroup, per-process keys become exec defaults
    validateLimits(o.limits ?? {});
    const cgLimits: Record<string, unknown> = {};
    const spawnLimits: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o.limits ?? {})) {
      if (v === undefined) continue;
      if (spawnLimitKeys.includes(k)) spawnLimits[k] = v; else cgLimits[k] = v;
    }
    let store: LayerStore | undefined;
    let ref: string | undefined;
    if (o.image !== undefined) {
      if (o.rootfs !== undefined) fail('options.image', 'and options.rootfs exclude each other');
      if (!plain(o.image)) fail('options.image', 'must be { store, ref, tmpfsSize? }');
      for (const k of Object.keys(o.image)) if (!['store', 'ref', 'tmpfsSize'].includes(k)) fail('options.image', `has an unknown key '${k}' (a sandbox's container is kept until destroy)`);
      if (!(o.image.store instanceof LayerStore)) fail('options.image.store', 'must be a LayerStore');
      store = o.image.store;
      ref = refString('options.image.ref', o.image.ref);
      try { store.image(ref); } catch (e) {
        if (e instanceof RangeError) throw new RangeError(`options.image.ref: no image '${ref}' in the store at ${store.root}`);
        throw e;
      }
    }
    const base: SpawnIsolatedOptions = { ...o };
    for (const k of ['id', 'holder', 'keepAlive', 'stateDir', 'image', 'limits']) delete (base as Record<string, unknown>)[k];
    // check everything else now (spawnIsolated validates synchronously), against a stand-in root
    // and with no process made: a plan with a bad option throws here
    const probeOpts: SpawnIsolatedOptions = { ...base, ...(store ? { rootfs: '/usr' } : {}) };
    if (store && probeOpts.cwd !== undefined) delete probeOpts.cwd;
    buildPlan({ file: holderFile, args: holderArgs, options: probeOpts });
    if (Object.keys(spawnLimits).length) validateLimits(spawnLimits as SandboxLimits);
    return { id, stateDir, keepAlive, holderFile, holderArgs, holderStdio, cgLimits, spawnLimits, store, ref, base };
  }

  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const v = Sandbox.validate(options);
    const { id, keepAlive, holderFile, holderArgs, holderStdio, cgLimits, spawnLimits, store, ref, base } = v;
    const stateDir = v.stateDir ?? defaultStateDir(true);
    const stateFile = `${stateDir}/${id}.json`;
    try {
      readFileSync(stateFile);
      throw errnoError(17, 'sandbox', 'create', stateFile, `a sandbox named '${id}' exists`);
    } catch (e) {
      if (e instanceof NsboxError) throw e;
    }

    // --- make things; undo in reverse on failure
    const undo: Array<() => Promise<void> | void> = [];
    const rollback = async () => { for (const u of undo.reverse()) { try { await u(); } catch { /* best effort */ } } };
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      // reserve the name; the reservation names its maker and container, for gc after a crash
      const reservation = { creatorPid: process.pid, creatorStart: selfOwnerMark().start, image: store ? { store: store.root, container: id } : null };
      writeFileSync(stateFile, JSON.stringify(reservation), { flag: 'wx', mode: 0o600 });
      undo.push(() => rmSync(stateFile, { force: true }));
      // cgroup limits (or a cgroupParent) need a cgroup; without them a cgroup is made where the
      // host allows it (stats, pause), and the sandbox goes without where it does not
      const needCgroup = Object.keys(cgLimits).length > 0 || options.cgroupParent !== undefined;
      let cg: CGroup | null = null;
      let noCgroup: NsboxError | undefined;
      try {
        cg = await CGroup.create(`nsbox-sbx-${ownerTag()}-${id.replace(/^nsbox-/, '')}`, { limits: cgLimits as Limits, parent: options.cgroupParent });
      } catch (e) {
        if (needCgroup || !(e instanceof NsboxError)) throw e;
        noCgroup = e;
      }
      if (cg) { const c = cg; undo.push(() => c.destroy({ kill: true })); }
      // the thread's teardown (unless the sandbox is to outlive it) kills the holder (it is a
      // sandbox of this thread) and everything in the cgroup, and removes the cgroup. The state
      // file and the container stay: Sandbox.attach(id).destroy() or `nsbox gc` finish the job
      const dropTeardown = keepAlive || !cg ? () => {} : onTeardown({ cgroups: [...new Set(Object.values(cg.paths))] });
      undo.push(dropTeardown);
      let container: Container | null = null;
      let spawnOpts: SpawnIsolatedOptions = { ...base };
      // the holder's id block, taken here: the image is idmapped with it before the holder
      // runs (which then maps it as given, taking no block of its own)
      let block: IdBlockClaim | undefined;
      if (wantsIdBlock(base)) {
        const b = acquireIdBlock(idBlockSource());
        block = b;
        undo.push(() => b.release());
        spawnOpts.user = sandboxIdMaps(base, realHost, b)!;
      }
      let file = holderFile, args = holderArgs;
      if (store) {
        const c = await store.createContainer(ref!, { name: id, hostname: typeof base.hostname === 'string' ? base.hostname : undefined, tmpfsSize: options.image!.tmpfsSize as number | string | undefined });
        container = c;
        undo.push(() => c.remove());
        // idmapped with the holder's maps: the sandbox's root owns the image root's files
        const root = c.mount({ idmap: sandboxIdMaps(spawnOpts) ?? undefined });
        undo.push(() => c.unmount());
        const resolved = await applyImageConfig({ file, args, options: spawnOpts }, root, store.image(ref!).config);
        spawnOpts = resolved.options;
        file = resolved.file; args = resolved.args;
      }
      delete spawnOpts.cgroupParent;
      const holder = spawnIsolated(file, args, {
        ...spawnOpts, ...(cg ? { cgroup: cg } : {}), stdio: holderStdio, buffer: false,
        parentDeathSignal: keepAlive ? false : 'SIGKILL',
      });
      holder.catch(() => {});
      await new Promise<void>((resolve, reject) => {
        holder.once('spawn', () => resolve());
        holder.then(() => reject(errnoError(3, 'sandbox', 'holder', file, 'the holder exited at once')), reject);
      });
      undo.push(async () => { holder.kill('SIGKILL'); await holder.catch(() => {}); });
      const pid = holder.pid!;
      // the holder's namespaces, opened once (from our own child: no pid reuse possible)
      const self = selfNsInodes();
      const ns: Partial<Record<NamespaceType, Namespace>> = {};
      undo.push(() => { for (const n of Object.values(ns)) n.close(); });
      for (const t of JOINABLE) {
        const n = Namespace.ofProcess(pid, t);
        if (n.inode === self[t]) n.close(); else ns[t] = n;
      }
      // dropped before they are closed (an fd number is reused at once)
      const dropNsFds = keepAlive ? () => {} : onTeardown({ fds: Object.values(ns).map((n) => n.fd) });
      undo.push(dropNsFds);
      // the host's view of the merged dir is not needed: the holder's mount namespace has its
      // own copy of the overlay mount, so nothing of the sandbox stays in the host mount table
      if (container) container.unmount();
      const holderStart = processStart(pid);
      if (holderStart === undefined) throw errnoError(3, 'sandbox', 'holder', file, 'the holder exited at once');
      // a sandbox that outlives this process keeps its block: the claim names the holder
      if (keepAlive) block?.handOver(pid, holderStart);
      const execDefaults: Record<string, unknown> = {};
      for (const k of INHERITED) if (spawnOpts[k] !== undefined) execDefaults[k] = spawnOpts[k];
      const state: SandboxState = {
        id, holderPid: pid, holderStart, creatorPid: process.pid, creatorStart: selfOwnerMark().start, created: new Date().toISOString(), keepAlive,
        cgroup: (cg?.paths ?? {}) as Record<string, string>,
        image: store ? { store: store.root, container: id, ref: ref! } : null,
        exec: serialisable(execDefaults),
      };
      writeState(stateFile, state);
      if (keepAlive) holder.unref();
      const exited = holder.then(() => undefined, () => undefined).finally(() => block?.release());
      const box = new Sandbox({ id, cgroup: cg, container, state, stateFile, holder, ns, execDefaults, exited, spawnLimits });
      box.#dropNsFds = dropNsFds;
      box.#dropCgroup = dropTeardown;
      box.#noCgroup = noCgroup;
      holder.on('exit', (code, signal) => box.emit('exit', code, signal));
      return box;
    } catch (e) {
      await rollback();
      throw e;
    }
  }

  /** The sandboxes recorded in `stateDir` (this host's), with their status. */
  static list(options: { stateDir?: string } = {}): SandboxInfo[] {
    const dir = options.stateDir === undefined ? defaultStateDir() : checkStateDir(options.stateDir);
    let names: string[];
    try { names = readdirSync(dir); } catch { return []; }
    const out: SandboxInfo[] = [];
    for (const n of names.sort()) {
      if (!n.endsWith('.json')) continue;
      let s: SandboxState;
      try { s = JSON.parse(readFileSync(`${dir}/${n}`, 'utf8')) as SandboxState; } catch { continue; }
      if (!s.id) continue; // a name being reserved
      out.push({
        id: s.id, status: processStart(s.holderPid) === s.holderStart ? 'running' : 'exited', holderPid: s.holderPid,
        creatorPid: s.creatorPid, created: s.created, keepAlive: s.keepAlive, image: s.image?.ref ?? null,
        cgroup: s.cgroup.unified ?? s.cgroup.memory ?? Object.values(s.cgroup)[0] ?? '',
      });
    }
    return out;
  }

  /**
   * Takes over a recorded sandbox (made by this or another process, e.g. before a restart):
   * exec, stats, pause, kill and destroy work as on the original object. A sandbox whose
   * holder has exited can still be destroyed (that removes what it left).
   */
  static async attach(id: string, options: { stateDir?: string } = {}): Promise<Sandbox> {
    checkId('id', id);
    const dir = options.stateDir === undefined ? defaultStateDir() : checkStateDir(options.stateDir);
    const stateFile = `${dir}/${id}.json`;
    let s: SandboxState;
    try { s = JSON.parse(readFileSync(stateFile, 'utf8')) as SandboxState; } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw errnoError(2, 'sandbox', 'attach', stateFile, `no sandbox named '${id}'`);
      throw errnoError(5, 'sandbox', 'attach', stateFile, (e as Error).message);
    }
    if (!s.id) throw errnoError(2, 'sandbox', 'attach', stateFile, `sandbox '${id}' is still being made`);
    const cg = Object.keys(s.cgroup).length ? await CGroup.open(s.cgroup.unified ?? s.cgroup).catch(() => null) : null;
    const ns: Partial<Record<NamespaceType, Namespace>> = {};
    let alive = processStart(s.holderPid) === s.holderStart;
    if (alive) {
      const self = selfNsInodes();
      try {
        for (const t of JOINABLE) {
          const n = Namespace.ofProcess(s.holderPid, t);
          if (n.inode === self[t]) n.close(); else ns[t] = n;
        }
      } catch { alive = false; }
      // opened, then checked: the pid still names the same holder, so the fds are its namespaces
      if (processStart(s.holderPid) !== s.holderStart) alive = false;
      if (!alive) for (const n of Object.values(ns)) n.close();
    }
    let container: Container | null = null;
    if (s.image) {
      try { container = LayerStore.open(s.image.store).container(s.image.container); } catch { container = null; }
    }
    const exited = alive ? pollExit(s.holderPid, s.holderStart) : Promise.resolve();
    const box = new Sandbox({
      id: s.id, cgroup: cg, container, state: s, stateFile, ns: alive ? ns : {},
      execDefaults: s.exec ?? {}, exited, spawnLimits: {},
    });
    exited.then(() => box.emit('exit', null, null));
    return box;
  }

  /**
   * Runs a program inside the sandbox (like `docker exec`): it joins the holder's user, mount,
   * pid, net, ipc, uts and cgroup namespaces and the sandbox's cgroup, with the sandbox's
   * uid/gid, capabilities, seccomp filter, rlimits, env and cwd unless `options` overrides
   * env, cwd or ids. Argument mistakes throw synchronously; a sandbox that is not running
   * rejects with NsboxError ESRCH.
   */
  exec<T extends string | Buffer = string>(file: string, args: string[] = [], options: ExecOptions = {}): SandboxProcess<T> {
    if (!isObject(options)) fail('options', 'must be an object');
    for (const k of Object.keys(options)) if (!EXEC_KEYS.includes(k)) fail('options', `has an unknown key '${k}' (allowed: ${EXEC_KEYS.join(', ')})`);
    let limits: Record<string, unknown> | undefined;
    if (options.limits !== undefined) {
      if (!isObject(options.limits)) fail('options.limits', 'must be an object');
      for (const k of Object.keys(options.limits)) if (!spawnLimitKeys.includes(k)) fail(`options.limits.${k}`, 'is a limit of the whole sandbox: give it to Sandbox.create');
      limits = { ...options.limits };
    }
    limits = { ...this.#spawnLimits, ...(limits ?? {}) };
    const cpuTimeMs = limits.cpuTimeMs as number | undefined;
    delete limits.cpuTimeMs;
    const spawnOpts: SpawnIsolatedOptions = { ...(this.#execDefaults as SpawnIsolatedOptions), ...options, limits: Object.keys(limits).length ? limits as SandboxLimits : undefined };
    if (options.uid !== undefined && options.gid === undefined) delete spawnOpts.gid;
    const namespaces: Partial<Record<NamespaceType, boolean>> = {};
    for (const t of JOINABLE) if (!this.#ns[t]) namespaces[t] = false;
    spawnOpts.namespaces = namespaces;
    spawnOpts.join = { ...this.#ns };
    if (!this.#ns.user) spawnOpts.user = false;
    if (!this.#ns.net) spawnOpts.network = 'host';
    if (cpuTimeMs !== undefined) {
      if (typeof cpuTimeMs !== 'number' || !(cpuTimeMs > 0)) fail('options.limits.cpuTimeMs', 'must be a positive number of milliseconds', RangeError);
    }
    if (this.#destroying || !this.running) {
      const e = errnoError(3, 'sandbox', 'exec', this.id, this.#destroying ? 'the sandbox was destroyed' : 'the sandbox is not running');
      // the same shape as a failed spawn: a rejected process object
      const p = spawnIsolated('/nonexistent', [], { signal: AbortSignal.abort() }) as unknown as SandboxProcess<T>;
      patchResult(p, Promise.reject(e));
      return p;
    }
    if (this.cgroup) spawnOpts.cgroup = this.cgroup;
    // no sandbox cgroup to measure: the process's own cgroup counts its cpu time
    else if (cpuTimeMs !== undefined) spawnOpts.limits = { ...spawnOpts.limits, cpuTimeMs };
    const p = spawnIsolated(file, args, spawnOpts) as unknown as SandboxProcess<T>;
    const proc = p as unknown as IsolatedProcess<string | Buffer>;
    this.#procs.add(proc);
    proc.once('exit', () => this.#procs.delete(proc));
    const result = (this.cgroup ? this.#watch(proc, this.cgroup, cpuTimeMs) : this.#plain(proc)) as Promise<IsolatedResult<T>>;
    result.finally(() => this.#procs.delete(proc)).catch(() => {});
    patchResult(p, result);
    const tracked = result.catch(() => {});
    this.#active.add(tracked);
    tracked.finally(() => this.#active.delete(tracked));
    return p;
  }

  /** Adds the sandbox's own verdicts (cpu-time, memory, pids) and cgroup figures to a process's result. */
  async #watch(p: IsolatedProcess<string | Buffer>, cg: CGroup, cpuTimeMs: number | undefined): Promise<IsolatedResult<string | Buffer>> {
    const before = await cg.counters().catch(() => ({ oomKill: 0, pidsMax: 0 }));
    const cpu0 = await cg.stats().catch(() => null);
    let cpuFired = false;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    if (cpuTimeMs !== undefined) {
      const start = cpu0?.cpuUsageMs ?? 0;
      const tick = async () => {
        if (done) return;
        const used = ((await cg.cpuUsageMs().catch(() => null)) ?? 0) - start;
        if (done) return;
        if (used >= cpuTimeMs) { cpuFired = true; p.kill('SIGKILL'); }
        else timer = setTimeout(tick, Math.min(100, Math.max(5, (cpuTimeMs - used) / 2)));
      };
      timer = setTimeout(tick, Math.min(100, Math.max(5, cpuTimeMs / 2)));
    }
    // a process stopped with SIGKILL (a limit, the caller, the OOM killer) takes the rest of its
    // session with it: children still holding its stdout would otherwise keep the result open
    p.once('exit', (_code: number | null, signal: NodeJS.Signals | null) => {
      if (signal === 'SIGKILL' && p.pid !== undefined) killSession(() => cg.pids(), p.pid).catch(() => {});
    });
    let r: IsolatedResult<string | Buffer>;
    try {
      r = await IsolatedResultOf(p);
    } finally {
      done = true;
      if (timer) clearTimeout(timer);
    }
    const after = await cg.counters().catch(() => before);
    const stats: CgroupStats | null = await cg.stats().catch(() => null);
    let verdict: Verdict = r.verdict;
    if (verdict === 'exited' || verdict === 'signaled') {
      if (cpuFired) verdict = 'cpu-time';
      else if (after.oomKill > before.oomKill && r.signal === 'SIGKILL') verdict = 'memory';
      // a fork refused by pids.max while it ran (a fork bomb's first process may well exit 0)
      else if (after.pidsMax > before.pidsMax) verdict = 'pids';
    }
    const usage = { ...r.usage };
    if (stats && cpu0) {
      if (stats.cpuUserMs !== null && cpu0.cpuUserMs !== null) usage.cpuUserMs = stats.cpuUserMs - cpu0.cpuUserMs;
      if (stats.cpuSystemMs !== null && cpu0.cpuSystemMs !== null) usage.cpuSystemMs = stats.cpuSystemMs - cpu0.cpuSystemMs;
      usage.peakMemoryBytes = stats.memoryPeak;
      usage.pidsPeak = stats.pidsPeak;
      usage.oomKills = after.oomKill - before.oomKill;
    }
    return { ...r, verdict, usage };
  }

  /** A process's result in a sandbox without a cgroup: its own verdict; a SIGKILL takes its session along. */
  async #plain(p: IsolatedProcess<string | Buffer>): Promise<IsolatedResult<string | Buffer>> {
    p.once('exit', (_code: number | null, signal: NodeJS.Signals | null) => {
      if (signal === 'SIGKILL' && p.pid !== undefined) killSession(allPids, p.pid).catch(() => {});
    });
    return IsolatedResultOf(p);
  }

  /** Waits for the holder's exit, keeping the event loop alive meanwhile (an attached sandbox polls /proc on an unref'd timer). */
  async #awaitExit(): Promise<void> {
    const keep = setInterval(() => {}, 1000);
    try { await this.#exited; } finally { clearInterval(keep); }
  }

  /**
   * SIGKILL to the whole cgroup; concurrent callers share one kill (the v1 driver freezes and
   * thaws). Without a cgroup: to the holder (pid 1 of its pid namespace: the kernel kills the
   * rest of it) and to every exec'd process still running.
   */
  #killAll(): Promise<void> {
    if (!this.cgroup) {
      for (const p of this.#procs) p.kill('SIGKILL');
      if (this.#holder) this.#holder.kill('SIGKILL');
      else if (processStart(this.#state.holderPid) === this.#state.holderStart) {
        try { process.kill(this.#state.holderPid, 'SIGKILL'); } catch { /* gone */ }
      }
      return Promise.resolve();
    }
    if (this.cgroup.destroyed) return Promise.resolve();
    this.#killing ??= this.cgroup.kill().catch(() => {}).finally(() => { this.#killing = undefined; });
    return this.#killing;
  }

  /** Usage figures of the whole sandbox (its cgroup). */
  async stats(): Promise<CgroupStats> {
    return this.#alive('stats').stats();
  }

  /** Freezes every process of the sandbox (cgroup freezer); resolves once frozen. */
  async pause(): Promise<void> {
    await this.#alive('pause').freeze();
  }

  /** Lets a paused sandbox run again. */
  async resume(): Promise<void> {
    await this.#alive('resume').thaw();
  }

  /**
   * Stops the sandbox (like `docker stop`): `signal` (default SIGTERM) to the holder, SIGKILL to
   * everything left after `timeoutMs` (default 10000; SIGKILL itself goes to the whole cgroup at
   * once). Resolves when the holder has exited. The cgroup, container and state file stay
   * until destroy(). Does nothing when the sandbox is not running.
   */
  async kill(signal: NodeJS.Signals | number = 'SIGTERM', options: { timeoutMs?: number } = {}): Promise<void> {
    const sig = typeof signal === 'number' ? signal : SIGNALS[signal];
    if (sig === undefined || !Number.isInteger(sig) || sig < 1 || sig > 64) fail('signal', `must be a signal name or number (got ${String(signal)})`);
    const timeoutMs = options.timeoutMs ?? 10000;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) fail('options.timeoutMs', 'must be a non-negative number', RangeError);
    if (!this.running) return;
    if (sig === 9) {
      await this.#killAll();
    } else {
      if (this.#holder) this.#holder.kill(sig);
      else if (processStart(this.#state.holderPid) === this.#state.holderStart) {
        // an attached sandbox: checked by start time just before (the addon has no pidfd_open yet)
        try { process.kill(this.#state.holderPid, sig); } catch { /* gone */ }
      }
      let t: NodeJS.Timeout | undefined;
      const late = new Promise<void>((r) => { t = setTimeout(r, timeoutMs); });
      await Promise.race([this.#awaitExit(), late]);
      clearTimeout(t);
      if (!this.#exitedFlag) await this.#killAll();
    }
    await this.#awaitExit();
  }

  /**
   * Sends one signal, and nothing after it (unlike {@link kill}): to the sandbox's pid 1 (nsbox-init,
   * which forwards it to the holder, or the holder itself with `init: false`), or with
   * `{ all: true }` to every process of the sandbox (as `runc kill --all`): those of its cgroup
   * when it has one, else those of its pid namespace (and of namespaces nested in it) found in
   * /proc; nsbox-init itself is left out (it would forward its copy to the holder, a second one). SIGKILL with `all` kills the whole cgroup at once (cgroup.kill, or the freezer on v1);
   * any other signal goes to each process listed, so a process forked at that very moment may
   * miss it. Rejects with NsboxError ESRCH when the sandbox is not running; a signal name or
   * number that is not one is a TypeError/RangeError naming `signal`.
   */
  async signal(signal: NodeJS.Signals | number, options: { all?: boolean } = {}): Promise<void> {
    const sig = signalNumber('signal', signal);
    checkOptions('options', options, ['all']);
    const all = bool('options.all', options.all, false);
    if (this.#destroying || !this.running) throw errnoError(3, 'sandbox', 'signal', this.id, 'the sandbox is not running');
    if (!all) {
      if (this.#holder) {
        if (!this.#holder.signal(sig)) throw errnoError(3, 'sandbox', 'signal', this.id, 'the sandbox is not running');
      } else {
        // an attached sandbox: checked by start time just before (the addon has no pidfd_open yet)
        try { process.kill(this.#state.holderPid, sig); } catch { throw errnoError(3, 'sandbox', 'signal', this.id, 'the sandbox is not running'); }
      }
      return;
    }
    if (sig === 9) {
      await this.#killAll();
      return;
    }
    const pids = this.cgroup && !this.cgroup.destroyed ? await this.cgroup.pids() : namespacePids(this.#state.holderPid);
    // nsbox-init as pid 1 forwards what it gets to the holder, which is in the list too: the
    // holder would get the signal twice
    const holder = this.#state.holderPid;
    let initPid1 = false;
    try { initPid1 = readlinkSync(`/proc/${holder}/exe`).startsWith('/memfd:nsbox-init'); } catch { /* gone */ }
    for (const pid of pids) {
      if (initPid1 && pid === holder) continue;
      try { process.kill(pid, sig); } catch { /* gone */ }
    }
  }

  /**
   * Removes the sandbox: kills every process, waits for them, removes the cgroup, the
   * container (image sandboxes), the network (with the holder) and the state file.
   * Idempotent; concurrent calls share one removal.
   */
  destroy(): Promise<void> {
    this.#destroying ??= (async () => {
      if (this.cgroup && !this.cgroup.destroyed) {
        await this.#killing;
        try { await this.cgroup.thaw(); } catch { /* not frozen, or gone */ }
        await this.#killAll();
      } else if (!this.cgroup) {
        await this.#killAll();
      }
      await this.#awaitExit();
      await Promise.all([...this.#active]);
      this.#dropNsFds();
      for (const n of Object.values(this.#ns)) n.close();
      this.#ns = {};
      let err: unknown;
      if (this.cgroup) {
        try {
          if (this.cgroup.owned) await this.cgroup.destroy({ kill: true });
          else await removeOpenedCgroup(this.cgroup);
          this.#dropCgroup();
        } catch (e) { err ??= e; }
      }
      if (this.container) {
        try { await this.container.remove(); } catch (e) { err ??= e; }
      }
      rmSync(this.#stateFile, { force: true });
      if (err) throw err;
    })();
    return this.#destroying;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  /** The sandbox's cgroup for `what`, or an NsboxError saying why there is none. */
  #alive(what: string): CGroup {
    if (this.#destroying) throw errnoError(3, 'sandbox', what, this.id, 'the sandbox was destroyed');
    if (this.cgroup) return this.cgroup;
    if (!Object.keys(this.#state.cgroup).length || this.#noCgroup) {
      const why = this.#noCgroup ? ` (this host did not let nsbox make one: ${this.#noCgroup.detail ?? this.#noCgroup.message})` : '';
      throw errnoError(95, 'sandbox', what, this.id, `the sandbox has no cgroup${why}; ${what} needs one: create the sandbox with cgroup limits or a cgroupParent`);
    }
    throw errnoError(2, 'sandbox', what, this.id, 'the sandbox has no cgroup any more');
  }
}

/** An opened (not owned) cgroup of an attached sandbox: nsbox made it, so remove it. */
async function removeOpenedCgroup(cg: CGroup): Promise<void> {
  await cg.kill().catch(() => {});
  for (const dir of new Set(Object.values(cg.paths))) {
    if (!/nsbox/.test(dir)) continue;
    for (let i = 0; ; i++) {
      try { rmSync(dir, { recursive: false }); break; } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code === 'EISDIR' || code === 'ERR_FS_EISDIR') {
          try { (await import('node:fs')).rmdirSync(dir); break; } catch (e2) {
            const c2 = (e2 as NodeJS.ErrnoException).code;
            if (c2 === 'ENOENT') break;
            if (c2 !== 'EBUSY' || i > 200) throw e2;
          }
        } else if (code !== 'EBUSY' || i > 200) throw e;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
}

/**
 * SIGKILLs the processes of the sandbox's cgroup whose session is `sid` (an exec'd process is a
 * session leader; its descendants stay in its session unless they make their own). Only pids
 * listed in the cgroup are signalled, each after its session was read from /proc.
 */
async function killSession(pids: () => Promise<number[]> | number[], sid: number): Promise<void> {
  for (let round = 0; round < 10; round++) {
    let found = false;
    for (const pid of await pids()) {
      try {
        const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        if (Number(f[3]) !== sid) continue;
        found = true;
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    if (!found) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The processes of `holder`'s pid namespace and of the namespaces nested in it, from the host's
 * /proc (a sandbox without a cgroup): those whose pid namespace is the holder's, and their
 * descendants.
 */
function namespacePids(holder: number): number[] {
  let own: string;
  try { own = readlinkSync(`/proc/${holder}/ns/pid`); } catch { return []; }
  const parent = new Map<number, number>();
  const members = new Set<number>();
  for (const pid of allPids()) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/pid`) === own) members.add(pid);
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone, or not ours to see */ }
  }
  const inside = (pid: number): boolean => {
    for (let p: number | undefined = pid, n = 0; p !== undefined && p > 1 && n < 4096; p = parent.get(p), n++) if (members.has(p)) return true;
    return false;
  };
  return [...parent.keys()].filter((pid) => members.has(pid) || inside(pid));
}

/** Every pid of the host's /proc (a session's members, where no cgroup lists them). */
function allPids(): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
}

function pollExit(pid: number, start: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (processStart(pid) !== start) { clearInterval(t); resolve(); }
    }, 50);
    t.unref();
  });
}

/** The process's own result (the prototype's then(), which patchResult shadows on the instance). */
function IsolatedResultOf(p: IsolatedProcess<string | Buffer>): Promise<IsolatedResult<string | Buffer>> {
  return IsolatedProcess.prototype.then.call(p, (r) => r) as Promise<IsolatedResult<string | Buffer>>;
}

/** Makes an IsolatedProcess resolve to `result` (same object: streams, pid, kill stay). */
function patchResult<T extends string | Buffer>(p: SandboxProcess<T>, result: Promise<IsolatedResult<T>>): void {
  result.catch(() => {});
  // the process's own outcome is observed here (its failure reaches the caller through
  // `result`): it must not also come out as an unhandled 'error' event
  IsolatedProcess.prototype.catch.call(p as unknown as IsolatedProcess<string>, () => {});
  Object.defineProperties(p, {
    then: { value: (a?: (v: IsolatedResult<T>) => unknown, b?: (e: unknown) => unknown) => result.then(a, b) },
    catch: { value: (b?: (e: unknown) => unknown) => result.catch(b) },
    finally: { value: (f?: () => void) => result.finally(f) },
  });
}

function serialisable(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'seccomp' && typeof v !== 'string') continue; // a custom profile object is not recorded
    out[k] = v;
  }
  return out;
}

function writeState(file: string, s: SandboxState): void {
  const tmp = `${file}.nsbox-tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(s, null, 2), { mode: 0o600 });
  renameSync(tmp, file);
}

// A long-lived sandbox: one holder process (pid 1 of the sandbox) keeps its namespaces,
// cgroup, root filesystem and network alive; exec() runs more programs inside it by joining
// the holder's namespaces and cgroup through spawnIsolated's `join` and `cgroup` options.
// The Sandbox owns its cgroup, its container (image sandboxes) and its state file; the
// holder's spawnIsolated owns the network (released when the holder exits).
import { processStart } from '../net/ipam.js';
import { ownerTag, selfOwnerMark } from '../owner.js';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { native } from '../native.js';
import { signalName } from '../util/sys.js';
import { checkHooks, envObject, hookError, runHooks, type OciHook, type OciHooks, type OciState } from './hooks.js';
import { EventEmitter } from 'node:events';
import { randomBytes } from '../util/builtins.js';
import { SIGNALS } from '../util/sys.js';
import { spawnIsolated, spawnCreated, IsolatedProcess } from '../spawn/spawn.js';
import { ENV_OVER } from '../spawn/compose.js';
import type { IsolatedResult, NamespaceType, SpawnIsolatedOptions, Verdict } from '../plan/options.js';
import { Namespace } from '../ns/namespace.js';
import { CGroup, removeMade } from '../cgroup/cgroup.js';
import { spawnLimitKeys, validateLimits, type Limits, type SandboxLimits } from '../cgroup/limits.js';
import type { CgroupStats } from '../cgroup/drivers.js';
import { LayerStore, refString, type Container } from '../fs/store.js';
import { applyImageConfig } from '../spawn/layers/image.js';
import { errnoError, NsboxError } from '../errors.js';
import { buildPlan, idBlockSource, parseStdio, realHost, sandboxIdMaps, signalNumber, wantsIdBlock } from '../plan/index.js';
import { acquireIdBlock, type IdBlockClaim } from '../ns/idblocks.js';
import { onTeardown } from '../teardown.js';
import { bool, checkOptions, fail, isObject } from '../util/validate.js';
import { defaultStateDir } from './statedir.js';
import { sweepHandedNetwork } from '../net/gc.js';

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
  'stdio' | 'input' | 'encoding' | 'buffer' | 'all' | 'tty' | 'timeout' | 'signal' | 'killSignal' | 'forceKillAfterMs' | 'cgroup' | 'onOutputLimit' | 'parentDeathSignal'>;

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
  /**
   * The sandbox's own program (OCI's `process`). With it the sandbox is made *created*: its
   * namespaces, cgroup, root filesystem and network exist, nsbox-init waits as pid 1
   * ({@link Sandbox.pid}), and nothing of the program runs until {@link Sandbox.start} (from
   * this process, or from any other that finds the sandbox with {@link Sandbox.attach}). The
   * program then runs as pid 1's child with the sandbox's options (ids, capabilities, seccomp,
   * env, cwd) and the stdio given here; the sandbox ends when it ends, and its exit status is
   * recorded in the state directory ({@link Sandbox.exitStatus}), also when its creator is gone.
   * Excludes `holder`.
   */
  program?: SandboxProgram;
  /**
   * OCI hooks (`prestart`, `createRuntime`, `createContainer`, `startContainer`, `poststart`,
   * `poststop`), each run with the OCI state JSON on its stdin; see {@link OciHooks} for where
   * and when each runs. Needs `program` (they belong to a created sandbox's lifecycle).
   */
  hooks?: OciHooks;
  /** The OCI bundle directory, reported in the OCI state ({@link Sandbox.ociState}, hooks). Default ''. */
  bundle?: string;
  /** OCI annotations, reported in the OCI state. Default {}. */
  annotations?: Record<string, string>;
  /**
   * The sandbox's cgroup at exactly this path (OCI `linux.cgroupsPath`; see `CGroup.createAt`),
   * instead of one named `nsbox-sbx-<pid>-<start>-<id>` in `cgroupParent` or the default place.
   * nsbox makes the missing directories and `destroy()` (or `nsbox gc`, through the state file)
   * removes the ones it made. Excludes `cgroupParent`.
   */
  cgroupPath?: string;
}

/** The program of a created sandbox (see {@link SandboxOptions.program}). */
export interface SandboxProgram {
  file: string;
  args?: string[];
  /**
   * Its stdin, stdout and stderr: fds of the creator (inherited by pid 1 at create, so they
   * may be closed by the creator afterwards), `'inherit'` or `'ignore'` (default). Not
   * `'pipe'`: the creator may be gone when the program runs.
   */
  stdio?: 'ignore' | 'inherit' | [number | 'ignore' | 'inherit', number | 'ignore' | 'inherit', number | 'ignore' | 'inherit'];
  /**
   * A terminal: made in the sandbox's own devpts at create, its master sent to the unix socket
   * at `consoleSocket` (OCI `--console-socket`, SCM_RIGHTS), its slave the program's stdio
   * and controlling terminal.
   */
  tty?: { consoleSocket: string; rows?: number; cols?: number };
  /**
   * The creator's fds given to the program as 3, 4, ... (`extraFds[i]` becomes 3 + i; OCI
   * `create --preserve-fds`): pid 1 holds copies from the create on (the creator may close
   * its own), and places them when the program starts. At most 251.
   */
  extraFds?: number[];
}

/** What {@link Sandbox.exitStatus} gives: how the program ended (or the signal that ended a sandbox before it started). */
export interface SandboxExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
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
  /** The caller's fds given to the process as 3, 4, ... (see spawnIsolated's `extraFds`; runc exec's `--preserve-fds`). */
  extraFds?: number[];
}

const EXEC_KEYS = ['env', 'cwd', 'uid', 'gid', 'groups', 'stdio', 'input', 'encoding', 'buffer', 'all', 'tty', 'timeout', 'signal', 'killSignal',
  'forceKillAfterMs', 'parentDeathSignal', 'limits', 'onOutputLimit', 'umask', 'oomScoreAdj', 'capabilities', 'allowNewPrivileges', 'rlimits', 'seccomp', 'extraFds'];
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
  /** `cgroupPath`: the cgroup directories nsbox made (deepest first), which destroy and gc remove */
  cgroupMade?: string[];
  /** the image container, when made from an image */
  image: { store: string; container: string; ref: string } | null;
  /** exec defaults (serialisable part of the template) */
  exec: Record<string, unknown>;
  /** variables the sandbox's network set for its first program (an egress policy's proxy variables), set for every exec too */
  netEnv?: Record<string, string>;
  /** a created sandbox's program (absent for a holder sandbox) */
  program?: { file: string; args: string[] };
  hooks?: OciHooks;
  bundle?: string;
  annotations?: Record<string, string>;
}

/** The lifecycle state of a sandbox. */
export type SandboxStatus = 'created' | 'running' | 'exited';

/** One entry of {@link Sandbox.list}. */
export interface SandboxInfo {
  id: string;
  /**
   * `'created'` while a sandbox with a `program` waits for its start, `'running'` while the
   * holder (pid 1) lives, else `'exited'` (its resources stay until destroy).
   */
  status: SandboxStatus;
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

  /**
   * Where the sandbox is in its lifecycle: `'created'` (a sandbox with a `program` that waits
   * for {@link start}), `'running'`, or `'exited'` (pid 1 has ended; what it left stays until
   * {@link destroy}).
   */
  get status(): SandboxStatus {
    if (!this.running) return 'exited';
    if (!this.#state.program) return 'running';
    return readRecord(this.#recordFile()).started ? 'running' : 'created';
  }

  /** The state dir's file where pid 1 records a created sandbox's start and exit. */
  #recordFile(): string {
    return this.#stateFile.replace(/\.json$/, '.exit');
  }

  /** The socket a created sandbox's pid 1 waits on for its start. */
  #socketFile(): string {
    return this.#stateFile.replace(/\.json$/, '.sock');
  }

  /**
   * How a created sandbox's program ended, as pid 1 recorded it in the state directory (so
   * also when the process that made the sandbox is gone): its exit code, or the signal that
   * ended it (or that ended the sandbox before it was started). Null while it has not ended,
   * for a sandbox without a `program`, and when pid 1 was killed before it could record it.
   */
  exitStatus(): SandboxExit | null {
    if (!this.#state.program) return null;
    const r = readRecord(this.#recordFile());
    if (r.status === undefined) return null;
    const sig = r.status & 0x7f;
    if (sig === 0) return { exitCode: (r.status >> 8) & 0xff, signal: null };
    return { exitCode: null, signal: signalName(sig) ?? (`SIG${sig}` as NodeJS.Signals) };
  }

  /** The sandbox's state as the OCI runtime spec gives it (`runtime state`; what hooks read on stdin). */
  ociState(): OciState {
    const st = this.status;
    const out: OciState = {
      ociVersion: '1.0.2', id: this.id, status: st === 'exited' ? 'stopped' : st, bundle: this.#state.bundle ?? '',
      annotations: this.#state.annotations ?? {},
    };
    if (st !== 'exited') out.pid = this.#state.holderPid;
    return out;
  }

  /**
   * Starts a created sandbox's program (see {@link SandboxOptions.program}), from this or any
   * other process: runs the `startContainer` hooks inside the sandbox, then the program (a fork
   * and exec by pid 1), then the `poststart` hooks. Resolves once the program has exec'd;
   * rejects with NsboxError step 'exec' when it cannot be run (the sandbox then ends with exit
   * code 127), ESRCH when the sandbox is not running, EBUSY when it was started already, and
   * EINVAL for a sandbox made without a `program`.
   */
  async start(): Promise<void> {
    if (!this.#state.program) throw errnoError(22, 'sandbox', 'start', this.id, 'the sandbox has no program to start (create it with options.program)');
    const st = this.#destroying ? 'exited' : this.status;
    if (st === 'running') throw errnoError(16, 'sandbox', 'start', this.id, 'the sandbox was started already');
    if (st !== 'created') throw errnoError(3, 'sandbox', 'start', this.id, 'the sandbox is not running');
    const hooks = this.#state.hooks ?? {};
    try {
      for (const h of hooks.startContainer ?? []) await this.#hookInside('startContainer', h, this.ociState(), []);
    } catch (e) {
      // OCI: a failed startContainer hook stops the container
      await this.#killAll();
      throw e;
    }
    await startProgram(this.#socketFile(), this.id);
    rmSync(this.#socketFile(), { force: true });
    // the state of the start: running with pid 1, also when the program has ended meanwhile
    // (OCI: poststart is called after the process is started)
    if (hooks.poststart?.length) await runHooks('poststart', hooks.poststart, { ...this.ociState(), status: 'running', pid: this.#state.holderPid });
  }

  /** Runs one hook inside the sandbox (its namespaces but `leave`), the OCI state on stdin. */
  async #hookInside(kind: string, h: OciHook, state: OciState, leave: NamespaceType[]): Promise<void> {
    const args = h.args ?? [h.path];
    const p = this.#exec(h.path, args.slice(1), { env: envObject(h.env), input: JSON.stringify(state), ...(h.timeout ? { timeout: h.timeout * 1000 } : {}) }, leave);
    let r: IsolatedResult<string>;
    try { r = await p; } catch (e) {
      throw hookError(kind, h, `could not be run: ${(e as Error).message}`, e instanceof NsboxError ? Math.abs(e.errno) : 5);
    }
    const last = r.stderr.trim().split('\n').pop() ?? '';
    if (r.timedOut) throw hookError(kind, h, `did not end within its timeout of ${h.timeout} s`, 62);
    if (r.signal) throw hookError(kind, h, `was killed by ${r.signal}${last ? `: ${last}` : ''}`);
    if (r.exitCode !== 0) throw hookError(kind, h, `exited with ${r.exitCode}${last ? `: ${last}` : ''}`);
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
    // `join` is the sandbox's: its holder enters those namespaces (OCI linux.namespaces[].path)
    for (const k of ['stdio', 'input', 'encoding', 'buffer', 'all', 'tty', 'timeout', 'signal', 'killSignal', 'forceKillAfterMs', 'cgroup', 'onOutputLimit', 'parentDeathSignal']) {
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
    let program: SandboxProgram | undefined;
    if (o.program !== undefined) {
      if (o.holder !== undefined) fail('options.program', 'and options.holder exclude each other (the program is pid 1\'s)');
      checkOptions('options.program', o.program, ['file', 'args', 'stdio', 'tty', 'extraFds']);
      const pg = o.program;
      if (typeof pg.file !== 'string' || pg.file === '') fail('options.program.file', 'must be a non-empty string');
      if (pg.args !== undefined && (!Array.isArray(pg.args) || pg.args.some((a) => typeof a !== 'string'))) fail('options.program.args', 'must be an array of strings');
      if (pg.stdio !== undefined) {
        const st = parseStdio(pg.stdio as SpawnIsolatedOptions['stdio']);
        if (st.includes('pipe')) fail('options.program.stdio', "must be fds, 'inherit' or 'ignore' (not 'pipe': the creator may be gone when the program runs)");
      }
      if (pg.tty !== undefined) {
        checkOptions('options.program.tty', pg.tty, ['consoleSocket', 'rows', 'cols']);
        if (typeof pg.tty.consoleSocket !== 'string' || !pg.tty.consoleSocket.startsWith('/')) fail('options.program.tty.consoleSocket', 'must be the absolute path of a listening unix socket');
        if (pg.stdio !== undefined) fail('options.program.stdio', 'and options.program.tty exclude each other (the terminal is its stdio)');
      }
      if (pg.extraFds !== undefined) {
        if (!Array.isArray(pg.extraFds)) fail('options.program.extraFds', 'must be an array of fds');
        if (pg.extraFds.length > 251) throw new RangeError(`options.program.extraFds may hold at most 251 fds (got ${pg.extraFds.length})`);
        pg.extraFds.forEach((fd, i) => { if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) fail(`options.program.extraFds[${i}]`, 'must be an open fd (an integer >= 0)'); });
      }
      program = { file: pg.file, args: pg.args ?? [], ...(pg.stdio !== undefined ? { stdio: pg.stdio } : {}), ...(pg.tty ? { tty: { ...pg.tty } } : {}), ...(pg.extraFds?.length ? { extraFds: [...pg.extraFds] } : {}) };
      holderFile = program.file;
      holderArgs = program.args!;
    }
    let hooks: OciHooks | undefined;
    if (o.hooks !== undefined) {
      if (!program) fail('options.hooks', 'needs options.program (hooks belong to a created sandbox\'s lifecycle)');
      hooks = checkHooks('options.hooks', o.hooks);
    }
    if (o.bundle !== undefined && (typeof o.bundle !== 'string' || !o.bundle.startsWith('/'))) fail('options.bundle', 'must be an absolute path');
    if (o.cgroupPath !== undefined) {
      if (typeof o.cgroupPath !== 'string' || o.cgroupPath === '') fail('options.cgroupPath', 'must be a non-empty string');
      if (o.cgroupParent !== undefined) fail('options.cgroupPath', 'and options.cgroupParent exclude each other');
      if (o.cgroupPath.split('/').some((x) => x === '..' || x === '.')) fail('options.cgroupPath', "may not contain '.' or '..'");
    }
    if (o.annotations !== undefined && (!plain(o.annotations) || Object.values(o.annotations).some((v) => typeof v !== 'string'))) fail('options.annotations', 'must be an object of strings');
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
    for (const k of ['id', 'holder', 'keepAlive', 'stateDir', 'image', 'limits', 'program', 'hooks', 'bundle', 'annotations', 'cgroupPath']) delete (base as Record<string, unknown>)[k];
    // check everything else now (spawnIsolated validates synchronously), against a stand-in root
    // and with no process made: a plan with a bad option throws here
    const probeOpts: SpawnIsolatedOptions = { ...base, ...(store ? { rootfs: '/usr' } : {}) };
    if (store && probeOpts.cwd !== undefined) delete probeOpts.cwd;
    buildPlan({ file: holderFile, args: holderArgs, options: probeOpts });
    if (Object.keys(spawnLimits).length) validateLimits(spawnLimits as SandboxLimits);
    if (stateDir !== undefined && program && Buffer.byteLength(`${stateDir}/${id}.sock`) > 107) {
      fail('options.stateDir', `is too long for the sandbox's start socket (${stateDir}/${id}.sock: a unix socket's path has at most 107 bytes)`, RangeError);
    }
    return { id, stateDir, keepAlive, holderFile, holderArgs, holderStdio, cgLimits, spawnLimits, store, ref, base, program, hooks, bundle: o.bundle ?? '', annotations: o.annotations ?? {} };
  }

  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const v = Sandbox.validate(options);
    const { id, keepAlive, holderFile, holderArgs, holderStdio, cgLimits, spawnLimits, store, ref, base, program, hooks } = v;
    const stateDir = v.stateDir ?? defaultStateDir(true);
    const stateFile = `${stateDir}/${id}.json`;
    if (program && Buffer.byteLength(`${stateDir}/${id}.sock`) > 107) {
      fail('options.id', `is too long for the sandbox's start socket in ${stateDir} (a unix socket's path has at most 107 bytes): pick a shorter id or options.stateDir`, RangeError);
    }
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
      const needCgroup = Object.keys(cgLimits).length > 0 || options.cgroupParent !== undefined || options.cgroupPath !== undefined;
      let cg: CGroup | null = null;
      let noCgroup: NsboxError | undefined;
      try {
        if (options.cgroupPath !== undefined) {
          // the caller's path: nsbox makes what is missing and records it in the state file
          // first, so that destroy() from another process or gc (after a crash) removes it
          cg = await CGroup.createAt(options.cgroupPath, {
            limits: cgLimits as Limits,
            // the directories about to be made, recorded before the first mkdir (a crash
            // between mkdir and the record would leave them unnamed anywhere)
            intent: (dirs) => { if (dirs.length) writeFileSync(stateFile, JSON.stringify({ ...reservation, cgroupMade: dirs }), { mode: 0o600 }); },
          });
          writeFileSync(stateFile, JSON.stringify({ ...reservation, cgroup: cg.paths, cgroupMade: cg.madeDirs }), { mode: 0o600 });
        } else cg = await CGroup.create(`nsbox-sbx-${ownerTag()}-${id.replace(/^nsbox-/, '')}`, { limits: cgLimits as Limits, parent: options.cgroupParent });
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
      // a created sandbox: pid 1 waits for its start on a socket of the state directory and
      // records the program's exit in a file beside it (see spawnCreated)
      let lifeFds: { record: number; listen: number; extra?: number[] } | undefined;
      if (program) {
        const record = openSync(`${stateDir}/${id}.exit`, 'wx', 0o600);
        undo.push(() => rmSync(`${stateDir}/${id}.exit`, { force: true }));
        let listen: number;
        try { listen = native().unixListen(`${stateDir}/${id}.sock`, 0o600); } catch (e) { closeSync(record); throw e; }
        undo.push(() => rmSync(`${stateDir}/${id}.sock`, { force: true }));
        lifeFds = { record, listen, ...(program.extraFds ? { extra: program.extraFds } : {}) };
      }
      let holder: IsolatedProcess;
      try {
        holder = lifeFds
          ? spawnCreated(file, args, {
            ...spawnOpts, ...(cg ? { cgroup: cg } : {}), buffer: false, parentDeathSignal: keepAlive ? false : 'SIGKILL',
            ...(program!.tty ? { tty: program!.tty } : { stdio: (program!.stdio ?? 'ignore') as SpawnIsolatedOptions['stdio'] }),
          }, lifeFds)
          : spawnIsolated(file, args, {
            ...spawnOpts, ...(cg ? { cgroup: cg } : {}), stdio: holderStdio, buffer: false,
            parentDeathSignal: keepAlive ? false : 'SIGKILL',
          });
        holder.catch(() => {});
        await new Promise<void>((resolve, reject) => {
          holder.once('spawn', () => resolve());
          holder.then(() => reject(errnoError(3, 'sandbox', 'holder', file, 'the holder exited at once')), reject);
        });
      } finally {
        // pid 1 has its own copies once it runs
        if (lifeFds) { closeSync(lifeFds.record); native().closeFd(lifeFds.listen); }
      }
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
        ...(cg?.madeDirs ? { cgroupMade: [...cg.madeDirs] } : {}),
        image: store ? { store: store.root, container: id, ref: ref! } : null,
        exec: serialisable(execDefaults),
        ...(holder._layerEnv ? { netEnv: { ...holder._layerEnv } } : {}),
        ...(program ? { program: { file, args }, hooks: hooks ?? {}, bundle: v.bundle, annotations: v.annotations } : {}),
      };
      writeState(stateFile, state);
      if (keepAlive) holder.unref();
      const exited = holder.then(() => undefined, () => undefined).finally(() => block?.release());
      const box = new Sandbox({ id, cgroup: cg, container, state, stateFile, holder, ns, execDefaults, exited, spawnLimits });
      box.#dropNsFds = dropNsFds;
      box.#dropCgroup = dropTeardown;
      box.#noCgroup = noCgroup;
      holder.on('exit', (code, signal) => box.emit('exit', code, signal));
      if (hooks) {
        // OCI: createRuntime (prestart first, deprecated) on the host, createContainer inside
        const st = box.ociState();
        await runHooks('prestart', hooks.prestart, st);
        await runHooks('createRuntime', hooks.createRuntime, st);
        for (const h of hooks.createContainer ?? []) await box.#hookInside('createContainer', h, st, ['mount']);
      }
      return box;
    } catch (e) {
      // a keepAlive holder is unref'd by now: without a handle of ours the loop could end while
      // the rollback waits for it, and the process exit (0) with the sandbox half undone
      const keep = setInterval(() => {}, 1 << 30);
      try { await rollback(); } finally { clearInterval(keep); }
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
        id: s.id, status: processStart(s.holderPid) !== s.holderStart ? 'exited' : s.program && !readRecord(`${dir}/${n.slice(0, -5)}.exit`).started ? 'created' : 'running', holderPid: s.holderPid,
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
    return this.#exec(file, args, options, []);
  }

  /** exec, staying out of the sandbox's namespaces `leave` (a createContainer hook keeps the host's mount namespace). */
  #exec<T extends string | Buffer = string>(file: string, args: string[], options: ExecOptions, leave: NamespaceType[]): SandboxProcess<T> {
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
    for (const t of JOINABLE) if (!this.#ns[t] || leave.includes(t)) namespaces[t] = false;
    spawnOpts.namespaces = namespaces;
    spawnOpts.join = { ...this.#ns };
    for (const t of leave) delete spawnOpts.join[t];
    if (!this.#ns.user) spawnOpts.user = false;
    if (!this.#ns.net) spawnOpts.network = 'host';
    // programs joining the sandbox's network get what it set for the first (an egress policy's
    // proxy and CA variables), over their env as the first program got them (not an OCI hook:
    // its env is the one its spec gives)
    if (this.#state.netEnv && leave.length === 0) (spawnOpts as { [ENV_OVER]?: Record<string, string> })[ENV_OVER] = this.#state.netEnv;
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
      else signalHolder(this.#state, 9);
      return Promise.resolve();
    }
    if (this.cgroup.destroyed) return Promise.resolve();
    this.#killing ??= this.cgroup.kill().catch(() => {}).finally(() => { this.#killing = undefined; });
    return this.#killing;
  }

  /**
   * Changes the sandbox's cgroup limits while it runs (`runc update`): the cgroup keys of
   * `limits` as `Sandbox.create` takes them (memory, cpus, pids, cpuset, ...); a limit left out
   * stays as it is. Per-process limits (wallTimeMs, cpuTimeMs, outputBytes) are exec()'s: a
   * TypeError. Works on an attached sandbox too. NsboxError when the sandbox has no cgroup.
   */
  async update(options: { limits: Limits }): Promise<void> {
    if (!plain(options) || !plain(options.limits)) fail('options.limits', 'must be an object of cgroup limits');
    for (const k of Object.keys(options.limits)) if (spawnLimitKeys.includes(k)) fail(`options.limits.${k}`, 'is a per-process limit: give it to exec()');
    validateLimits(options.limits, { cgroupOnly: true });
    await this.#alive('update').update(options.limits);
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
      else signalHolder(this.#state, sig);
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
        if (!signalHolder(this.#state, sig)) throw errnoError(3, 'sandbox', 'signal', this.id, 'the sandbox is not running');
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
          else await removeOpenedCgroup(this.cgroup, this.#state.cgroupMade);
          this.#dropCgroup();
        } catch (e) { err ??= e; }
      }
      if (this.container) {
        try { await this.container.remove(); } catch (e) { err ??= e; }
      }
      // attached from another process than the creator: the bridge network handed over to the
      // holder (its lease, DNAT entries, veth) goes now rather than with the next gc
      if (!this.#holder) await sweepHandedNetwork(this.#state.holderPid, this.#state.holderStart);
      rmSync(this.#stateFile, { force: true });
      if (this.#state.program) {
        rmSync(this.#socketFile(), { force: true });
        rmSync(this.#recordFile(), { force: true });
      }
      if (err) throw err;
      // OCI: poststop once the container is gone, before delete returns; a failure is reported
      if (this.#state.hooks?.poststop) await runHooks('poststop', this.#state.hooks.poststop, { ...this.ociState(), status: 'stopped' });
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
async function removeOpenedCgroup(cg: CGroup, made?: string[]): Promise<void> {
  await cg.kill().catch(() => {});
  // a cgroupPath: exactly the directories nsbox made
  if (made) { await removeMade(made); return; }
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

/** What pid 1 of a created sandbox recorded: "run" once started, then the program's raw wait status. */
function readRecord(file: string): { started: boolean; status?: number } {
  let b: Buffer;
  try { b = readFileSync(file); } catch { return { started: false }; }
  return { started: b.length >= 4 && b.subarray(0, 3).toString() === 'run', ...(b.length >= 8 ? { status: b.readInt32LE(4) } : {}) };
}

/** Size of nsbox's ChildMsg (addon/src/msg.h): kind, pid, then Err: errno, step[32], syscall[32], path[256], message[256]. */
const CHILD_MSG = 4 + 4 + 4 + 32 + 32 + 256 + 256;

function cstr(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z < 0 ? s : s.subarray(0, z)).toString();
}

/**
 * A created sandbox's start: one connection to its pid 1's socket, one byte; the connection is
 * then the program's error pipe (EOF once it has exec'd, a ChildMsg when it could not run).
 */
function startProgram(socket: string, id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = netConnect(socket);
    const got: Buffer[] = [];
    c.on('connect', () => c.write('s'));
    c.on('data', (d: Buffer) => got.push(d));
    c.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET') reject(errnoError(16, 'sandbox', 'start', id, 'the sandbox was started already (or has ended)'));
      else reject(errnoError(typeof e.errno === 'number' ? Math.abs(e.errno) : 5, 'sandbox', 'start', id, e.message));
    });
    c.on('end', () => {
      const b = Buffer.concat(got);
      if (b.length === 0) return resolve();
      if (b.length < CHILD_MSG) return reject(errnoError(71, 'sandbox', 'start', id, 'a short report from the sandbox\'s pid 1'));
      const errno = b.readInt32LE(8);
      reject(errnoError(errno, cstr(b, 12, 32), cstr(b, 44, 32), cstr(b, 76, 256) || undefined));
    });
  });
}

/**
 * A signal to the recorded pid 1 of a sandbox this process did not make (an attached one):
 * through a pidfd opened first and then checked against the recorded start time, so a
 * recycled pid is never signalled. False when that process is gone.
 */
function signalHolder(s: Pick<SandboxState, 'holderPid' | 'holderStart'>, sig: number): boolean {
  const fd = native().pidfdOpen(s.holderPid);
  if (fd < 0) return false;
  try {
    if (processStart(s.holderPid) !== s.holderStart) return false;
    return native().pidfdSignal(fd, sig) === 0;
  } finally {
    native().closeFd(fd);
  }
}

import { Socket } from 'node:net';
import { ReadStream } from 'node:tty';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { EventEmitter } from 'node:events';
import { native, type ExitInfo, type SpawnOutput } from '../native.js';
import { NsboxError } from '../errors.js';
import { publicError } from '../plan/index.js';
import { usernsBlockers } from '../security/userns.js';
import { signalName } from '../util/sys.js';
import { buildPlan, disableViewTemplates, encodeOps, encodeTemplate, parseStdio, signalNumber, type Plan } from '../plan/index.js';
import type { IsolatedResult, IsolationReport, SpawnIsolatedOptions, Verdict } from '../plan/options.js';
import { parseByteSize, type SandboxLimits } from '../cgroup/limits.js';
import type { CGroup } from '../cgroup/cgroup.js';
import { close } from 'node:fs';
import { onTeardown } from '../teardown.js';
import type { Bindings, LayerContext, LayerRun, SpawnInput } from './layer.js';
import { LAYERS, type CgroupRun } from './layers/index.js';
import { composePlan, contributedEnv, envOver, ENV_OVER, isolationReport } from './compose.js';
import { sendFds } from '../net/fdpass.js';
import type { EgressControl } from './layers/egress.js';
import { imageTemplateFailed } from './layers/image.js';
import type { EgressDeniedEvent } from '../net/egress/service.js';


/** How long nsbox-init gets to end a sandbox it was asked to kill before pid 1 itself is SIGKILLed. */
const INIT_KILL_GRACE_MS = 1000;

/** @internal a run handed to a prepared sandbox (or the failure of starting it) */
type ServeRequest = { stdio: [number, number, number]; options: Partial<SpawnIsolatedOptions>; exec?: Promise<unknown> } | { error: unknown };
/** A prepared sandbox's side of the hand-off: the control fd once made, then the run (or null). */
type Serve = { ready: (ctlFd: number) => void; request: Promise<ServeRequest | null> };
type SpawnOut = SpawnOutput;

export type { SpawnInput } from './layer.js';

/** The layers' runs for one spawn (see ./layer.ts), the cgroup's singled out: the running sandbox asks it things. */
interface Layers {
  runs: LayerRun[];
  cgroup: CgroupRun | undefined;
}

/**
 * @internal A test's seam around the addon: sees (and may replace) the composed plan of each
 * spawn, to make the kernel refuse a step on purpose. Not public; nothing sets it but a test.
 */
let planSeam: ((plan: Readonly<Plan>, o: SpawnIsolatedOptions) => Plan) | undefined;
/** @internal see planSeam */
export function setPlanSeam(f: typeof planSeam): void {
  planSeam = f;
}

/** What the pipeline lends layers: helper sandboxes (a user-mode network's holder and helper). */
const layerContext: LayerContext = { spawn: (file, args, options) => spawnIsolated(file, args, options) };

/** Each layer looks at the options (its mistakes throw here, before anything is made). */
function openLayers(options: SpawnIsolatedOptions): Layers {
  const runs: LayerRun[] = [];
  let cgroup: CgroupRun | undefined;
  for (const layer of LAYERS) {
    const run = layer.open(options, layerContext);
    if (!run) continue;
    runs.push(run);
    if (layer.name === 'cgroup') cgroup = run as CgroupRun;
  }
  return { runs, cgroup };
}

/** stdin's PassThrough, remembering whether the caller wrote to it, ended it or piped into it. */
class StdinStream extends PassThrough {
  used = false;
  /** nsbox ended it (the default stdin nobody took): a late write says why */
  autoEnded = false;
  constructor() {
    super();
    this.once('pipe', () => { this.used = true; });
  }
  override write(chunk: unknown, encoding?: BufferEncoding | ((error: Error | null | undefined) => void), cb?: (error: Error | null | undefined) => void): boolean {
    if (this.autoEnded) {
      const e = Object.assign(new Error("write after end: nsbox ended this stdin because nothing was written to it in the tick of the spawn (see README, 'stdin'); pass stdio: 'pipe' to keep it open"), { code: 'ERR_STREAM_WRITE_AFTER_END' });
      const done = typeof encoding === 'function' ? encoding : cb;
      process.nextTick(() => { done?.(e); this.emit('error', e); });
      return false;
    }
    return super.write(chunk, encoding as BufferEncoding, cb);
  }
  override _write(chunk: unknown, encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.used = true;
    super._write(chunk, encoding, cb);
  }
}

/** The typed events of an {@link IsolatedProcess} beside ChildProcess's own (`'egress-denied'`, with an egress policy). */
export interface IsolatedProcess<T extends string | Buffer = string> {
  on(event: 'egress-denied', listener: (e: EgressDeniedEvent) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'egress-denied', listener: (e: EgressDeniedEvent) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * A running sandbox. Await it (it is a PromiseLike) for the {@link IsolatedResult}.
 * Events, as `ChildProcess` has them: `'spawn'` once the program runs, `'exit'` (code, signal)
 * when pid 1 is reaped, `'close'` (code, signal) once its stdio streams have ended too, and
 * `'error'` when the sandbox could not be made (then `'close'` follows, and no `'exit'`).
 * `'error'` is emitted when the process has an `'error'` listener, or when nobody awaits it
 * (no `then`/`catch`/`finally` call): then, as with `child_process`, an unhandled `'error'`
 * throws. A caller who awaits gets the rejection instead and is never crashed by the event.
 */
export class IsolatedProcess<T extends string | Buffer = string> extends EventEmitter implements PromiseLike<IsolatedResult<T>> {
  /** Host pid of the sandbox's first process; undefined if setup failed. */
  pid: number | undefined;
  /** Writable stdin when stdio[0] is 'pipe' (usable at once; written through once the sandbox runs). */
  readonly stdin: Writable | null;
  /** Readable stdout when stdio[1] is 'pipe' (null with `all: true` when stderr is piped too: one channel). */
  readonly stdout: Readable | null;
  /** Readable stderr when stdio[2] is 'pipe' (null with `all: true` when stdout is piped too). */
  readonly stderr: Readable | null;
  /** stdout and stderr in the order the program wrote them, with `all: true` (else null). */
  readonly all: Readable | null;
  /** Exit code once exited, else null; a negative errno when the sandbox could not be made (as `ChildProcess`). */
  exitCode: number | null = null;
  /** Signal that ended it once exited, else null. */
  signalCode: NodeJS.Signals | null = null;
  /** Whether {@link IsolatedProcess.kill} (or a limit, timeout or abort) delivered a signal. */
  killed = false;
  /** The program as given to spawnIsolated (for `IMAGE_COMMAND`, the image's command once resolved). */
  spawnfile: string;
  /** Its full argument list, `spawnfile` first (as `ChildProcess.spawnargs`). */
  spawnargs: string[];
  /**
   * With an egress policy (`network: { mode: 'egress' }`): `update({ allow, deny, inject })`
   * while it runs, and `egress`, the per-host counts so far. Also emits `'egress-denied'`
   * ({@link EgressDeniedEvent}) for every attempt the policy denied.
   */
  declare readonly network?: EgressControl;

  #pidfd = -1;
  #exited = false;
  #timedOut = false;
  #canceled = false;
  /** the first limit (or cancellation) that made nsbox stop the sandbox */
  #fired: Verdict | undefined;
  #cgroup: CgroupRun | undefined;
  #killSignal: number;
  #forceKillAfterMs: number;
  #timers: NodeJS.Timeout[] = [];
  #promise: Promise<IsolatedResult<T>>;
  #cleanup: Array<() => void> = [];
  #tty: Socket | undefined;
  #serveError: { error: unknown } | undefined;
  #serve: Serve | undefined;
  /** pid 1 is nsbox-init running the program: a SIGKILL goes through it (see #sigkill) */
  #initKills = false;
  #initKillSent = false;
  /** someone called then/catch/finally: a setup failure is theirs, not an 'error' event's */
  #observed = false;
  /** stdout and stderr share one socket (`all: true`): exact write order */
  #merged: boolean;
  #closed = false;
  /** the result comes before the layers' release, which #released then tracks (a pool's run: _deferRelease) */
  #deferRelease = false;
  #released: Promise<void> | undefined;
  #layerEnv: Record<string, string> | undefined;

  /** @internal use {@link spawnIsolated} */
  constructor(plan: Plan, options: SpawnIsolatedOptions, layers: Layers, input?: SpawnInput, serve?: Serve) {
    super();
    this.#serve = serve;
    this.#killSignal = signalNumber('options.killSignal', options.killSignal ?? 'SIGKILL');
    this.#forceKillAfterMs = options.forceKillAfterMs ?? 2000;
    // the streams exist from the start, as with child_process; the sandbox's sockets are
    // piped into them once it runs (setup may await a cgroup or a network first)
    const [s0, s1, s2] = options.tty ? (consoleSocketOf(options.tty) !== undefined ? ['ignore', 'ignore', 'ignore'] as const : ['pipe', 'pipe', 'ignore'] as const) : parseStdio(options.stdio);
    this.spawnfile = plan.argv[0];
    this.spawnargs = [...plan.argv];
    this.#merged = mergedOutput(options);
    this.stdin = s0 === 'pipe' ? new StdinStream() : null;
    this.stdout = s1 === 'pipe' && !this.#merged ? new PassThrough() : null;
    this.stderr = s2 === 'pipe' && !this.#merged ? new PassThrough() : null;
    this.all = options.all === true && (this.#merged || this.stdout || this.stderr) ? new PassThrough() : null;
    if (this.all && options.buffer !== false) this.all.resume();
    if (this.stdin && options.input !== undefined) this.stdin.end(options.input);
    // a prepared sandbox's stdin is decided when it runs its program
    if (!serve) this._defaultStdin(options);
    if (options.buffer !== false) {
      // the result collects the output: never let an unread stream stall the program
      this.stdout?.resume();
      this.stderr?.resume();
    }
    this.#cgroup = layers.cgroup;
    for (const r of layers.runs) r.attach?.(this);
    this.#promise = this.#run(plan, options, layers, input);
    // the promise side never rejects unobserved (no unhandledRejection); the failure goes to
    // whoever awaits, or out as 'error' (see the class comment)
    this.#promise.then(() => {}, (err: unknown) => this.#failed(err));
  }

  /**
   * @internal The variables nsbox's layers set in the program's environment (an egress
   * policy's proxy and CA variables), once the sandbox is made; undefined when none.
   */
  get _layerEnv(): Readonly<Record<string, string>> | undefined {
    return this.#layerEnv;
  }

  /**
   * @internal The default stdin (item of the contract, see README "stdin"): the caller gave no
   * `input`, no explicit `stdio` and no `tty`: stdin ends (the program reads EOF, as with docker
   * without `-i`) unless the caller writes to, ends or pipes into `p.stdin` before the event
   * loop turns (setImmediate after the spawn, or after `run()` of a prepared sandbox).
   */
  _defaultStdin(options: Pick<SpawnIsolatedOptions, 'input' | 'stdio' | 'tty'>): void {
    const stdin = this.stdin as StdinStream | null;
    if (!stdin || options.input !== undefined || options.stdio !== undefined || options.tty) return;
    setImmediate(() => {
      if (stdin.used || stdin.writableEnded || stdin.destroyed) return;
      stdin.end();
      stdin.autoEnded = true;
    });
  }

  /** The sandbox could not be made (or a prepared run could not start): 'error', then 'close'. */
  #failed(err: unknown): void {
    if (this.pid === undefined && err instanceof NsboxError) this.exitCode = err.errno;
    process.nextTick(() => {
      try {
        if (this.listenerCount('error') > 0 || !this.#observed) this.emit('error', err);
      } finally {
        this.#emitClose();
      }
    });
  }

  #emitClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close', this.exitCode, this.signalCode);
  }

  /** No program will write or read: every stream ends. */
  #endStreams(): void {
    this.stdin?.destroy();
    (this.stdout as PassThrough | null)?.end();
    (this.stderr as PassThrough | null)?.end();
    (this.all as PassThrough | null)?.end();
  }

  /** Steps 3 to 7 of the pipeline: resolve, acquire, compose, spawn, report. Throws with nothing left but what release() undoes. */
  async #make(base: Plan, o: SpawnIsolatedOptions, layers: Layers, input: SpawnInput | undefined) {
    const { runs } = layers;
    if (o.signal?.aborted) throw abortError(o.signal);
    if (input) {
      let cur = input;
      for (const r of runs) {
        if (!r.resolve) continue;
        const next = await r.resolve(cur);
        if (next) cur = next;
      }
      if (cur !== input) {
        // with the inputs the layers resolved (an image's rootfs, the sandbox's id block)
        base = base.serve ? { ...buildPlan(cur), serve: true } : buildPlan(cur);
        o = cur.options;
        // the image's own command, once known
        this.spawnfile = base.argv[0];
        this.spawnargs = [...base.argv];
      }
    }
    const bindings: Bindings = { cgroupFd: -1, cgroupTasks: [], cgroupProcs: [], net: [] };
    for (const r of runs) await r.acquire?.(base, bindings);
    const parts = runs.map((r) => r.contribute?.(base));
    // what the layers set in the environment (an egress policy's proxy variables): kept for
    // programs that join this sandbox later (Sandbox.exec, a prepared sandbox's run)
    this.#layerEnv = contributedEnv(parts);
    const over = (o as { [ENV_OVER]?: Record<string, string> })[ENV_OVER];
    if (over) parts.push({ env: over });
    let plan = composePlan(base, parts);
    if (planSeam) plan = Object.freeze(planSeam(plan, o));
    if (o.signal?.aborted) throw abortError(o.signal);
    let out;
    try {
      out = await spawnNative(plan, bindings);
    } finally {
      layers.cgroup?.placed();
    }
    for (const r of runs) {
      // the sandbox runs already: a hook that fails here must not fail the spawn (what it hands
      // over stays with this process, which removes it as before)
      try { r.spawned?.(out.pid); } catch { /* kept by its creator */ }
    }
    // for the result: made while the program starts, not before
    const isolation = isolationReport(plan, o, runs.map((r) => r.report?.(plan)));
    return { plan, out, options: o, isolation };
  }

  /**
   * The pipeline (see docs/architecture.md): resolve the inputs, acquire what the plan needs
   * into bindings, compose the one frozen plan, spawn (#make); then watch the sandbox, and
   * release every layer in reverse on every path.
   */
  async #run(base: Plan, o: SpawnIsolatedOptions, layers: Layers, input?: SpawnInput): Promise<IsolatedResult<T>> {
    let started = performance.now();
    const release = async () => {
      for (const r of [...layers.runs].reverse()) {
        try { await r.release?.(); } catch { /* release must not mask the result */ }
      }
    };
    let made;
    try {
      made = await this.#make(base, o, layers, input);
    } catch (err) {
      await release();
      this.#endStreams();
      throw err;
    }
    const { isolation } = made;
    let { out } = made;
    o = made.options;
    // what the rest needs of the plan; the plan itself (its ops and mounts: most of what a
    // sandbox would keep in Node's heap) is not held while the sandbox runs
    const plan = { pdeathsig: made.plan.pdeathsig, netPremade: made.plan.netPremade };
    const initIsPid1 = made.plan.init && made.plan.summary.namespaces.includes('pid');
    made = undefined;
    base = undefined as unknown as Plan;
    input = undefined;
    this.pid = out.pid;
    this.#pidfd = out.pidfd;
    this.#initKills = initIsPid1 && !this.#serve;
    // fds of ours that no Node handle owns (and a prepared sandbox's pidfd until its run is
    // watched): closed by the thread's teardown if it comes first
    let dropFds = onTeardown({ fds: [out.mntNsFd, out.ctlFd].filter((f) => f >= 0), pidfds: this.#serve && plan.pdeathsig !== 0 ? [out.pidfd] : [] });
    if (this.#serve) {
      ({ out, options: o, dropFds } = await this.#awaitRun(this.#serve, out, o, initIsPid1, dropFds));
      if (!this.#canceled) started = performance.now();
    }
    const output = this.#readOutput(out, o);
    const info = await this.#watch(plan, out, o, layers.cgroup);
    this.#exited = true;
    this.#pidfd = -1; // closed by the addon after the reap
    for (const t of this.#timers) clearTimeout(t);
    for (const c of this.#cleanup) c();
    this.exitCode = info.exitCode ?? null;
    this.signalCode = info.signal !== undefined ? signalName(info.signal) ?? (`SIG${info.signal}` as NodeJS.Signals) : null;
    this.emit('exit', this.exitCode, this.signalCode);
    output.stdinSocket?.destroy();
    this.stdin?.destroy();
    // output paused at the cap is not read further
    if (output.truncated && o.onOutputLimit !== 'truncate') for (const x of output.sockets) x.destroy();
    await Promise.all(output.done);
    this.#emitClose();
    let verdict: Verdict = this.#fired ?? (this.signalCode ? 'signaled' : 'exited');
    // with pid 1 gone its pid namespace is empty: a pooled run's cgroup only needs reading.
    // A prepared sandbox whose run failed to start or that was destroyed unrun: its cgroup goes
    // before the error or the canceled result (release below, awaited), not after it
    const unrun = this.#serve !== undefined && (this.#serveError !== undefined || this.#canceled);
    const finished = await layers.cgroup?.finish((this.#deferRelease && this.#serve !== undefined) || unrun);
    const cgUsage = finished?.usage;
    if (finished) {
      const v = finished.verdict;
      if (!this.#fired && v === 'memory' && this.signalCode === 'SIGKILL') verdict = 'memory';
      // forks were refused at the pids limit while it ran: that limit shaped the run, even when
      // the program then exited 0 (a fork bomb's first shell does)
      else if (!this.#fired && v === 'pids') verdict = 'pids';
    }
    // (after the result's callbacks: release's first steps are synchronous)
    if (this.#deferRelease) this.#released = new Promise((r) => setImmediate(r)).then(release);
    else await release();
    const encoding = o.encoding ?? 'utf8';
    const decode = (b: Buffer[]) => {
      const buf = Buffer.concat(b);
      return (encoding === 'buffer' ? buf : buf.toString(encoding)) as T;
    };
    // the mount namespace goes now, its teardown on the thread pool (see spawn.cc)
    dropFds();
    if (out.mntNsFd >= 0) native().closeFd(out.mntNsFd, true);
    if (this.#serveError) throw this.#serveError.error;
    return {
      pid: out.pid,
      exitCode: this.exitCode,
      signal: this.signalCode,
      stdout: decode(output.chunks[0]),
      stderr: decode(output.chunks[1]),
      ...(this.all ? { all: decode(output.allChunks) } : {}),
      durationMs: performance.now() - started,
      timedOut: this.#timedOut,
      isCanceled: this.#canceled,
      verdict,
      truncated: output.truncated,
      isolation,
      ...Object.assign({}, ...layers.runs.map((r) => r.result?.())),
      usage: {
        cpuUserMs: cgUsage?.cpuUserMs ?? info.utimeUs / 1000,
        cpuSystemMs: cgUsage?.cpuSystemMs ?? info.stimeUs / 1000,
        wallMs: performance.now() - started,
        maxRssBytes: info.maxRssKb * 1024,
        peakMemoryBytes: cgUsage?.peakMemoryBytes ?? null,
        pidsPeak: cgUsage?.pidsPeak ?? null,
        oomKills: cgUsage?.oomKills ?? null,
      },
    };
  }

  /**
   * A prepared sandbox: everything is made; the program comes with run() (its stdio and
   * options), or never (destroy, or a run that failed before it reached the sandbox).
   */
  async #awaitRun(serve: Serve, out: SpawnOut, o: SpawnIsolatedOptions, initIsPid1: boolean, dropWaiting: () => void) {
    serve.ready(out.ctlFd);
    let req = await serve.request;
    if (req && 'exec' in req && req.exec) {
      // the program's exec (or its failure) comes on the run's error pipe (see PreparedSandbox.run)
      const failure = await req.exec;
      if (failure) {
        for (const fd of req.stdio) if (fd >= 0) close(fd, () => {});
        req = { error: failure };
      }
    }
    // the teardown now holds only the mount namespace (the control fd goes, the run's exit is watched)
    dropWaiting();
    const dropFds = onTeardown({ fds: out.mntNsFd >= 0 ? [out.mntNsFd] : [] });
    native().closeFd(out.ctlFd);
    if (req && 'error' in req) {
      this.#serveError = req;
      native().pidfdSignal(out.pidfd, 9);
    }
    if (req && !('error' in req)) {
      this.#initKills = initIsPid1;
      return { out: { ...out, stdio: req.stdio }, options: { ...o, ...req.options }, dropFds };
    }
    this.#canceled = true;
    this.#fired ??= 'canceled';
    this.#endStreams();
    return { out: { ...out, stdio: [-1, -1, -1] as [number, number, number] }, options: o, dropFds };
  }

  /**
   * Reads the program's stdio into the streams and, unless `buffer: false`, collects it for the
   * result, up to the output cap (`limits.outputBytes`: then the sandbox is killed, or with
   * `onOutputLimit: 'truncate'` the rest dropped).
   */
  #readOutput(out: SpawnOut, o: SpawnIsolatedOptions) {
    const collect = o.buffer !== false;
    const r = {
      chunks: [[], []] as [Buffer[], Buffer[]],
      allChunks: [] as Buffer[],
      sockets: [] as Socket[],
      done: [] as Promise<void>[],
      stdinSocket: undefined as Socket | undefined,
      truncated: false,
    };
    const [in0, out1, err2] = out.stdio;
    const all = this.all as PassThrough | null;
    let allOpen = (out1 >= 0 ? 1 : 0) + (err2 >= 0 ? 1 : 0) + (out.ttyFd >= 0 ? 1 : 0);
    if (all && allOpen === 0) all.end();
    const stdin = this.stdin as StdinStream | null;
    if (in0 >= 0 && stdin && !stdin.used && stdin.writableEnded) {
      // nothing was written and nothing can be (the default stdin nobody took, or one ended
      // empty): the program reads EOF once this end is closed, with no socket made for it
      native().closeFd(in0);
    } else if (in0 >= 0) {
      r.stdinSocket = new Socket({ fd: in0, readable: false, writable: true });
      r.stdinSocket.on('error', () => {}); // EPIPE when the program does not read: not our failure
      (this.stdin as PassThrough).pipe(r.stdinSocket);
    }
    const cap = o.limits?.outputBytes === undefined ? Infinity : parseByteSize(o.limits.outputBytes, 'limits.outputBytes');
    let outputSeen = 0;
    const reader = (fd: number | Socket, i: 0 | 1, pt: PassThrough | null) => {
      const s = typeof fd === 'number' ? new Socket({ fd, readable: true, writable: false }) : fd;
      r.sockets.push(s);
      const pass = (c: Buffer) => {
        if (collect && pt) r.chunks[i].push(c);
        let room = true;
        if (all) {
          if (collect) r.allChunks.push(c);
          room = all.write(c) || !!pt;
        }
        // backpressure from a slow reader of p.stdout pauses the program, not Node's memory
        if (pt && !pt.write(c)) room = false;
        if (!room && !collect) { s.pause(); (pt ?? all!).once('drain', () => s.resume()); }
      };
      s.on('data', (c: Buffer) => {
        const room = cap - outputSeen;
        outputSeen += c.length;
        if (room >= c.length) return pass(c);
        if (room > 0) pass(c.subarray(0, room));
        r.truncated = true;
        if (o.onOutputLimit !== 'truncate') {
          // stop reading at once; the sandbox dies with its output cut at the cap
          this.#limit('output');
          for (const x of r.sockets) x.pause();
        }
      });
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        pt?.end();
        if (all && --allOpen === 0) all.end();
      };
      s.once('end', end);
      r.done.push(new Promise((res) => s.once('close', () => { end(); res(); })));
      s.on('error', () => {});
    };
    if (out.ttyFd >= 0) {
      // one pty master for both directions; EIO once the last slave is gone means the end
      // (net.Socket refuses a tty fd; tty.ReadStream is a Socket over libuv's tty handle, which
      // writes too)
      const t: Socket = new ReadStream(out.ttyFd);
      this.#tty = t;
      t.on('error', () => t.destroy());
      t.once('close', () => { this.#tty = undefined; });
      (this.stdin as PassThrough).pipe(t, { end: false });
      reader(t, 0, this.stdout as PassThrough);
    }
    // with `all` and both piped, fd 1 and 2 are one socket (see mergedOutput): only `all` reads it
    if (out1 >= 0) reader(out1, 0, this.stdout as PassThrough | null);
    if (err2 >= 0) reader(err2, 1, this.stderr as PassThrough);
    return r;
  }

  /** Watches the exit, and the limits nsbox enforces itself while it runs: wall time, cpu time (polled from the cgroup), the abort signal. */
  #watch(plan: Pick<Plan, 'pdeathsig' | 'netPremade'>, out: SpawnOut, o: SpawnIsolatedOptions, cg: CgroupRun | undefined): Promise<ExitInfo> {
    let done = false;
    const spare = plan.netPremade;
    const exited = new Promise<ExitInfo>((resolve) => native().watchExit(out.pidfd, (info) => {
      done = true;
      resolve(info);
      if (spare) makeSpareSoon();
    }, out.statusFd, plan.pdeathsig === 0));
    const wall = Math.min(o.timeout || Infinity, o.limits?.wallTimeMs ?? Infinity);
    if (wall < Infinity) {
      this.#timers.push(setTimeout(() => { this.#timedOut = true; this.#limit('timeout'); }, wall));
    }
    const cpuMax = o.limits?.cpuTimeMs;
    if (cpuMax !== undefined && cg && !cg.given) {
      // poll the cgroup's cpu usage (children count, unlike RLIMIT_CPU), sooner as it nears the cap
      const tick = async () => {
        if (done) return;
        const used = await cg.cpuUsageMs();
        if (done) return;
        if (used >= cpuMax) this.#limit('cpu-time');
        else this.#timers.push(setTimeout(tick, Math.min(100, Math.max(5, (cpuMax - used) / 2))));
      };
      this.#timers.push(setTimeout(tick, Math.min(100, Math.max(5, cpuMax / 2))));
    }
    if (o.signal) {
      const onAbort = () => { this.#canceled = true; this.#limit('canceled'); };
      // aborted while the spawn was under way (after the last look before it): no event comes
      if (o.signal.aborted) onAbort();
      else {
        o.signal.addEventListener('abort', onAbort, { once: true });
        this.#cleanup.push(() => o.signal!.removeEventListener('abort', onAbort));
      }
    }
    queueMicrotask(() => this.emit('spawn'));
    return exited;
  }

  /** A limit fired (or the caller cancelled): remember the first, kill the whole sandbox. */
  #limit(why: Verdict): void {
    this.#fired ??= why;
    this.kill();
    if (this.#killSignal === 9) this.#cgroup?.killAll();
  }

  /** The sandbox's own cgroup (made for its cgroup limits), while it runs; else undefined. */
  get cgroup(): CGroup | undefined {
    return this.#cgroup && !this.#cgroup.given ? this.#cgroup.cgroup : undefined;
  }

  /** With `tty`: sets the terminal's size (the program gets SIGWINCH). */
  resize(rows: number, cols: number): void {
    for (const [k, v] of [['rows', rows], ['cols', cols]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 65535) throw new RangeError(`${k} must be an integer 1..65535 (got ${String(v)})`);
    }
    const fd = (this.#tty as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
    if (fd === undefined || fd < 0) throw new Error('resize() needs a running sandbox spawned with tty (with tty.consoleSocket the terminal is its receiver\'s to resize)');
    native().ttyResize(fd, rows, cols);
  }

  /**
   * Sends a signal to the sandbox's first process (through its pidfd: never a recycled pid).
   * Default: the `killSignal` option (SIGKILL unless set). A signal other than SIGKILL is
   * followed by SIGKILL after `forceKillAfterMs` if the sandbox is still alive. Returns false
   * when the sandbox has already exited.
   */
  kill(signal?: NodeJS.Signals | number): boolean {
    if (this.#exited || this.#pidfd < 0) return false;
    const sig = signal === undefined ? this.#killSignal : signalNumber('signal', signal);
    if (sig === 9) {
      if (!this.#sigkill()) return false;
      this.killed = true;
      return true;
    }
    const r = native().pidfdSignal(this.#pidfd, sig);
    if (r !== 0) return false;
    this.killed = true;
    if (this.#forceKillAfterMs >= 0) {
      const t = setTimeout(() => { if (!this.#exited && this.#pidfd >= 0) this.#sigkill(); }, this.#forceKillAfterMs);
      t.unref();
      this.#timers.push(t);
    }
    return true;
  }

  /**
   * Sends exactly one signal to the sandbox's first process (through its pidfd: never a
   * recycled pid), with nothing after it: unlike {@link kill}, no SIGKILL follows and `killed`
   * stays as it was. With nsbox-init as pid 1, init forwards it to the program (SIGKILL is
   * the kernel's: it ends the whole pid namespace). Returns false when the sandbox has already
   * exited.
   */
  signal(signal: NodeJS.Signals | number): boolean {
    const sig = signalNumber('signal', signal);
    if (this.#exited || this.#pidfd < 0) return false;
    return native().pidfdSignal(this.#pidfd, sig) === 0;
  }

  /**
   * SIGKILL for the whole sandbox. With nsbox-init as pid 1, init is asked to do it: it kills
   * everything else in the pid namespace and reaps it, so that their CPU time reaches the
   * rusage read at pid 1's reap (a SIGKILL of pid 1 itself makes the kernel reap the rest with
   * SIGCHLD ignored, and their time is lost). A plain SIGKILL of pid 1 follows if the sandbox
   * has not ended within INIT_KILL_GRACE_MS, so nothing inside can hold the kill off.
   */
  #sigkill(): boolean {
    if (this.#initKillSent) return true;  // under way; the fallback is armed
    if (this.#initKills && native().pidfdSignal(this.#pidfd, 9, true) === 0) {
      this.#initKillSent = true;
      const t = setTimeout(() => { if (!this.#exited && this.#pidfd >= 0) native().pidfdSignal(this.#pidfd, 9); }, INIT_KILL_GRACE_MS);
      t.unref();
      this.#timers.push(t);
      return true;
    }
    return native().pidfdSignal(this.#pidfd, 9) === 0;
  }

  /**
   * @internal A pool's single-use sandbox: the result comes as soon as the exit and the usage
   * are known, and the release (the cgroup's removal) follows; {@link _released} tracks it.
   */
  _deferRelease(): void {
    this.#deferRelease = true;
  }

  /** @internal Settles once the layers are released (after the result with _deferRelease). */
  _released(): Promise<void> {
    return this.#promise.then(() => this.#released, () => this.#released).then(() => undefined);
  }

  /** Lets the event loop exit while the sandbox runs (like ChildProcess.unref). */
  unref(): this {
    if (!this.#exited && this.#pidfd >= 0) native().refWatch(this.#pidfd, false);
    return this;
  }

  /** Undoes {@link IsolatedProcess.unref}. */
  ref(): this {
    if (!this.#exited && this.#pidfd >= 0) native().refWatch(this.#pidfd, true);
    return this;
  }

  then<A = IsolatedResult<T>, B = never>(
    onfulfilled?: ((value: IsolatedResult<T>) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.#observed = true;
    return this.#promise.then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<IsolatedResult<T> | B> {
    this.#observed = true;
    return this.#promise.catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<IsolatedResult<T>> {
    this.#observed = true;
    return this.#promise.finally(onfinally);
  }
}

/** `tty.consoleSocket`, where the terminal's master goes instead of nsbox's streams. */
function consoleSocketOf(tty: SpawnIsolatedOptions['tty']): string | undefined {
  return typeof tty === 'object' && tty !== null ? tty.consoleSocket : undefined;
}

/**
 * With `all: true` and stdout and stderr both piped (no tty), the program's fd 1 and fd 2 are
 * one stream socket, as `2>&1` makes them: its single queue keeps the program's write order
 * exactly, and the program sees the same kind of stream as ever (large writes, partial
 * writes and EOF behave as with two). Two sockets cannot give that order: a reader sees two
 * queues and nothing says which write came first (see README "all").
 */
function mergedOutput(o: SpawnIsolatedOptions): boolean {
  if (o.all !== true || o.tty) return false;
  const [, s1, s2] = parseStdio(o.stdio);
  return s1 === 'pipe' && s2 === 'pipe';
}

function abortError(signal: AbortSignal): Error {
  const e = new Error('The sandbox was aborted before it started', { cause: signal.reason });
  e.name = 'AbortError';
  (e as Error & { code: string }).code = 'ABORT_ERR';
  return e;
}

/**
 * Runs `file` with `args` in a new sandbox. Argument mistakes throw TypeError/RangeError
 * synchronously and create nothing; kernel failures during setup reject the returned
 * process with an {@link NsboxError} (with `step`, e.g. `'exec'` for a missing program).
 */
export function spawnIsolated(file: string, args: string[] | undefined, options: SpawnIsolatedOptions & { encoding: 'buffer' }): IsolatedProcess<Buffer>;
export function spawnIsolated(file: string, args?: string[], options?: SpawnIsolatedOptions): IsolatedProcess<string>;
export function spawnIsolated(file: string, args: string[] = [], options: SpawnIsolatedOptions = {}): IsolatedProcess<string | Buffer> {
  const layers = openLayers(options);
  if (options.image !== undefined && options.rootfs !== undefined) throw new TypeError('options.image and options.rootfs exclude each other');
  const { plan, input } = basePlan(layers, { file, args, options }, (i, resolving) => {
    // an image's rootfs exists only once its layer resolved it: check the rest now, against
    // a stand-in root, so mistakes still throw before anything is made
    const p = buildPlan(resolving && i.options?.image !== undefined ? { ...i, options: { ...i.options, image: undefined } } : i);
    validateRuntimeOptions(options);
    return p;
  });
  return new IsolatedProcess<string | Buffer>(plan, options, layers, input);
}

/**
 * The base plan of a spawn, and the input its layers still have to resolve (undefined when
 * none). When the ids layer is the only one that resolves (a root caller's default maps), its
 * block is taken now and the plan built once, with it; else `build` checks the options
 * against stand-ins (`resolving`), and #make builds the plan again once the layers resolved.
 * A mistake in the options throws here, with nothing kept.
 */
function basePlan(layers: Layers, input: SpawnInput, build: (input: SpawnInput, resolving: boolean) => Plan): { plan: Plan; input: SpawnInput | undefined } {
  const resolvers = layers.runs.filter((r) => r.resolve);
  if (resolvers.length === 0) return { plan: build(input, false), input: undefined };
  // each layer that resolves, in order, as far as they can now (the ids layer's block from
  // memory, then an image's view template): the inputs resolved so far go on to #make, whose
  // resolve steps do the rest (a layer that resolved already returns nothing there)
  let cur = input, done = 0;
  for (const r of resolvers) {
    const next = r.resolveNow?.(cur);
    if (!next) break;
    cur = next;
    done++;
  }
  try {
    return done === resolvers.length ? { plan: build(cur, false), input: undefined } : { plan: build(cur, true), input: cur };
  } catch (e) {
    for (const r of resolvers.slice(0, done)) void r.release?.();
    throw e;
  }
}

function validateRuntimeOptions(o: SpawnIsolatedOptions): void {
  if (o.timeout !== undefined && (typeof o.timeout !== 'number' || !(o.timeout >= 0) || !Number.isFinite(o.timeout))) {
    throw new RangeError(`options.timeout must be a non-negative number of milliseconds (got ${String(o.timeout)})`);
  }
  if (o.forceKillAfterMs !== undefined && (typeof o.forceKillAfterMs !== 'number' || !(o.forceKillAfterMs >= 0))) {
    throw new RangeError(`options.forceKillAfterMs must be a non-negative number (got ${String(o.forceKillAfterMs)})`);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('options.signal must be an AbortSignal');
  if (o.killSignal !== undefined) signalNumber('options.killSignal', o.killSignal);
  if (o.encoding !== undefined && o.encoding !== 'buffer' && !Buffer.isEncoding(o.encoding)) {
    throw new TypeError(`options.encoding must be a Buffer encoding or 'buffer' (got ${String(o.encoding)})`);
  }
  if (o.buffer !== undefined && typeof o.buffer !== 'boolean') throw new TypeError('options.buffer must be a boolean');
  if (o.all !== undefined && typeof o.all !== 'boolean') throw new TypeError('options.all must be a boolean');
  if (o.input !== undefined) {
    if (typeof o.input !== 'string' && !(o.input instanceof Uint8Array)) throw new TypeError('options.input must be a string or a Uint8Array');
    if (parseStdio(o.stdio)[0] !== 'pipe') throw new TypeError("options.input needs stdin to be 'pipe'");
  }
}

export { NsboxError };

/** Options of {@link PreparedSandbox.run}: what may differ between the runs of one template. */
export interface PreparedRunOptions {
  env?: Record<string, string>;
  cwd?: string;
  input?: string | Uint8Array;
  timeout?: number;
  signal?: AbortSignal;
  killSignal?: NodeJS.Signals | number;
  /** Only the limits nsbox enforces itself (`wallTimeMs`, `cpuTimeMs`, `outputBytes`); cgroup limits come with the template (or `sandbox.cgroup`). */
  limits?: Pick<SandboxLimits, 'wallTimeMs' | 'cpuTimeMs' | 'outputBytes'>;
  onOutputLimit?: 'kill' | 'truncate';
}

const RUN_KEYS = ['env', 'cwd', 'input', 'timeout', 'signal', 'killSignal', 'limits', 'onOutputLimit'];

/**
 * A sandbox made ahead of its program (see {@link prepareIsolated}): namespaces, cgroup, root
 * filesystem, network, credentials and seccomp all exist, and nsbox-init waits as pid 1. One
 * `run()` starts the program (a fork and exec inside, about a millisecond); the sandbox then
 * ends with it. Single use: nothing passes from one program to the next.
 */
export class PreparedSandbox {
  /** Host pid of the sandbox's pid 1 (nsbox-init). */
  readonly pid: number;
  /** The running program's process (after run()), whose result is the run's. */
  readonly process: IsolatedProcess<string>;
  #ctlFd: number;
  #give: (r: ServeRequest | null) => void;
  #options: SpawnIsolatedOptions;
  #used = false;

  /** @internal */
  constructor(p: IsolatedProcess<string>, ctlFd: number, give: (r: ServeRequest | null) => void, options: SpawnIsolatedOptions) {
    this.process = p;
    this.pid = p.pid!;
    this.#ctlFd = ctlFd;
    this.#give = give;
    this.#options = options;
  }

  /** The sandbox's own cgroup when the template had cgroup limits (to change them before run()). */
  get cgroup(): CGroup | undefined {
    return this.process.cgroup;
  }

  /**
   * Starts `file` in the sandbox; returns its IsolatedProcess (awaitable for the result).
   * Rejects like spawnIsolated (e.g. NsboxError step 'exec' for a missing program). Once only.
   */
  run(file: string, args: string[] = [], options: PreparedRunOptions = {}): IsolatedProcess<string> {
    if (this.#used) throw new Error('a prepared sandbox runs one program only');
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    for (const k of Object.keys(options)) if (!RUN_KEYS.includes(k)) throw new TypeError(`options has an unknown key '${k}' (a prepared sandbox takes ${RUN_KEYS.join(', ')})`);
    const merged = { ...this.#options, ...options } as SpawnIsolatedOptions;
    // the same checks and PATH lookup as a spawn of this template (nothing is created here)
    const p = buildPlan({ file, args, options: { ...merged, stdio: 'pipe' } });
    // the program gets what the sandbox's layers set for it (an egress policy's proxy
    // variables) over its env, as a spawned program does
    const layerEnv = this.process._layerEnv;
    const envp = layerEnv ? envOver(p.envp, layerEnv) : p.envp;
    validateRuntimeOptions(merged);
    this.#used = true;
    const stdio = p.stdio.map((x) => ({ kind: x.kind, fd: x.fd }));
    let got: { stdio: [number, number, number]; errFd: number };
    try {
      // sent at once; the exec is awaited on the event loop (execOutcome), not here
      got = native().serveRun(this.#ctlFd, { cwd: p.cwd, exec: p.exec, argv: p.argv, envp, stdio });
    } catch (e) {
      // the sandbox goes with the failed start; its process rejects with the failure
      this.#give({ error: e });
      return this.process;
    }
    const run: Partial<SpawnIsolatedOptions> = {};
    for (const k of RUN_KEYS) if ((options as Record<string, unknown>)[k] !== undefined) (run as Record<string, unknown>)[k] = (options as Record<string, unknown>)[k];
    this.process.spawnfile = p.argv[0];
    this.process.spawnargs = [...p.argv];
    if (options.input !== undefined) this.process.stdin?.end(options.input);
    this.process._defaultStdin({ input: options.input, stdio: this.#options.stdio });
    this.#give({ stdio: got.stdio, options: run, exec: execOutcome(got.errFd) });
    return this.process;
  }

  /** Ends the sandbox without running anything (or kills the run). Idempotent. */
  async destroy(): Promise<void> {
    if (!this.#used) {
      this.#used = true;
      this.#give(null);
    }
    this.process.kill('SIGKILL');
    await this.process.then(() => undefined, () => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

/**
 * What a run's error pipe says (its read end, non-blocking, ours): null once it ends with
 * nothing in it (the program has exec'd), else the NsboxError of the failure nsbox-init
 * reported (e.g. step 'exec' for a missing program). Read on the event loop.
 */
function execOutcome(fd: number): Promise<unknown> {
  return new Promise((resolve) => {
    const s = new Socket({ fd, readable: true, writable: false });
    const chunks: Buffer[] = [];
    let failed: unknown = null;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e) => { failed = e; });
    s.once('close', () => resolve(chunks.length ? native().childError(Buffer.concat(chunks)) : failed));
  });
}

/**
 * Makes a sandbox ahead of its program: everything spawnIsolated would make (namespaces,
 * cgroup, root filesystem, network, credentials, seccomp), with nsbox-init waiting as pid 1.
 * `prepared.run(file, args)` then starts the program at the cost of a fork and exec. For pools
 * of single-use sandboxes. stdio is always piped; `tty` is not available here.
 */
export async function prepareIsolated(options: SpawnIsolatedOptions = {}): Promise<PreparedSandbox> {
  if (options.tty) throw new TypeError('options.tty is not available for a prepared sandbox');
  if (options.stdio !== undefined && options.stdio !== 'pipe') throw new TypeError("options.stdio of a prepared sandbox must be 'pipe'");
  if (options.input !== undefined) throw new TypeError('options.input goes to run(), not to prepareIsolated()');
  const layers = openLayers(options);
  const resolving = layers.runs.some((r) => r.resolve);
  if (resolving && options.image !== undefined) throw new TypeError('options.image is not available for a prepared sandbox yet');
  const { plan, input } = basePlan(layers, { file: '/nsbox-prepared', args: [], options: { ...options, init: true } }, (i) => {
    const p: Plan = { ...buildPlan(i), serve: true };
    validateRuntimeOptions(options);
    return p;
  });
  let give!: (r: ServeRequest | null) => void;
  const request = new Promise<ServeRequest | null>((r) => { give = r; });
  let ready!: (fd: number) => void;
  const readyP = new Promise<number>((r) => { ready = r; });
  const p = new IsolatedProcess<string>(plan, { ...options, init: true }, layers, input, { ready, request });
  const ctlFd = await Promise.race([readyP, p.then(() => { throw new Error('the prepared sandbox ended before it was ready'); })]);
  return new PreparedSandbox(p, ctlFd, give, options);
}

/**
 * nsbox-init's request of a created sandbox (see addon/init/init.cc, ReceiveRun): u32 counts
 * of the exec candidates, argv and env, the kind (1 + 2 * the number of extra fds that follow
 * the record and the listening socket), then the working directory and those strings, each
 * NUL-terminated. (A pool's run request is the addon's serveRun, kind 0.)
 */
function createdRequest(p: Pick<Plan, 'cwd' | 'exec' | 'argv' | 'envp'>, extraFds: number): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32LE(p.exec.length, 0);
  head.writeUInt32LE(p.argv.length, 4);
  head.writeUInt32LE(p.envp.length, 8);
  head.writeUInt32LE(1 + 2 * extraFds, 12);
  const body = [p.cwd, ...p.exec, ...p.argv, ...p.envp].map((x) => `${x}\0`).join('');
  return Buffer.concat([head, Buffer.from(body)]);
}

/**
 * @internal A created sandbox (Sandbox.create with `program`, lib/runner/sandbox.ts):
 * everything spawnIsolated makes, with nsbox-init as pid 1 holding `file` and `args` (resolved
 * now, as a spawn would: PATH candidates, env, cwd) until a start arrives on `fds.listen` (a
 * listening unix socket; see addon/init/init.cc). The program then runs with pid 1's own stdio
 * (`options.stdio`: fds, 'inherit' or 'ignore'; or the terminal of `options.tty.consoleSocket`)
 * and its raw wait status is also written to `fds.record`; `fds.extra` (at most 251) become the
 * program's fds 3, 4, ... (OCI `create --preserve-fds`). The process returned is pid 1's:
 * 'spawn' once it waits for the start; its result once the program (and so the sandbox) ends.
 * The caller keeps its fds (init has its own copies once 'spawn' came).
 */
export function spawnCreated(file: string, args: string[], options: SpawnIsolatedOptions, fds: { record: number; listen: number; extra?: number[] }): IsolatedProcess<string> {
  if (options.tty !== undefined && options.tty !== false && (typeof options.tty !== 'object' || !options.tty.consoleSocket)) {
    throw new TypeError('options.tty of a created sandbox must be { consoleSocket } (its terminal goes to whoever listens there)');
  }
  const st = options.tty ? ['ignore', 'ignore', 'ignore'] : parseStdio(options.stdio ?? 'ignore');
  if (st.includes('pipe')) throw new TypeError("options.stdio of a created sandbox must be fds, 'inherit' or 'ignore' (its creator may be gone when it runs)");
  const o: SpawnIsolatedOptions = { ...options, stdio: options.stdio ?? 'ignore', init: true };
  const layers = openLayers(o);
  const resolving = layers.runs.some((r) => r.resolve);
  if (resolving && o.image !== undefined) throw new TypeError('options.image is not available for a created sandbox here (Sandbox.create mounts the image itself)');
  const { plan, input } = basePlan(layers, { file, args, options: o }, (i) => {
    const p: Plan = { ...buildPlan(i), serve: true };
    validateRuntimeOptions(o);
    return p;
  });
  let give!: (r: ServeRequest | null) => void;
  const requested = new Promise<ServeRequest | null>((r) => { give = r; });
  const ready = (ctlFd: number) => {
    // the program's environment with what the layers set (an egress policy's proxy variables), known now
    const layerEnv = proc._layerEnv;
    const extra = fds.extra ?? [];
    const request = createdRequest(layerEnv ? { ...plan, envp: envOver(plan.envp, layerEnv) } : plan, extra.length);
    sendFds(ctlFd, [fds.record, fds.listen, ...extra], request).then(
      () => give({ stdio: [-1, -1, -1], options: {} }),
      (error: unknown) => give({ error }),
    );
  };
  const proc: IsolatedProcess<string> = new IsolatedProcess<string>(plan, o, layers, input, { ready, request: requested });
  return proc;
}

/**
 * The addon's spawn, with the plan's view template when it has one. A template that cannot
 * be built or entered turns templates off for this process, and the spawn is made again with
 * the whole view (nothing of the failed attempt is left: the addon undoes it). Not with a
 * network hand-off, which the failed child consumed.
 */
async function spawnNative(plan: Readonly<Plan>, bindings: Bindings): Promise<SpawnOutput> {
  try {
    return await spawnNativeOnce(plan, bindings);
  } catch (err) {
    // the paths a person knows (the sandbox's and the caller's), never nsbox's own
    throw usernsRefused(plan, publicError(plan, err));
  }
}

/** A clone refused with EPERM where the plan makes a user namespace: the error names why, and the fix. */
function usernsRefused(plan: Readonly<Plan>, err: unknown): unknown {
  if (!(err instanceof NsboxError) || err.step !== 'clone' || err.code !== 'EPERM' || !(plan.cloneFlags & 0x10000000)) return err;
  const { causes, fixes } = usernsBlockers();
  if (!causes.length) return err;
  err.message = `${err.message}: this process may not create a user namespace (every sandbox has one): ${causes.join('; ')}. Fix: ${fixes.join('; ')}`;
  return err;
}

/**
 * The addon's spawn: the plan is read now, the blocking part runs off the event loop (the
 * addon's spawner thread). The outcome is settled from an immediate, not from the addon's
 * callback: what the caller's code throws in reaction (an unhandled 'error' event) then goes
 * Node's usual uncaught-exception way, source line and all.
 */
function nativeSpawn(plan: Readonly<Plan>, bindings: Bindings, ops: Buffer, template?: Buffer): Promise<SpawnOutput> {
  return new Promise((resolve, reject) => {
    native().spawn(plan, ops, template, (err, out) => { setImmediate(() => (err ? reject(err) : resolve(out!))); }, bindings);
  });
}

async function spawnNativeOnce(plan: Readonly<Plan>, bindings: Bindings): Promise<SpawnOutput> {
  // the addon reads the plan and, beside it, what was acquired for it
  if (!plan.template) return nativeSpawn(plan, bindings, encodeOps(plan.ops));
  try {
    const out = await nativeSpawn(plan, bindings, encodeOps(plan.template.child), encodeTemplate(plan.template.build));
    armTemplateDrop();
    return out;
  } catch (err) {
    if (!(err instanceof NsboxError) || err.step !== 'template') throw err;
    // an image's template view has no whole view to fall back on (its ops are empty): this
    // spawn fails, and the image layer makes containers in this process from now on
    if (plan.template.image) { imageTemplateFailed(); throw err; }
    disableViewTemplates();
    native().dropTemplates();
    if (bindings.net.length > 0) throw err;
    return nativeSpawn(plan, bindings, encodeOps(plan.ops));
  }
}

// The next spare network namespace (see NetSpare in addon/src/helpers.cc) is made once a
// sandbox that used one has exited, after the callbacks of this turn: then it takes a CPU
// from nothing (made while a sandbox starts or runs, it slowed that sandbox down).
let spareSoon = false;
function makeSpareSoon(): void {
  if (spareSoon) return;
  spareSoon = true;
  setImmediate(() => { spareSoon = false; native().startSpare(); });
}

// A template holds its binds of host directories (and their filesystems) while it lives: it
// is dropped when spawns stop for a while, and made again by the next one.
const TEMPLATE_IDLE_MS = 30_000;
let templateTimer: NodeJS.Timeout | undefined;
function armTemplateDrop(): void {
  if (templateTimer) { templateTimer.refresh(); return; }
  templateTimer = setTimeout(() => { templateTimer = undefined; native().dropTemplates(); }, TEMPLATE_IDLE_MS);
  templateTimer.unref();
}

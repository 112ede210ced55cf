// A pool of single-use warm sandboxes: each run() takes a sandbox whose namespaces, cgroup,
// mounts and network already exist, execs the program in it, and destroys it afterwards
// (never reused, so nothing passes from one run to the next). The pool refills in the background.
import { EventEmitter } from 'node:events';
import { Sandbox, type ExecOptions, type SandboxOptions } from './sandbox.js';
import { prepareIsolated, type PreparedSandbox, type PreparedRunOptions } from '../spawn/spawn.js';
import type { SpawnIsolatedOptions } from '../plan/options.js';

/** Run options a prepared sandbox takes; any other sends that run down the Sandbox path. */
const PREPARED_RUN_KEYS = new Set(['env', 'cwd', 'input', 'timeout', 'signal', 'killSignal', 'limits', 'onOutputLimit']);
type Ready = Sandbox | PreparedSandbox;
import type { IsolatedResult } from '../plan/options.js';
import { spawnLimitKeys, validateLimits, type Limits, type SandboxLimits } from '../cgroup/limits.js';
import { NsboxError } from '../errors.js';
import { needsCgroup } from '../plan/index.js';

/** Options of {@link Pool.run}: as exec's, and `limits` may also hold cgroup limits (set on the run's own sandbox before the program starts). */
export type PoolRunOptions = Omit<ExecOptions, 'limits'> & { limits?: SandboxLimits };

/** Options of {@link createPool}. */
export interface PoolOptions {
  /** How many sandboxes to keep ready (1–256). */
  size: number;
  /** Options every sandbox is made with (as {@link Sandbox.create}; `id` and `keepAlive` are not allowed). */
  template?: Omit<SandboxOptions, 'id' | 'keepAlive'>;
  /** How many sandboxes are made at once while refilling. Default 2 (the addon makes them side by side; more starve the runs of CPU). */
  refillConcurrency?: number;
}

/** Counters of a pool. */
export interface PoolStats {
  /** sandboxes ready now */
  ready: number;
  /** being made now */
  creating: number;
  /** runs in progress */
  running: number;
  /** runs that found no ready sandbox and waited for one */
  misses: number;
  /** runs finished */
  runs: number;
  /** sandboxes that failed to be made */
  createErrors: number;
}

/**
 * The pool returned by {@link createPool}. Emits `'error'` (only when listened to) for a
 * sandbox that could not be made in the background; run() then rejects with that error if it
 * has nothing else to give.
 */
export class Pool extends EventEmitter {
  readonly size: number;
  #template: SandboxOptions;
  #ready: Ready[] = [];
  #waiters: Array<{ resolve: (b: Ready) => void; reject: (e: unknown) => void }> = [];
  /** spawn options of prepared sandboxes, or undefined when the template needs Sandbox (a holder) */
  #prepared: SpawnIsolatedOptions | undefined;
  /** the template asks no cgroup: prepared sandboxes get one (a place for a run's cgroup limits) only while the host allows it */
  #optionalCgroup = false;
  #creating = 0;
  #refillConcurrency: number;
  #closed: Promise<void> | undefined;
  #pending = new Set<Promise<unknown>>();
  #stats = { running: 0, misses: 0, runs: 0, createErrors: 0 };
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;

  /** @internal use {@link createPool} */
  constructor(size: number, template: SandboxOptions, refillConcurrency: number) {
    super();
    this.size = size;
    this.#template = template;
    this.#refillConcurrency = refillConcurrency;
    // A pooled sandbox is used once, so it can be a prepared one (nsbox-init waiting as pid 1,
    // the program a fork and exec away) rather than a Sandbox whose run joins its namespaces.
    // It gets a cgroup so that a run's cgroup limits have a place to go; when the template asks
    // none, only where the host lets this caller make one (a run's limits then get a sandbox of
    // their own, made for that run).
    if (template.holder === undefined && template.image === undefined) {
      const { stateDir: _s, holder: _h, ...spawn } = template;
      this.#optionalCgroup = spawn.cgroupParent === undefined && !needsCgroup(spawn as SpawnIsolatedOptions);
      this.#prepared = { ...spawn, limits: { pids: 'max', ...spawn.limits } } as SpawnIsolatedOptions;
    }
    this.#fill();
  }

  /** Counters: ready, creating, running, misses, runs, createErrors. */
  get stats(): PoolStats {
    return { ready: this.#ready.length, creating: this.#creating, ...this.#stats };
  }

  /** Resolves once `size` sandboxes are ready (or at once after close()). */
  async warm(): Promise<void> {
    while (!this.#closed && this.#ready.length < this.size) await new Promise((r) => setTimeout(r, 5));
  }

  #track<T>(p: Promise<T>): Promise<T> {
    const t = p.catch(() => {});
    this.#pending.add(t);
    t.finally(() => this.#pending.delete(t));
    return p;
  }

  #fill(): void {
    if (this.#closed || this.#retry) return;
    while (this.#creating < this.#refillConcurrency && this.#ready.length + this.#creating < this.size + this.#waiters.length) {
      this.#creating++;
      const make: Promise<Ready> = this.#prepared ? this.#prepare() : Sandbox.create(this.#template);
      this.#track(make).then((box) => {
        this.#creating--;
        this.#failures = 0;
        if (this.#closed) {
          this.#track(box.destroy());
          return;
        }
        const w = this.#waiters.shift();
        if (w) w.resolve(box); else this.#ready.push(box);
        this.#fill();
      }, (err) => {
        this.#creating--;
        this.#stats.createErrors++;
        this.#failures++;
        // the waiters get the error, unless another sandbox being made may still serve them (a
        // template that allows one sandbox at a time, e.g. a fixed address, fails the second of
        // two refills side by side); the pool backs off before trying again
        if (this.#creating === 0) for (const w of this.#waiters.splice(0)) w.reject(err);
        if (this.listenerCount('error') > 0) this.emit('error', err);
        const delay = Math.min(5000, 50 * 2 ** Math.min(this.#failures, 7));
        this.#retry = setTimeout(() => { this.#retry = undefined; this.#fill(); }, delay);
        this.#retry.unref();
      });
    }
  }

  /** A prepared sandbox; a cgroup the template did not ask for is dropped for good once the host refuses it. */
  #prepare(): Promise<PreparedSandbox> {
    const opts = this.#prepared!;
    return prepareIsolated(opts).catch((e: unknown) => {
      if (!(e instanceof NsboxError) || !e.step?.startsWith('cgroup')) throw e;
      // refills side by side: another one dropped the cgroup meanwhile
      if (this.#prepared !== opts) return prepareIsolated(this.#prepared!);
      if (!this.#optionalCgroup) throw e;
      this.#optionalCgroup = false;
      const { pids: _p, ...rest } = opts.limits ?? {};
      this.#prepared = { ...opts, limits: Object.keys(rest).length ? rest : undefined };
      return prepareIsolated(this.#prepared);
    });
  }

  #take(): Promise<Ready> {
    for (;;) {
      const box = this.#ready.shift();
      if (!box) break;
      if (box instanceof Sandbox ? box.running : box.process.exitCode === null && box.process.signalCode === null) return Promise.resolve(box);
      this.#track(box.destroy()); // its holder died while waiting: never hand it out
    }
    this.#stats.misses++;
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#fill();
    });
  }

  /**
   * Runs a program in a fresh sandbox of the pool and resolves with its result (as
   * `Sandbox.exec`). The sandbox is destroyed afterwards, in the background; `close()` waits
   * for that. Options are checked before a sandbox is taken.
   */
  async run<T extends string | Buffer = string>(file: string, args: string[] = [], options: PoolRunOptions = {}): Promise<IsolatedResult<T>> {
    if (this.#closed) throw new Error('the pool is closed');
    if (typeof file !== 'string' || file === '') throw new TypeError('file must be a non-empty string');
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new TypeError('args must be an array of strings');
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    // cgroup limits of this one run: the sandbox is used once, so its own cgroup can take them
    let cgLimits: Limits | undefined;
    let execOptions: ExecOptions = options as ExecOptions;
    if (options.limits !== undefined) {
      validateLimits(options.limits);
      const spawnPart: Record<string, unknown> = {}, cgPart: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(options.limits)) if (v !== undefined) (spawnLimitKeys.includes(k) ? spawnPart : cgPart)[k] = v;
      if (Object.keys(cgPart).length) cgLimits = cgPart as Limits;
      execOptions = { ...options, limits: Object.keys(spawnPart).length ? spawnPart : undefined } as ExecOptions;
    }
    // options a prepared sandbox cannot take (another uid, stdio, a tty...): a Sandbox of its own
    const preparedOk = Object.keys(options).every((k) => PREPARED_RUN_KEYS.has(k) || (options as Record<string, unknown>)[k] === undefined);
    if (this.#prepared && preparedOk) {
      // cgroup limits where the pool's sandboxes have no cgroup: a sandbox made with them for this run
      if (cgLimits && !needsCgroup(this.#prepared)) {
        const own = await prepareIsolated({ ...this.#prepared, limits: { ...this.#prepared.limits, ...cgLimits } });
        return this.#runPrepared<T>(own, file, args, execOptions as PreparedRunOptions, undefined);
      }
      return this.#runPrepared<T>(await this.#take() as PreparedSandbox, file, args, execOptions as PreparedRunOptions, cgLimits);
    }
    let sbx: Sandbox;
    if (this.#prepared) {
      // options a prepared sandbox cannot take: a Sandbox made for this run, with its cgroup limits
      sbx = await Sandbox.create(this.#withLimits(cgLimits));
    } else {
      sbx = await this.#take() as Sandbox;
      if (cgLimits && !sbx.cgroup) {
        // a pooled Sandbox without a cgroup: this run's limits get a Sandbox made with them
        this.#track(sbx.destroy());
        this.#fill();
        sbx = await Sandbox.create(this.#withLimits(cgLimits));
      } else if (cgLimits) {
        try {
          await sbx.cgroup!.update(cgLimits);
        } catch (e) {
          this.#track(sbx.destroy());
          this.#fill();
          throw e;
        }
      }
    }
    this.#stats.running++;
    try {
      // refill once this run is over: making a sandbox blocks the event loop for a while (the
      // spawn core's synchronous handshake, which on cgroup v1 includes the attach's RCU wait)
      // and would delay this run's own result by that much
      const p = sbx.exec<T>(file, args, execOptions);
      let refilled = false;
      const refill = () => { if (!refilled) { refilled = true; setImmediate(() => this.#fill()); } };
      // single use: the run ends with its program, so whatever it left behind dies at once
      // (background children holding its stdout would otherwise keep the result open)
      p.once('exit', () => { sbx.kill('SIGKILL').catch(() => {}); });
      try {
        return await p;
      } finally {
        refill();
      }
    } finally {
      this.#stats.running--;
      this.#stats.runs++;
      this.#track(sbx.destroy());
    }
  }

  /** The template with a run's cgroup limits added. */
  #withLimits(cgLimits: Limits | undefined): SandboxOptions {
    return cgLimits ? { ...this.#template, limits: { ...this.#template.limits, ...cgLimits } } : this.#template;
  }

  async #runPrepared<T extends string | Buffer>(box: PreparedSandbox, file: string, args: string[], options: PreparedRunOptions, cgLimits: Limits | undefined): Promise<IsolatedResult<T>> {
    this.#stats.running++;
    try {
      if (cgLimits) await box.cgroup!.update(cgLimits);
      // the result first; the sandbox's cgroup is removed after it (close() waits for that)
      box.process._deferRelease();
      const p = box.run(file, args, options);
      try {
        return (await p) as unknown as IsolatedResult<T>;
      } finally {
        this.#track(box.process._released());
        setImmediate(() => this.#fill());
      }
    } catch (e) {
      this.#track(box.destroy());
      setImmediate(() => this.#fill());
      throw e;
    } finally {
      this.#stats.running--;
      this.#stats.runs++;
    }
  }

  /** Destroys the ready sandboxes and waits for every run's sandbox to be removed. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#retry) clearTimeout(this.#retry);
      for (const w of this.#waiters.splice(0)) w.reject(new Error('the pool was closed'));
      const ready = this.#ready.splice(0);
      await Promise.all(ready.map((b) => b.destroy().catch(() => {})));
      while (this.#pending.size) await Promise.all([...this.#pending]);
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Makes a pool of `size` single-use sandboxes made with `template`. Bad options throw
 * TypeError/RangeError at once, the template included (as Sandbox.create would), before any
 * sandbox is made.
 */
export function createPool(options: PoolOptions): Pool {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object { size, template }');
  for (const k of Object.keys(options)) if (!['size', 'template', 'refillConcurrency'].includes(k)) throw new TypeError(`options has an unknown key '${k}'`);
  const { size } = options;
  if (typeof size !== 'number' || !Number.isInteger(size)) throw new TypeError(`options.size must be an integer (got ${String(size)})`);
  if (size < 1 || size > 256) throw new RangeError(`options.size must be between 1 and 256 (got ${size})`);
  const rc = options.refillConcurrency ?? 2;
  if (typeof rc !== 'number' || !Number.isInteger(rc) || rc < 1 || rc > 64) throw new RangeError(`options.refillConcurrency must be an integer 1-64 (got ${String(rc)})`);
  const template = options.template ?? {};
  if (typeof template !== 'object' || template === null || Array.isArray(template)) throw new TypeError('options.template must be an object');
  for (const k of ['id', 'keepAlive']) {
    if ((template as Record<string, unknown>)[k] !== undefined) throw new TypeError(`options.template.${k} does not apply to pooled sandboxes`);
  }
  Sandbox.validate(template);
  return new Pool(size, { ...template }, rc);
}

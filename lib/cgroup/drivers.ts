// Two drivers behind one interface: cgroup v2 (one directory) and v1 (one directory per
// hierarchy). Plain file I/O on cgroupfs (synchronous: each call is a few microseconds and
// never blocks on disk); only the waits are asynchronous.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { rmdir as rmdirAsync } from 'node:fs/promises';
import { NsboxError, errnoError, fromNodeError } from '../errors.js';
import type { ResolvedDeviceRule, ResolvedLimits } from './limits.js';
import { blkioToIoWeight, forgetOnlineCpus, sharesToWeight, weightToShares } from './limits.js';
import { cgNative, type NativeCgroupWatch } from './native.js';

/** Resource usage of a cgroup; the same shape on both versions, null where one lacks a figure. */
export interface CgroupStats {
  /** CPU time in user mode, ms. */
  cpuUserMs: number | null;
  /** CPU time in kernel mode, ms. */
  cpuSystemMs: number | null;
  /** Total CPU time, ms. */
  cpuUsageMs: number | null;
  /** Memory charged now, bytes. */
  memoryCurrent: number | null;
  /** Highest memory charge seen by the kernel, bytes (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`). */
  memoryPeak: number | null;
  /** Swap in use, bytes. */
  swap: number | null;
  /** Tasks now. */
  pidsCurrent: number | null;
  /** Most tasks at once (`pids.peak`); null where the kernel keeps no such figure (before Linux 6.1). */
  pidsPeak: number | null;
  /** Times the memory limit was hit and the OOM path ran (v2 `memory.events oom`; v1: null). */
  oom: number | null;
  /** Processes killed by the OOM killer in this cgroup. */
  oomKill: number | null;
  /** Bytes read from block devices. */
  ioReadBytes: number | null;
  /** Bytes written to block devices. */
  ioWriteBytes: number | null;
}

/** Counters used to tell which limit fired. */
export interface LimitCounters {
  oomKill: number;
  pidsMax: number;
}

/**
 * How a spawn puts its child into a cgroup, the one place that decides it: v2 makes the child
 * in it (`clone3(CLONE_INTO_CGROUP)` with an fd of `intoDir`); v1 has the child move itself by
 * writing to each hierarchy's `tasks` file (opened by the parent with its credentials); and
 * `procs` are the files the parent writes the child's pid into when neither can be used
 * (a kernel without CLONE_INTO_CGROUP, a tasks file that cannot be opened).
 */
export interface CgroupPlacement {
  intoDir: string | undefined;
  tasks: string[];
  procs: string[];
}

/** What both drivers do. */
export interface Driver {
  readonly version: 1 | 2;
  /** controller name -> directory (v2: every controller maps to the one directory) */
  readonly dirs: Record<string, string>;
  procsPaths(): string[];
  /** How a new process is put into this cgroup before it runs its program (see {@link CgroupPlacement}). */
  placement(): CgroupPlacement;
  /**
   * Writes the limits. `fresh`: the cgroup was just made and nothing was written into it (a
   * spare), so its files hold the kernel's defaults and writes of those values are skipped.
   */
  apply(r: ResolvedLimits, fresh?: boolean): void;
  pids(): number[];
  populated(): boolean;
  /** One file's look at whether anything is inside (v1: one hierarchy, which every task of a sandbox joins with the others). */
  emptyAtAGlance(): boolean;
  /** `lean`: only what a spawn's result reports (cpu user/system, memory and pids peaks, OOM kills); the rest null. */
  stats(lean?: boolean): CgroupStats;
  /** `from`: stats read just now, whose OOM kill count is taken instead of reading its file again. */
  counters(from?: CgroupStats): LimitCounters;
  cpuUsageUs(): number | null;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** Kills every task; resolves when the cgroup is empty. */
  kill(timeoutMs: number): Promise<void>;
  /** Starts change notifications (oom counters; v2 also populated). Returns a stop function. */
  watch(onChange: () => void): () => void;
  /** Removes the directories; ENOENT is success. */
  remove(): Promise<void>;
}

// ------------------------------------------------------------------ file helpers

/** Reads a cgroup file, null when it does not exist. */
export function readOpt(path: string): string | null {
  if (recording) throw new Error('nsbox: a recorded limit write depends on a read (recordLimitWrites)');
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENODEV') return null;
    throw fromNodeError(e, 'cgroup-read');
  }
}

function num(text: string | null): number | null {
  if (text === null) return null;
  const t = text.trim();
  if (t === 'max') return Infinity;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

/** v1 cpuacct.usage_all ("cpu user system" per CPU, ns, after a header line): [user, system] summed, or null. */
function usageAll(text: string | null): [number, number] | null {
  if (text === null) return null;
  let user = 0;
  let system = 0;
  const lines = text.split('\n');
  if (!/^cpu\s+user\s+system/.test(lines[0] ?? '')) return null;
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    const [, u, s] = line.trim().split(/\s+/).map(Number);
    if (u === undefined || s === undefined || !Number.isFinite(u) || !Number.isFinite(s)) return null;
    user += u;
    system += s;
  }
  return [user, system];
}

/** Parses "key value" lines (memory.events, cpu.stat, pids.events, cgroup.events). */
export function kv(text: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (text === null) return out;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

function missingController(controller: string, file: string, why: string): NsboxError {
  const e = errnoError(19, `cgroup-${controller}`, 'open', file, `the ${controller} controller is not available here (${why})`);
  e.message = `cgroup controller '${controller}' cannot apply this limit: ${why} (${file})`;
  return e;
}

/** Where {@link recordLimitWrites} collects the writes instead of making them. */
let recording: Array<[string, string]> | undefined;

/**
 * The writes `apply(r, fresh)` of `drv` would make, in order, as [path, value], without making
 * them; undefined when `r` has a limit whose writes depend on what is read from the cgroup or
 * on which files exist (v1 swap, weights, the kernel's own knobs, device rules...), or on
 * whether an earlier write was refused. For the limits taken here `apply` only writes, each
 * value a function of the limit alone: written in this order into a cgroup just made, they
 * give the files `apply(r, true)` gives it (the spare pool writes them ahead, lib/cgroup/spares.ts).
 */
export function recordLimitWrites(drv: Driver, r: ResolvedLimits): Array<[string, string]> | undefined {
  const simple = drv.version === 2 ? PLAIN_WRITES_V2 : PLAIN_WRITES_V1;
  for (const k of Object.keys(r) as (keyof ResolvedLimits)[]) if (r[k] !== undefined && !simple.has(k)) return undefined;
  const out: Array<[string, string]> = [];
  recording = out;
  try {
    drv.apply(r, true);
  } finally {
    recording = undefined;
  }
  return out;
}

/** Limits whose `apply` on a fresh cgroup is plain writes (see recordLimitWrites). */
const PLAIN_WRITES_V1: ReadonlySet<string> = new Set(['memory', 'memoryReservation', 'cpus', 'cpuWeight', 'cpuset', 'cpusetMems', 'pids', 'cpuShares']);
const PLAIN_WRITES_V2: ReadonlySet<string> = new Set(['memory', 'memorySwap', 'memoryReservation', 'cpus', 'cpuWeight', 'cpuset', 'cpusetMems', 'pids', 'cpuShares']);

/** Writes a limit file; a missing file or a kernel refusal becomes an NsboxError naming the controller. */
function writeLimit(dir: string, file: string, value: string, controller: string): void {
  const path = `${dir}/${file}`;
  if (recording) {
    recording.push([path, value]);
    return;
  }
  try {
    writeFileSync(path, value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // the online CPUs may have changed since they were read (limits.ts caches them)
    if (controller === 'cpuset') forgetOnlineCpus();
    if (err.code === 'ENOENT') throw missingController(controller, path, `${file} does not exist: controller missing, not enabled or not delegated`);
    const x = errnoError(Math.abs(err.errno ?? 5), `cgroup-${controller}`, 'write', path, `controller ${controller}: writing '${value}' to ${file} was refused`);
    throw x;
  }
}

/**
 * Runs the writes of one limit; an NsboxError from them gets `limits.<key>: ` in front of its
 * message, so that a refusal names the limit (the kernel's knobs, where the limit and the file
 * are not the same word).
 */
function forKey(key: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof NsboxError && !e.message.startsWith('limits.')) e.message = `limits.${key}: ${e.message}`;
    throw e;
  }
}

/** A limit cgroup v2 has no file for: an NsboxError (ENOTSUP) naming the limit. */
function notOnV2(key: string, dir: string, what: string): NsboxError {
  const e = errnoError(95, 'cgroup-v2', 'open', dir, `cgroup v2 has no ${what}`);
  e.message = `limits.${key}: cgroup v2 has no ${what}`;
  return e;
}

function writeProcs(paths: string[], pid: number): void {
  for (const p of paths) {
    try {
      writeFileSync(p, String(pid));
    } catch (e) {
      throw fromNodeError(e, 'cgroup-attach');
    }
  }
}

export function readPids(procs: string): number[] {
  const t = readOpt(procs);
  if (t === null) return [];
  return t.split('\n').filter(Boolean).map(Number);
}

function killPid(pid: number): void {
  if (pid === process.pid) throw new NsboxError('nsbox: the calling process is inside the cgroup being killed; refusing to kill itself', { code: 'EPERM', errno: 1, step: 'cgroup-kill' });
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

/** rmdir on the thread pool: on v1 it may wait for the kernel (an RCU grace period), and the hierarchies are removed at once. */
export async function rmdirRetry(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rmdirAsync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // v1 can report EBUSY for a moment after the last task left
      if (code === 'EBUSY' && i < 100) {
        await sleep(i < 10 ? 2 : 20);
        continue;
      }
      throw fromNodeError(e, 'cgroup-remove');
    }
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string, path: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; !cond(); i++) {
    if (Date.now() > end) throw errnoError(16, 'cgroup-wait', 'poll', path, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(i < 20 ? 1 : 10);
  }
}

function ioBytesV2(text: string | null): [number | null, number | null] {
  if (text === null) return [null, null];
  let r = 0;
  let w = 0;
  for (const line of text.split('\n')) {
    const m = /rbytes=(\d+).*wbytes=(\d+)/.exec(line);
    if (m) {
      r += Number(m[1]);
      w += Number(m[2]);
    }
  }
  return [r, w];
}

function ioBytesV1(text: string | null): [number | null, number | null] {
  if (text === null) return [null, null];
  let r = 0;
  let w = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue;
    if (f[1] === 'Read') r += Number(f[2]);
    else if (f[1] === 'Write') w += Number(f[2]);
  }
  return [r, w];
}

const CFS_PERIOD = 100000;
/** cpu.cfs_period_us of a new cgroup (the kernel's default_cfs_period(), 100 ms) */
const KERNEL_CFS_PERIOD = 100000;

// ------------------------------------------------------------------ v2

/** Controllers a v2 limit needs. */
export function v2ControllersFor(r: ResolvedLimits): string[] {
  const c = new Set<string>();
  if (r.memory !== undefined || r.memorySwap !== undefined || r.memoryReservation !== undefined) c.add('memory');
  if (r.cpus !== undefined || r.cpuWeight !== undefined) c.add('cpu');
  if (r.cpuset !== undefined || r.cpusetMems !== undefined) c.add('cpuset');
  if (r.pids !== undefined) c.add('pids');
  if (r.ioWeight !== undefined || r.ioMax !== undefined) c.add('io');
  if (r.cpuMax !== undefined || r.cpuShares !== undefined || r.cpuRealtime !== undefined) c.add('cpu');
  if (r.blkioWeight !== undefined || r.blkioLeafWeight !== undefined || r.blkioWeightDevice !== undefined) c.add('io');
  if (r.hugetlb !== undefined) c.add('hugetlb');
  return [...c];
}

/** Controllers nsbox enables for stats even when no limit needs them. */
export const V2_WANTED = ['cpu', 'memory', 'pids', 'io'];

function words(text: string | null): string[] {
  return text === null ? [] : text.trim().split(/\s+/).filter(Boolean);
}

/**
 * Makes sure `dir`'s children can use `ctrls` (enabling them in ancestors as needed).
 * Returns the controllers that could not be enabled, with the reason.
 */
export function v2Enable(dir: string, mount: string, ctrls: string[]): Map<string, string> {
  const failed = new Map<string, string>();
  // each file read once for all of ctrls (a refill asks for four); what this loop enables is added
  let enabled: string[] | undefined;
  let available: string[] | undefined;
  for (const c of ctrls) {
    enabled ??= words(readOpt(`${dir}/cgroup.subtree_control`));
    if (enabled.includes(c)) continue;
    available ??= words(readOpt(`${dir}/cgroup.controllers`));
    if (!available.includes(c)) {
      if (dir === mount) {
        failed.set(c, `the kernel has no ${c} controller in this cgroup2 hierarchy`);
        continue;
      }
      const up = v2Enable(dirname(dir), mount, [c]);
      if (up.size) {
        failed.set(c, up.get(c) ?? 'not available');
        continue;
      }
    }
    try {
      writeFileSync(`${dir}/cgroup.subtree_control`, `+${c}`);
      enabled.push(c);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      failed.set(c, code === 'EBUSY'
        ? `cannot enable it in ${dir}/cgroup.subtree_control: EBUSY (that cgroup holds processes)`
        : code === 'EROFS'
          ? `cannot enable it in ${dir}/cgroup.subtree_control: EROFS (the cgroup file system is mounted read-only)`
          : `cannot enable it in ${dir}/cgroup.subtree_control: ${code}`);
    }
  }
  return failed;
}

/** The cgroup v2 driver: one directory. */
export class V2Driver implements Driver {
  readonly version = 2 as const;
  readonly dirs: Record<string, string>;

  constructor(readonly dir: string) {
    this.dirs = { unified: dir };
  }

  procsPaths(): string[] {
    return [`${this.dir}/cgroup.procs`];
  }

  placement(): CgroupPlacement {
    return { intoDir: this.dir, tasks: [], procs: this.procsPaths() };
  }

  apply(r: ResolvedLimits): void {
    const d = this.dir;
    const bytes = (v: number | 'max') => String(v);
    if (r.memory !== undefined) writeLimit(d, 'memory.max', bytes(r.memory), 'memory');
    if (r.memorySwap !== undefined) writeLimit(d, 'memory.swap.max', bytes(r.memorySwap), 'memory');
    if (r.memoryReservation !== undefined) writeLimit(d, 'memory.low', bytes(r.memoryReservation), 'memory');
    if (r.cpus !== undefined) writeLimit(d, 'cpu.max', `${Math.max(1000, Math.round(r.cpus * CFS_PERIOD))} ${CFS_PERIOD}`, 'cpu');
    if (r.cpuWeight !== undefined) writeLimit(d, 'cpu.weight', String(r.cpuWeight), 'cpu');
    if (r.cpuset !== undefined) writeLimit(d, 'cpuset.cpus', r.cpuset, 'cpuset');
    if (r.cpusetMems !== undefined) writeLimit(d, 'cpuset.mems', r.cpusetMems, 'cpuset');
    if (r.pids !== undefined) writeLimit(d, 'pids.max', String(r.pids), 'pids');
    if (r.ioWeight !== undefined) {
      if (existsSync(`${d}/io.weight`)) writeLimit(d, 'io.weight', `default ${r.ioWeight}`, 'io');
      else if (existsSync(`${d}/io.bfq.weight`)) writeLimit(d, 'io.bfq.weight', `default ${Math.min(1000, Math.max(1, Math.round(r.ioWeight / 10)))}`, 'io');
      else throw missingController('io', `${d}/io.weight`, 'neither io.weight (iocost) nor io.bfq.weight (BFQ) exists');
    }
    for (const e of r.ioMax ?? []) {
      const parts = (['rbps', 'wbps', 'riops', 'wiops'] as const).filter((k) => e[k] !== undefined).map((k) => `${k}=${e[k] === 0 ? 'max' : e[k]}`);
      forKey('ioMax', () => writeLimit(d, 'io.max', `${e.device} ${parts.join(' ')}`, 'io'));
    }
    // the kernel's own knobs (OCI linux.resources): as given, or converted as runc and crun do
    if (r.cpuMax !== undefined) {
      const m = r.cpuMax;
      forKey('cpuMax', () => {
        const quota = m.quota ?? (readOpt(`${d}/cpu.max`) ?? 'max').trim().split(/\s+/)[0];
        writeLimit(d, 'cpu.max', m.period !== undefined ? `${quota} ${m.period}` : String(quota), 'cpu');
      });
    }
    if (r.cpuShares !== undefined) forKey('cpuShares', () => writeLimit(d, 'cpu.weight', String(sharesToWeight(r.cpuShares!)), 'cpu'));
    if (r.cpuRealtime !== undefined) throw notOnV2('cpuRealtime', d, 'realtime CPU bandwidth (v1 cpu.rt_runtime_us, cpu.rt_period_us)');
    if (r.blkioLeafWeight !== undefined || r.blkioWeightDevice?.some((x) => x.leafWeight !== undefined)) throw notOnV2(r.blkioLeafWeight !== undefined ? 'blkioLeafWeight' : 'blkioWeightDevice', d, 'leaf weights (v1 blkio.leaf_weight, CFQ)');
    if (r.blkioWeight !== undefined || r.blkioWeightDevice !== undefined) {
      forKey(r.blkioWeight !== undefined ? 'blkioWeight' : 'blkioWeightDevice', () => {
        // BFQ takes the v1 range as it is; iocost's io.weight the converted value
        const bfq = existsSync(`${d}/io.bfq.weight`);
        if (!bfq && !existsSync(`${d}/io.weight`)) throw missingController('io', `${d}/io.weight`, 'neither io.bfq.weight (BFQ) nor io.weight (iocost) exists');
        const [file, conv] = bfq ? ['io.bfq.weight', (w: number) => w] : ['io.weight', blkioToIoWeight];
        if (r.blkioWeight !== undefined) writeLimit(d, file, bfq ? String(r.blkioWeight) : `default ${conv(r.blkioWeight)}`, 'io');
        for (const x of r.blkioWeightDevice ?? []) if (x.weight !== undefined) writeLimit(d, file, `${x.device} ${conv(x.weight)}`, 'io');
      });
    }
    for (const [size, v] of Object.entries(r.hugetlb ?? {})) forKey('hugetlb', () => writeLimit(d, `hugetlb.${size}.max`, String(v), 'hugetlb'));
    if (r.netClassId !== undefined) throw notOnV2('netClassId', d, 'net_cls controller (net_cls.classid)');
    if (r.netPriorities !== undefined) throw notOnV2('netPriorities', d, 'net_prio controller (net_prio.ifpriomap)');
    // device rules: a BPF device program of nsbox's (addon/src/cgroup.cc) replaces the one attached before
    if (r.devices !== undefined) {
      try {
        cgNative().cgroupDevices(d, r.devices.flatMap(deviceRuleWords));
      } catch (e) {
        const err = e as NsboxError;
        if (err.code === 'EPERM' && typeof err.syscall === 'string' && err.syscall.startsWith('bpf(')) {
          // loading a cgroup device program takes CAP_BPF and CAP_SYS_ADMIN in the initial user
          // namespace: no delegation gives it to an unprivileged caller
          err.message = `device rules (limits.devices) on cgroup v2 need a BPF device program, which only root can load (${err.syscall}: EPERM). ` +
            'Run as root, or leave limits.devices out: the sandbox\'s /dev holds only the safe nodes nsbox gives it (null, zero, full, random, urandom, tty) unless you add devices';
        }
        throw err;
      }
    }
  }

  pids(): number[] {
    return readPids(`${this.dir}/cgroup.procs`);
  }

  populated(): boolean {
    const ev = readOpt(`${this.dir}/cgroup.events`);
    if (ev === null) return false; // removed
    return kv(ev).populated === 1;
  }

  emptyAtAGlance(): boolean {
    return !this.populated();
  }

  cpuUsageUs(): number | null {
    const s = kv(readOpt(`${this.dir}/cpu.stat`));
    return s.usage_usec ?? null;
  }

  stats(lean = false): CgroupStats {
    const d = this.dir;
    const cpu = kv(readOpt(`${d}/cpu.stat`));
    const mev = readOpt(`${d}/memory.events`);
    const me = kv(mev);
    const pidsCurrent = lean ? null : num(readOpt(`${d}/pids.current`));
    const kernelPeak = num(readOpt(`${d}/pids.peak`));
    const [ioR, ioW] = lean ? [null, null] : ioBytesV2(readOpt(`${d}/io.stat`));
    return {
      cpuUserMs: cpu.user_usec !== undefined ? cpu.user_usec / 1000 : null,
      cpuSystemMs: cpu.system_usec !== undefined ? cpu.system_usec / 1000 : null,
      cpuUsageMs: cpu.usage_usec !== undefined ? cpu.usage_usec / 1000 : null,
      memoryCurrent: lean ? null : num(readOpt(`${d}/memory.current`)),
      memoryPeak: num(readOpt(`${d}/memory.peak`)),
      swap: lean ? null : num(readOpt(`${d}/memory.swap.current`)),
      pidsCurrent,
      pidsPeak: kernelPeak, // null before Linux 6.1 (no pids.peak): a sampled figure would only be a guess
      oom: mev === null ? null : (me.oom ?? 0),
      oomKill: mev === null ? null : (me.oom_kill ?? 0),
      ioReadBytes: ioR,
      ioWriteBytes: ioW,
    };
  }

  counters(from?: CgroupStats): LimitCounters {
    return {
      oomKill: from ? (from.oomKill ?? 0) : (kv(readOpt(`${this.dir}/memory.events`)).oom_kill ?? 0),
      pidsMax: kv(readOpt(`${this.dir}/pids.events`)).max ?? 0,
    };
  }

  async freeze(): Promise<void> {
    writeLimit(this.dir, 'cgroup.freeze', '1', 'freezer');
    await waitFor(() => kv(readOpt(`${this.dir}/cgroup.events`)).frozen === 1 || !this.populated(), 10000, 'the cgroup to freeze', this.dir);
  }

  async thaw(): Promise<void> {
    writeLimit(this.dir, 'cgroup.freeze', '0', 'freezer');
    await waitFor(() => kv(readOpt(`${this.dir}/cgroup.events`)).frozen !== 1, 10000, 'the cgroup to thaw', this.dir);
  }

  async kill(timeoutMs: number): Promise<void> {
    if (!existsSync(this.dir)) return;
    if (this.pids().includes(process.pid)) killPid(process.pid); // throws: never kill ourselves
    if (existsSync(`${this.dir}/cgroup.kill`)) {
      try {
        writeFileSync(`${this.dir}/cgroup.kill`, '1');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromNodeError(e, 'cgroup-kill');
        return;
      }
    } else {
      // before Linux 5.14: freeze, signal, thaw until empty
      await killLoop(this, timeoutMs);
    }
    await waitFor(() => !this.populated(), timeoutMs, 'the cgroup to become empty', this.dir);
  }

  watch(onChange: () => void): () => void {
    const files = ['cgroup.events', 'memory.events', 'pids.events'].map((f) => `${this.dir}/${f}`).filter((f) => existsSync(f));
    const n = cgNative();
    const fd = n.cgroupInotify(files);
    const w: NativeCgroupWatch = new n.CgroupWatch(fd, () => onChange());
    return () => w.close();
  }

  async remove(): Promise<void> {
    await rmdirRetry(this.dir);
  }
}

// ------------------------------------------------------------------ v1

// One kill loop per cgroup at a time (per directory, so two CGroup objects of one path count
// as one): two interleaved loops thawed each other's freeze and each then waited its full
// timeout for a state the other had undone.
const killing = new Map<string, Promise<void>>();
async function killLoop(d: Driver, timeoutMs: number): Promise<void> {
  const key = Object.values(d.dirs).sort()[0] ?? '';
  const before = killing.get(key);
  const mine: Promise<void> = (before ?? Promise.resolve()).catch(() => {}).then(() => killLoopAlone(d, timeoutMs));
  killing.set(key, mine);
  try {
    await mine;
  } finally {
    if (killing.get(key) === mine) killing.delete(key);
  }
}

async function killLoopAlone(d: Driver, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const pids = d.pids();
    if (pids.length === 0 && !d.populated()) return;
    if (Date.now() > end) throw errnoError(16, 'cgroup-kill', 'kill', Object.values(d.dirs)[0], `timed out after ${timeoutMs} ms; still inside: ${pids.join(',')}`);
    let frozen = false;
    try {
      await d.freeze();
      frozen = true;
    } catch (e) {
      if (!(e instanceof NsboxError) || (e.code !== 'ENODEV' && e.code !== 'ENOENT')) throw e;
    }
    for (const p of d.pids()) killPid(p);
    if (frozen) await d.thaw();
    await sleep(i < 10 ? 1 : 10);
  }
}

/** The cgroup v1 driver: one directory per hierarchy (memory, cpu[,cpuacct], pids, ...). */
export class V1Driver implements Driver {
  readonly version = 1 as const;

  /** @param dirs controller name -> directory (co-mounted controllers share one) */
  constructor(readonly dirs: Record<string, string>) {}

  private uniqueDirs(): string[] {
    return [...new Set(Object.values(this.dirs))];
  }

  private d(controller: string): string | undefined {
    return this.dirs[controller];
  }

  private need(controller: string, file: string): string {
    const d = this.d(controller);
    if (!d) throw missingController(controller, file, `no cgroup v1 hierarchy with the ${controller} controller is mounted`);
    return d;
  }

  procsPaths(): string[] {
    return this.uniqueDirs().map((d) => `${d}/cgroup.procs`);
  }

  placement(): CgroupPlacement {
    return { intoDir: undefined, tasks: this.uniqueDirs().map((d) => `${d}/tasks`), procs: this.procsPaths() };
  }

  apply(r: ResolvedLimits, fresh = false): void {
    const unl = (v: number | 'max') => (v === 'max' ? '-1' : String(v));
    if (r.devices !== undefined) {
      // the list replaces what was there: everything denied (or allowed, by a last wildcard
      // rule), then the rules after that wildcard, in order, as v1 exceptions
      const d = this.need('devices', 'devices.allow');
      const rules = r.devices;
      let from = 0;
      let allowAll = false;
      rules.forEach((x, i) => { if (x.type === 'a' && x.major === -1 && x.minor === -1 && x.access === 'rwm') { from = i + 1; allowAll = x.allow; } });
      writeLimit(d, allowAll ? 'devices.allow' : 'devices.deny', 'a', 'devices');
      for (const x of rules.slice(from)) {
        const id = (n: number) => (n < 0 ? '*' : String(n));
        writeLimit(d, x.allow ? 'devices.allow' : 'devices.deny', `${x.type} ${id(x.major)}:${id(x.minor)} ${x.access}`, 'devices');
      }
    }
    if (r.memory !== undefined || r.memorySwap !== undefined) {
      const d = this.need('memory', 'memory.limit_in_bytes');
      if (r.memorySwap !== undefined) {
        if (!existsSync(`${d}/memory.memsw.limit_in_bytes`)) {
          throw missingController('memory', `${d}/memory.memsw.limit_in_bytes`, 'swap accounting is off (boot with swapaccount=1)');
        }
        const mem = r.memory ?? num(readOpt(`${d}/memory.limit_in_bytes`)) ?? Infinity;
        const memsw = r.memorySwap === 'max' || mem === 'max' || mem >= 2 ** 62 ? '-1' : String(mem + r.memorySwap);
        // memsw must stay >= limit at every moment: order the two writes accordingly
        try {
          if (r.memory !== undefined) writeLimit(d, 'memory.limit_in_bytes', unl(r.memory), 'memory');
          writeLimit(d, 'memory.memsw.limit_in_bytes', memsw, 'memory');
        } catch {
          writeLimit(d, 'memory.memsw.limit_in_bytes', memsw, 'memory');
          if (r.memory !== undefined) writeLimit(d, 'memory.limit_in_bytes', unl(r.memory), 'memory');
        }
      } else if (r.memory !== undefined) {
        // without a swap limit, keep memsw unlimited so it never blocks the new memory limit
        // (a fresh cgroup's memsw is unlimited: nothing to check)
        if (!fresh && existsSync(`${d}/memory.memsw.limit_in_bytes`) && r.memory !== 'max') {
          const cur = num(readOpt(`${d}/memory.memsw.limit_in_bytes`)) ?? Infinity;
          if (cur < r.memory) writeLimit(d, 'memory.memsw.limit_in_bytes', '-1', 'memory');
        }
        writeLimit(d, 'memory.limit_in_bytes', unl(r.memory), 'memory');
      }
    }
    if (r.memoryReservation !== undefined) writeLimit(this.need('memory', 'memory.soft_limit_in_bytes'), 'memory.soft_limit_in_bytes', unl(r.memoryReservation), 'memory');
    if (r.cpus !== undefined) {
      const d = this.need('cpu', 'cpu.cfs_quota_us');
      // a fresh cgroup's period is the kernel's default, 100 ms (CFS_PERIOD)
      if (!fresh || CFS_PERIOD !== KERNEL_CFS_PERIOD) writeLimit(d, 'cpu.cfs_period_us', String(CFS_PERIOD), 'cpu');
      writeLimit(d, 'cpu.cfs_quota_us', String(Math.max(1000, Math.round(r.cpus * CFS_PERIOD))), 'cpu');
    }
    if (r.cpuWeight !== undefined) writeLimit(this.need('cpu', 'cpu.shares'), 'cpu.shares', String(weightToShares(r.cpuWeight)), 'cpu');
    if (r.cpuset !== undefined) writeLimit(this.need('cpuset', 'cpuset.cpus'), 'cpuset.cpus', r.cpuset, 'cpuset');
    if (r.cpusetMems !== undefined) writeLimit(this.need('cpuset', 'cpuset.mems'), 'cpuset.mems', r.cpusetMems, 'cpuset');
    if (r.pids !== undefined) writeLimit(this.need('pids', 'pids.max'), 'pids.max', String(r.pids), 'pids');
    if (r.ioWeight !== undefined) {
      const d = this.need('blkio', 'blkio.weight');
      if (existsSync(`${d}/blkio.weight`)) writeLimit(d, 'blkio.weight', String(Math.min(1000, Math.max(10, Math.round(r.ioWeight / 10)))), 'blkio');
      else if (existsSync(`${d}/blkio.bfq.weight`)) writeLimit(d, 'blkio.bfq.weight', String(Math.min(1000, Math.max(1, Math.round(r.ioWeight / 10)))), 'blkio');
      else throw missingController('blkio', `${d}/blkio.weight`, 'neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ) exists');
    }
    for (const e of r.ioMax ?? []) {
      const d = this.need('blkio', 'blkio.throttle.read_bps_device');
      const files = { rbps: 'read_bps_device', wbps: 'write_bps_device', riops: 'read_iops_device', wiops: 'write_iops_device' } as const;
      for (const k of ['rbps', 'wbps', 'riops', 'wiops'] as const) {
        if (e[k] !== undefined) forKey('ioMax', () => writeLimit(d, `blkio.throttle.${files[k]}`, `${e.device} ${e[k]}`, 'blkio'));
      }
    }
    // the kernel's own knobs (OCI linux.resources), written as given
    if (r.cpuMax !== undefined) {
      const m = r.cpuMax;
      forKey('cpuMax', () => {
        const d = this.need('cpu', 'cpu.cfs_quota_us');
        const quota = m.quota === undefined ? undefined : m.quota === 'max' ? '-1' : String(m.quota);
        const period = m.period === undefined ? undefined : String(m.period);
        // the kernel checks each write against the other value and the parent's: when one
        // order is refused (EINVAL), the other
        const write = (a: [string, string | undefined], b: [string, string | undefined]) => {
          if (a[1] !== undefined) writeLimit(d, a[0], a[1], 'cpu');
          if (b[1] !== undefined) writeLimit(d, b[0], b[1], 'cpu');
        };
        try {
          write(['cpu.cfs_period_us', period], ['cpu.cfs_quota_us', quota]);
        } catch {
          write(['cpu.cfs_quota_us', quota], ['cpu.cfs_period_us', period]);
        }
      });
    }
    if (r.cpuShares !== undefined) forKey('cpuShares', () => writeLimit(this.need('cpu', 'cpu.shares'), 'cpu.shares', String(r.cpuShares), 'cpu'));
    if (r.cpuRealtime !== undefined) {
      const rt = r.cpuRealtime;
      forKey('cpuRealtime', () => {
        const d = this.need('cpu', 'cpu.rt_runtime_us');
        if (!existsSync(`${d}/cpu.rt_runtime_us`)) throw missingController('cpu', `${d}/cpu.rt_runtime_us`, 'cpu.rt_runtime_us does not exist: the kernel is built without CONFIG_RT_GROUP_SCHED');
        if (rt.period !== undefined) writeLimit(d, 'cpu.rt_period_us', String(rt.period), 'cpu');
        try {
          if (rt.runtime !== undefined) writeLimit(d, 'cpu.rt_runtime_us', String(rt.runtime), 'cpu');
        } catch (e) {
          // the kernel hands realtime runtime down the tree: a new cgroup's parent (0 unless
          // set) must have it to give
          if (e instanceof NsboxError && e.code === 'EINVAL') e.message += ` (a cgroup's realtime runtime comes out of its parent's: ${dirname(d)}/cpu.rt_runtime_us must allow it)`;
          throw e;
        }
      });
    }
    if (r.blkioWeight !== undefined || r.blkioLeafWeight !== undefined || r.blkioWeightDevice !== undefined) {
      const d = this.need('blkio', 'blkio.weight');
      // CFQ (before Linux 5.0) has blkio.weight, leaf weights and per-device files; BFQ one
      // file for the default and per-device weights; the values are the same range (10..1000)
      const cfq = existsSync(`${d}/blkio.weight`);
      const bfq = existsSync(`${d}/blkio.bfq.weight`);
      const weightFile = (): string => {
        if (cfq) return 'blkio.weight';
        if (bfq) return 'blkio.bfq.weight';
        throw missingController('blkio', `${d}/blkio.weight`, 'neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ) exists: no block device here uses an I/O scheduler with weights');
      };
      if (r.blkioWeight !== undefined) forKey('blkioWeight', () => writeLimit(d, weightFile(), String(r.blkioWeight), 'blkio'));
      if (r.blkioLeafWeight !== undefined) forKey('blkioLeafWeight', () => writeLimit(d, 'blkio.leaf_weight', String(r.blkioLeafWeight), 'blkio'));
      for (const x of r.blkioWeightDevice ?? []) {
        forKey('blkioWeightDevice', () => {
          if (x.weight !== undefined) writeLimit(d, cfq ? 'blkio.weight_device' : weightFile(), `${x.device} ${x.weight}`, 'blkio');
          if (x.leafWeight !== undefined) writeLimit(d, 'blkio.leaf_weight_device', `${x.device} ${x.leafWeight}`, 'blkio');
        });
      }
    }
    for (const [size, v] of Object.entries(r.hugetlb ?? {})) {
      forKey('hugetlb', () => writeLimit(this.need('hugetlb', `hugetlb.${size}.limit_in_bytes`), `hugetlb.${size}.limit_in_bytes`, String(v), 'hugetlb'));
    }
    if (r.netClassId !== undefined) forKey('netClassId', () => writeLimit(this.need('net_cls', 'net_cls.classid'), 'net_cls.classid', String(r.netClassId), 'net_cls'));
    for (const p of r.netPriorities ?? []) {
      forKey('netPriorities', () => writeLimit(this.need('net_prio', 'net_prio.ifpriomap'), 'net_prio.ifpriomap', `${p.name} ${p.priority}`, 'net_prio'));
    }
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const d of this.uniqueDirs()) for (const p of readPids(`${d}/cgroup.procs`)) all.add(p);
    return [...all];
  }

  populated(): boolean {
    return this.pids().length > 0;
  }

  emptyAtAGlance(): boolean {
    // pids.current counts every task charged to the cgroup: charged at fork before the task
    // joins (or on the move in), uncharged when it is reaped, zombies included; 0 means none is
    // inside. One number, where v1's cgroup.procs builds and sorts a pid list (3x the time of a
    // plain file on a spaced-out spawn's finish)
    const p = this.dirs.pids;
    if (p) {
      const n = num(readOpt(`${p}/pids.current`));
      if (n !== null) return n === 0;
    }
    const d = this.dirs.memory ?? this.uniqueDirs()[0];
    return d === undefined || readPids(`${d}/cgroup.procs`).length === 0;
  }

  cpuUsageUs(): number | null {
    const d = this.d('cpuacct');
    if (!d) return null;
    const ns = num(readOpt(`${d}/cpuacct.usage`));
    return ns === null ? null : ns / 1000;
  }

  stats(lean = false): CgroupStats {
    const acct = this.d('cpuacct');
    const mem = this.d('memory');
    const pids = this.d('pids');
    const blk = lean ? undefined : this.d('blkio');
    // user and system time per CPU in one file (the same counters usage_user and usage_sys sum)
    const all = acct ? usageAll(readOpt(`${acct}/cpuacct.usage_all`)) : null;
    const usr = all ? all[0] : acct ? num(readOpt(`${acct}/cpuacct.usage_user`)) : null;
    const sys = all ? all[1] : acct ? num(readOpt(`${acct}/cpuacct.usage_sys`)) : null;
    const tot = acct && !lean ? num(readOpt(`${acct}/cpuacct.usage`)) : null;
    let swap: number | null = null;
    let oomKill: number | null = null;
    if (mem) {
      if (!lean) swap = kv(readOpt(`${mem}/memory.stat`)).swap ?? null;
      const oc = readOpt(`${mem}/memory.oom_control`);
      oomKill = oc === null ? null : (kv(oc).oom_kill ?? 0);
    }
    const pidsCurrent = pids && !lean ? num(readOpt(`${pids}/pids.current`)) : null;
    const kernelPeak = pids ? num(readOpt(`${pids}/pids.peak`)) : null;
    const [ioR, ioW] = blk ? ioBytesV1(readOpt(`${blk}/blkio.throttle.io_service_bytes_recursive`) ?? readOpt(`${blk}/blkio.throttle.io_service_bytes`)) : [null, null];
    return {
      cpuUserMs: usr === null ? null : usr / 1e6,
      cpuSystemMs: sys === null ? null : sys / 1e6,
      cpuUsageMs: tot === null ? (usr !== null && sys !== null && lean ? (usr + sys) / 1e6 : null) : tot / 1e6,
      memoryCurrent: mem && !lean ? num(readOpt(`${mem}/memory.usage_in_bytes`)) : null,
      memoryPeak: mem ? num(readOpt(`${mem}/memory.max_usage_in_bytes`)) : null,
      swap,
      pidsCurrent,
      pidsPeak: kernelPeak, // null before Linux 6.1 (no pids.peak): a sampled figure would only be a guess
      oom: null,
      oomKill,
      ioReadBytes: ioR,
      ioWriteBytes: ioW,
    };
  }

  counters(from?: CgroupStats): LimitCounters {
    const mem = this.d('memory');
    const pids = this.d('pids');
    return {
      oomKill: from ? (from.oomKill ?? 0) : mem ? (kv(readOpt(`${mem}/memory.oom_control`)).oom_kill ?? 0) : 0,
      pidsMax: pids ? (kv(readOpt(`${pids}/pids.events`)).max ?? 0) : 0,
    };
  }

  async freeze(): Promise<void> {
    const d = this.need('freezer', 'freezer.state');
    writeLimit(d, 'freezer.state', 'FROZEN', 'freezer');
    await waitFor(() => (readOpt(`${d}/freezer.state`) ?? 'FROZEN').trim() === 'FROZEN', 10000, 'the cgroup to freeze', d);
  }

  async thaw(): Promise<void> {
    const d = this.need('freezer', 'freezer.state');
    writeLimit(d, 'freezer.state', 'THAWED', 'freezer');
    await waitFor(() => (readOpt(`${d}/freezer.state`) ?? 'THAWED').trim() === 'THAWED', 10000, 'the cgroup to thaw', d);
  }

  async kill(timeoutMs: number): Promise<void> {
    const pids = this.pids();
    if (pids.includes(process.pid)) killPid(process.pid); // throws: never kill ourselves
    if (pids.length === 0) return; // empty already (a sandbox whose pid 1 was reaped): one look
    await killLoop(this, timeoutMs);
  }

  watch(onChange: () => void): () => void {
    // OOM: an eventfd registered on memory.oom_control. Emptiness: v1 has no notification
    // short of the host-wide release_agent, so it is polled (every 50 ms, unref'd).
    const stops: (() => void)[] = [];
    const mem = this.d('memory');
    if (mem && existsSync(`${mem}/cgroup.event_control`)) {
      const n = cgNative();
      const fd = n.cgroupEventfd(`${mem}/cgroup.event_control`, `${mem}/memory.oom_control`);
      const w = new n.CgroupWatch(fd, () => {
        onChange();
        // the kill is counted once the victim is chosen; look again shortly after
        setTimeout(onChange, 20).unref();
        setTimeout(onChange, 200).unref();
      });
      stops.push(() => w.close());
    }
    const t = setInterval(onChange, 50);
    t.unref();
    stops.push(() => clearInterval(t));
    return () => stops.forEach((s) => s());
  }

  async remove(): Promise<void> {
    // independent directories: removed side by side (their waits overlap)
    const r = await Promise.allSettled(this.uniqueDirs().map((d) => rmdirRetry(d)));
    for (const x of r) if (x.status === 'rejected') throw x.reason;
  }
}

/** A device rule as the addon's five numbers: allow, type (0 any, 1 block, 2 char), major, minor (-1 any), access (1 mknod, 2 read, 4 write). */
function deviceRuleWords(x: ResolvedDeviceRule): number[] {
  const access = (x.access.includes('m') ? 1 : 0) | (x.access.includes('r') ? 2 : 0) | (x.access.includes('w') ? 4 : 0);
  return [x.allow ? 1 : 0, x.type === 'b' ? 1 : x.type === 'c' ? 2 : 0, x.major, x.minor, access];
}

/** Creates a directory; EEXIST and every other failure become NsboxError. */
export function mkdirCg(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (e) {
    throw fromNodeError(e, 'cgroup-create');
  }
}

/** Writes pid into every procs file (the caller made sure it is not this process). */
export function attach(paths: string[], pid: number): void {
  writeProcs(paths, pid);
}

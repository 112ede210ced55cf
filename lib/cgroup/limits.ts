// One limits vocabulary for cgroup v1 and v2, validated in TypeScript before anything is
// created. validateLimits() reads only sysfs facts (online CPUs and memory nodes, device
// numbers); it creates nothing.
import { statSync, readFileSync, readdirSync } from 'node:fs';
import { pageSize } from './native.js';

/** A byte count: a number, or a string such as `'256M'`, `'1.5G'`, `'4096'`, `'64KiB'`. */
export type ByteSize = number | string;

/** A per-device I/O cap (cgroup v2 `io.max`, v1 `blkio.throttle.*`). */
export interface IoMaxEntry {
  /** The block device: `'8:0'` (major:minor) or a path such as `'/dev/vda'`. */
  device: string;
  /** Read bytes per second. */
  rbps?: number;
  /** Write bytes per second. */
  wbps?: number;
  /** Read operations per second. */
  riops?: number;
  /** Write operations per second. */
  wiops?: number;
}

/** Limits a cgroup applies, the same words on cgroup v1 and v2. */
export interface Limits {
  /** Memory cap (v2 `memory.max`, v1 `memory.limit_in_bytes`); `'max'` removes it. At least one page. */
  memory?: ByteSize | 'max';
  /**
   * Swap allowed on top of `memory` (v2 `memory.swap.max`; v1 `memory.memsw.limit_in_bytes`
   * = memory + memorySwap, so v1 needs `memory` too). `0` forbids swap.
   */
  memorySwap?: ByteSize | 'max';
  /** Memory protected from reclaim / soft limit (v2 `memory.low`, v1 `memory.soft_limit_in_bytes`). */
  memoryReservation?: ByteSize | 'max';
  /** CPU bandwidth in cores, e.g. `0.5` (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`). */
  cpus?: number;
  /** Relative CPU weight 1..10000, default 100 (v2 `cpu.weight`; v1 `cpu.shares`, mapped). */
  cpuWeight?: number;
  /** CPUs allowed, e.g. `'0-1'` or `'0,2'` (`cpuset.cpus`); each must be online. */
  cpuset?: string;
  /** Memory nodes allowed, e.g. `'0'` (`cpuset.mems`); each must be online. */
  cpusetMems?: string;
  /** Maximum number of tasks (processes and threads), `pids.max`; `'max'` removes it. */
  pids?: number | 'max';
  /** Relative I/O weight 1..10000 (v2 `io.weight`/`io.bfq.weight`; v1 `blkio.bfq.weight`/`blkio.weight`, scaled). */
  ioWeight?: number;
  /** Per-device bandwidth and IOPS caps (a value of 0: no cap for that figure). */
  ioMax?: IoMaxEntry[];
  // -- the kernel's own knobs, written as given (OCI `linux.resources` uses them) -------------
  /**
   * CFS bandwidth exactly: `quota` µs of CPU time per `period` µs (v1 `cpu.cfs_quota_us` and
   * `cpu.cfs_period_us`; v2 `cpu.max` "quota period"). `quota` `'max'`: no cap. Either may be
   * left out (the cgroup's value stays). Not with `cpus`, which sets the same files.
   */
  cpuMax?: { quota?: number | 'max'; period?: number };
  /**
   * v1 `cpu.shares` exactly, 2..262144; on v2 `cpu.weight` from it by the conversion runc and
   * crun use (1 + (shares - 2) × 9999 / 262142). Not with `cpuWeight`.
   */
  cpuShares?: number;
  /** Realtime bandwidth, µs (v1 `cpu.rt_runtime_us`, `cpu.rt_period_us`; a kernel with CONFIG_RT_GROUP_SCHED). cgroup v2 has none. */
  cpuRealtime?: { runtime?: number; period?: number };
  /**
   * Block I/O weight as the v1 controller takes it, 10..1000: v1 `blkio.weight` (CFQ), else
   * `blkio.bfq.weight`; v2 `io.bfq.weight` as given, else `io.weight` converted as runc and crun
   * do (1 + (weight - 10) × 9999 / 990). Not with `ioWeight`.
   */
  blkioWeight?: number;
  /** v1 `blkio.leaf_weight`, 10..1000 (CFQ, gone since Linux 5.0; cgroup v2 has none). */
  blkioLeafWeight?: number;
  /** Per-device weights (`'major:minor'` or a device path), 10..1000: v1 `blkio.weight_device`/`blkio.leaf_weight_device` (CFQ) or `blkio.bfq.weight`; v2 `io.bfq.weight`, else `io.weight` converted. */
  blkioWeightDevice?: { device: string; weight?: number; leafWeight?: number }[];
  /** HugeTLB caps, page size (`'2MB'`, `'1GB'`, as the kernel names them) to bytes: v1 `hugetlb.<size>.limit_in_bytes`, v2 `hugetlb.<size>.max`. */
  hugetlb?: Record<string, number>;
  /** v1 `net_cls.classid` (cgroup v2 has no net_cls). */
  netClassId?: number;
  /** v1 `net_prio.ifpriomap`: a priority per interface of the writer's network namespace (cgroup v2 has no net_prio). */
  netPriorities?: { name: string; priority: number }[];
  /**
   * Device access rules (OCI `linux.resources.devices`): in order, a later rule that matches
   * an access wins; what no rule matches is denied. v1: the `devices` controller
   * (`devices.deny`/`devices.allow`); v2: a BPF device program attached to the cgroup. The
   * whole list replaces the previous one (also on update).
   */
  devices?: DeviceRule[];
}

/** One device rule of `limits.devices`. */
export interface DeviceRule {
  allow: boolean;
  /** `'c'` (character), `'b'` (block) or `'a'` (both, the default). */
  type?: 'a' | 'b' | 'c';
  /** Omitted: any. */
  major?: number;
  /** Omitted: any. */
  minor?: number;
  /** Some of `r` (read), `w` (write), `m` (mknod); default `'rwm'`. */
  access?: string;
}

/** A validated device rule: -1 is "any"; access as letters in r, w, m order. */
export interface ResolvedDeviceRule {
  allow: boolean;
  type: 'a' | 'b' | 'c';
  major: number;
  minor: number;
  access: string;
}

/** The limits `spawnIsolated` accepts: cgroup limits plus the ones it enforces itself. */
export interface SandboxLimits extends Limits {
  /** Wall-clock time limit in milliseconds (enforced by spawnIsolated). */
  wallTimeMs?: number;
  /** CPU time limit in milliseconds, measured from the cgroup (enforced by spawnIsolated). */
  cpuTimeMs?: number;
  /** Cap on captured stdout+stderr bytes (enforced by spawnIsolated). */
  outputBytes?: ByteSize;
}

/** An `ioMax` entry with the device resolved to `major:minor`. */
export interface ResolvedIoMax {
  device: string;
  rbps?: number;
  wbps?: number;
  riops?: number;
  wiops?: number;
}

/** The limits whose validated form is the given one (the kernel's values, exactly as given). */
type ExactLimits = Pick<Limits, 'cpuMax' | 'cpuShares' | 'cpuRealtime' | 'blkioWeight' | 'blkioLeafWeight' | 'blkioWeightDevice' | 'hugetlb' | 'netClassId' | 'netPriorities'>;

/** Validated limits: sizes in bytes, `'max'` for "no limit", devices as `major:minor`. */
export interface ResolvedLimits extends ExactLimits {
  memory?: number | 'max';
  memorySwap?: number | 'max';
  memoryReservation?: number | 'max';
  cpus?: number;
  cpuWeight?: number;
  cpuset?: string;
  cpusetMems?: string;
  pids?: number | 'max';
  ioWeight?: number;
  ioMax?: ResolvedIoMax[];
  devices?: ResolvedDeviceRule[];
  wallTimeMs?: number;
  cpuTimeMs?: number;
  outputBytes?: number;
}

const CGROUP_KEYS = [
  'memory', 'memorySwap', 'memoryReservation', 'cpus', 'cpuWeight', 'cpuset', 'cpusetMems', 'pids',
  'ioWeight', 'ioMax', 'devices', 'cpuMax', 'cpuShares', 'cpuRealtime', 'blkioWeight', 'blkioLeafWeight', 'blkioWeightDevice',
  'hugetlb', 'netClassId', 'netPriorities',
] as const;
const SPAWN_KEYS = ['wallTimeMs', 'cpuTimeMs', 'outputBytes'] as const;

/** The limit names a cgroup understands. */
export const cgroupLimitKeys: readonly string[] = CGROUP_KEYS;
/** The limit names only spawnIsolated enforces. */
export const spawnLimitKeys: readonly string[] = SPAWN_KEYS;

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * Parses a byte size: a non-negative integer, or a string with an optional binary unit
 * (`K`, `M`, `G`, `T`, `P`, optionally followed by `i`/`iB`/`B`; all powers of 1024).
 * Throws TypeError/RangeError naming `name`.
 */
export function parseByteSize(value: unknown, name: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || !Number.isInteger(value)) throw new RangeError(`${name} must be a whole number of bytes, got ${value}`);
    if (value < 0) throw new RangeError(`${name} must not be negative, got ${value}`);
    if (!Number.isSafeInteger(value)) throw new RangeError(`${name} is too large: ${value}`);
    return value;
  }
  if (typeof value !== 'string') throw new TypeError(`${name} must be a number of bytes or a string like '256M', got ${typeof value}`);
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(value);
  if (!m) throw new TypeError(`${name}: cannot read '${value}' as a size (use bytes or e.g. '256M', '1G')`);
  const n = Number(m[1]);
  if (n < 0) throw new RangeError(`${name} must not be negative, got '${value}'`);
  const bytes = Math.floor(n * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`${name} is too large: '${value}'`);
  return bytes;
}

function sizeOrMax(value: unknown, name: string, min: number, minWhy: string): number | 'max' {
  if (value === 'max' || value === Infinity) return 'max';
  const n = parseByteSize(value, name);
  if (n < min) throw new RangeError(`${name} must be at least ${min} bytes (${minWhy}), got ${n}`);
  return n;
}

function intIn(value: unknown, name: string, lo: number, hi: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value)) throw new RangeError(`${name} must be an integer, got ${value}`);
  if (value < lo || value > hi) throw new RangeError(`${name} must be between ${lo} and ${hi}, got ${value}`);
  return value;
}

function positiveMs(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number of milliseconds, got ${typeof value}`);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number of milliseconds, got ${value}`);
  return value;
}

/** Parses a kernel CPU/node list such as `'0-3,5'` into its members; null when malformed. */
export function parseIdList(text: string): number[] | null {
  const out: number[] = [];
  const t = text.trim();
  if (t === '') return out;
  for (const part of t.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 65536) return null;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

function readList(path: string, fallback: string): number[] {
  let text = fallback;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    /* absent (e.g. no NUMA sysfs): the fallback */
  }
  return parseIdList(text) ?? [];
}

// the online CPUs change rarely (hotplug): read at most once a second, and again before a
// value is refused on their account (see validateLimits) or after a cpuset write failed
let cpusCache: { ids: number[]; at: number } | undefined;

/** CPUs online (`/sys/devices/system/cpu/online`), read at most once a second unless `fresh`. */
export function onlineCpus(fresh = false): number[] {
  const now = Date.now();
  if (fresh || !cpusCache || now - cpusCache.at >= 1000 || now < cpusCache.at) {
    cpusCache = { ids: readList('/sys/devices/system/cpu/online', '0'), at: now };
  }
  return cpusCache.ids;
}

/** Drops the cached online CPUs (a cpuset write was refused: the set may have changed). */
export function forgetOnlineCpus(): void {
  cpusCache = undefined;
}

/** Memory nodes online now (`/sys/devices/system/node/online`, `'0'` without NUMA sysfs). */
export function onlineMemoryNodes(): number[] {
  return readList('/sys/devices/system/node/online', '0');
}

function idList(value: unknown, name: string, online: number[], what: string): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string like '0-1', got ${typeof value}`);
  const ids = parseIdList(value);
  if (ids === null || ids.length === 0) throw new TypeError(`${name}: cannot read '${value}' as a ${what} list like '0-1' or '0,2'`);
  const bad = ids.filter((i) => !online.includes(i));
  if (bad.length) throw new RangeError(`${name}: ${what} ${bad.join(',')} not online (online: ${online.join(',')})`);
  return value.replace(/\s+/g, '');
}

function resolveDevice(device: unknown, name: string): string {
  if (typeof device !== 'string' || device === '') throw new TypeError(`${name} must be 'major:minor' or a device path`);
  if (/^\d+:\d+$/.test(device)) return device;
  if (!device.startsWith('/')) throw new TypeError(`${name} must be 'major:minor' or an absolute device path, got '${device}'`);
  let st;
  try {
    st = statSync(device);
  } catch {
    throw new RangeError(`${name}: no such device '${device}'`);
  }
  if (!st.isBlockDevice()) throw new RangeError(`${name}: '${device}' is not a block device`);
  const rdev = st.rdev;
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | (hi & 0xfffff000);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** Options of {@link validateLimits}. */
export interface ValidateOptions {
  /** Reject wallTimeMs/cpuTimeMs/outputBytes (a bare CGroup does not enforce them). Default false. */
  cgroupOnly?: boolean;
}

/**
 * Checks limits and returns them resolved (bytes, `major:minor`). Throws TypeError for a
 * wrong type or an unknown key and RangeError for a value out of range, naming the option
 * (`limits.memory` ...). Creates nothing; reads only sysfs facts (online CPUs and nodes)
 * and stats device paths given in `ioMax`.
 */
/** Results of validateLimits (frozen): handed to it again, they are returned as they are. */
const resolvedLimits = new WeakSet<object>();

export function validateLimits(limits: unknown, options: ValidateOptions = {}): ResolvedLimits {
  if (limits === undefined || limits === null) return {};
  if (resolvedLimits.has(limits as object) && !(options.cgroupOnly && SPAWN_KEYS.some((k) => (limits as Record<string, unknown>)[k] !== undefined))) {
    return limits as ResolvedLimits;
  }
  if (typeof limits !== 'object' || Array.isArray(limits)) throw new TypeError(`limits must be an object, got ${Array.isArray(limits) ? 'an array' : typeof limits}`);
  const l = limits as Record<string, unknown>;
  const allowed: readonly string[] = options.cgroupOnly ? CGROUP_KEYS : [...CGROUP_KEYS, ...SPAWN_KEYS];
  for (const k of Object.keys(l)) {
    if (!allowed.includes(k)) {
      if ((SPAWN_KEYS as readonly string[]).includes(k)) throw new TypeError(`limits.${k} is enforced by spawnIsolated, not by a cgroup`);
      throw new TypeError(`limits.${k} is not a known limit (known: ${allowed.join(', ')})`);
    }
  }
  const r: ResolvedLimits = {};
  const page = pageSize();
  const has = (k: string) => l[k] !== undefined;
  if (has('memory')) r.memory = sizeOrMax(l.memory, 'limits.memory', page, 'one page');
  if (has('memorySwap')) r.memorySwap = sizeOrMax(l.memorySwap, 'limits.memorySwap', 0, 'zero');
  if (has('memoryReservation')) r.memoryReservation = sizeOrMax(l.memoryReservation, 'limits.memoryReservation', 0, 'zero');
  if (has('cpus')) {
    const c = l.cpus;
    if (typeof c !== 'number') throw new TypeError(`limits.cpus must be a number of cores, got ${typeof c}`);
    let n = onlineCpus().length || 1;
    if (c > n) n = onlineCpus(true).length || 1;
    if (!Number.isFinite(c) || c < 0.01 || c > n) throw new RangeError(`limits.cpus must be between 0.01 and ${n} (online CPUs), got ${c}`);
    r.cpus = c;
  }
  if (has('cpuWeight')) r.cpuWeight = intIn(l.cpuWeight, 'limits.cpuWeight', 1, 10000);
  if (has('cpuset')) {
    try {
      r.cpuset = idList(l.cpuset, 'limits.cpuset', onlineCpus(), 'CPU');
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      r.cpuset = idList(l.cpuset, 'limits.cpuset', onlineCpus(true), 'CPU');
    }
  }
  if (has('cpusetMems')) r.cpusetMems = idList(l.cpusetMems, 'limits.cpusetMems', onlineMemoryNodes(), 'memory node');
  if (has('pids')) r.pids = l.pids === 'max' || l.pids === Infinity ? 'max' : intIn(l.pids, 'limits.pids', 1, 4194304);
  if (has('ioWeight')) r.ioWeight = intIn(l.ioWeight, 'limits.ioWeight', 1, 10000);
  if (has('ioMax')) {
    if (!Array.isArray(l.ioMax)) throw new TypeError('limits.ioMax must be an array of { device, rbps?, wbps?, riops?, wiops? }');
    r.ioMax = l.ioMax.map((e: unknown, i: number) => {
      const name = `limits.ioMax[${i}]`;
      if (typeof e !== 'object' || e === null) throw new TypeError(`${name} must be an object`);
      const o = e as Record<string, unknown>;
      const out: ResolvedIoMax = { device: resolveDevice(o.device, `${name}.device`) };
      let any = false;
      for (const k of Object.keys(o)) {
        if (k === 'device') continue;
        if (k !== 'rbps' && k !== 'wbps' && k !== 'riops' && k !== 'wiops') throw new TypeError(`${name}.${k} is not known (rbps, wbps, riops, wiops)`);
        if (o[k] === undefined) continue;
        out[k] = intIn(o[k], `${name}.${k}`, 0, Number.MAX_SAFE_INTEGER);
        any = true;
      }
      if (!any) throw new TypeError(`${name} needs at least one of rbps, wbps, riops, wiops`);
      return out;
    });
  }
  if (has('devices')) {
    if (!Array.isArray(l.devices)) throw new TypeError('limits.devices must be an array of { allow, type?, major?, minor?, access? }');
    r.devices = l.devices.map((e: unknown, i: number) => {
      const name = `limits.devices[${i}]`;
      if (typeof e !== 'object' || e === null) throw new TypeError(`${name} must be an object`);
      const o = e as Record<string, unknown>;
      for (const k of Object.keys(o)) if (!['allow', 'type', 'major', 'minor', 'access'].includes(k)) throw new TypeError(`${name}.${k} is not known (allow, type, major, minor, access)`);
      if (typeof o.allow !== 'boolean') throw new TypeError(`${name}.allow must be a boolean`);
      const type = o.type ?? 'a';
      if (type !== 'a' && type !== 'b' && type !== 'c') throw new TypeError(`${name}.type must be 'a', 'b' or 'c'`);
      const num = (k: 'major' | 'minor') => (o[k] === undefined || o[k] === null || o[k] === -1 ? -1 : intIn(o[k], `${name}.${k}`, 0, k === 'major' ? 4095 : 1048575));
      const access = o.access ?? 'rwm';
      if (typeof access !== 'string' || !/^[rwm]+$/.test(access)) throw new TypeError(`${name}.access must be letters of 'rwm'`);
      return { allow: o.allow, type, major: num('major'), minor: num('minor'), access: ['r', 'w', 'm'].filter((c) => access.includes(c)).join('') };
    });
  }
  if (has('cpuMax')) {
    if (has('cpus')) throw new TypeError('limits.cpuMax and limits.cpus set the same CPU bandwidth: give one');
    const o = plainObject(l.cpuMax, 'limits.cpuMax', ['quota', 'period']);
    const c: { quota?: number | 'max'; period?: number } = {};
    // the kernel's ranges: period 1 ms .. 1 s, quota at least 1 ms
    if (o.period !== undefined) c.period = intIn(o.period, 'limits.cpuMax.period', 1000, 1000000);
    if (o.quota !== undefined) c.quota = o.quota === 'max' || o.quota === Infinity ? 'max' : intIn(o.quota, 'limits.cpuMax.quota', 1000, Number.MAX_SAFE_INTEGER);
    if (c.period === undefined && c.quota === undefined) throw new TypeError('limits.cpuMax needs quota or period');
    r.cpuMax = Object.freeze(c);
  }
  if (has('cpuShares')) {
    if (has('cpuWeight')) throw new TypeError('limits.cpuShares and limits.cpuWeight set the same CPU weight: give one');
    r.cpuShares = intIn(l.cpuShares, 'limits.cpuShares', 2, 262144);
  }
  if (has('cpuRealtime')) {
    const o = plainObject(l.cpuRealtime, 'limits.cpuRealtime', ['runtime', 'period']);
    const c: { runtime?: number; period?: number } = {};
    if (o.period !== undefined) c.period = intIn(o.period, 'limits.cpuRealtime.period', 1, 2 ** 31 - 1);
    if (o.runtime !== undefined) c.runtime = intIn(o.runtime, 'limits.cpuRealtime.runtime', -1, 2 ** 31 - 1);
    if (c.period === undefined && c.runtime === undefined) throw new TypeError('limits.cpuRealtime needs runtime or period');
    r.cpuRealtime = Object.freeze(c);
  }
  if (has('blkioWeight')) {
    if (has('ioWeight')) throw new TypeError('limits.blkioWeight and limits.ioWeight set the same I/O weight: give one');
    r.blkioWeight = intIn(l.blkioWeight, 'limits.blkioWeight', 10, 1000);
  }
  if (has('blkioLeafWeight')) r.blkioLeafWeight = intIn(l.blkioLeafWeight, 'limits.blkioLeafWeight', 10, 1000);
  if (has('blkioWeightDevice')) {
    if (!Array.isArray(l.blkioWeightDevice)) throw new TypeError('limits.blkioWeightDevice must be an array of { device, weight?, leafWeight? }');
    r.blkioWeightDevice = l.blkioWeightDevice.map((e: unknown, i: number) => {
      const name = `limits.blkioWeightDevice[${i}]`;
      const o = plainObject(e, name, ['device', 'weight', 'leafWeight']);
      const out: { device: string; weight?: number; leafWeight?: number } = { device: resolveDevice(o.device, `${name}.device`) };
      if (o.weight !== undefined) out.weight = intIn(o.weight, `${name}.weight`, 10, 1000);
      if (o.leafWeight !== undefined) out.leafWeight = intIn(o.leafWeight, `${name}.leafWeight`, 10, 1000);
      if (out.weight === undefined && out.leafWeight === undefined) throw new TypeError(`${name} needs weight or leafWeight`);
      return out;
    });
  }
  if (has('hugetlb')) {
    const o = plainObject(l.hugetlb, 'limits.hugetlb');
    const sizes = hugePageSizes();
    const out: Record<string, number> = {};
    for (const [size, v] of Object.entries(o)) {
      if (!sizes.includes(size)) throw new RangeError(`limits.hugetlb: this host has no huge pages of size '${size}' (it has: ${sizes.join(', ') || 'none'})`);
      out[size] = intIn(v, `limits.hugetlb['${size}']`, 0, Number.MAX_SAFE_INTEGER);
    }
    r.hugetlb = Object.freeze(out);
  }
  if (has('netClassId')) r.netClassId = intIn(l.netClassId, 'limits.netClassId', 0, 0xffffffff);
  if (has('netPriorities')) {
    if (!Array.isArray(l.netPriorities)) throw new TypeError('limits.netPriorities must be an array of { name, priority }');
    r.netPriorities = l.netPriorities.map((e: unknown, i: number) => {
      const name = `limits.netPriorities[${i}]`;
      const o = plainObject(e, name, ['name', 'priority']);
      if (typeof o.name !== 'string' || !/^[^\s/]{1,15}$/.test(o.name)) throw new TypeError(`${name}.name must be a network interface name`);
      return { name: o.name, priority: intIn(o.priority, `${name}.priority`, 0, 0xffffffff) };
    });
  }
  if (!options.cgroupOnly) {
    if (has('wallTimeMs')) r.wallTimeMs = positiveMs(l.wallTimeMs, 'limits.wallTimeMs');
    if (has('cpuTimeMs')) r.cpuTimeMs = positiveMs(l.cpuTimeMs, 'limits.cpuTimeMs');
    if (has('outputBytes')) r.outputBytes = parseByteSize(l.outputBytes, 'limits.outputBytes');
  }
  Object.freeze(r);
  resolvedLimits.add(r);
  return r;
}

/** The cgroup part of resolved limits (no spawn-enforced keys), itself resolved. */
export function cgroupLimitsOf(r: ResolvedLimits): ResolvedLimits {
  const c: Record<string, unknown> = { ...r };
  for (const k of SPAWN_KEYS) delete c[k];
  Object.freeze(c);
  resolvedLimits.add(c);
  return c as ResolvedLimits;
}

/** Whether resolved limits need a cgroup of the sandbox's own: a cgroup limit, or cpuTimeMs (read from its cpu accounting). */
export function wantsCgroup(r: ResolvedLimits): boolean {
  return hasCgroupLimits(r) || r.cpuTimeMs !== undefined;
}

/** True when some cgroup-enforced limit is present (spawn-only keys do not count). */
export function hasCgroupLimits(r: ResolvedLimits): boolean {
  return CGROUP_KEYS.some((k) => r[k] !== undefined);
}

/** An object with only `known` keys (any key when omitted); TypeError naming `name` otherwise. */
function plainObject(v: unknown, name: string, known?: string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object`);
  if (known) for (const k of Object.keys(v)) if (!known.includes(k)) throw new TypeError(`${name}.${k} is not known (${known.join(', ')})`);
  return v as Record<string, unknown>;
}

/**
 * The huge page sizes of this host as cgroup files name them (`'2MB'`, `'1GB'`, `'64KB'`),
 * from /sys/kernel/mm/hugepages; none without hugetlbfs support.
 */
export function hugePageSizes(): string[] {
  let names: string[] = [];
  try { names = readdirSync('/sys/kernel/mm/hugepages'); } catch { /* no huge pages */ }
  const out: string[] = [];
  for (const n of names) {
    const m = /^hugepages-(\d+)kB$/.exec(n);
    if (!m) continue;
    let kb = Number(m[1]);
    let unit = 0;
    while (kb >= 1024 && kb % 1024 === 0 && unit < 2) { kb /= 1024; unit++; }
    out.push(`${kb}${['KB', 'MB', 'GB'][unit]}`);
  }
  return out;
}

/** v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the conversion runc and crun use. */
export function sharesToWeight(shares: number): number {
  return Math.floor(1 + ((shares - 2) * 9999) / 262142);
}

/** v1 `blkio.weight` (10..1000) to v2 `io.weight` (1..10000), the conversion runc and crun use. */
export function blkioToIoWeight(weight: number): number {
  return Math.floor(1 + ((weight - 10) * 9999) / 990);
}

/** v2 `cpu.weight` (1..10000) to v1 `cpu.shares` (2..262144), the OCI runtimes' mapping inverted. */
export function weightToShares(weight: number): number {
  return Math.round(2 + ((weight - 1) * 262142) / 9999);
}

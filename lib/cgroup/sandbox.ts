// The cgroup step of spawnIsolated: make the sandbox's cgroup, hand the spawner what it
// needs to put the child inside before exec, and answer "which limit fired, what was used".
import { closeSync, constants, openSync } from 'node:fs';
import { CGroup } from './cgroup.js';
import { cgroupLimitsOf, validateLimits, type Limits, type SandboxLimits } from './limits.js';
import type { CgroupStats, LimitCounters } from './drivers.js';
import { ownerTag } from '../owner.js';

/** Options of {@link prepareSandboxCgroup}. */
export interface PrepareSandboxCgroupOptions {
  /** Limits (spawn-only keys wallTimeMs/cpuTimeMs/outputBytes are validated and ignored here). */
  limits: SandboxLimits;
  /** Parent cgroup (path or CGroup); default: the caller's own cgroup. */
  parent?: string | CGroup;
  /** Name; default `nsbox-<pid>-<start>-<counter>` (the owner's pid and start time: `gc()` removes it once that process is gone). Always contains `nsbox`. */
  name?: string;
}

/** Usage of a finished (or running) sandbox, from its cgroup. */
export interface SandboxUsage {
  cpuUserMs: number | null;
  cpuSystemMs: number | null;
  peakMemoryBytes: number | null;
  pidsPeak: number | null;
  oomKills: number | null;
}

/** A sandbox's cgroup, ready for the spawner. */
export interface SandboxCgroup {
  /** The cgroup itself (owned: killAndRemove() removes it). */
  readonly cgroup: CGroup;
  /**
   * v2: an O_RDONLY|O_DIRECTORY|O_CLOEXEC fd of the cgroup for `clone3(CLONE_INTO_CGROUP)`; close it
   * with closeCloneFd() once the child exists. undefined on v1.
   */
  readonly cloneIntoFd: number | undefined;
  /** cgroup.procs files the parent writes the child's pid into (v1; v2 fallback without CLONE_INTO_CGROUP). */
  readonly procsPaths: string[];
  /** Closes cloneIntoFd (idempotent). */
  closeCloneFd(): void;
  /** Which cgroup limit fired (still answers after killAndRemove(), from the last figures): `'memory'` when the OOM killer killed, else `'pids'` when a fork was refused, else null. */
  verdict(): Promise<'memory' | 'pids' | null>;
  /** Usage figures for the result (after killAndRemove(): the figures read just before rmdir). */
  usage(): Promise<SandboxUsage>;
  /** verdict() and usage() at once, from one reading of the cgroup (the spawn's finish step). */
  figures(): Promise<{ verdict: 'memory' | 'pids' | null; usage: SandboxUsage }>;
  /** Total CPU time so far, ms (one file read; for cpuTimeMs polling). 0 when unknown. */
  cpuUsageMs(): Promise<number>;
  /** Kills everything inside, waits until empty, removes the cgroup. Idempotent; never throws for a group already removed. */
  killAndRemove(): Promise<void>;
}

let counter = 0;

function verdictOf(c: LimitCounters): 'memory' | 'pids' | null {
  if (c.oomKill > 0) return 'memory';
  if (c.pidsMax > 0) return 'pids';
  return null;
}

function usageOf(s: CgroupStats): SandboxUsage {
  return { cpuUserMs: s.cpuUserMs, cpuSystemMs: s.cpuSystemMs, peakMemoryBytes: s.memoryPeak, pidsPeak: s.pidsPeak, oomKills: s.oomKill };
}

/**
 * Creates a sandbox's cgroup with `limits`. Validation errors (TypeError/RangeError) come
 * before anything exists; a limit the host cannot apply is an NsboxError naming the
 * controller, and nothing is left behind.
 */
export async function prepareSandboxCgroup(opts: PrepareSandboxCgroupOptions): Promise<SandboxCgroup> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options must be an object');
  const cgLimits = cgroupLimitsOf(validateLimits(opts.limits));
  const name = opts.name ?? `nsbox-${ownerTag()}-${++counter}`;
  const cg = await CGroup.create(name, { parent: opts.parent, limits: cgLimits as Limits });
  let fd: number | undefined;
  if (cg.version === 2) {
    try {
      fd = openSync(cg.path, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (e) {
      await cg.destroy({ kill: true }).catch(() => {});
      throw e;
    }
  }
  let removed: Promise<void> | undefined;
  // figures taken after the kill and before rmdir, so verdict()/usage() still answer afterwards
  let last: { stats: CgroupStats; counters: LimitCounters } | undefined;
  const snapshot = async () => {
    if (!cg.destroyed) last = { stats: await cg._finalStats(), counters: await cg.counters() };
    if (!last) throw new Error('nsbox: the sandbox cgroup was removed before its usage was read');
    return last;
  };
  const sb: SandboxCgroup = {
    cgroup: cg,
    get cloneIntoFd() {
      return fd;
    },
    procsPaths: cg.procsPaths,
    closeCloneFd() {
      if (fd !== undefined) {
        const f = fd;
        fd = undefined;
        try {
          closeSync(f);
        } catch {
          /* already closed */
        }
      }
    },
    async verdict() {
      return verdictOf((await snapshot()).counters);
    },
    async usage() {
      return usageOf((await snapshot()).stats);
    },
    async figures() {
      const f = await snapshot();
      return { verdict: verdictOf(f.counters), usage: usageOf(f.stats) };
    },
    async cpuUsageMs() {
      if (cg.destroyed) return last?.stats.cpuUsageMs ?? 0;
      return (await cg.cpuUsageMs()) ?? 0;
    },
    killAndRemove() {
      sb.closeCloneFd();
      removed ??= (async () => {
        if (cg.destroyed) return;
        await cg.kill();
        await snapshot().catch(() => {});
        await cg.destroy({ kill: true });
      })().catch((e: NodeJS.ErrnoException) => {
        removed = undefined; // let a later call try again
        if (e.code === 'ENOENT') return;
        throw e;
      });
      return removed;
    },
  };
  return sb;
}

// The cgroup step of spawnIsolated: make the sandbox's cgroup, hand the spawner what it
// needs to put the child inside before exec, and answer "which limit fired, what was used".
import { closeSync, constants, openSync } from 'node:fs';
import { CGroup, makeSpareCgroup, spareFits } from './cgroup.js';
import { cgroupLimitsOf, validateLimits, type Limits, type ResolvedLimits, type SandboxLimits } from './limits.js';
import { profileOf, returnSpare, takeSpare } from './spares.js';
import { onTeardown } from '../teardown.js';
import type { CgroupStats, LimitCounters } from './drivers.js';
import { ownerTag, processSeq } from '../owner.js';

/** Options of {@link prepareSandboxCgroup}. */
export interface PrepareSandboxCgroupOptions {
  /** Limits (spawn-only keys wallTimeMs/cpuTimeMs/outputBytes are validated and ignored here). */
  limits: SandboxLimits;
  /** Parent cgroup (path or CGroup); default: the caller's own cgroup. */
  parent?: string | CGroup;
  /** Name; default `nsbox-<pid>-<start>-<n>` (n from the process-wide sequence) (the owner's pid and start time: `gc()` removes it once that process is gone). Always contains `nsbox`. */
  name?: string;
  /**
   * @internal Take one of this process's spare cgroups made ahead (lib/cgroup/spares.ts) when
   * one is ready, instead of making one (spawnIsolated's cgroup layer). Not with `name` or a
   * CGroup `parent`.
   */
  spare?: boolean;
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
  /** Kills everything inside, waits until empty and reads the figures, leaving the removal for later (verdict()/usage() answer from these figures). */
  settle(): Promise<void>;
  /** Kills everything inside, waits until empty, removes the cgroup. Idempotent; never throws for a group already removed. */
  killAndRemove(): Promise<void>;
}


function verdictOf(c: LimitCounters): 'memory' | 'pids' | null {
  if (c.oomKill > 0) return 'memory';
  if (c.pidsMax > 0) return 'pids';
  return null;
}

function usageOf(s: CgroupStats): SandboxUsage {
  return { cpuUserMs: s.cpuUserMs, cpuSystemMs: s.cpuSystemMs, peakMemoryBytes: s.memoryPeak, pidsPeak: s.pidsPeak, oomKills: s.oomKill };
}

/**
 * A spare cgroup with `limits` written, or undefined when none is ready or it cannot take them
 * as a cgroup made for them would (then CGroup.create makes one and reports what is wrong).
 */
async function fromSpare(parent: string | undefined, limits: Limits): Promise<CGroup | undefined> {
  const r = validateLimits(limits, { cgroupOnly: true });
  const profile = profileOf(r);
  const s = takeSpare(parent, profile);
  if (!s) return missed(parent, r);
  let fits: boolean;
  try {
    fits = spareFits(r, s.controllers);
  } catch (e) {
    returnSpare(parent, s);
    throw e;
  }
  if (!fits) {
    returnSpare(parent, s);
    return undefined;
  }
  // written ahead with exactly these limits (the same writes, in the order _apply makes them)
  if (s.written === profile.key) {
    s.drop();
    return s.cgroup;
  }
  try {
    // nothing was written into a spare since its mkdir: its files hold the kernel's defaults
    s.cgroup._apply(r, true);
  } catch (e) {
    // half-made: removed as create() removes a cgroup whose limits were refused
    await s.cgroup.destroy({ kill: true }).then(s.drop, () => {});
    throw e;
  }
  // from here it is this sandbox's (its own teardown record is the caller's)
  s.drop();
  return s.cgroup;
}

/**
 * No spare was ready: the sandbox's cgroup made as a spare is (mkdirs, and the limits when they
 * are plain writes, by one job on the thread pool, not on the event loop), named as
 * CGroup.create names it. Undefined when that fails in any way (nothing of it left): then
 * CGroup.create makes it on the usual path and reports what stands in the way.
 */
async function missed(parent: string | undefined, r: ResolvedLimits): Promise<CGroup | undefined> {
  // limits of hierarchies a spare has no directory in (see spareFits): the usual path
  if (r.devices !== undefined || r.hugetlb !== undefined || r.netClassId !== undefined || r.netPriorities !== undefined) return undefined;
  let drop = () => {};
  let made: Awaited<ReturnType<typeof makeSpareCgroup>>;
  try {
    made = await makeSpareCgroup(`nsbox-${ownerTag()}-${processSeq()}`, parent, (dirs) => { drop = onTeardown({ cgroups: dirs }); }, r);
  } catch {
    drop();
    return undefined;
  }
  const { cgroup, controllers, written } = made;
  try {
    if (!spareFits(r, controllers)) throw new Error('does not fit');
    if (!written) cgroup._apply(r, true);
  } catch {
    await cgroup.destroy({ kill: true }).then(drop, () => {});
    return undefined;
  }
  drop();
  return cgroup;
}

/**
 * Creates a sandbox's cgroup with `limits`. Validation errors (TypeError/RangeError) come
 * before anything exists; a limit the host cannot apply is an NsboxError naming the
 * controller, and nothing is left behind.
 */
export async function prepareSandboxCgroup(opts: PrepareSandboxCgroupOptions): Promise<SandboxCgroup> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options must be an object');
  const cgLimits = cgroupLimitsOf(validateLimits(opts.limits));
  let cg: CGroup | undefined;
  if (opts.spare && opts.name === undefined && (opts.parent === undefined || typeof opts.parent === 'string')) cg = await fromSpare(opts.parent, cgLimits as Limits);
  cg ??= await CGroup.create(opts.name ?? `nsbox-${ownerTag()}-${processSeq()}`, { parent: opts.parent, limits: cgLimits as Limits });
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
  // settle() saw the cgroup empty and read its figures: with no process inside, nothing can
  // change them any more (nsbox puts no process into a used cgroup, and the sandbox's own view
  // of the cgroup filesystem is read-only), so they are not read again, and the removal is
  // rmdir alone (which refuses a cgroup with a task: then the kill and removal as before)
  let settled = false;
  const snapshot = async () => {
    if (settled && last) return last;
    if (!cg.destroyed) last = await cg._finalFigures();
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
    async settle() {
      if (cg.destroyed) return;
      // a sandbox whose pid 1 was reaped is empty: one look, the full kill only when not
      if (!cg._emptyAtAGlance()) await cg.kill();
      await snapshot().then(() => { settled = !cg.destroyed; }, () => {});
    },
    killAndRemove() {
      sb.closeCloneFd();
      removed ??= (async () => {
        if (cg.destroyed) return;
        if (settled) {
          await cg._removeEmpty();
          return;
        }
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

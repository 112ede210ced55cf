// The cgroup layer: the sandbox's own cgroup for its cgroup limits (made under the caller's
// cgroup, or `cgroupParent`), or the caller's `cgroup`. Acquire takes a spare made ahead
// (lib/cgroup/spares.ts) and writes the limits into it, or makes one, and names how the child
// is put in (the driver's placement: CLONE_INTO_CGROUP fd, v1 tasks files, or cgroup.procs);
// while the sandbox runs the pipeline reads its cpu time (cpuTimeMs) and kills through it; after
// exit it tells which limit fired and what was used (the cgroup emptied and read before the
// result), and removes it just after the result (on a failure path release removes it before
// the error); then the spares are made up again.
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import type { CGroup } from '../../cgroup/cgroup.js';
import { prepareSandboxCgroup, type SandboxCgroup, type SandboxUsage } from '../../cgroup/sandbox.js';
import { removeUsed } from '../../cgroup/spares.js';
import { onTeardown } from '../../teardown.js';
import { validateLimits, wantsCgroup, type SandboxLimits } from '../../cgroup/limits.js';
import type { Bindings, LayerRun, SpawnLayer } from '../layer.js';
import type { SpawnIsolatedOptions } from '../../plan/options.js';

/** One spawn's cgroup: a layer run, and what the running sandbox asks of its cgroup. */
export interface CgroupRun extends LayerRun {
  /** the cgroup the sandbox is in (its own, or the caller's), once acquired */
  readonly cgroup: CGroup | undefined;
  /** it is the caller's (`options.cgroup`): nsbox neither polls, kills through nor removes it */
  readonly given: boolean;
  /** closes the placement fd once the child exists */
  placed(): void;
  /** total cpu time so far, ms (own cgroup only; 0 when unknown) */
  cpuUsageMs(): Promise<number>;
  /** kills everything in the sandbox's own cgroup (a limit fired) */
  killAll(): void;
  /**
   * after exit: kills what is left, reads which limit fired and the usage, removes the cgroup.
   * `deferRemoval` (a pooled sandbox whose pid 1 has exited, so nothing is left in it): only
   * reads; the removal is then release's.
   */
  finish(deferRemoval?: boolean): Promise<{ verdict: 'memory' | 'pids' | null; usage: SandboxUsage | undefined } | undefined>;
}

function placeIn(cg: CGroup, bindings: Bindings, fd: number): void {
  const p = cg.placement;
  bindings.cgroupFd = fd;
  bindings.cgroupTasks = p.tasks;
  bindings.cgroupProcs = p.procs;
}

/** The cgroup layer's run for these options, or undefined when the sandbox gets no cgroup. */
function openCgroup(o: SpawnIsolatedOptions): CgroupRun | undefined {
  const pdeathsig = o.parentDeathSignal !== false;
  if (o.cgroup) {
    // the caller's cgroup: placed in it, never made or removed here
    const given = o.cgroup;
    let fd = -1;
    const close = () => { if (fd >= 0) closeSync(fd); fd = -1; };
    return {
      cgroup: given,
      given: true,
      async acquire(_plan, bindings) {
        const dir = given.placement.intoDir;
        // cgroup v2: born in it (CLONE_INTO_CGROUP), as for a cgroup of its own
        if (dir !== undefined) fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
        placeIn(given, bindings, fd);
      },
      report: () => ({ cgroup: given.path }),
      placed: close,
      cpuUsageMs: async () => 0,
      killAll() {},
      finish: async () => undefined,
      release: close,
    };
  }
  // validated once here; the cgroup is made with these values, whatever the caller's object
  // holds by then
  const limits = validateLimits(o.limits);
  if (!wantsCgroup(limits)) return undefined;
  let sb: SandboxCgroup | undefined;
  let dropTeardown = () => {};
  // a used cgroup is removed, never reused; once it is gone the spares are made up again
  // (both after the result; see removeUsed)
  const parent = typeof o.cgroupParent === 'string' ? o.cgroupParent : undefined;
  const spare = o.cgroupParent === undefined || typeof o.cgroupParent === 'string';
  const removeNow = async () => { await sb?.killAndRemove().then(dropTeardown, () => {}); };
  // finish started the removal after the result: release does not wait for it
  let removing = false;
  return {
    get cgroup() { return sb?.cgroup; },
    given: false,
    async acquire(_plan, bindings) {
      sb = await prepareSandboxCgroup({ limits: limits as SandboxLimits, parent: o.cgroupParent, spare });
      // the thread's teardown removes it, unless the sandbox is to outlive the thread
      if (pdeathsig) dropTeardown = onTeardown({ cgroups: [...new Set(Object.values(sb.cgroup.paths))] });
      placeIn(sb.cgroup, bindings, sb.cloneIntoFd ?? -1);
    },
    report: () => ({ cgroup: sb?.cgroup.path ?? null }),
    placed: () => sb?.closeCloneFd(),
    cpuUsageMs: () => sb?.cpuUsageMs().catch(() => 0) ?? Promise.resolve(0),
    killAll() { sb?.cgroup.kill().catch(() => {}); },
    async finish(deferRemoval = false) {
      if (!sb) return undefined;
      if (!deferRemoval) {
        // empty and read now; the directories go after the result
        await sb.settle().catch(() => {});
        removing = true;
        removeUsed(removeNow, parent, spare);
      }
      return sb.figures().catch(() => ({ verdict: null, usage: undefined }));
    },
    // a release without a result (a failure, a prepared or pooled sandbox destroyed unrun, a
    // pool's close) starts no refill: more spawns are not to be expected, and a process closing
    // its pool and exiting would else exit with the refill's mkdirs under way (left for gc)
    release: () => (removing ? undefined : removeNow()),
  };
}

export const cgroupLayer: SpawnLayer & { open(o: SpawnIsolatedOptions): CgroupRun | undefined } = {
  name: 'cgroup',
  open: openCgroup,
};

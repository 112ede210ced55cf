// Spare cgroups: a few empty cgroups made ahead, so that a spawn with limits only writes its
// limits into one instead of making a directory in every hierarchy on its critical path.
//
// - A spare is made exactly where the sandbox's own cgroup would be made (the caller's own
//   cgroup in each hierarchy, or `cgroupParent`), never at a hierarchy's root unless the caller
//   itself is there, and is named `nsbox-<pid>-<start>-spare-<n>`: the owner mark gc reads.
// - Each one is used once. Its counters (memory peak, pids peak, OOM kills, pids.max refusals)
//   start at zero because it never held a process; a used cgroup is removed, never recycled
//   (not every kernel can reset those counters, so a reused one would report wrong usage).
// - Refilled off the spawn's critical path: after a sandbox's result, its directories made on
//   the thread pool.
// - Removed by the thread's teardown (a record each, registered before its directories are
//   made, as for a sandbox's cgroup), after
//   IDLE_MS without a limited spawn, by {@link releaseSpares}, and by `nsbox gc` once the owner
//   is gone.
import type { CGroup } from './cgroup.js';
import { makeSpareCgroup } from './cgroup.js';
import { detectLayout, type CgroupLayout } from './detect.js';
import { ownerTag, processSeq } from '../owner.js';
import { onTeardown } from '../teardown.js';

/** Spares kept per parent (a burst of more concurrent spawns makes the rest the usual way). */
export const SPARES = 4;
/** Spares unused this long are removed (ms). */
export const IDLE_MS = 2000;
/** After a spare could not be made, the pool waits this long before trying again (ms). */
const RETRY_MS = 5000;

/** A spare: the cgroup, the v2 controllers its parent gives it, and its teardown record. */
export interface Spare {
  readonly cgroup: CGroup;
  /** v2: controllers it can use; undefined on v1 (every hierarchy nsbox uses has a directory) */
  readonly controllers: Set<string> | undefined;
  /** drops the spare's teardown record (whoever takes it registers its own) */
  readonly drop: () => void;
}

interface Pool {
  readonly parent: string | undefined;
  readonly layout: CgroupLayout;
  readonly ready: Spare[];
  making: number;
  failedAt: number;
  idle: NodeJS.Timeout | undefined;
}

const pools = new Map<string, Pool>();
const removing = new Set<Promise<void>>();
const making = new Set<Promise<void>>();

function keyOf(parent: string | undefined): string {
  return parent === undefined ? '' : `/${parent}`;
}

function poolFor(parent: string | undefined): Pool {
  const key = keyOf(parent);
  const layout = detectLayout();
  let p = pools.get(key);
  if (p && p.layout !== layout) {
    // the layout was detected again (CGroup.enterLeaf): its spares may sit in the wrong place
    drain(p);
    p = undefined;
  }
  if (!p) {
    p = { parent, layout, ready: [], making: 0, failedAt: 0, idle: undefined };
    pools.set(key, p);
  }
  return p;
}

function removeSpare(s: Spare): void {
  const r: Promise<void> = s.cgroup.destroy({ kill: true }).then(s.drop, () => { /* the teardown record stays: exit or gc removes it */ })
    .finally(() => removing.delete(r));
  removing.add(r);
}

function drain(p: Pool): void {
  if (p.idle) clearTimeout(p.idle);
  p.idle = undefined;
  for (const s of p.ready.splice(0)) removeSpare(s);
  if (pools.get(keyOf(p.parent)) === p) pools.delete(keyOf(p.parent));
}

function touch(p: Pool): void {
  if (p.idle) p.idle.refresh();
  else {
    p.idle = setTimeout(() => drain(p), IDLE_MS);
    p.idle.unref();
  }
}

async function makeOne(p: Pool): Promise<void> {
  p.making++;
  // the teardown record names the directories before they are made (see makeSpareCgroup)
  let drop = () => {};
  try {
    const { cgroup, controllers } = await makeSpareCgroup(`nsbox-${ownerTag()}-spare-${processSeq()}`, p.parent, (dirs) => {
      drop = onTeardown({ cgroups: dirs });
    });
    const s: Spare = { cgroup, controllers, drop };
    if (pools.get(keyOf(p.parent)) === p) p.ready.push(s);
    else removeSpare(s); // the pool was drained meanwhile
  } catch {
    // nothing is left (makeSpareCgroup removed what it made); the usual path makes the
    // sandbox's cgroup and reports what stands in the way
    drop();
    p.failedAt = Date.now();
  } finally {
    p.making--;
  }
}

/**
 * Takes a spare for a sandbox whose cgroup would go under `parent` (undefined: the caller's own
 * cgroup), or undefined when none is ready. The caller owns it from then on.
 */
export function takeSpare(parent: string | undefined): Spare | undefined {
  const p = poolFor(parent);
  touch(p);
  return p.ready.pop();
}

/** Puts a spare back that was taken but not used (nothing was written into it). */
export function returnSpare(parent: string | undefined, s: Spare): void {
  const p = pools.get(keyOf(parent));
  if (p && p.ready.length < SPARES) p.ready.push(s);
  else removeSpare(s);
}

/**
 * Makes spares for `parent` up to {@link SPARES}, on the thread pool; call off the critical path.
 * Only a pool that a spawn asked for since the last drain is refilled: once spares were released
 * (or went idle), a removal finishing later makes none.
 */
export function refillSpares(parent: string | undefined): void {
  const p = pools.get(keyOf(parent));
  if (!p || p.layout !== detectLayout()) return;
  if (p.failedAt && Date.now() - p.failedAt < RETRY_MS) return;
  touch(p);
  for (let n = p.ready.length + p.making; n < SPARES; n++) {
    const m: Promise<void> = makeOne(p).finally(() => making.delete(m));
    making.add(m);
  }
}

/**
 * Removes a used sandbox cgroup just after the current result (`remove`, on the next turn of
 * the loop), then refills `parent`'s spares when `refill`. Tracked: {@link releaseSpares} waits
 * for it.
 */
export function removeUsed(remove: () => Promise<void>, parent: string | undefined, refill: boolean): void {
  const r: Promise<void> = new Promise<void>((res) => { setImmediate(res); })
    .then(remove)
    .then(() => { if (refill) refillSpares(parent); })
    .catch(() => { /* the teardown record stays: exit or gc removes it */ })
    .finally(() => removing.delete(r));
  removing.add(r);
}

/**
 * Removes every spare of this thread now, after the used cgroups whose removal was started,
 * for every copy of nsbox loaded in the thread; resolves once they are gone.
 */
export async function releaseSpares(): Promise<void> {
  await Promise.all([...releasers].map((release) => release()));
}

async function releaseOwn(): Promise<void> {
  for (;;) {
    for (const p of [...pools.values()]) drain(p);
    if (!removing.size && !making.size) return;
    await Promise.allSettled([...removing, ...making]);
  }
}

// Every copy of this module in the thread (a process may load nsbox twice: its ESM and CJS
// builds, or the sources beside the build, as the test suite does) registers its release here,
// and releaseSpares() of any copy releases them all.
const releasers: Set<() => Promise<void>> = ((globalThis as Record<symbol, unknown>)[Symbol.for('nsbox.spares.release')] ??= new Set()) as Set<() => Promise<void>>;
releasers.add(releaseOwn);

/** The spares ready now, per parent (for tests and benches). */
export function sparesReady(): CGroup[] {
  return [...pools.values()].flatMap((p) => p.ready.map((s) => s.cgroup));
}

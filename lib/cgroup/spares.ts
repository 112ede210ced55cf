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
//   the thread pool (one job of the addon's, cgroupBatch).
// - Limits written ahead: once a spawn asks for the same limits as the one before it (the
//   pool's profile), the spares are made with those limits written by the same job, in the
//   order a spawn would write them into a fresh spare (only limits that are plain writes:
//   recordLimitWrites), and a spawn with those limits takes one and writes nothing. Other
//   limits take a fresh spare and write their own. A profile whose writes the kernel refuses
//   is not tried again (the spawn then writes them and reports the refusal as before).
// - The pool grows past SPARES (to MAX_SPARES) while spawns find it empty.
// - Removed by the thread's teardown (a record each, registered before its directories are
//   made, as for a sandbox's cgroup), after
//   IDLE_MS without a limited spawn, by {@link releaseSpares}, and by `nsbox gc` once the owner
//   is gone.
import type { CGroup } from './cgroup.js';
import { makeSpareCgroup, SpareLimitsRefused } from './cgroup.js';
import type { ResolvedLimits } from './limits.js';
import { detectLayout, type CgroupLayout } from './detect.js';
import { ownerTag, processSeq } from '../owner.js';
import { onTeardown } from '../teardown.js';

/** Spares kept per parent at first. */
export const SPARES = 4;
/** At most this many: a pool that runs dry grows by one per spawn that found none (back to SPARES after IDLE_MS unused). */
export const MAX_SPARES = 16;
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
  /** the profile key of the limits written into it; undefined: nothing written (fresh) */
  readonly written: string | undefined;
}

/** Limits a spare may be made with (see {@link profileOf}). */
export interface Profile {
  readonly key: string;
  readonly limits: ResolvedLimits;
}

/** The profile of resolved cgroup limits: the same key for the same limits, whatever their order. */
export function profileOf(limits: ResolvedLimits): Profile {
  const l = limits as Record<string, unknown>;
  const key = JSON.stringify(Object.keys(l).filter((k) => l[k] !== undefined).sort().map((k) => [k, l[k]]));
  return { key, limits };
}

interface Pool {
  readonly parent: string | undefined;
  readonly layout: CgroupLayout;
  ready: Spare[];
  making: number;
  failedAt: number;
  idle: NodeJS.Timeout | undefined;
  /** how many spares it keeps (SPARES..MAX_SPARES) */
  target: number;
  /** a spare was ready once (a spawn finding none after that is a sign of more demand) */
  filled: boolean;
  /** the limits new spares are written with; undefined: fresh spares */
  profile: Profile | undefined;
  /** the key the last spawn asked for */
  lastKey: string | undefined;
  /** profiles whose writes were refused */
  refused: Set<string>;
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
    p = { parent, layout, ready: [], making: 0, failedAt: 0, idle: undefined, target: SPARES, filled: false, profile: undefined, lastKey: undefined, refused: new Set() };
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

async function makeOne(p: Pool, profile: Profile | undefined): Promise<void> {
  p.making++;
  // the teardown record names the directories before they are made (see makeSpareCgroup)
  let drop = () => {};
  let fresh = false;
  try {
    const { cgroup, controllers, written } = await makeSpareCgroup(`nsbox-${ownerTag()}-spare-${processSeq()}`, p.parent, (dirs) => {
      drop = onTeardown({ cgroups: dirs });
    }, profile?.limits);
    const s: Spare = { cgroup, controllers, drop, written: written ? profile!.key : undefined };
    if (pools.get(keyOf(p.parent)) === p) {
      p.ready.push(s);
      p.filled = true;
    } else removeSpare(s); // the pool was drained meanwhile
  } catch (e) {
    // nothing is left (makeSpareCgroup removed what it made)
    drop();
    if (e instanceof SpareLimitsRefused && profile) {
      // these limits are written by their spawns, which report the refusal: a fresh spare
      // instead (awaited here, so releaseSpares waits for it too)
      p.refused.add(profile.key);
      if (p.profile?.key === profile.key) p.profile = undefined;
      fresh = true;
    } else {
      // the usual path makes the sandbox's cgroup and reports what stands in the way
      p.failedAt = Date.now();
    }
  } finally {
    p.making--;
  }
  if (fresh && pools.get(keyOf(p.parent)) === p) await makeOne(p, undefined);
}

/**
 * Takes a spare for a sandbox whose cgroup would go under `parent` (undefined: the caller's own
 * cgroup), or undefined when none is ready. The caller owns it from then on. `want`: the
 * sandbox's limits, when they are plain writes (see recordLimitWrites): a spare with them
 * written is taken first, else a fresh one; and when the spawn before asked for the same, new
 * spares are made with them. A spare with other limits written is never given.
 */
export function takeSpare(parent: string | undefined, want?: Profile): Spare | undefined {
  const p = poolFor(parent);
  touch(p);
  const key = want?.key;
  p.profile = key !== undefined && key === p.lastKey && !p.refused.has(key) ? want : undefined;
  p.lastKey = key;
  let i = key === undefined ? -1 : p.ready.findLastIndex((s) => s.written === key);
  if (i < 0) i = p.ready.findLastIndex((s) => s.written === undefined);
  if (i < 0) {
    if (p.filled && p.target < MAX_SPARES) p.target++;
    return undefined;
  }
  return p.ready.splice(i, 1)[0];
}

/** Puts a spare back that was taken but not used (nothing was written into it). */
export function returnSpare(parent: string | undefined, s: Spare): void {
  const p = pools.get(keyOf(parent));
  if (p && p.ready.length < p.target) p.ready.push(s);
  else removeSpare(s);
}

/**
 * Makes spares for `parent` up to its target ({@link SPARES} or more), on the thread pool; call off the critical path.
 * Only a pool that a spawn asked for since the last drain is refilled: once spares were released
 * (or went idle), a removal finishing later makes none.
 */
export function refillSpares(parent: string | undefined): void {
  const p = pools.get(keyOf(parent));
  if (!p || p.layout !== detectLayout()) return;
  if (p.failedAt && Date.now() - p.failedAt < RETRY_MS) return;
  touch(p);
  // spares written with limits no longer asked for are of no use: removed, and made again
  const stale = p.ready.filter((s) => s.written !== undefined && s.written !== p.profile?.key);
  if (stale.length) {
    p.ready = p.ready.filter((s) => !stale.includes(s));
    stale.forEach(removeSpare);
  }
  for (let n = p.ready.length + p.making; n < p.target; n++) {
    const m: Promise<void> = makeOne(p, p.profile).finally(() => making.delete(m));
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

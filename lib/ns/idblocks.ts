// Id blocks: each live sandbox of a root caller maps its ids onto a 64Ki block of host ids of
// its own (as podman's --userns=auto), so that sandboxes do not share the kernel's per-uid
// quotas (pipe buffer pages, RLIMIT_NPROC, inotify watches, user namespaces). Where the blocks
// are is the planner's business (lib/plan/ids.ts, idBlockSource); this file hands them out.
//
// A block is claimed on the host by a symlink, made with symlink(2) (atomic, and it fails with
// EEXIST when the block is taken):
//
//   /run/nsbox/idblocks/<uid of the block's root>  ->  nsbox-<pid>-<start>-ids
//
// whose target names the owner (lib/owner.ts; `gc()` removes the claims of owners that are
// gone). A process keeps the claims it made: a block its sandbox no longer uses goes back to
// the process's free list, taken again by its next sandbox without touching the filesystem,
// and is given back to the host (the link removed) after IDLE_MS without use and by the
// thread's teardown.
import { linkSync, mkdirSync, readdirSync, readlinkSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import { errnoError } from '../errors.js';
import { mountOwner, ownerGone, ownerTag } from '../owner.js';
import { onTeardown } from '../teardown.js';

/** Where the claims live (root's: only root callers take blocks). */
export const IDBLOCK_DIR = '/run/nsbox/idblocks';
/** A free block stays claimed by its process this long after its last use. */
const IDLE_MS = 2_000;

/** Blocks to hand out: `count` of them, block n at `at(n)` (host uid and gid of its root). */
export interface BlockSource {
  count: number;
  at(n: number): { uid: number; gid: number };
}

/** A block one sandbox uses: give it back with release() (idempotent). */
export interface IdBlockClaim {
  readonly uid: number;
  readonly gid: number;
  /**
   * For a sandbox that may outlive this thread: the claim names the sandbox's process
   * (`pid`, started at `start`) from now on, so that the teardown leaves it and gc() frees the
   * block once that process is gone. release() then removes it once that process is gone.
   */
  handOver(pid: number, start: number): void;
  release(): void;
}

interface Held {
  uid: number;
  gid: number;
  /** position in its source: the lowest free one is taken first */
  n: number;
  path: string;
  inUse: boolean;
  drop: () => void;
}

/** The claims this thread made, by block uid. */
const held = new Map<number, Held>();
let dirReady = false;
let idleTimer: NodeJS.Timeout | undefined;

function claimPath(uid: number): string {
  return `${IDBLOCK_DIR}/${uid}`;
}

function lend(h: Held): IdBlockClaim {
  h.inUse = true;
  let done = false;
  let handed = false;
  return {
    uid: h.uid,
    gid: h.gid,
    handOver(pid, start) {
      if (done || handed) return;
      const aside = `${h.path}.new-nsbox-${ownerTag()}`;
      try { unlinkSync(aside); } catch { /* none */ }
      try {
        symlinkSync(`nsbox-${pid}-${start}-ids`, aside);
        renameSync(aside, h.path);
      } catch (e) {
        try { unlinkSync(aside); } catch { /* not made */ }
        throw e;
      }
      handed = true;
      held.delete(h.uid);
      h.drop();
    },
    release() {
      if (done) return;
      done = true;
      if (handed) { removeDeadClaim(h.path); return; }
      h.inUse = false;
      armIdle();
    },
  };
}

/**
 * A block of `source` for one sandbox: the lowest free one this thread holds, else the lowest
 * one nobody alive claims (a claim whose owner is gone is taken over: a process that ends by a
 * signal leaves its claims). Throws an NsboxError when every block is in use.
 */
export function acquireIdBlock(source: BlockSource): IdBlockClaim {
  let best: Held | undefined;
  for (const h of held.values()) {
    if (h.inUse || h.n >= source.count) continue;
    const b = source.at(h.n);
    if (b.uid !== h.uid || b.gid !== h.gid) continue;
    if (!best || h.n < best.n) best = h;
  }
  if (best) return lend(best);
  if (!dirReady) {
    mkdirSync(IDBLOCK_DIR, { recursive: true, mode: 0o700 });
    dirReady = true;
  }
  const target = `nsbox-${ownerTag()}-ids`;
  for (let n = 0; n < source.count; n++) {
    const b = source.at(n);
    if (held.has(b.uid)) continue;
    const path = claimPath(b.uid);
    // a claim whose owner is gone (a process killed before its teardown) is taken over
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        symlinkSync(target, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        if (attempt === 0 && removeDeadClaim(path)) continue;
        break;
      }
      const h: Held = { uid: b.uid, gid: b.gid, n, path, inUse: false, drop: onTeardown({ files: [path] }) };
      held.set(b.uid, h);
      return lend(h);
    }
  }
  throw errnoError(11, 'ids', 'symlink', IDBLOCK_DIR,
    `all ${source.count} id blocks are in use by live sandboxes (one 64Ki block per sandbox): end some, or give the nsbox user a longer range in /etc/subuid and /etc/subgid (usermod --add-subuids/--add-subgids)`);
}

/** Gives this thread's free blocks back to the host (those idle; of every copy of nsbox loaded in the thread). */
export function releaseIdleBlocks(): void {
  for (const release of releasers) release();
}

// every copy of this module in the thread registers here (see releaseSpares in
// lib/cgroup/spares.ts): releaseIdleBlocks() of any copy releases them all
const releasers: Set<() => void> = ((globalThis as Record<symbol, unknown>)[Symbol.for('nsbox.idblocks.release')] ??= new Set()) as Set<() => void>;
releasers.add(releaseOwnIdleBlocks);

function releaseOwnIdleBlocks(): void {
  for (const h of [...held.values()]) {
    if (h.inUse) continue;
    held.delete(h.uid);
    h.drop();
    try { unlinkSync(h.path); } catch { /* gone */ }
  }
}

let lastUse = 0;
function armIdle(): void {
  lastUse = performance.now();
  // one timer, looked at when it fires (cheaper per release than refreshing it)
  if (idleTimer) return;
  const check = (): void => {
    const left = lastUse + IDLE_MS - performance.now();
    if (left > 0) { idleTimer = setTimeout(check, left); idleTimer.unref(); return; }
    idleTimer = undefined;
    releaseOwnIdleBlocks();
  };
  idleTimer = setTimeout(check, IDLE_MS);
  idleTimer.unref();
}

/** The owner a claim's target names, or undefined for anything else. */
function claimOwner(target: string): { pid: number; start: number } | undefined {
  const o = mountOwner(target);
  return o && o.kind === 'ids' ? o : undefined;
}

/**
 * Removes the claim at `path` if its owner is gone; true when the block is free now. The link
 * is first renamed aside and looked at there, so that a block claimed again in between (by a
 * process that saw it removed by someone else) is put back rather than taken.
 */
function removeDeadClaim(path: string): boolean {
  let t: string;
  try { t = readlinkSync(path); } catch (e) { return (e as NodeJS.ErrnoException).code === 'ENOENT'; }
  const o = claimOwner(t);
  if (!o || !ownerGone(o.pid, o.start)) return false;
  const aside = `${path}.gc-nsbox-${ownerTag()}`;
  try { renameSync(path, aside); } catch { return false; }
  let t2 = '';
  try { t2 = readlinkSync(aside); } catch { /* gone */ }
  const o2 = claimOwner(t2);
  if (o2 && !ownerGone(o2.pid, o2.start)) {
    // a live claim: back where it was (link(2) does not replace a claim made meanwhile)
    try { linkSync(aside, path); } catch { /* claimed again meanwhile */ }
    try { unlinkSync(aside); } catch { /* gone */ }
    return false;
  }
  try { unlinkSync(aside); } catch { /* gone */ }
  return true;
}

/**
 * For gc(): removes the claims (and set-aside links) of owners that are gone, among the pids
 * `mine` accepts; returns their paths.
 */
export function sweepIdBlocks(mine: (pid: number) => boolean): string[] {
  let names: string[];
  try { names = readdirSync(IDBLOCK_DIR); } catch { return []; }
  const removed: string[] = [];
  for (const name of names) {
    const path = `${IDBLOCK_DIR}/${name}`;
    // a claim set aside by gc or being handed over, by a process that died meanwhile
    const aside = /^\d+\.(?:gc|new)-(nsbox-\d+-\d+)$/.exec(name);
    if (aside) {
      const o = mountOwner(`${aside[1]}-ids`);
      if (o && mine(o.pid) && ownerGone(o.pid, o.start)) {
        try { unlinkSync(path); removed.push(path); } catch { /* gone */ }
      }
      continue;
    }
    if (!/^\d+$/.test(name)) continue;
    let t: string;
    try { t = readlinkSync(path); } catch { continue; }
    const o = claimOwner(t);
    if (!o || !mine(o.pid)) continue;
    if (removeDeadClaim(path)) removed.push(path);
  }
  return removed;
}

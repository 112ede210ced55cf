// One id block per live sandbox (issue 15, "Ids: one range per sandbox"): a root caller's
// sandboxes each map their ids onto a 64Ki block of host ids of their own, so one sandbox
// cannot use up a per-uid kernel quota (here the pipe buffer pages of fs.pipe-user-pages-soft)
// for the others; blocks are reused once a sandbox ends, and the claims of a killed process are
// removed by gc(). Other nsbox processes run on this host meanwhile: checks look only at the
// blocks these sandboxes got, never at which block that is.
import { spawn as cpSpawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gc, spawnIsolated } from '../../lib/index.js';
import { IDBLOCK_DIR, releaseIdleBlocks } from '../../lib/ns/idblocks.js';
import { ownerTag } from '../../lib/owner.js';
import { RANGE_SIZE } from '../../lib/plan/index.js';
import { isRoot, skipReason, sleep } from '../helpers/host.js';

const DIST = new URL('../../dist/index.js', import.meta.url).pathname;
const PY = '/usr/bin/python3';
const skip = skipReason(!isRoot, 'id blocks are a root caller\'s (an unprivileged caller maps its own id)');
const noPy = !skip && skipReason(!existsSync(PY), `the pipe quota test needs ${PY}`);

/** The host uid and gid of a sandbox's root, from its own /proc/self/{uid,gid}_map. */
function rootOf(mapText: string): number[] {
  return mapText.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)).map(([inside, outside, count]) => {
    expect(inside).toBe(0);
    expect(count).toBe(RANGE_SIZE);
    return outside!;
  });
}

/** Claims of this process's thread (the links whose target names our pid). */
function ourClaims(pid = process.pid): string[] {
  let names: string[] = [];
  try { names = readdirSync(IDBLOCK_DIR); } catch { return []; }
  return names.filter((n) => {
    try { return readlinkSync(`${IDBLOCK_DIR}/${n}`).startsWith(`nsbox-${pid}-`); } catch { return false; }
  });
}

// one pipe after another, each raised to 1 MiB, until the kernel says EPERM: this user's
// pipe buffer quota is used up; then hold the pipes until stdin ends
const FILL = `
import fcntl, os, sys
F_SETPIPE_SZ = 1031
pipes = []
n = 0
while True:
    r, w = os.pipe()
    pipes.append((r, w))
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        n += 1
    except OSError as e:
        print("full", n, e.errno, flush=True)
        break
    if n > 4096:
        print("never full", n, flush=True)
        break
sys.stdin.read()
`;
const ONE = `
import fcntl, os
r, w = os.pipe()
try:
    print("ok", fcntl.fcntl(w, 1031, 1 << 20))
except OSError as e:
    print("EPERM" if e.errno == 1 else e)
`;

describe.skipIf(skip)('id blocks', () => {
  it('gives two concurrent sandboxes disjoint host ranges, reported in result.isolation', async () => {
    const sh = "cat /proc/self/uid_map /proc/self/gid_map; read x";
    const a = spawnIsolated('/bin/sh', ['-c', sh], { stdio: 'pipe' });
    const b = spawnIsolated('/bin/sh', ['-c', sh], { stdio: 'pipe' });
    await Promise.all([a, b].map((p) => new Promise((r) => p.once('spawn', r))));
    a.stdin!.end('\n'); b.stdin!.end('\n');
    const [ra, rb] = await Promise.all([a, b]);
    const [ua, ga] = rootOf(ra.stdout), [ub, gb] = rootOf(rb.stdout);
    expect(ua).not.toBe(ub);
    expect(Math.abs(ua! - ub!)).toBeGreaterThanOrEqual(RANGE_SIZE);
    expect(Math.abs(ga! - gb!)).toBeGreaterThanOrEqual(RANGE_SIZE);
    expect(ra.isolation.uidMap).toEqual([{ inside: 0, outside: ua, count: RANGE_SIZE }]);
    expect(rb.isolation.gidMap).toEqual([{ inside: 0, outside: gb, count: RANGE_SIZE }]);
  });

  it('reuses a block once its sandbox ended, and gives it back to the host when idle', async () => {
    const first = rootOf((await spawnIsolated('/bin/cat', ['/proc/self/uid_map'])).stdout)[0];
    const again = rootOf((await spawnIsolated('/bin/cat', ['/proc/self/uid_map'])).stdout)[0];
    expect(again).toBe(first);
    expect(ourClaims()).toContain(String(first));
    releaseIdleBlocks();
    expect(ourClaims()).not.toContain(String(first));
  });

  it('gives the block back when the options are refused after it was lent (the plan is built once, with it)', async () => {
    const first = rootOf((await spawnIsolated('/bin/cat', ['/proc/self/uid_map'])).stdout)[0];
    // refused by the planner and by the runtime checks, both after the block was taken
    expect(() => spawnIsolated('/bin/true', [], { hostname: '' })).toThrow(TypeError);
    expect(() => spawnIsolated('/bin/true', [], { timeout: -1 })).toThrow(RangeError);
    const again = rootOf((await spawnIsolated('/bin/cat', ['/proc/self/uid_map'])).stdout)[0];
    expect(again).toBe(first);
    const r = await spawnIsolated('/bin/cat', ['/proc/self/uid_map']);
    expect(r.isolation.uidMap).toEqual([{ inside: 0, outside: first, count: RANGE_SIZE }]);
  });

  it('keeps explicit maps and remapUser as given (no block)', async () => {
    const user = { uidMap: [{ inside: 0, outside: 200000, count: 1000 }], gidMap: [{ inside: 0, outside: 200000, count: 1000 }] };
    const r = await spawnIsolated('/bin/cat', ['/proc/self/uid_map'], { user });
    expect(r.stdout.trim().split(/\s+/).map(Number)).toEqual([0, 200000, 1000]);
    const m = await spawnIsolated('/bin/cat', ['/proc/self/uid_map'], { remapUser: 'nsbox-no-such-user' });
    expect(rootOf(m.stdout)[0]).toBe(0x6fff0000);
  });

  it.skipIf(noPy)('one sandbox using up the pipe buffer quota leaves another unaffected', async () => {
    const a = spawnIsolated(PY, ['-c', FILL], { stdio: 'pipe' });
    let out = '';
    const full = new Promise<void>((res, rej) => {
      a.stdout!.on('data', (c) => { out += c; if (out.includes('\n')) res(); });
      a.then(() => rej(new Error(`the filler ended early: ${out}`)), rej);
    });
    try {
      await full;
      const [word, n, errno] = out.trim().split(' ');
      expect(word).toBe('full');
      expect(errno).toBe('1');
      expect(Number(n)).toBeGreaterThan(0);
      // the same user's next pipe may not grow; another sandbox's may
      const b = await spawnIsolated(PY, ['-c', ONE]);
      expect(b.stdout.trim()).toBe(`ok ${1 << 20}`);
    } finally {
      a.stdin!.end();
      await a.catch(() => {});
    }
  }, 30_000);

  it("removes a killed process's claims with gc()", async () => {
    const script = `
      const m = await import(${JSON.stringify(DIST)});
      const p = m.spawnIsolated('/bin/sleep', ['60']);
      p.on('spawn', () => process.stdout.write('spawned\\n'));
      p.catch((e) => process.stderr.write('child: ' + e.message + '\\n'));
      setInterval(() => {}, 1000);`;
    const proc = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (c) => { err += c; });
    await new Promise<void>((res, rej) => {
      proc.stdout!.on('data', (c) => { if (String(c).includes('spawned')) res(); });
      proc.on('exit', () => rej(new Error(`child exited: ${err}`)));
    });
    const claims = ourClaims(proc.pid!);
    expect(claims).toHaveLength(1);
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    await sleep(50);
    expect(ourClaims(proc.pid!)).toEqual(claims);
    const r = await gc({ owners: [proc.pid!] });
    expect(r.idBlocks).toEqual([`${IDBLOCK_DIR}/${claims[0]}`]);
    expect(ourClaims(proc.pid!)).toEqual([]);
  }, 30_000);
});

describe.skipIf(skip)('id blocks: a hand-over that fails after the spawn', () => {
  it('leaves the sandbox running and its result intact; the claim stays with its creator', async () => {
    // A sandbox that outlives its thread (parentDeathSignal: false) has its block's claim
    // re-pointed at its own pid once it runs. That step comes after the child runs, so it must
    // not fail the spawn: here its temporary link cannot be made (a directory holds its name).
    const block = rootOf((await spawnIsolated('/bin/cat', ['/proc/self/uid_map'])).stdout)[0]!;
    const aside = `${IDBLOCK_DIR}/${block}.new-nsbox-${ownerTag()}`;
    mkdirSync(`${aside}/x`, { recursive: true });
    try {
      const p = spawnIsolated('/bin/sh', ['-c', 'cat /proc/self/uid_map; read x'], { stdio: 'pipe', parentDeathSignal: false });
      const spawned = new Promise((res, rej) => { p.once('spawn', res); p.catch(rej); });
      await spawned;
      p.stdin!.end('\n');
      const r = await p;
      expect(r.exitCode).toBe(0);
      expect(rootOf(r.stdout)[0]).toBe(block);
      expect(ourClaims()).toContain(String(block));
    } finally {
      rmSync(aside, { recursive: true, force: true });
    }
    releaseIdleBlocks();
    expect(ourClaims()).not.toContain(String(block));
  });
});

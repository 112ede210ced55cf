// The spawner thread (addon/src/spawner.h): the blocking part of a spawn runs on a thread of
// the environment's own, so a sandbox's parent is that thread, and its parent-death signal
// fires when that thread ends. These cases check that a sandbox still dies with what made it:
// with the Node process when it is killed outright (no teardown runs then), and with a worker
// that is terminated while its spawns are still under way on that thread.
import { describe, expect, it, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { IDBLOCK_DIR, sweepIdBlocks } from '../../lib/ns/idblocks.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot, skipReason } from '../helpers/host.js';

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
const scripts = mkdtempSync('/tmp/nsbox-spawner-js-');
afterAll(() => rmSync(scripts, { recursive: true, force: true }));
let n = 0;

/** Starts a fresh Node on `code`; resolves with the process and its stdout lines as they come. */
function node(code: string) {
  const file = join(scripts, `case-${++n}.mjs`);
  writeFileSync(file, code);
  const c = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  c.stdout.on('data', (d) => { out += d; });
  c.stderr.on('data', (d) => { err += d; });
  const line = () => new Promise<string>((resolve, reject) => {
    const look = () => {
      const i = out.indexOf('\n');
      if (i >= 0) { const l = out.slice(0, i); out = out.slice(i + 1); resolve(l); return true; }
      return false;
    };
    if (look()) return;
    const on = () => { if (look()) c.stdout.off('data', on); };
    c.stdout.on('data', on);
    c.once('close', () => reject(new Error(`node ended: ${err}`)));
  });
  const closed = new Promise<number | null>((r) => c.once('close', (code) => r(code)));
  return { c, line, closed, stderr: () => err };
}

/** Waits (up to 10 s) for a process to be gone; returns whether it is. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (!existsSync(`/proc/${pid}`)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

const CHILDREN = `
import { readFileSync, readdirSync } from 'node:fs';
const children = () => readdirSync('/proc').filter((d) => /^\\d+$/.test(d)).flatMap((d) => {
  try {
    const s = readFileSync('/proc/' + d + '/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[1]) === process.pid ? [d + ':' + f[0] + ':' + s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))] : [];
  } catch { return []; }
});
`;

describe.skipIf(skipReason(!isRoot, 'needs root'))('sandboxes made on the spawner thread die with what made them', () => {
  it('Node killed with SIGKILL (no teardown runs): its sandboxes get their parent-death signal', async () => {
    const p = node(`
      const { spawnIsolated } = await import(${JSON.stringify(dist)});
      const ps = [1, 2, 3].map(() => spawnIsolated('/bin/sleep', ['60']));
      await new Promise((r) => setTimeout(r, 0));
      // (listened to at once: spawns finish side by side, in any order)
      await Promise.all(ps.map((x) => new Promise((r) => x.once('spawn', r))));
      console.log(JSON.stringify(ps.map((x) => x.pid)));
      setInterval(() => {}, 1000);`);
    const pids = JSON.parse(await p.line()) as number[];
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(existsSync(`/proc/${pid}`)).toBe(true);
    p.c.kill('SIGKILL');
    await p.closed;
    for (const pid of pids) expect(await gone(pid)).toBe(true);
    // the one thing a killed process cannot remove itself: its id block claims, which gc
    // removes (swept here for that pid only, and checked gone)
    const dead = p.c.pid!;
    sweepIdBlocks((pid) => pid === dead);
    const claims = (() => { try { return readdirSync(IDBLOCK_DIR); } catch { return []; } })();
    expect(claims.filter((c) => { try { return readlinkSync(`${IDBLOCK_DIR}/${c}`).startsWith(`nsbox-${dead}-`); } catch { return false; } })).toEqual([]);
  });

  it('a worker terminated while its spawns are under way: every sandbox is killed and reaped, Node lives on', async () => {
    const worker = `
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(dist)}).then((m) => {
        // not awaited: the worker ends while these are queued, being made, or made and not yet seen
        for (let i = 0; i < 8; i++) m.spawnIsolated('/bin/sleep', ['60']).catch(() => {});
        parentPort.postMessage('go');
      });`;
    const p = node(`${CHILDREN}
      import { Worker } from 'node:worker_threads';
      const w = new Worker(${JSON.stringify(worker)}, { eval: true });
      w.on('error', (e) => console.error('worker error:', e));
      await new Promise((r) => w.once('message', r));
      await w.terminate();
      console.log(JSON.stringify({ children: children() }));`);
    const out = JSON.parse(await p.line());
    expect(await p.closed, p.stderr()).toBe(0);
    expect(out.children).toEqual([]);
  });

  it('spawns asked at once are made side by side, on more than one spawner thread; all die with the process', async () => {
    const p = node(`${CHILDREN}
      const { spawnIsolated } = await import(${JSON.stringify(dist)});
      const ps = Array.from({ length: 8 }, () => spawnIsolated('/bin/sleep', ['60']));
      await Promise.all(ps.map((x) => new Promise((r) => x.once('spawn', r))));
      const spawners = readdirSync('/proc/self/task').filter((t) => readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'nsbox-spawner');
      console.log(JSON.stringify({ pids: ps.map((x) => x.pid), spawners: spawners.length, children: children().length }));
      setInterval(() => {}, 1000);`);
    const out = JSON.parse(await p.line()) as { pids: number[]; spawners: number; children: number };
    expect(out.pids).toHaveLength(8);
    expect(new Set(out.pids).size).toBe(8);
    expect(out.children).toBe(8);
    expect(out.spawners).toBeGreaterThan(1);
    p.c.kill('SIGKILL');
    await p.closed;
    for (const pid of out.pids) expect(await gone(pid)).toBe(true);
    const dead = p.c.pid!;
    sweepIdBlocks((pid) => pid === dead);
  });

  it('a worker that ends on its own after its sandboxes ran: nothing left, and the main thread spawns on', async () => {
    const worker = `
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(dist)}).then(async (m) => {
        const rs = await Promise.all([1, 2, 3].map((i) => m.spawnIsolated('/bin/echo', [String(i)])));
        parentPort.postMessage(rs.map((r) => r.stdout.trim()).join(','));
      });`;
    const p = node(`${CHILDREN}
      import { Worker } from 'node:worker_threads';
      const { spawnIsolated } = await import(${JSON.stringify(dist)});
      const w = new Worker(${JSON.stringify(worker)}, { eval: true });
      const got = await new Promise((r) => w.once('message', r));
      await new Promise((r) => w.once('exit', r));
      const left = children();
      // (after this the main thread's spare network namespace may be on its way: a helper)
      const main = await spawnIsolated('/bin/echo', ['main']);
      console.log(JSON.stringify({ got, main: main.stdout.trim(), children: left }));`);
    const out = JSON.parse(await p.line());
    expect(await p.closed, p.stderr()).toBe(0);
    expect(out).toEqual({ got: '1,2,3', main: 'main', children: [] });
  });
});

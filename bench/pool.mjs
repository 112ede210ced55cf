#!/usr/bin/env node
// bench/pool: latency of pool.run('/bin/true') (a warm single-use sandbox: exec into it, then
// destroy it in the background) beside a cold spawnIsolated('/bin/true') and bwrap from Node,
// interleaved in one run; then throughput of pool.run at concurrency 2 and 8.
// Run as root after `npm run build:ts`:  node bench/pool.mjs [--n 200] [--size 4] [--spaced 30] [--refill 2]
//
// Same isolation on the nsbox sides: user, pid, mount, uts, ipc, net, cgroup namespaces, the
// default view, no caps, the default seccomp filter, nsbox-init as pid 1. A pool sandbox always
// has a cgroup ({ memory: 256M, pids: 64 } here), so cold spawnIsolated is measured with the same
// limits and without any. The spaced scenario is the one a service sees (see docs/runner.md).
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import { createPool, spawnIsolated } from '../dist/index.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 200);
const SIZE = arg('size', 4);
const SPACED = arg('spaced', 30);
const limits = { memory: '256M', pids: 64 };
const has = (cmd) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const stateDir = `/run/nsbox-bench-pool-${process.pid}`;
const REFILL = arg('refill', 2); // the pool's default
const pool = createPool({ size: SIZE, template: { limits, stateDir }, refillConcurrency: REFILL });

const cp = () => new Promise((resolve, reject) => {
  const p = cpSpawn('/bin/true', [], { stdio: 'ignore' });
  p.on('error', reject);
  p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`exit ${c}`))));
});
const runners = {
  'pool.run': async () => { const r = await pool.run('/bin/true'); if (r.exitCode !== 0) throw new Error(r.stderr); },
  'child_process.spawn': cp,
  'spawnIsolated (cold)': async () => { const r = await spawnIsolated('/bin/true', [], { limits }); if (r.exitCode !== 0) throw new Error(r.stderr); },
  'spawnIsolated (cold, no cgroup)': async () => { const r = await spawnIsolated('/bin/true'); if (r.exitCode !== 0) throw new Error(r.stderr); },
};
if (has('bwrap')) {
  runners['bwrap --unshare-all'] = () => new Promise((resolve, reject) => {
    const p = cpSpawn('bwrap', ['--unshare-all', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64',
      '--symlink', 'usr/bin', '/bin', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--die-with-parent', '/bin/true'], { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`bwrap exited ${c}`))));
  });
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const fmt = (x) => x.toFixed(2).padStart(7);

async function scenario(title, gapMs) {
  const times = Object.fromEntries(Object.keys(runners).map((k) => [k, []]));
  for (const f of Object.values(runners)) await f(); // warm-up
  for (let i = 0; i < N; i++) {
    for (const [name, f] of Object.entries(runners)) {
      // the pool refills between runs in a real service; here it gets the gap the others get
      if (name === 'pool.run') await pool.warm();
      const t0 = performance.now();
      await f();
      times[name].push(performance.now() - t0);
      if (gapMs) await sleep(gapMs);
    }
  }
  console.log(`\n${title} (n=${N} each, interleaved)`);
  console.log('                                  p50 ms   p90 ms   p99 ms   p50 / child_process   p99 / child_process   p50 / cold spawnIsolated');
  const base = pct(times['spawnIsolated (cold)'], 50);
  const cp50 = pct(times['child_process.spawn'], 50), cp99 = pct(times['child_process.spawn'], 99);
  for (const [name, t] of Object.entries(times)) {
    console.log(`${name.padEnd(32)} ${fmt(pct(t, 50))}  ${fmt(pct(t, 90))}  ${fmt(pct(t, 99))}   ${(pct(t, 50) / cp50).toFixed(2).padStart(19)}   ${(pct(t, 99) / cp99).toFixed(2).padStart(19)}   ${(pct(t, 50) / base).toFixed(2).padStart(22)}`);
  }
  return times;
}

async function throughput(name, run, concurrency, total) {
  if (name === 'pool.run') await pool.warm();
  const t0 = performance.now();
  const lat = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      next++;
      const s = performance.now();
      await run();
      lat.push(performance.now() - s);
    }
  }));
  const sec = (performance.now() - t0) / 1000;
  const rate = total / sec;
  console.log(`${name.padEnd(32)} concurrency ${String(concurrency).padStart(2)}: ${rate.toFixed(0).padStart(5)} runs/s, p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms${name === 'pool.run' ? ` (pool size ${SIZE}, refillConcurrency ${REFILL}; includes waiting for refills)` : ''}`);
  return rate;
}

try {
  console.log(`bench/pool: node ${process.version}, ${(await import('node:os')).cpus().length} CPUs, kernel ${(await import('node:os')).release()}, cgroup ${(await import('../dist/index.js')).CGroup.mode()}`);
  await pool.warm();
  await scenario('back-to-back', 0);
  if (SPACED) await scenario(`spaced ${SPACED} ms apart`, SPACED);
  console.log('\nthroughput (runs of /bin/true per second; each runner in turn)');
  for (const c of [2, 8]) {
    const rates = {};
    for (const [name, f] of Object.entries(runners)) rates[name] = await throughput(name, f, c, N);
    const bw = rates['bwrap --unshare-all'];
    if (bw) console.log(`  at concurrency ${c}: pool.run / bwrap ${(rates['pool.run'] / bw).toFixed(2)}x, cold spawnIsolated / bwrap ${(rates['spawnIsolated (cold, no cgroup)'] / bw).toFixed(2)}x, cold with limits / bwrap ${(rates['spawnIsolated (cold)'] / bw).toFixed(2)}x`);
  }
} finally {
  await pool.close();
  try { (await import('node:fs')).rmSync(stateDir, { recursive: true, force: true }); } catch { /* gone */ }
}

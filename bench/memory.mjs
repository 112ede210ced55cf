#!/usr/bin/env node
// bench/memory: what sandboxes cost Node's memory. Run as root after `npm run build`:
//   node --expose-gc bench/memory.mjs [--live 100,1000] [--spawns 100000] [--every 5000] [--concurrency 4] [--minutes M]
//
// 1. Live idle sandboxes: Node's RSS (and heap) grown per sandbox while K sandboxes of
//    `sleep` run with the default isolation and stdio, beside K idle child_process children
//    measured the same way in the same run. After a GC each time.
// 2. Over many spawns: RSS after a GC every --every spawns of /bin/true (default isolation,
//    --concurrency at once); the addon and the pipeline must leak nothing: the last sample
//    within 5% of the first one taken after a warm-up of --every spawns, and the least-squares
//    trend through all samples within 5% (RSS moves both ways by more than that between samples
//    with what V8 and malloc keep committed: a leak is a trend). --spawns 0 skips it;
//    --minutes M stops after the sample that passes M minutes (the count reached is printed).
import { spawn as cpSpawn } from 'node:child_process';
import v8 from 'node:v8';
import { spawnIsolated } from '../dist/index.js';

const sarg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
const LIVE = sarg('live', '100,1000').split(',').map(Number).filter((x) => x > 0);
const SPAWNS = Number(sarg('spawns', '100000'));
const EVERY = Number(sarg('every', '5000'));
const CONC = Number(sarg('concurrency', '4'));
const MINUTES = Number(sarg('minutes', 'Infinity'));
if (typeof globalThis.gc !== 'function') { console.error('run with node --expose-gc'); process.exit(2); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const youngKiB = () => v8.getHeapSpaceStatistics().filter((x) => x.space_name === 'new_space').reduce((a, x) => a + x.space_size, 0) / 1024;
const settle = async () => { for (let i = 0; i < 3; i++) { globalThis.gc(); await sleep(100); } return { ...process.memoryUsage(), young: youngKiB() }; };
const kib = (b) => (b / 1024).toFixed(1);

async function live(kind, k) {
  const m0 = await settle();
  const procs = [];
  for (let i = 0; i < k; i++) {
    if (kind === 'nsbox') {
      const p = spawnIsolated('/bin/sleep', ['3600']);
      p.catch(() => {});
      procs.push(p);
      await new Promise((resolve, reject) => { p.once('spawn', resolve); p.once('error', reject); });
    } else {
      const p = cpSpawn('/bin/sleep', ['3600']);
      procs.push(p);
      await new Promise((resolve, reject) => { p.once('spawn', resolve); p.once('error', reject); });
    }
  }
  const m1 = await settle();
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => (kind === 'nsbox' ? p.then(() => {}, () => {}) : new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', r))))));
  return { rss: (m1.rss - m0.rss) / k, heap: (m1.heapUsed - m0.heapUsed) / k, ext: (m1.external + m1.arrayBuffers - m0.external - m0.arrayBuffers) / k, young: (m1.young - m0.young) * 1024 / k };
}

console.log(`bench/memory: node ${process.version}, kernel ${(await import('node:os')).release()}, ${new Date().toISOString()}`);
// warm-up: the addon, templates, the first streams; and V8's young generation, which grows
// (committed, so in RSS) with the allocation rate of many quick spawns and then stays: once,
// not per sandbox. Without this the first measured runner pays it (it was most of nsbox's
// "96 KiB per sandbox" at 100 live).
for (let i = 0; i < 300; i++) await spawnIsolated('/bin/true');
for (const k of LIVE) {
  const n = await live('nsbox', k);
  const c = await live('child_process', k);
  console.log(`\n${k} live idle processes, Node's growth per process (KiB; after GC):`);
  console.log(`  nsbox          RSS ${kib(n.rss).padStart(7)}   heap ${kib(n.heap).padStart(7)}   external ${kib(n.ext).padStart(6)}`);
  console.log(`  child_process  RSS ${kib(c.rss).padStart(7)}   heap ${kib(c.heap).padStart(7)}   external ${kib(c.ext).padStart(6)}`);
  console.log(`  of which V8's young generation grew: nsbox ${kib(n.young)}, child_process ${kib(c.young)} (committed young-generation space; V8 sizes it by the allocation rate, once)`);
  console.log(`  nsbox / child_process RSS ${(n.rss / c.rss).toFixed(2)}x; nsbox RSS per sandbox ${kib(n.rss)} KiB (target <= 64)`);
  // V8 grows or shrinks its young generation by the allocation rate of the phase, once, not per
  // process (it was most of the figure above in some runs, and made it negative in others)
  console.log(`  RSS less the young generation's change: nsbox ${kib(n.rss - n.young)}, child_process ${kib(c.rss - c.young)} KiB per process`);
}

if (SPAWNS > 0) {
  console.log(`\nRSS over ${SPAWNS} spawns of /bin/true (${CONC} at once), after GC every ${EVERY}:`);
  const samples = [];
  let done = 0;
  const t0 = Date.now();
  while (done < SPAWNS) {
    const batch = Math.min(EVERY, SPAWNS - done);
    let next = 0;
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (next < batch) { next++; const r = await spawnIsolated('/bin/true'); if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`); }
    }));
    done += batch;
    const m = await settle();
    samples.push(m.rss);
    console.log(`  ${String(done).padStart(7)} spawns  RSS ${(m.rss / 1048576).toFixed(1).padStart(6)} MiB  heap ${(m.heapUsed / 1048576).toFixed(1).padStart(6)} MiB  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    if (Date.now() - t0 > MINUTES * 60000) { console.log(`  stopped at ${done} spawns: --minutes ${MINUTES} passed`); break; }
  }
  if (samples.length >= 2) {
    const first = samples[0], last = samples[samples.length - 1];
    console.log(`  last / first (after the warm-up sample): ${(last / first).toFixed(3)} (${(((last - first) / first) * 100).toFixed(1)}%; target within 5%); samples between ${(Math.min(...samples) / 1048576).toFixed(1)} and ${(Math.max(...samples) / 1048576).toFixed(1)} MiB`);
  }
  if (samples.length >= 3) {
    // RSS after a GC also moves with what V8 and malloc keep committed, up and down by more than
    // 5% between two samples; a leak is a trend. The least-squares line through every sample:
    // its rise over the run, against its own start (the same 5% target), beside the pair above.
    const n = samples.length, xs = samples.map((_, i) => i);
    const mx = (n - 1) / 2, my = samples.reduce((a, b) => a + b, 0) / n;
    const slope = xs.reduce((a, x, i) => a + (x - mx) * (samples[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    const start = my - slope * mx, rise = slope * (n - 1);
    console.log(`  trend (least squares over ${n} samples): ${(rise / 1048576).toFixed(2)} MiB over the run, ${((rise / start) * 100).toFixed(1)}% of its start (target within 5%); ${(slope / EVERY).toFixed(1)} bytes per spawn`);
  }
}

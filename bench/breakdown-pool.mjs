// bench/breakdown --pool: where the time of pool.run('/bin/true') goes, beside a cold
// spawnIsolated('/bin/true') with the same limits, from timestamps taken at the addon's entry
// points (wrapped here) and at the JS steps. Then what bounds the throughput: runs of pool.run,
// and of a cold spawnIsolated without a cgroup, at concurrency C (--concurrency, default 8) and,
// per run, the CPU of this process (its main thread's busy time, ELU, and all its threads), of
// the whole machine (/proc/stat:
// everything running, so only meaningful on a quiet machine), and how long the addon's spawns
// were under way (the sum of their call -> callback times over the wall time: a sandbox's
// blocking part runs on a spawner thread, several side by side, so it passes 100% when they
// overlap; NSBOX_SPAWNER_THREADS=1 in the environment: one spawner thread, as before). Run as root:
//   node bench/breakdown.mjs --pool [--n 200] [--spaced 20] [--size 4] [--concurrency 8]
import { createRequire } from 'node:module';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const N = arg('n', 200), SPACED = arg('spaced', 20), SIZE = arg('size', 4), CONC = arg('concurrency', 8);
const addonPath = process.env.NSBOX_ADDON ?? new URL('../build/Release/nsbox.node', import.meta.url).pathname;
process.env.NSBOX_ADDON = addonPath;
const addon = createRequire(import.meta.url)(addonPath);
const now = () => Number(process.hrtime.bigint()) / 1e3; // µs
let marks = {};
const mark = (k) => { if (!(k in marks)) marks[k] = now(); };
// the addon's entry points a run goes through, first call of each per run
// spawner: the addon spawns' call -> callback times, summed (the throughput section)
const spawner = { busyMs: 0, n: 0 };
for (const name of ['spawn', 'serveRun', 'serveRunAsync']) {
  const f = addon[name];
  if (typeof f !== 'function') continue;
  addon[name] = function (...a) {
    mark(`${name}:call`);
    const t0 = performance.now();
    // the callback is the first function argument (spawn's is not the last)
    const i = a.findIndex((x) => typeof x === 'function');
    if (i >= 0) {
      const cb = a[i];
      a[i] = (...r) => { mark(`${name}:done`); if (name === 'spawn') { spawner.busyMs += performance.now() - t0; spawner.n++; } return cb(...r); };
    }
    try { return f.apply(this, a); } finally { mark(`${name}:return`); }
  };
}
const watch = addon.watchExit;
addon.watchExit = function (pidfd, cb, ...rest) {
  mark('watchExit');
  return watch.call(this, pidfd, (info) => { mark('exitSeen'); return cb(info); }, ...rest);
};
const { createPool, spawnIsolated } = await import('../dist/index.js');
const limits = { memory: '256M', pids: 64 };
const stateDir = `/run/nsbox-bench-breakdown-${process.pid}`;
const pool = createPool({ size: SIZE, template: { limits, stateDir } });

const cases = {
  'pool.run': {
    run: (p) => pool.run('/bin/true', [], {}).then((r) => { p.resolved = now(); return r; }),
    phases: [
      ['pool.run -> serveRun', 'call', 'serveRun:call'],
      ['serveRun (send, wait for exec)', 'serveRun:call', 'serveRun:return'],
      ['  of which exec seen (async)', 'serveRun:call', 'serveRunAsync:done'],
      ['serveRun -> exit seen (program runs, init reaps, pid 1 exits)', 'serveRun:return', 'exitSeen'],
      ['exit seen -> resolved (streams, cgroup finish, release)', 'exitSeen', 'resolved'],
    ],
  },
  'spawnIsolated (cold, same limits)': {
    run: (p) => spawnIsolated('/bin/true', [], { limits }).then((r) => { p.resolved = now(); return r; }),
    phases: [
      ['call -> addon spawn (cgroup made)', 'call', 'spawn:call'],
      ['addon spawn (until exec)', 'spawn:call', 'spawn:done'],
      ['exec -> exit seen', 'spawn:done', 'exitSeen'],
      ['exit seen -> resolved (streams, cgroup finish, release)', 'exitSeen', 'resolved'],
    ],
  },
  'spawnIsolated (cold, no cgroup)': {
    run: (p) => spawnIsolated('/bin/true').then((r) => { p.resolved = now(); return r; }),
    phases: [
      ['call -> addon spawn', 'call', 'spawn:call'],
      ['addon spawn (until exec)', 'spawn:call', 'spawn:done'],
      ['exec -> exit seen', 'spawn:done', 'exitSeen'],
      ['exit seen -> resolved (streams, release)', 'exitSeen', 'resolved'],
    ],
  },
};
const rows = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
try {
  await pool.warm();
  for (let i = 0; i < N; i++) {
    for (const [name, c] of Object.entries(cases)) {
      if (name === 'pool.run') await pool.warm();
      marks = {};
      const p = {};
      marks.call = now();
      await c.run(p);
      marks.resolved = p.resolved;
      rows[name].push({ ...marks });
      if (SPACED) await new Promise((r) => setTimeout(r, SPACED));
    }
  }
} finally {
  await pool.close();
  (await import('node:fs')).rmSync(stateDir, { recursive: true, force: true });
}

const med = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[s.length >> 1] : NaN; };
const p99 = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] : NaN; };
console.log(`bench/breakdown --pool: medians of ${N} runs each, interleaved${SPACED ? `, ${SPACED} ms apart` : ''} (µs); limits ${JSON.stringify(limits)}\n`);
for (const [name, c] of Object.entries(cases)) {
  const use = rows[name].slice(Math.floor(N / 5));
  console.log(`| ${name} | p50 µs | p99 µs |\n|---|---:|---:|`);
  for (const [label, a, b] of c.phases) {
    const xs = use.map((r) => r[b] - r[a]);
    const m = med(xs);
    if (!Number.isNaN(m)) console.log(`| ${label} | ${m.toFixed(0)} | ${p99(xs).toFixed(0)} |`);
  }
  const tot = use.map((r) => r.resolved - r.call);
  console.log(`| **total** | **${med(tot).toFixed(0)}** | ${p99(tot).toFixed(0)} |\n`);
}

// --- throughput: what bounds it
const { readFileSync } = await import('node:fs');
const busyJiffies = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4]; // all but idle and iowait
};
console.log('');
// runs `one` at concurrency CONC, N times; what it cost per run
async function throughput(one) {
  spawner.busyMs = 0;
  spawner.n = 0;
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const j0 = busyJiffies();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < N) {
      next++;
      const r = await one();
      if (r.exitCode !== 0) throw new Error(r.stderr);
    }
  }));
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const machineMs = ((busyJiffies() - j0) * 1000) / 100; // USER_HZ
  return { wall, elu, cpu, machineMs, spawnMs: spawner.busyMs, spawns: spawner.n };
}
const per = (ms) => `${(ms / N).toFixed(2)}`;
function table(title, tp, extra = '') {
  console.log(`| ${title} at concurrency ${CONC}, ${N} runs | per run |\n|---|---:|`);
  console.log(`| throughput | ${(N / (tp.wall / 1000)).toFixed(0)} runs/s${extra} |`);
  console.log(`| wall time | ${per(tp.wall)} ms |`);
  console.log(`| main thread busy (ELU ${tp.elu.utilization.toFixed(2)}) | ${per(tp.elu.active)} ms |`);
  console.log(`| this process, all threads (user + system) | ${per((tp.cpu.user + tp.cpu.system) / 1000)} ms |`);
  console.log(`| the whole machine (/proc/stat: sandboxes, kernel workers, and anything else running; ${((tp.machineMs / tp.wall)).toFixed(2)} CPUs busy) | ${per(tp.machineMs)} ms |`);
  console.log(`| addon spawns under way, summed (${tp.spawns} spawns, ${((tp.spawnMs / tp.wall) * 100).toFixed(0)}% of the wall time; several at once on the spawner threads) | ${per(tp.spawnMs)} ms |`);
}
const tpool = createPool({ size: SIZE, template: { limits, stateDir } });
let tp;
try {
  await tpool.warm();
  tp = await throughput(() => tpool.run('/bin/true'));
  tp.misses = tpool.stats.misses;
} finally {
  await tpool.close();
  (await import('node:fs')).rmSync(stateDir, { recursive: true, force: true });
}
table(`pool.run('/bin/true'), pool size ${SIZE}`, tp, ` (${tp.misses} runs waited for a sandbox)`);
console.log('');
table("spawnIsolated('/bin/true') (cold, no cgroup)", await throughput(() => spawnIsolated('/bin/true')));

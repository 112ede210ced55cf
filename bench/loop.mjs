#!/usr/bin/env node
// bench/loop: how long the event loop is blocked while a process spawns at a steady rate,
// nsbox beside child_process.spawn in the same run (alternating phases, so load hits both
// alike). Run as root after `npm run build`:
//   node bench/loop.mjs [--rate 500] [--seconds 2] [--rounds 3] [--inflight 64] [--limits]
//
// For each runner, spawns of /bin/true are started at --rate per second (at most --inflight
// at once) for --seconds, --rounds times. Printed per runner:
//   blocked/spawn  the synchronous time the caller's call took on the loop: spawnIsolated()
//                  plus the addon's spawn call(s) it makes (wrapped here), and for
//                  child_process the spawn() call itself (libuv forks and waits for exec there)
//   loop lag       perf_hooks.monitorEventLoopDelay (1 ms timer): how late the loop ran a timer
//   busy/spawn     eventLoopUtilization's active time divided by spawns (all JS work per spawn)
//   rate           the spawns per second actually finished
import { spawn as cpSpawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const RATE = arg('rate', 500), SECONDS = arg('seconds', 2), ROUNDS = arg('rounds', 3), INFLIGHT = arg('inflight', 64);
// --limits: nsbox's spawns with cgroup limits (memory, pids, cpus), which make and remove a cgroup each
const LIMITS = process.argv.includes('--limits') ? { limits: { memory: '64M', pids: 32, cpus: 1 } } : {};

const addonPath = process.env.NSBOX_ADDON ?? new URL('../build/Release/nsbox.node', import.meta.url).pathname;
process.env.NSBOX_ADDON = addonPath;
const addon = createRequire(import.meta.url)(addonPath);
// the addon's own share of the loop: every synchronous call of its spawn entry points
let nativeNs = 0n;
let nativeCalls = [];
for (const name of ['spawn', 'spawnAsync', 'serveRun', 'serveRunAsync']) {
  const f = addon[name];
  if (typeof f !== 'function') continue;
  addon[name] = function (...a) {
    const t = process.hrtime.bigint();
    try { return f.apply(this, a); } finally { const d = process.hrtime.bigint() - t; nativeNs += d; nativeCalls.push(Number(d) / 1e6); }
  };
}
const { spawnIsolated } = await import('../dist/index.js');

const runners = {
  child_process: () => {
    const t = process.hrtime.bigint();
    const p = cpSpawn('/bin/true', [], { stdio: 'ignore' });
    const sync = process.hrtime.bigint() - t;
    return { sync, done: new Promise((res, rej) => { p.on('error', rej); p.on('exit', (c) => (c === 0 ? res() : rej(new Error(`exit ${c}`)))); }) };
  },
  nsbox: () => {
    const t = process.hrtime.bigint();
    const p = spawnIsolated('/bin/true', [], LIMITS);
    const sync = process.hrtime.bigint() - t;
    return { sync, done: p.then((r) => { if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`); }) };
  },
};

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };

async function phase(name) {
  const run = runners[name];
  const blocked = [];
  let inflight = 0, started = 0, finished = 0, skipped = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  h.enable();
  await new Promise((resolve, reject) => {
    const tick = 10; // ms: RATE/100 spawns per tick
    const per = RATE * tick / 1000;
    let due = 0;
    const iv = setInterval(() => {
      const elapsed = performance.now() - t0;
      if (elapsed >= SECONDS * 1000) {
        clearInterval(iv);
        const wait = () => (inflight === 0 ? resolve() : setTimeout(wait, 5));
        wait();
        return;
      }
      due = Math.floor(elapsed / 1000 * RATE) + per - started - skipped;
      for (; due > 0; due--) {
        if (inflight >= INFLIGHT) { skipped++; continue; }
        inflight++;
        started++;
        const n0 = nativeNs;
        const { sync, done } = run();
        // nsbox's addon call happens after awaits: counted when it finishes (below)
        const rec = { sync: Number(sync) / 1e6, n0 };
        done.then(() => { inflight--; finished++; blocked.push(rec.sync); }, (e) => { clearInterval(iv); reject(e); });
      }
    }, tick);
  });
  h.disable();
  const elu = performance.eventLoopUtilization(elu0);
  const secs = (performance.now() - t0) / 1000;
  return { blocked, finished, skipped, secs, lag: h, elu };
}

console.log(`bench/loop: node ${process.version}, ${(await import('node:os')).cpus().length} CPUs, kernel ${(await import('node:os')).release()}; rate ${RATE}/s, ${SECONDS} s x ${ROUNDS} rounds per runner, at most ${INFLIGHT} in flight${LIMITS.limits ? '; nsbox with limits ' + JSON.stringify(LIMITS.limits) : ''}`);
// warm-up
for (const f of Object.values(runners)) await f().done;
const acc = Object.fromEntries(Object.keys(runners).map((k) => [k, { blocked: [], calls: [], native: 0, finished: 0, secs: 0, lagP50: [], lagP99: [], lagMax: [], active: 0, skipped: 0 }]));
for (let r = 0; r < ROUNDS; r++) {
  for (const name of r % 2 ? Object.keys(runners).reverse() : Object.keys(runners)) {
    const n0 = nativeNs;
    nativeCalls = [];
    const res = await phase(name);
    acc[name].calls.push(...nativeCalls);
    const a = acc[name];
    a.native += Number(nativeNs - n0) / 1e6;
    a.blocked.push(...res.blocked);
    a.finished += res.finished;
    a.skipped += res.skipped;
    a.secs += res.secs;
    a.lagP50.push(res.lag.percentile(50) / 1e6);
    a.lagP99.push(res.lag.percentile(99) / 1e6);
    a.lagMax.push(res.lag.max / 1e6);
    a.active += res.elu.active;
  }
}
const f = (x) => x.toFixed(3).padStart(8);
console.log('\nrunner          call ms (p50 / p99)   addon call ms (p50 / p99)   blocked/spawn ms (mean)   loop lag ms p50 / p99 / max   busy/spawn ms   spawns/s   skipped');
const rows = {};
for (const [name, a] of Object.entries(acc)) {
  const nat = a.native / Math.max(1, a.finished);
  const mean = a.blocked.reduce((s, x) => s + x, 0) / Math.max(1, a.blocked.length) + nat;
  rows[name] = { p50: pct(a.blocked, 50), p99: pct(a.blocked, 99), mean, nat, lag50: pct(a.lagP50, 50), lag99: pct(a.lagP99, 50), lagMax: pct(a.lagMax, 50), busy: a.active / Math.max(1, a.finished), rate: a.finished / a.secs };
  const r = rows[name];
  r.c50 = a.calls.length ? pct(a.calls, 50) : 0; r.c99 = a.calls.length ? pct(a.calls, 99) : 0;
  r.cmean = a.calls.length ? a.calls.reduce((x, y) => x + y, 0) / a.calls.length : 0;
  console.log(`${name.padEnd(14)} ${f(r.p50)} ${f(r.p99)}     ${a.calls.length ? `${f(r.c50)} ${f(r.c99)}` : '       -        -'}         ${f(r.mean)}             ${f(r.lag50)} ${f(r.lag99)} ${f(r.lagMax)}   ${f(r.busy)}   ${r.rate.toFixed(0).padStart(7)}   ${String(a.skipped).padStart(6)}`);
}
const n = rows.nsbox, c = rows.child_process;
console.log(`\nnsbox / child_process: blocked/spawn (mean) ${(n.mean / c.mean).toFixed(2)}x, loop lag p99 ${(n.lag99 / c.lag99).toFixed(2)}x, busy/spawn ${(n.busy / c.busy).toFixed(2)}x`);
console.log(`nsbox blocked per spawn (mean, spawnIsolated() call + addon calls): ${n.mean.toFixed(3)} ms (target <= 0.3 ms); addon call mean ${n.cmean.toFixed(3)} ms`);

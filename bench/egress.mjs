#!/usr/bin/env node
// bench/egress: the egress policy's proxy (network: { mode: 'egress' }) against a fake internet
// on this machine (test/integration/egress-internet.ts: a namespace with HTTP servers behind a
// veth). Run as root:
//   node --expose-gc bench/egress.mjs [--mb 256] [--conns 200] [--boxes 50] [--steady 8] [--rate 4]
//                                     [--only throughput,conns,boxes,memory] [--boost]
// --boost      the bench's own session (the fake internet's server with it) and each
//              throughput sandbox's get an autogroup nice of -20 (/proc/PID/autogroup): on a
//              machine shared with other sessions they then weigh little (slowed, not stopped),
//              a stand-in for a quiet machine; without it, under load the wall-clock ratio
//              favours the path with more processes (see the CPU figures). The throughput part
//              only: the lag and memory parts run at the usual weight
//
// throughput   curl (busybox wget without curl) of --mb MiB: from the host over the veth
//              directly (the peer: no proxy, no sandbox), and from inside a sandbox through
//              nsbox's proxy, plain HTTP (HTTP_PROXY) and a CONNECT tunnel (curl -p, as HTTPS
//              goes), and as root a program ignoring the variables (transparent: the nft
//              redirect); HTTPS when openssl is here: directly, a CONNECT tunnel (untouched), TLS
//              interception (intercept: true) and the transparent redirect (by SNI); best of 3,
//              interleaved, timed inside the shell around the download alone; beside each, its
//              CPU cost per GiB (client, server, nsbox's relay thread, ksoftirqd: see below)
// lag          this process's event-loop delay (monitorEventLoopDelay, 1 ms resolution), beside
//              an idle probe (another Node process measuring its own loop over the same window:
//              on a loaded machine waiting for a core counts as delay too) and the CPU time of
//              this process's main thread, its other threads and the machine, with the load
//              average:
//              - --conns wgets at once in one sandbox through its proxy (2 MiB each), from when
//                it runs until the last is done;
//              - --boxes sandboxes, each with a policy of its own, made at once (the creation
//                burst, from the first spawnIsolated call until all run);
//              - the same sandboxes live (the steady state): each makes --rate requests a
//                second through its own proxy for --steady s (curl --rate; a small page and
//                1 MiB in turn), measured from 1 s after they start to 1 s before they end
// memory       this process's heap and RSS growth per idle sandbox policy (--boxes sandboxes
//              sleeping, each with its listeners and service), after gc; the holders and the
//              sandboxes are processes of their own, not counted
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { build } from 'esbuild';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const MB = arg('mb', 256);
const CONNS = arg('conns', 200);
const BOXES = arg('boxes', 50);
const STEADY = arg('steady', 8);
const BOOST = process.argv.includes('--boost');
// --only throughput,conns,boxes,memory: some parts alone
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',') : null;
const want = (part) => !only || only.includes(part);
if (process.geteuid() !== 0) { console.error('bench/egress: run as root (it makes the fake internet: a namespace and a veth)'); process.exit(2); }
const root = new URL('..', import.meta.url).pathname;
const bundle = `${root}build-test/nsbox-bench-egress-${process.pid}.mjs`;
await build({
  stdin: { contents: "export * from './lib/index.ts'; export * from './test/integration/egress-internet.ts';", resolveDir: root, loader: 'ts' },
  bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent',
  banner: { js: "import { createRequire as __nsboxCreateRequire } from 'node:module'; const require = __nsboxCreateRequire(import.meta.url);" },
});
const api = await import(bundle);
rmSync(bundle);
const { spawnIsolated, startFakeInternet, lookup } = api;
const BB = '/bin/busybox';
// HTTPS on the fake internet's port 443 (a self-signed certificate for allowed.test), when openssl is here
let tls;
try {
  const d = mkdtempSync('/tmp/nsbox-bench-egress-');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${d}/k`, '-out', `${d}/c`, '-days', '1', '-subj', '/CN=allowed.test', '-addext', 'subjectAltName=DNS:allowed.test'], { stdio: 'ignore' });
  tls = { key: readFileSync(`${d}/k`, 'utf8'), cert: readFileSync(`${d}/c`, 'utf8') };
  rmSync(d, { recursive: true, force: true });
} catch { /* no openssl: no HTTPS lines */ }
const inet = await startFakeInternet(tls);
const CURL = ['/usr/bin/curl', '/bin/curl'].find((f) => existsSync(f));
const policy = (extra = {}) => ({ mode: 'egress', allow: ['allowed.test'], lookup, ...extra });

// ---- throughput ----------------------------------------------------------------------------
// Beside each wall-clock figure, what the path costs in CPU: seconds per GiB moved, of the
// client (curl: the shell's `times`, 10 ms ticks), the server (the fake internet's Node
// process), nsbox (the relay's thread, nsbox-relay: the per-byte work of the proxy; the main
// thread's per-request work and the sandbox's start are not in it) and the machine's
// ksoftirqd threads (network work the kernel deferred; other processes' too), summed over the
// runs. On a loaded machine the wall-clock ratio favours the path with more processes (each
// gets its share of the cores); the CPU ratio does not: direct's cost over the path's is the
// share of direct's throughput the path reaches when the cores are the limit.
const loadavg = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');
const readNs = (f) => { try { return Number(readFileSync(f, 'utf8').split(' ')[0]); } catch { return 0; } };
const taskNamed = (name) => readdirSync('/proc/self/task').filter((t) => { try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === name; } catch { return false; } });
const ksoftirqd = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => { try { return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('ksoftirqd/'); } catch { return false; } });
const softPids = ksoftirqd();
const cpuMarks = (main) => ({
  server: readNs(`/proc/${inet.pid}/schedstat`) / 1e9,
  nsbox: [...taskNamed('nsbox-relay'), ...(main ? [String(process.pid)] : [])].reduce((a, t) => a + readNs(`/proc/self/task/${t}/schedstat`), 0) / 1e9,
  soft: softPids.reduce((a, p) => a + readNs(`/proc/${p}/schedstat`), 0) / 1e9,
});
class Path {
  us = Infinity; runs = 0; client = 0; server = 0; nsbox = 0; soft = 0;
  /** main: nsbox's figure has this process's main thread too (where intercepted TLS is done; the sandbox's start with it) */
  constructor(main = false) { this.main = main; }
  /** one run: `fn` gives the shell's output (the microseconds, then `times`) */
  async run(fn) {
    const m0 = cpuMarks(this.main);
    const out = (await fn()).trim().split('\n');
    const m1 = cpuMarks(this.main);
    this.us = Math.min(this.us, Number(out[0]));
    const t = out[2].trim().split(/\s+/).map((x) => { const m = /(\d+)m([\d.]+)s/.exec(x); return Number(m[1]) * 60 + Number(m[2]); });
    this.client += t[0] + t[1];
    this.server += m1.server - m0.server; this.nsbox += m1.nsbox - m0.nsbox; this.soft += m1.soft - m0.soft;
    this.runs++;
  }
  get cost() { return (this.client + this.server + this.nsbox + this.soft) / (this.runs * MB / 1024); }
}
const timed = (cmd) => `s=$(date +%s%N); ${cmd} || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); times`;
const onHost = (cmd) => async () => execFileSync('/bin/sh', ['-c', timed(cmd)], { encoding: 'utf8' });
// --boost: this process's autogroup (its session: the fake internet's server too) and each
// sandbox's get nice -20, so the other sessions on the machine weigh little beside them (not
// stopped: a stand-in for a quiet machine on a shared one; root)
const ppidOf = (q) => { try { return Number(readFileSync(`/proc/${q}/stat`, 'utf8').split(') ')[1].split(' ')[1]); } catch { return 0; } };
const under = (top) => readdirSync('/proc').filter((q) => /^\d+$/.test(q)).filter((q) => { for (let x = Number(q), i = 0; x > 1 && i < 32; x = ppidOf(x), i++) if (x === top) return true; return false; });
const boost = (q) => { try { writeFileSync(`/proc/${q}/autogroup`, '-20'); } catch { /* gone */ } };
if (BOOST) boost('self');
const inBox = (cmd, network = policy()) => async () => {
  // the shell waits (read) until its sandbox's sessions are boosted; the time is taken after
  const p = spawnIsolated('/bin/sh', ['-c', `read x; ${timed(cmd)}`], { network, stdio: 'pipe' });
  await new Promise((r, j) => { p.once('spawn', r); p.catch(j); });
  if (BOOST) {
    for (let i = 0; i < 200 && !under(p.pid).some((q) => { try { return readFileSync(`/proc/${q}/comm`, 'utf8').trim() === 'sh'; } catch { return false; } }); i++) await new Promise((r) => setTimeout(r, 5));
    for (const q of [String(p.pid), ...under(p.pid)]) boost(q);
  }
  p.stdin.end('go\n');
  const r = await p;
  if (r.exitCode !== 0) throw new Error(`${cmd} failed: ${r.stdout}${r.stderr}`);
  return r.stdout;
};
const mibs = (p) => (MB / (p.us / 1e6)).toFixed(0).padStart(6);
const costLine = (p, base) => {
  const g = p.runs * MB / 1024, f = (x) => (x / g).toFixed(2);
  return `cpu ${p.cost.toFixed(2)} s/GiB (client ${f(p.client)}, server ${f(p.server)}, nsbox ${f(p.nsbox)}, ksoftirqd ${f(p.soft)})${base && base !== p ? `, direct's ${(100 * base.cost / p.cost).toFixed(0)}%` : ''}`;
};
const line = (label, p, base) => console.log(`  ${label.padEnd(44)} ${mibs(p)} MiB/s${base === p ? ' '.repeat(18) : `   ${`${(100 * base.us / p.us).toFixed(0)}% of direct`.padEnd(15)}`}   ${costLine(p, base)}`);
const nft = api.nftUnavailableReason() === undefined;
if (want('throughput')) {
const load0 = loadavg();
const tools = CURL
  ? { direct: `${CURL} -s -o /dev/null --noproxy '*' http://203.0.113.10/big/${MB}`, http: `${CURL} -s -o /dev/null http://allowed.test/big/${MB}`, connect: `${CURL} -s -o /dev/null -p http://allowed.test/big/${MB}` }
  : { direct: `${BB} wget -q -Y off -O /dev/null http://203.0.113.10/big/${MB}`, http: `${BB} wget -q -O /dev/null http://allowed.test/big/${MB}` };
const p = { direct: new Path(), http: new Path(), connect: new Path(), transparent: new Path() };
for (let i = 0; i < 3; i++) {
  await p.direct.run(onHost(tools.direct));
  await p.http.run(inBox(tools.http));
  if (tools.connect) await p.connect.run(inBox(tools.connect));
  // transparent (root): the program ignores the proxy variables, the nft redirect takes it to the proxy
  if (nft) await p.transparent.run(inBox(tools.http.replace('-s -o', "-s --noproxy '*' -o"), policy({ transparent: true })));
}
console.log(`throughput (${MB} MiB with ${CURL ? 'curl' : 'busybox wget'}, best of 3, interleaved; load average ${load0} -> ${loadavg()}${BOOST ? '; --boost: autogroups at nice -20' : ''})`);
line('direct over the veth (host, no proxy)', p.direct, p.direct);
line('sandbox, plain HTTP through nsbox\'s proxy', p.http, p.direct);
if (tools.connect) line('sandbox, CONNECT tunnel through the proxy', p.connect, p.direct);
if (nft) line('sandbox, plain HTTP redirected (transparent)', p.transparent, p.direct);
if (CURL && tls) {
  // HTTPS: untouched through a CONNECT tunnel, and terminated by nsbox (intercept: true, a header
  // injected, the real server verified against upstreamCa), beside HTTPS from the host directly
  const url = `https://allowed.test/big/${MB}`;
  const h = { direct: new Path(), connect: new Path(), intercept: new Path(true), transparent: new Path() };
  const load1 = loadavg();
  for (let i = 0; i < 3; i++) {
    await h.direct.run(onHost(`${CURL} -s -k -o /dev/null --noproxy '*' --resolve allowed.test:443:203.0.113.10 ${url}`));
    await h.connect.run(inBox(`${CURL} -s -k -o /dev/null ${url}`));
    await h.intercept.run(inBox(`${CURL} -s -o /dev/null ${url}`, policy({ intercept: true, upstreamCa: tls.cert, inject: [{ host: 'allowed.test', headers: { authorization: 'Bearer bench' } }] })));
    if (nft) await h.transparent.run(inBox(`${CURL} -s -k -o /dev/null --noproxy '*' ${url}`, policy({ transparent: true })));
  }
  console.log(`HTTPS throughput (${MB} MiB with curl, best of 3, interleaved; the fake internet's Node HTTPS server; load average ${load1} -> ${loadavg()}${BOOST ? '; --boost' : ''})`);
  line('direct over the veth (host, no proxy)', h.direct, h.direct);
  line('sandbox, CONNECT tunnel (TLS untouched)', h.connect, h.direct);
  // intercepted: nsbox's figure has the main thread (the TLS work; the sandbox's start with it)
  line('sandbox, intercepted (intercept: true)', h.intercept, h.direct);
  if (nft) line('sandbox, redirected by SNI (transparent)', h.transparent, h.direct);
}
}
// the other parts run at the session's usual weight
if (BOOST) { try { writeFileSync('/proc/self/autogroup', '0'); } catch { /* as it was */ } }

// ---- event-loop lag ---------------------------------------------------------------------------
// Beside this process's own figure, a probe: a second Node process on the same machine that
// does nothing but measure its own event loop over the same window. On a loaded 2-core machine
// a process waiting for a core counts as loop delay too; the probe shows how much of the
// figure is that (the machine), and the difference is this process's own work.
const probe = spawn(process.execPath, ['-e', `
  const { monitorEventLoopDelay } = require('node:perf_hooks');
  let h; require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
    if (l === 'start') { h = monitorEventLoopDelay({ resolution: 1 }); h.enable(); }
    else { h.disable(); console.log(JSON.stringify({ p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 })); }
  });`], { stdio: ['pipe', 'pipe', 'inherit'] });
const probeLines = createInterface({ input: probe.stdout })[Symbol.asyncIterator]();
// CPU time (ms) of this process's main thread, of its other threads (the relay's splice
// thread, libuv's pool), and of the whole machine (busy, all cores), from /proc
const tick = 1000 / 100;
function cpuNow() {
  let main = 0, others = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const f = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const r = f.slice(f.lastIndexOf(')') + 2).split(' ');
      const ms = (Number(r[11]) + Number(r[12])) * tick;
      if (Number(t) === process.pid) main += ms; else others += ms;
    } catch { /* a thread that ended */ }
  }
  const st = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { main, others, busy: (st.reduce((a, b) => a + b, 0) - st[3] - st[4]) * tick, all: st.reduce((a, b) => a + b, 0) * tick };
}
/** Measures this process's loop and the probe's over the same window: start() ... stop(). */
function window() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const load0 = loadavg();
  const c0 = cpuNow();
  h.enable();
  probe.stdin.write('start\n');
  const t0 = performance.now();
  return {
    async stop() {
      h.disable();
      const ms = performance.now() - t0;
      probe.stdin.write('stop\n');
      const c1 = cpuNow();
      const pr = JSON.parse((await probeLines.next()).value);
      const cpu = { main: (c1.main - c0.main) / ms, others: (c1.others - c0.others) / ms, machine: (c1.busy - c0.busy) / (c1.all - c0.all) };
      return { ms, cpu, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, probe: pr, load: `${load0} -> ${loadavg()}` };
    },
  };
}
const f2 = (x) => x.toFixed(2).padStart(6);
const show = (w) => {
  console.log(`  this process   p50 ${f2(w.p50)} ms   p99 ${f2(w.p99)} ms   max ${f2(w.max)} ms   (window ${(w.ms / 1000).toFixed(1)} s, load average ${w.load})`);
  console.log(`  idle probe     p50 ${f2(w.probe.p50)} ms   p99 ${f2(w.probe.p99)} ms   max ${f2(w.probe.max)} ms   (another Node process, doing nothing: the machine's share)`);
  const pc = (x) => `${(100 * x).toFixed(0)}%`;
  console.log(`  cpu            this process's main thread ${pc(w.cpu.main)} of one core, its other threads ${pc(w.cpu.others)}; the machine's ${os.cpus().length} cores ${pc(w.cpu.machine)} busy`);
};
const ready = (procs) => Promise.all(procs.map((p) => new Promise((r, j) => { p.once('spawn', r); p.catch(j); })));
const lineOf = (p) => new Promise((r) => { let o = ''; p.stdout.on('data', (d) => { o += d; if (o.endsWith('\n')) r(o); }); });

// (1) many connections through one sandbox: from when it runs until its last wget is done
if (want('conns')) {
  const p = spawnIsolated('/bin/sh', ['-c', `read x; for i in $(seq ${CONNS}); do ${BB} wget -q -O /dev/null http://allowed.test/big/2 & done; wait; echo done; read y`], { network: policy(), stdio: 'pipe' });
  await ready([p]);
  const said = lineOf(p);
  const w = window();
  p.stdin.write('go\n');
  await said;
  const r = await w.stop();
  p.stdin.end('\n');
  const stats = (await p).network.egress['allowed.test'];
  console.log(`event-loop lag, ${CONNS} concurrent connections through one sandbox's proxy (${stats.allowed} allowed, ${(stats.bytesIn / 2 ** 20).toFixed(0)} MiB in)`);
  show(r);
}

// (2) BOXES sandboxes, each with a policy of its own (its own allow list and injected header)
const boxPolicy = (i) => policy({ allow: ['allowed.test', `box${i}.test`], inject: [{ host: 'allowed.test', headers: { 'x-box': String(i) } }] });
// each, once told: RATE requests a second for STEADY s through its own proxy, a small page and
// 1 MiB in turn (curl --rate: one process making them one after another; busybox wget without
// curl: one process per request, sleeping 0.2 s between rounds); then says so and waits to be ended
const RATE = arg('rate', 4);
const reqs = RATE * STEADY;
const boxScript = CURL
  ? `read x; ${CURL} -sf --rate ${RATE}/s ${Array.from({ length: reqs }, (_, i) => `-o /dev/null http://allowed.test/${i % 2 ? 'big/1' : `small${i}`}`).join(' ')} && echo ok; read y`
  : `read x; end=$(( $(date +%s) + ${STEADY} )); while [ $(date +%s) -lt $end ]; do ${BB} wget -q -O /dev/null http://allowed.test/small && ${BB} wget -q -O /dev/null http://allowed.test/big/1 || exit 1; sleep 0.2; done; echo ok; read y`;
if (want('boxes')) {
  // (2a) the creation burst: all asked for in one go (as a caller starting them at once would)
  const w = window();
  const boxes = Array.from({ length: BOXES }, (_, i) => spawnIsolated('/bin/sh', ['-c', boxScript], { stdio: 'pipe', network: boxPolicy(i) }));
  await ready(boxes);
  const r = await w.stop();
  console.log(`event-loop lag while ${BOXES} sandboxes with policies of their own are made at once (all running after ${(r.ms / 1000).toFixed(2)} s; includes the caller's own synchronous spawnIsolated calls)`);
  show(r);
  // (2b) the steady state: all live, each fetching in a loop through its own proxy; measured from
  // 1 s after they start until 1 s before they stop
  const said = boxes.map(lineOf);
  for (const p of boxes) p.stdin.write('go\n');
  await new Promise((r) => setTimeout(r, 1000));
  const count = () => boxes.reduce((a, p) => { const e = p.network.egress['allowed.test']; return { n: a.n + (e?.allowed ?? 0), bytes: a.bytes + (e?.bytesIn ?? 0) }; }, { n: 0, bytes: 0 });
  const c0 = count();
  const ws = window();
  await new Promise((r) => setTimeout(r, (STEADY - 2) * 1000));
  const rs = await ws.stop();
  const c1 = count();
  const ok = (await Promise.all(said)).filter((x) => x === 'ok\n').length;
  for (const p of boxes) p.stdin.end('\n');
  await Promise.all(boxes);
  console.log(`event-loop lag, steady state: ${BOXES} live sandboxes (${ok} ok), each ${CURL ? `making ${RATE} requests a second (curl --rate)` : 'fetching in a loop (busybox wget)'} through its own proxy, a small page and 1 MiB in turn; from 1 s after they start to 1 s before they end`);
  console.log(`  ${((c1.n - c0.n) / (rs.ms / 1000)).toFixed(0)} requests/s, ${((c1.bytes - c0.bytes) / 2 ** 20 / (rs.ms / 1000)).toFixed(0)} MiB/s through the ${BOXES} proxies in the window`);
  show(rs);
}
probe.stdin.end();

// ---- memory per idle policy ------------------------------------------------------------------
if (want('memory')) {
const gc = globalThis.gc ?? (() => {});
if (!globalThis.gc) console.log('  (run with --expose-gc for a steadier memory figure)');
const snapshot = () => { gc(); gc(); const m = process.memoryUsage(); return { heap: m.heapUsed + m.external, rss: m.rss }; };
// a warm-up sandbox first: code and caches loaded once are not per policy
await spawnIsolated('/bin/true', [], { network: policy() });
const before = snapshot();
const idle = Array.from({ length: BOXES }, (_, i) => spawnIsolated('/bin/sleep', ['30'], { network: policy({ allow: ['allowed.test', `idle${i}.test`] }) }));
await Promise.all(idle.map((p) => new Promise((r) => p.once('spawn', r))));
await new Promise((r) => setTimeout(r, 500));
const after = snapshot();
console.log(`memory per idle sandbox policy (${BOXES} sandboxes sleeping; this process only)`);
console.log(`  heap+external ${((after.heap - before.heap) / BOXES / 1024).toFixed(0)} KiB   rss ${((after.rss - before.rss) / BOXES / 1024).toFixed(0)} KiB`);
for (const p of idle) p.kill('SIGKILL');
await Promise.all(idle.map((p) => p.then(() => {}, () => {})));
}
await inet.close();

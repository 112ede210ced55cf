#!/usr/bin/env node
// bench/egress: the egress policy's proxy (network: { mode: 'egress' }) against a fake internet
// on this machine (test/integration/egress-internet.ts: a namespace with HTTP servers behind a
// veth). Run as root:  node --expose-gc bench/egress.mjs [--mb 256] [--conns 200] [--boxes 50]
//
// throughput   curl (busybox wget without curl) of --mb MiB: from the host over the veth
//              directly (the peer: no proxy, no sandbox), and from inside a sandbox through
//              nsbox's proxy, plain HTTP (HTTP_PROXY) and a CONNECT tunnel (curl -p, as HTTPS
//              goes); best of 3, interleaved, timed inside the shell around the download alone
// lag          this process's event-loop delay (monitorEventLoopDelay, 1 ms resolution) while
//              --conns wgets run at once in one sandbox through its proxy (2 MiB each), and
//              while --boxes sandboxes, each with a policy of its own, fetch 1 MiB at once
//              (from when all run: their spawns are not counted)
// memory       this process's heap and RSS growth per idle sandbox policy (--boxes sandboxes
//              sleeping, each with its listeners and service), after gc; the holders and the
//              sandboxes are processes of their own, not counted
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { build } from 'esbuild';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const MB = arg('mb', 256);
const CONNS = arg('conns', 200);
const BOXES = arg('boxes', 50);
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
const inet = await startFakeInternet();
const policy = (extra = {}) => ({ mode: 'egress', allow: ['allowed.test'], lookup, ...extra });

// ---- throughput ----------------------------------------------------------------------------
const CURL = ['/usr/bin/curl', '/bin/curl'].find((f) => existsSync(f));
const timed = (cmd) => `s=$(date +%s%N); ${cmd} || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000 ))`;
const tools = CURL
  ? { direct: `${CURL} -s -o /dev/null --noproxy '*' http://203.0.113.10/big/${MB}`, http: `${CURL} -s -o /dev/null http://allowed.test/big/${MB}`, connect: `${CURL} -s -o /dev/null -p http://allowed.test/big/${MB}` }
  : { direct: `${BB} wget -q -Y off -O /dev/null http://203.0.113.10/big/${MB}`, http: `${BB} wget -q -O /dev/null http://allowed.test/big/${MB}` };
const inBox = async (cmd) => {
  const r = await spawnIsolated('/bin/sh', ['-c', timed(cmd)], { network: policy() });
  if (r.exitCode !== 0) throw new Error(`${cmd} failed: ${r.stdout}${r.stderr}`);
  return Number(r.stdout.trim());
};
const best = Object.fromEntries(Object.keys(tools).map((k) => [k, Infinity]));
for (let i = 0; i < 3; i++) {
  best.direct = Math.min(best.direct, Number(execFileSync('/bin/sh', ['-c', timed(tools.direct)], { encoding: 'utf8' }).trim()));
  best.http = Math.min(best.http, await inBox(tools.http));
  if (tools.connect) best.connect = Math.min(best.connect, await inBox(tools.connect));
}
const mibs = (us) => (MB / (us / 1e6)).toFixed(0);
const pct = (us) => `${(100 * best.direct / us).toFixed(0)}% of direct`;
console.log(`throughput (${MB} MiB with ${CURL ? 'curl' : 'busybox wget'}, best of 3, interleaved)`);
console.log(`  direct over the veth (host, no proxy)        ${mibs(best.direct).padStart(6)} MiB/s`);
console.log(`  sandbox, plain HTTP through nsbox's proxy    ${mibs(best.http).padStart(6)} MiB/s   ${pct(best.http)}`);
if (tools.connect) console.log(`  sandbox, CONNECT tunnel through the proxy    ${mibs(best.connect).padStart(6)} MiB/s   ${pct(best.connect)}`);

// ---- event-loop lag ---------------------------------------------------------------------------
// measured from the moment every sandbox runs (their spawns are not the proxy's work) until done
// (and until each has printed its last line, before it exits: exits are not the proxy's work)
async function lagOf(procs) {
  await Promise.all(procs.map((p) => new Promise((r) => p.once('spawn', r))));
  const h = monitorEventLoopDelay({ resolution: 1 });
  const lines = procs.map((p) => new Promise((r) => { let o = ''; p.stdout.on('data', (d) => { o += d; if (o.endsWith('\n')) r(o); }); }));
  h.enable();
  for (const p of procs) p.stdin.write('go\n');
  const said = await Promise.all(lines);
  h.disable();
  for (const p of procs) p.stdin.end('\n');
  const out = await Promise.all(procs);
  return { out, said, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
}
const many = await lagOf([spawnIsolated('/bin/sh', ['-c', `read x; for i in $(seq ${CONNS}); do ${BB} wget -q -O /dev/null http://allowed.test/big/2 & done; wait; echo done; read y`], { network: policy(), stdio: 'pipe' })]);
const stats = many.out[0].network.egress['allowed.test'];
console.log(`event-loop lag, ${CONNS} concurrent connections through one sandbox's proxy (${stats.allowed} allowed, ${(stats.bytesIn / 2 ** 20).toFixed(0)} MiB in)`);
console.log(`  p50 ${many.p50.toFixed(2)} ms   p99 ${many.p99.toFixed(2)} ms   max ${many.max.toFixed(2)} ms`);
const boxes = await lagOf(Array.from({ length: BOXES }, (_, i) => spawnIsolated('/bin/sh', ['-c', `read x; ${BB} wget -q -O /dev/null http://allowed.test/big/1 && echo ok; read y`], {
  stdio: 'pipe', network: policy({ allow: ['allowed.test', `box${i}.test`], inject: [{ host: 'allowed.test', headers: { 'x-box': String(i) } }] }),
})));
console.log(`event-loop lag, ${BOXES} sandboxes with policies of their own fetching at once (${boxes.said.filter((o) => o === 'ok\n').length} ok)`);
console.log(`  p50 ${boxes.p50.toFixed(2)} ms   p99 ${boxes.p99.toFixed(2)} ms   max ${boxes.max.toFixed(2)} ms`);

// ---- memory per idle policy ------------------------------------------------------------------
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
await inet.close();

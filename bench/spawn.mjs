#!/usr/bin/env node
// bench/spawn: latency of starting /bin/true in a sandbox, nsbox beside its peers, all
// spawned from this one Node process and measured in the same run (interleaved, so load
// affects all alike). Run as root:  node bench/spawn.mjs [--n 200] [--spaced 30] [--heap-mb 300] [--svg docs/spawn-latency.svg]
//
//   child_process   child_process.spawn('/bin/true') (no isolation: the floor)
//   nsbox           spawnIsolated('/bin/true') with the default isolation (user, pid, mount,
//                   uts, ipc, net, cgroup namespaces; pivot_root into the default view; no caps)
//   nsbox-full      the same with viewTemplate: false (the view built whole each time)
//   nsbox+limits    the same with limits { memory, pids, cpus } (its own cgroup per spawn)
//   bwrap           bwrap --unshare-all with an equivalent read-only view of /usr
//   unshare+chroot  unshare -fpmuin (no user ns) + chroot into a busybox rootfs
//   crun            crun run of an OCI bundle (busybox rootfs, no cgroups: --cgroup-manager=disabled)
//   nsbox@baseline  with --baseline DIR: the default spawn of another checkout of nsbox (its
//                   dist/ and build/, e.g. the commit before a change), for an A/B in one run
//   nsbox+limits@baseline  the same with limits
//   --only a,b      only these runners (names as above)
//   --case C        what nsbox and bwrap start /bin/true in (one case per run):
//                     default  nsbox's default view; bwrap the read-only /usr view above
//                     rootfs   a caller's directory root (the busybox rootfs, read-only):
//                              nsbox { rootfs }, bwrap --ro-bind ROOTFS / (+ /proc /dev /tmp)
//                     image    nsbox { image } (a busybox image in a LayerStore, made from the
//                              same rootfs: an overlay per sandbox); bwrap as in rootfs
//                     nonroot  the default case as uid 65534 (the script runs itself again
//                              under `runuser -u nobody`): unprivileged nsbox beside
//                              unprivileged bwrap (crun and unshare+chroot need root: left out)
//
// Scenarios: back-to-back, spaced 50 ms apart (cold caches; cgroup/RCU effects show here),
// and with a large Node heap (--heap-mb; page-table copying shows here for fork-style spawners).
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, copyFileSync, symlinkSync, writeFileSync, rmSync, existsSync, chmodSync } from 'node:fs';
import { spawnIsolated } from '../dist/index.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 200);
const SPACED = arg('spaced', 30);
const HEAP_MB = arg('heap-mb', 300);
const has = (cmd) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; } };

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = cpSpawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

const sarg = (name) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : undefined; };
const CASE = sarg('case') ?? 'default';
if (!['default', 'rootfs', 'image', 'nonroot'].includes(CASE)) { console.error(`--case: default, rootfs, image or nonroot, not ${CASE}`); process.exit(2); }
if (CASE === 'nonroot' && process.getuid() === 0) {
  // the same script as nobody (dist/ and build/ must be readable by it)
  const argv = process.argv.slice(2);
  argv[argv.indexOf('--case') + 1] = 'default';
  const r = (await import('node:child_process')).spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, ...process.execArgv, process.argv[1], ...argv, '--nonroot-run'], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const ROOT = process.getuid() === 0;
const caseName = process.argv.includes('--nonroot-run') ? `nonroot (uid ${process.getuid()})` : CASE;

// a busybox rootfs for crun and chroot (and the rootfs and image cases)
const dir = mkdtempSync('/tmp/nsbox-bench-');
const rootfs = `${dir}/rootfs`;
for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(`${rootfs}/${d}`, { recursive: true });
copyFileSync('/bin/busybox', `${rootfs}/bin/busybox`);
chmodSync(`${rootfs}/bin/busybox`, 0o755);
for (const a of ['true', 'sh']) symlinkSync('busybox', `${rootfs}/bin/${a}`);
if (has('crun')) {
  execFileSync('crun', ['spec'], { cwd: dir });
  const spec = JSON.parse(execFileSync('cat', [`${dir}/config.json`]).toString());
  spec.process.terminal = false;
  spec.process.args = ['/bin/true'];
  spec.root = { path: 'rootfs', readonly: true };
  writeFileSync(`${dir}/config.json`, JSON.stringify(spec));
}
// the image case: the same busybox tree as a one-layer image in a store of its own
let image;
if (CASE === 'image') {
  const { LayerStore } = await import('../dist/index.js');
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', `${dir}/layer.tar`, '.']);
  const { createHash } = await import('node:crypto');
  const { readFileSync } = await import('node:fs');
  mkdirSync(`${dir}/img/layer`, { recursive: true });
  execFileSync('mv', [`${dir}/layer.tar`, `${dir}/img/layer/layer.tar`]);
  const diff = createHash('sha256').update(readFileSync(`${dir}/img/layer/layer.tar`)).digest('hex');
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' }, rootfs: { type: 'layers', diff_ids: [`sha256:${diff}`] } });
  const cid = createHash('sha256').update(config).digest('hex');
  writeFileSync(`${dir}/img/${cid}.json`, config);
  writeFileSync(`${dir}/img/manifest.json`, JSON.stringify([{ Config: `${cid}.json`, RepoTags: ['busybox:latest'], Layers: ['layer/layer.tar'] }]));
  const store = LayerStore.open(`${dir}/store`);
  await store.importImage(`${dir}/img`);
  image = { store, ref: 'busybox:latest' };
}
let crunId = 0;
// crun refuses hybrid hosts whose cgroup2 mount has any controller ("drop all controllers from
// cgroupv2"; here: hugetlb). Then it runs in a private mount ns without that mount, which adds
// an unshare + sh exec (about 1 ms) to its figures: noted in the output.
let crunHybridWorkaround = false;
try { crunHybridWorkaround = (await import('node:fs')).readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== ''; } catch { /* not hybrid */ }

const BASELINE = sarg('baseline');
const baselineLib = BASELINE ? await import(`${BASELINE.replace(/\/$/, '')}/dist/index.js`) : null;
const baseline = baselineLib?.spawnIsolated ?? null;
const nsboxOpts = CASE === 'rootfs' ? { rootfs } : CASE === 'image' ? { image } : {};
// the baseline's own LayerStore class on the same store (its image option checks the class)
const baselineOpts = CASE === 'image' && baselineLib ? { image: { store: baselineLib.LayerStore.open(`${dir}/store`), ref: image.ref } } : nsboxOpts;
const bwrapRoot = CASE === 'rootfs' || CASE === 'image'
  ? ['--ro-bind', rootfs, '/']
  : ['--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/sbin', '/sbin', '--ro-bind', '/etc', '/etc'];
const runners = {
  child_process: () => run('/bin/true', []),
  nsbox: async () => { const r = await spawnIsolated('/bin/true', [], nsboxOpts); if (r.exitCode !== 0) throw new Error('nsbox: exit ' + r.exitCode); },
  // the same view built whole each time (no view template): the template's gain, in one run
  'nsbox-full': async () => { const r = await spawnIsolated('/bin/true', [], { ...nsboxOpts, viewTemplate: false }); if (r.exitCode !== 0) throw new Error('nsbox-full: exit ' + r.exitCode); },
  'nsbox@baseline': baseline ? async () => { const r = await baseline('/bin/true', [], baselineOpts); if (r.exitCode !== 0) throw new Error('nsbox@baseline: exit ' + r.exitCode); } : null,
  // the cgroup step's cost: the same spawn with limits (its own cgroup, made, filled and removed)
  'nsbox+limits': CASE !== 'default' || !ROOT ? null : async () => {
    const r = await spawnIsolated('/bin/true', [], { limits: { memory: '64M', pids: 32, cpus: 1 } });
    if (r.exitCode !== 0) throw new Error('nsbox+limits: exit ' + r.exitCode);
  },
  'nsbox+limits@baseline': baseline ? async () => {
    const r = await baseline('/bin/true', [], { limits: { memory: '64M', pids: 32, cpus: 1 } });
    if (r.exitCode !== 0) throw new Error('nsbox+limits@baseline: exit ' + r.exitCode);
  } : null,
  bwrap: has('bwrap') ? () => run('bwrap', ['--unshare-all', '--die-with-parent', ...bwrapRoot,
    '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--', '/bin/true']) : null,
  'unshare+chroot': ROOT && CASE === 'default' && has('unshare') ? () => run('unshare', ['-fpmuin', '--mount-proc=' + rootfs + '/proc', '--', 'chroot', rootfs, '/bin/true']) : null,
  crun: ROOT && CASE === 'default' && has('crun') ? () => (crunHybridWorkaround
    ? run('unshare', ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified && exec crun "$@"', 'sh', '--cgroup-manager=disabled', 'run', '--bundle', dir, `nsbox-bench-${process.pid}-${crunId++}`])
    : run('crun', ['--cgroup-manager=disabled', 'run', '--bundle', dir, `nsbox-bench-${process.pid}-${crunId++}`])) : null,
};
const ONLY = sarg('only')?.split(',');
const active = Object.entries(runners).filter(([k, f]) => f && (!ONLY || ONLY.includes(k)));

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function scenario(name, n, gapMs) {
  const samples = Object.fromEntries(active.map(([k]) => [k, []]));
  for (const [, f] of active) await f(); // warm-up
  for (let i = 0; i < n; i++) {
    for (const [k, f] of active) {
      const t0 = process.hrtime.bigint();
      await f();
      samples[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (gapMs) await sleep(gapMs);
    }
  }
  return { name, n, samples, rows: active.map(([k]) => ({ runner: k, p50: pct(samples[k], 50), p99: pct(samples[k], 99) })) };
}

function table(s) {
  const ref = s.rows.find((r) => r.runner === 'bwrap') ?? s.rows[0];
  const cp = s.rows.find((r) => r.runner === 'child_process') ?? s.rows[0];
  const lines = [`### ${s.name} (n=${s.n} each)`, '', '| runner | p50 ms | p99 ms | p50 / bwrap | p99 / bwrap | p50 / child_process |', '|---|---:|---:|---:|---:|---:|'];
  for (const r of s.rows) lines.push(`| ${r.runner} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.p50 / ref.p50).toFixed(2)} | ${(r.p99 / ref.p99).toFixed(2)} | ${(r.p50 / cp.p50).toFixed(2)} |`);
  return lines.join('\n');
}

const results = [];
try {
  results.push(await scenario('back-to-back', N, 0));
  if (SPACED > 0) results.push(await scenario('spaced 50 ms apart', SPACED, 50)); // --spaced 0 skips it
  if (HEAP_MB > 0) {
    const keep = [];
    for (let i = 0; i < HEAP_MB; i++) keep.push(new Array(1 << 17).fill(i + 0.5)); // ~1 MB of doubles each
    results.push(await scenario(`with a ${HEAP_MB} MB Node heap`, Math.max(20, Math.floor(N / 2)), 0));
    if (keep.length < 0) console.log(keep);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const info = `node ${process.version}, kernel ${execFileSync('uname', ['-r']).toString().trim()}, ${(await import('node:os')).cpus().length} cpus`;
console.log(`## bench/spawn — case ${caseName} — ${new Date().toISOString()} — ${info}, load ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
if (crunHybridWorkaround && runners.crun) console.log('crun ran via `unshare -m sh -c "umount /sys/fs/cgroup/unified; exec crun ..."` (hybrid host; adds ~1 ms)\n');
for (const s of results) console.log(`${table(s)}\n`);
if (process.argv.includes('--json')) console.log(JSON.stringify(results.map(({ samples: _s, ...r }) => r)));
// --svg FILE: the back-to-back scenario's latency distribution per runner (README's chart)
const svgAt = process.argv.indexOf('--svg');
if (svgAt > 0) {
  const { latencySvg } = await import('./svg.mjs');
  const { writeFileSync: write } = await import('node:fs');
  const s = results[0];
  const names = { child_process: 'child_process.spawn', nsbox: 'nsbox', 'nsbox+limits': 'nsbox + limits', bwrap: 'bwrap --unshare-all', 'unshare+chroot': 'unshare + chroot', crun: 'crun run' };
  write(process.argv[svgAt + 1], latencySvg(`Starting /bin/true: latency per runner (${s.name}, n=${s.n} each)`, `bench/spawn.mjs, ${info}, ${new Date().toISOString().slice(0, 10)}; all runners interleaved in one run`,
    Object.entries(s.samples).map(([k, v]) => ({ name: names[k] ?? k, samples: v, highlight: k.startsWith('nsbox') }))));
  console.log(`wrote ${process.argv[svgAt + 1]}`);
}

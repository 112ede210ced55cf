// Start-up time of nsbox-runc beside runc and crun, in one run (root; needs podman, hyperfine
// and /bin/busybox; run `npm run build` first):
//  1. `podman run --rm IMG true` with each runtime (podman calls create, start, delete --force);
//  2. one short command, `state ID` of a running container made by that runtime;
//  3. the runtime alone: `create`, `start`, `delete --force` of one container, one after the
//     other (what podman calls per `run --rm`, without podman and conmon), with the bundle of
//     `nsbox-runc spec` (no seccomp profile, `sleep` left running for `delete --force`), and
//     again with the config.json podman gave the runtime (its seccomp profile, cgroupsPath and
//     mounts; the program `true`), taken by a wrapper around nsbox-runc for one podman run.
// A runtime that cannot run a container on this host is left out with its own error (crun
// refuses cgroup v1 hosts whose v2 hierarchy has controllers: "cgroups in hybrid mode").
// Usage: node bench/oci-startup.mjs [--runs N] [--nsbox-runc PATH]
// (default: build/Release/nsbox-runc, the native front end, else dist/nsbox-runc.cjs)
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const opt = (name, dflt) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : dflt; };
const RUNS = Number(opt('--runs', 10));
const nsboxRunc = opt('--nsbox-runc', [`${here}build/Release/nsbox-runc`, `${here}dist/nsbox-runc.cjs`].find((p) => existsSync(p)));

if (process.geteuid() !== 0) { console.error('bench/oci-startup.mjs needs root'); process.exit(1); }
for (const [tool, pkg] of [['podman', 'podman'], ['hyperfine', 'hyperfine']]) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) { console.error(`bench/oci-startup.mjs needs ${tool} (apt-get install ${pkg})`); process.exit(1); }
}
if (!existsSync('/bin/busybox')) { console.error('bench/oci-startup.mjs needs /bin/busybox (apt-get install busybox-static)'); process.exit(1); }

const loadAtStart = loadavg();
const work = mkdtempSync(`/tmp/nsbox-bench-oci-${process.pid}-`);
const image = `localhost/nsbox-bench-oci-${process.pid}`;
const PODMAN = ['podman', '--cgroup-manager', 'cgroupfs'];
// root here lacks CAP_SYS_RESOURCE: podman's default rlimits are above the hard limits
const RUN = ['run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

function rootfs(dir) {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(`${dir}/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${dir}/bin/busybox`);
  for (const a of ['sh', 'true', 'sleep']) symlinkSync('busybox', `${dir}/bin/${a}`);
  for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'run/.containerenv']) writeFileSync(`${dir}/${f}`, '');
}

const all = [['nsbox-runc', nsboxRunc], ['runc', 'runc'], ['crun', 'crun']];
const runtimes = [];
const cleanups = [];
try {
  rootfs(`${work}/img`);
  execFileSync('tar', ['-C', `${work}/img`, '-cf', `${work}/img.tar`, '.']);
  execFileSync('podman', ['import', `${work}/img.tar`, image], { stdio: 'ignore' });
  cleanups.push(() => spawnSync('podman', ['rmi', '-f', image], { stdio: 'ignore' }));
  for (const [name, path] of all) {
    const r = spawnSync(PODMAN[0], [...PODMAN.slice(1), '--runtime', path, ...RUN, image, 'true'], { encoding: 'utf8' });
    if (r.status === 0) runtimes.push([name, path]);
    else console.log(`${name}: left out, it cannot run a container here: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  }
  const hf = (label, cmds) => {
    const json = `${work}/${label}.json`;
    const args = ['-N', '--warmup', '2', '--runs', String(RUNS), '--export-json', json];
    for (const [name, cmd] of cmds) args.push('-n', name, cmd);
    execFileSync('hyperfine', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    return JSON.parse(readFileSync(json, 'utf8')).results.map((r) => stats(r.command, r.times));
  };
  // the long commands: the runtimes take turns, one run each per round (the first of a round
  // changing), so that the load of a shared machine, which drifts over a minute, falls on all
  // alike; hyperfine would run all of one command first
  const interleaved = (cmds) => {
    const times = cmds.map(() => []);
    for (let round = -2; round < RUNS; round++) { // two rounds of warm-up
      for (let k = 0; k < cmds.length; k++) {
        const i = (k + Math.max(round, 0)) % cmds.length;
        const [name, argv] = cmds[i];
        const t0 = process.hrtime.bigint();
        const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
        const t = Number(process.hrtime.bigint() - t0) / 1e9;
        if (r.status !== 0) throw new Error(`${name}: ${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
        if (round >= 0) times[i].push(t);
      }
    }
    return cmds.map(([name], i) => stats(name, times[i]));
  };
  // p50 and p99 (nearest rank: with fewer than 100 runs p99 is the slowest run) and the mean
  function stats(command, times) {
    const ts = [...times].sort((a, b) => a - b);
    const rank = (p) => ts[Math.min(ts.length - 1, Math.ceil((p / 100) * ts.length) - 1)];
    return { command, mean: ts.reduce((a, b) => a + b, 0) / ts.length, p50: rank(50), p99: rank(99) };
  }
  const q = (s) => `'${s.replace(/'/g, "'\\''")}'`;
  const podmanRuns = interleaved(runtimes.map(([n, p]) => [n, [...PODMAN, '--runtime', p, ...RUN, image, 'true']]));

  // a running container per runtime, made by the runtime itself from one bundle
  const bundle = `${work}/bundle`;
  rootfs(`${bundle}/rootfs`);
  execFileSync(nsboxRunc, ['spec', '--bundle', bundle]);
  const c = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
  c.process.terminal = false;
  c.process.args = ['sleep', '1000'];
  c.root.readonly = false;
  delete c.linux.uidMappings; delete c.linux.gidMappings;
  c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'user' && n.type !== 'cgroup');
  writeFileSync(`${bundle}/config.json`, JSON.stringify(c));
  const stateCmds = [];
  for (const [name, path] of runtimes) {
    const root = `${work}/root-${name}`;
    const id = `bench-${process.pid}-${name}`;
    // the container keeps create's stdio: a file, not a pipe (which would stay open)
    const err = openSync(`${work}/${name}.err`, 'w');
    const r = spawnSync(path, ['--root', root, 'create', '--bundle', bundle, id], { stdio: ['ignore', err, err] });
    closeSync(err);
    if (r.status !== 0) { console.log(`${name}: no state bench, create failed: ${readFileSync(`${work}/${name}.err`, 'utf8').trim()}`); continue; }
    cleanups.push(() => spawnSync(path, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' }));
    execFileSync(path, ['--root', root, 'start', id]);
    stateCmds.push([name, `${q(path)} --root ${q(root)} state ${id}`]);
  }
  const stateRuns = hf('state', stateCmds);
  const cycleCmds = runtimes.map(([name, path]) => {
    const root = `${work}/root-${name}`;
    const id = `cycle-${process.pid}-${name}`;
    const r = (a) => `${q(path)} --root ${q(root)} ${a}`;
    return [name, ['sh', '-c', `${r(`create --bundle ${q(bundle)} ${id}`)} && ${r(`start ${id}`)} && ${r(`delete --force ${id}`)}`]];
  });
  const cycleRuns = interleaved(cycleCmds);

  // podman's own config.json: a wrapper runtime keeps a copy of it for one `podman run`
  const wrapper = `${work}/capture-runtime`;
  writeFileSync(wrapper, `#!/bin/sh\nprev=\nfor a in "$@"; do [ "$prev" = --bundle ] && cp "$a/config.json" ${q(`${work}/podman-config.json`)}; prev=$a; done\nexec ${q(nsboxRunc)} "$@"\n`, { mode: 0o755 });
  execFileSync(PODMAN[0], [...PODMAN.slice(1), '--runtime', wrapper, ...RUN, image, 'true'], { stdio: 'ignore' });
  const pbundle = `${work}/pbundle`;
  rootfs(`${pbundle}/rootfs`);
  const pc = JSON.parse(readFileSync(`${work}/podman-config.json`, 'utf8'));
  pc.root = { path: 'rootfs', readonly: false };
  pc.linux.cgroupsPath = `/nsbox-bench-oci-${process.pid}`;
  // podman's bind mounts of files in its container's directory are gone with it
  pc.mounts = pc.mounts.filter((m) => !(m.type === 'bind' && !existsSync(m.source)));
  if (!pc.mounts.some((m) => m.destination === '/dev/shm')) pc.mounts.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  writeFileSync(`${pbundle}/config.json`, JSON.stringify(pc));
  const pcycleRuns = interleaved(runtimes.map(([name, path]) => {
    const root = `${work}/root-${name}`;
    const id = `pcycle-${process.pid}-${name}`;
    cleanups.push(() => spawnSync(path, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' }));
    const r = (a) => `${q(path)} --root ${q(root)} ${a}`;
    return [name, ['sh', '-c', `${r(`create --bundle ${q(pbundle)} ${id}`)} && ${r(`start ${id}`)} && ${r(`delete --force ${id}`)}`]];
  }));

  const ms = (t) => `${(t * 1000).toFixed(1).padStart(7)} ms`;
  const row = (r, base) => `${r.command.padEnd(12)} p50 ${ms(r.p50)}   p99 ${ms(r.p99)}   mean ${ms(r.mean)}   ${base ? `p50 ${(r.p50 / base.p50).toFixed(2)}× runc, p99 ${(r.p99 / base.p99).toFixed(2)}×` : ''}`;
  const runcOf = (rs) => rs.find((r) => r.command === 'runc');
  console.log(`\npodman run --rm IMG true (${RUNS} runs each, the runtimes taking turns)`);
  for (const r of podmanRuns) console.log(row(r, runcOf(podmanRuns)));
  console.log(`\nstate ID of a running container (${RUNS} runs each)`);
  for (const r of stateRuns) console.log(row(r, runcOf(stateRuns)));
  console.log(`\ncreate + start + delete --force, the runtime alone (${RUNS} runs each, taking turns)`);
  for (const r of cycleRuns) console.log(row(r, runcOf(cycleRuns)));
  console.log(`\nthe same with the config.json podman gave the runtime (${RUNS} runs each, taking turns)`);
  for (const r of pcycleRuns) console.log(row(r, runcOf(pcycleRuns)));
  console.log(`\nnsbox-runc: ${nsboxRunc}; load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end (${RUNS} runs)`);
} finally {
  for (const f of cleanups.reverse()) f();
  rmSync(work, { recursive: true, force: true });
}

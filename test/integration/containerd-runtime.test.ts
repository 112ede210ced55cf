// Issue 16, the runtime with containerd (Debian's containerd 1.6, `ctr`): `ctr run --runtime
// io.containerd.runc.v2 --runc-binary build/Release/nsbox-runc` (the native front end, as
// docs/kubernetes.md advises; dist/nsbox-runc.cjs where it is not built), i.e. containerd's runc shim with
// the runtime option BinaryName set to nsbox-runc (what a containerd config's
// `BinaryName = "nsbox-runc"` gives; docs/kubernetes.md). The test starts a containerd of its
// own (root, state, sockets and runc root under a temporary directory; CRI off), imports an
// OCI image it makes from busybox-static (no registry), runs the scenarios, and stops it.
// Skipped with its reason where containerd or ctr is not installed.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { isRoot, skipReason, sleep } from '../helpers/host.js';

const js = new URL('../../dist/nsbox-runc.cjs', import.meta.url).pathname;
const front = new URL('../../build/Release/nsbox-runc', import.meta.url).pathname;
const bin = existsSync(front) ? front : js;
const work = `/tmp/nsbox-test-ctr-${process.pid}`;
const sock = `${work}/containerd.sock`;
const runcRoot = `${work}/runc`;
const ns = `nsbox-test-${process.pid}`;
const image = `localhost/nsbox-test-bb:${process.pid}`;
const which = (name: string) => ['/usr/bin', '/usr/local/bin', '/usr/sbin'].map((d) => `${d}/${name}`).find((p) => existsSync(p));
const containerdPath = which('containerd');
const ctrPath = which('ctr');
const skip = skipReason(!isRoot, 'containerd with nsbox-runc: needs root')
  || skipReason(!containerdPath || !ctrPath, 'containerd with nsbox-runc: containerd is not installed (apt-get install containerd)')
  || skipReason(!which('containerd-shim-runc-v2'), 'containerd with nsbox-runc: containerd-shim-runc-v2 is missing (apt-get install containerd)')
  || skipReason(!existsSync(js), 'containerd with nsbox-runc: dist/nsbox-runc.cjs is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'containerd with nsbox-runc: /bin/busybox is missing (apt-get install busybox-static)');

// the runc shim with nsbox-runc as its binary (the runtime options' BinaryName and Root)
const RUNTIME = ['--runtime', 'io.containerd.runc.v2', '--runc-binary', bin, '--runc-root', runcRoot, '--snapshotter', 'native'];

let daemon: ChildProcess | undefined;
// containerd 1.6 puts the shims' sockets in /run/containerd/s and ctr its fifos in
// /run/containerd/fifo whatever the daemon's state dir: removed after if this test made them
const runDirs = ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd'];
const madeRunDirs = runDirs.filter((d) => !existsSync(d));

function ctr(args: string[], timeout = 60000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(ctrPath!, ['--address', sock, '--namespace', ns, ...args], { encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: string[]): string {
  const r = ctr(args);
  if (r.status !== 0) throw new Error(`ctr ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** An OCI image archive (oci-layout, index.json, blobs) of a busybox-static root, named `name`. */
function makeImage(dir: string, name: string): string {
  const r = `${dir}/rootfs`;
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(`${r}/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${r}/bin/busybox`);
  for (const a of ['sh', 'echo', 'cat', 'sleep', 'id', 'hostname', 'grep', 'true', 'ls']) symlinkSync('busybox', `${r}/bin/${a}`);
  const layer = spawnSync('tar', ['-C', r, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 64 << 20 }).stdout;
  const oci = `${dir}/oci`;
  mkdirSync(`${oci}/blobs/sha256`, { recursive: true });
  const blob = (b: Buffer | string) => { const d = sha(b); writeFileSync(`${oci}/blobs/sha256/${d}`, b); return { digest: `sha256:${d}`, size: Buffer.byteLength(b) }; };
  const l = blob(layer);
  const config = blob(JSON.stringify({
    architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [l.digest] },
  }));
  const manifest = blob(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
  }));
  writeFileSync(`${oci}/oci-layout`, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(`${oci}/index.json`, JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': name } }],
  }));
  const tar = `${dir}/image.tar`;
  const t = spawnSync('tar', ['-C', oci, '-cf', tar, 'oci-layout', 'index.json', 'blobs'], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  return tar;
}

const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
/** The /<namespace> level of containerd's cgroupsPath (/<namespace>/<id>) in every hierarchy. */
const nsCgroups = () => (v2 ? ['/sys/fs/cgroup'] : readdirSync('/sys/fs/cgroup').map((h) => `/sys/fs/cgroup/${h}`)).map((h) => `${h}/${ns}`);

/** What the containers left: nsbox-runc's state, their cgroups, mounts of the work dir, shims. */
function leftovers(): string[] {
  const out: string[] = [];
  // the shim gives nsbox-runc --root <runc root>/<namespace>
  try { out.push(...readdirSync(`${runcRoot}/${ns}`).filter((f) => f !== '.seccomp-cache').map((f) => `state: ${f}`)); } catch { /* none */ }
  for (const d of nsCgroups()) {
    try { out.push(...readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `cgroup: ${d}/${e.name}`)); } catch { /* none */ }
  }
  out.push(...readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(`${work}/state`)).map((l) => `mount: ${l}`));
  const shims = spawnSync('pgrep', ['-f', `containerd-shim-runc-v2 -namespace ${ns}`], { encoding: 'utf8' }).stdout.trim();
  if (shims) out.push(`shim: ${shims}`);
  try { out.push(...readdirSync('/run/containerd/s').filter(() => madeRunDirs.includes('/run/containerd/s')).map((f) => `shim socket: ${f}`)); } catch { /* none */ }
  return out;
}

async function waitFor(cond: () => boolean, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(50);
  }
}

beforeAll(async () => {
  if (skip) return;
  mkdirSync(work, { recursive: true });
  writeFileSync(`${work}/config.toml`, [
    'version = 2',
    `root = "${work}/root"`,
    `state = "${work}/state"`,
    // CRI (and its CNI look-ups) is not what this tests
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${sock}"`,
    '[ttrpc]',
    `  address = "${sock}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n'));
  daemon = spawn(containerdPath!, ['--config', `${work}/config.toml`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  daemon.stderr!.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-20000); });
  await waitFor(() => existsSync(sock) && spawnSync(ctrPath!, ['--address', sock, 'version'], { stdio: 'ignore' }).status === 0, 30000)
    .catch(() => { throw new Error(`containerd did not start: ${log}`); });
  ok(['images', 'import', '--snapshotter', 'native', makeImage(work, image)]);
}, 120000);

afterAll(async () => {
  if (daemon) {
    // whatever a failed test left: tasks, containers, the image, then the daemon
    for (const c of ctr(['containers', 'list', '--quiet']).stdout.split('\n').filter(Boolean)) {
      ctr(['tasks', 'kill', '--signal', 'SIGKILL', c]);
      await sleep(200);
      ctr(['tasks', 'delete', '--force', c]);
      ctr(['containers', 'delete', c]);
    }
    ctr(['images', 'remove', image]);
    const exited = new Promise((r) => daemon!.once('exit', r));
    daemon.kill('SIGTERM');
    await Promise.race([exited, sleep(10000)]);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  }
  // the /<namespace> level of the cgroupsPath (the shim's parent: made by the runtime, left as runc leaves it)
  for (const d of nsCgroups()) {
    try { rmdirSync(d); } catch { /* none, or not a hierarchy */ }
  }
  // containerd's native snapshots are plain directories; its shim sockets live under /run/containerd/s
  spawnSync('umount', ['-R', `${work}/state`], { stdio: 'ignore' });
  for (const d of madeRunDirs) {
    try { rmdirSync(d); } catch { /* not empty: someone else's */ }
  }
  rmSync(work, { recursive: true, force: true });
}, 60000);

describe.skipIf(skip)('containerd (ctr, runc shim) with nsbox-runc as BinaryName', () => {
  it('run --rm: output and the exit code', () => {
    const r = ctr(['run', '--rm', ...RUNTIME, image, 'c1', 'sh', '-c', 'echo "hi from $(id -u)"; exit 3']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hi from 0\n');
    expect(r.status).toBe(3);
    expect(leftovers()).toEqual([]);
  }, 120000);

  it('a detached task: exec, kill, delete; nothing left behind', async () => {
    ok(['run', '-d', ...RUNTIME, image, 'c2', 'sh', '-c', 'trap "exit 9" USR1; while :; do sleep 0.1; done']);
    const running = () => /\bRUNNING\b/.test(ctr(['tasks', 'list']).stdout);
    await waitFor(running);
    const ex = ctr(['tasks', 'exec', '--exec-id', 'e1', 'c2', 'sh', '-c', 'echo "in $$"; exit 5']);
    expect(ex.stdout).toMatch(/^in [0-9]+\n$/);
    expect(ex.status).toBe(5);
    // ps lists pid 1 (nsbox-init) and the program
    expect(ok(['tasks', 'ps', 'c2']).trim().split('\n').length).toBeGreaterThanOrEqual(3);
    ok(['tasks', 'kill', '--signal', 'SIGUSR1', 'c2']);
    await waitFor(() => /\bSTOPPED\b/.test(ctr(['tasks', 'list']).stdout));
    ok(['tasks', 'delete', 'c2']);
    ok(['containers', 'delete', 'c2']);
    expect(leftovers()).toEqual([]);
  }, 120000);
});

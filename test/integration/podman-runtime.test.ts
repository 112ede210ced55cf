// Issue 16, the runtime with podman (Debian's podman 4, conmon): `podman --runtime
// dist/nsbox-runc.js` runs containers of a busybox image. Skipped with the reason where podman
// is not installed. Options every run needs on this host, and why:
//   --cgroup-manager cgroupfs   nsbox-runc refuses --systemd-cgroup
//   --network none              podman's bridge network comes with net.* sysctls nsbox writes
//                               only into a network namespace of its own (docs/oci-runtime.md)
//   --ulimit nofile/nproc       podman's defaults are above root's hard limits here, and root
//                               lacks CAP_SYS_RESOURCE to raise them
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { isRoot, skipReason, sleep } from '../helpers/host.js';

const bin = new URL('../../dist/nsbox-runc.js', import.meta.url).pathname;
const work = `/tmp/nsbox-test-podman-${process.pid}`;
const image = `localhost/nsbox-test-bb-${process.pid}`;
const podmanPath = ['/usr/bin/podman', '/usr/local/bin/podman'].find((p) => existsSync(p));
const skip = skipReason(!isRoot, 'podman with nsbox-runc: needs root')
  || skipReason(!podmanPath, 'podman with nsbox-runc: podman is not installed (apt-get install podman)')
  || skipReason(!existsSync(bin), 'podman with nsbox-runc: dist/nsbox-runc.js is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'podman with nsbox-runc: /bin/busybox is missing (apt-get install busybox-static)');

const BASE = ['--cgroup-manager', 'cgroupfs', '--runtime', bin];
const RUN = ['--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

function podman(args: string[], timeout = 60000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(podmanPath!, [...BASE, ...args], { encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: string[]): string {
  const r = podman(args);
  if (r.status !== 0) throw new Error(`podman ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** What nsbox-runc left: its state files, the libpod cgroups it made. */
function leftovers(): string[] {
  const out: string[] = [];
  try { out.push(...readdirSync('/run/nsbox-runc').map((f) => `state: ${f}`)); } catch { /* none */ }
  const cg = execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '3', '-path', '*libpod_parent/libpod-*'], { encoding: 'utf8' }).trim();
  if (cg) out.push(...cg.split('\n').map((l) => `cgroup: ${l}`));
  return out;
}

beforeAll(() => {
  if (skip) return;
  const r = `${work}/rootfs`;
  for (const d of ['bin', 'etc', 'run', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(`${r}/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${r}/bin/busybox`);
  for (const a of ['sh', 'echo', 'cat', 'sleep', 'id', 'hostname', 'grep', 'touch', 'true']) symlinkSync('busybox', `${r}/bin/${a}`);
  // mount points podman binds over (a read-only root cannot get them made)
  for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'run/.containerenv']) writeFileSync(`${r}/${f}`, '');
  // copied into podman's --read-only tmpfs on /run (tmpcopyup)
  writeFileSync(`${r}/run/keep`, 'kept\n');
  execFileSync('tar', ['-C', r, '-cf', `${work}/image.tar`, '.']);
  execFileSync(podmanPath!, ['import', `${work}/image.tar`, image], { stdio: 'ignore' });
}, 120000);
afterAll(() => {
  if (podmanPath) spawnSync(podmanPath, ['rmi', '-f', image], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skip)('podman --runtime nsbox-runc', () => {
  it('run --rm: output and exit codes', () => {
    expect(ok(['run', '--rm', ...RUN, image, 'echo', 'hi'])).toBe('hi\n');
    expect(podman(['run', '--rm', ...RUN, image, 'sh', '-c', 'exit 42']).status).toBe(42);
    expect(leftovers()).toEqual([]);
  }, 120000);

  it('-d, exec, kill -s USR1, stop, rm, pause/unpause, rm -f', async () => {
    const id = ok(['run', '-d', ...RUN, image, 'sh', '-c', 'trap "echo got-usr1; exit 9" USR1; while :; do sleep 0.1; done']).trim();
    expect(ok(['exec', id, 'sh', '-c', 'echo "in $(hostname)"'])).toBe(`in ${id.slice(0, 12)}\n`);
    await sleep(300);
    ok(['kill', '-s', 'USR1', id]);
    expect(ok(['wait', id]).trim()).toBe('9');
    expect(ok(['logs', id])).toBe('got-usr1\n');
    ok(['rm', id]);
    const id2 = ok(['run', '-d', ...RUN, image, 'sleep', '100']).trim();
    ok(['stop', '-t', '1', id2]);
    ok(['rm', id2]);
    const id3 = ok(['run', '-d', ...RUN, image, 'sleep', '100']).trim();
    ok(['pause', id3]);
    expect(ok(['inspect', '--format', '{{.State.Status}}', id3]).trim()).toBe('paused');
    ok(['unpause', id3]);
    expect(ok(['inspect', '--format', '{{.State.Status}}', id3]).trim()).toBe('running');
    ok(['rm', '-f', id3]);
    expect(leftovers()).toEqual([]);
  }, 180000);

  it('-u 1000, --read-only, --cap-drop ALL, --cap-add, --memory and --pids-limit reach the container', async () => {
    const out = ok(['run', '--rm', ...RUN, '-u', '1000', '--read-only', '--read-only-tmpfs=false', '--cap-drop', 'ALL', image,
      'sh', '-c', 'id -u; grep CapEff /proc/self/status; touch /x 2>/dev/null || echo ro']);
    expect(out).toBe('1000\nCapEff:\t0000000000000000\nro\n');
    // podman's default --read-only-tmpfs: tmpfs on /tmp, /var/tmp and /run with tmpcopyup (the
    // image's /run/keep is copied in), writable while the root is not
    const ro = ok(['run', '--rm', ...RUN, '--read-only', image,
      'sh', '-c', 'touch /x 2>/dev/null || echo ro; cat /run/keep; echo a > /tmp/a && echo b > /run/b && echo c > /var/tmp/c && cat /tmp/a /run/b /var/tmp/c']);
    expect(ro).toBe('ro\nkept\na\nb\nc\n');
    expect(ok(['run', '--rm', ...RUN, '--cap-add', 'NET_ADMIN', image, 'grep', 'CapEff', '/proc/self/status'])).toMatch(/CapEff:\t0*[0-9a-f]*1[0-9a-f]{3}$/m);
    const id = ok(['run', '-d', ...RUN, '--memory', '64m', '--pids-limit', '20', image, 'sleep', '100']).trim();
    // the container's cgroup on the host, from its /proc/self/cgroup
    const lines = ok(['exec', id, 'cat', '/proc/self/cgroup']).trim().split('\n');
    const path = (c: string) => lines.find((l) => l.split(':')[1]!.split(',').includes(c))!.split(':')[2]!;
    expect(path('memory')).toContain(`libpod-${id}`);
    expect(readFileSync(`/sys/fs/cgroup/memory${path('memory')}/memory.limit_in_bytes`, 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(`/sys/fs/cgroup/pids${path('pids')}/pids.max`, 'utf8').trim()).toBe('20');
    ok(['rm', '-f', id]);
    expect(leftovers()).toEqual([]);
  }, 180000);
});

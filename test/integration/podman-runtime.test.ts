// Issue 16, the runtime with podman (Debian's podman 4, conmon): `podman --runtime nsbox-runc`
// (the native front end build/Release/nsbox-runc when built, as a user of the package gets it,
// else dist/nsbox-runc.cjs) runs containers of a busybox image. Skipped with the reason where
// podman is not installed. Options the runs need on this host, and why:
//   --cgroup-manager cgroupfs   nsbox-runc refuses --systemd-cgroup
//   --ulimit nofile/nproc       podman's defaults are above root's hard limits here, and root
//                               lacks CAP_SYS_RESOURCE to raise them
//   --network none              where the test is not about the network (faster); podman's
//                               default bridge network has its own test
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { isRoot, skipReason, sleep } from '../helpers/host.js';

const front = new URL('../../build/Release/nsbox-runc', import.meta.url).pathname;
const bin = existsSync(front) ? front : new URL('../../dist/nsbox-runc.cjs', import.meta.url).pathname;
const work = `/tmp/nsbox-test-podman-${process.pid}`;
const image = `localhost/nsbox-test-bb-${process.pid}`;
const podmanPath = ['/usr/bin/podman', '/usr/local/bin/podman'].find((p) => existsSync(p));
const skip = skipReason(!isRoot, 'podman with nsbox-runc: needs root')
  || skipReason(!podmanPath, 'podman with nsbox-runc: podman is not installed (apt-get install podman)')
  || skipReason(!existsSync(bin) || !existsSync(new URL('../../dist/nsbox-runc.cjs', import.meta.url).pathname), 'podman with nsbox-runc: dist/nsbox-runc.cjs is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'podman with nsbox-runc: /bin/busybox is missing (apt-get install busybox-static)');

const BASE = ['--cgroup-manager', 'cgroupfs', '--runtime', bin];
const LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const RUN = ['--network', 'none', ...LIMITS];
// podman's --init runs its container-init (catatonit) from this path (containers.conf init_path)
const initSkip = skipReason(!existsSync('/usr/libexec/podman/catatonit'), 'podman --init: container-init binary not found on the host: stat /usr/libexec/podman/catatonit: no such file or directory (apt-get install catatonit)');
const scriptSkip = skipReason(!existsSync('/usr/bin/script'), 'podman -it: script(1) is missing to give podman a terminal (apt-get install util-linux)');
/** the network namespaces on the host before the tests (podman's own are removed by podman) */
let netnsBefore: string[] = [];
const netns = () => { try { return readdirSync('/run/netns'); } catch { return []; } };

function podman(args: string[], timeout = 60000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(podmanPath!, [...BASE, ...args], { encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: string[]): string {
  const r = podman(args);
  if (r.status !== 0) throw new Error(`podman ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** What nsbox-runc left: its state files, the libpod cgroups it made, network namespaces. */
function leftovers(): string[] {
  const out: string[] = netns().filter((n) => !netnsBefore.includes(n)).map((n) => `netns: ${n}`);
  try { out.push(...readdirSync('/run/nsbox-runc').filter((f) => f !== '.seccomp-cache').map((f) => `state: ${f}`)); } catch { /* none */ }
  // find's status is 1 when another process's cgroup goes while it walks: its list is still whole
  const cg = (spawnSync('find', ['/sys/fs/cgroup', '-maxdepth', '3', '-path', '*libpod_parent/libpod-*'], { encoding: 'utf8' }).stdout ?? '').trim();
  if (cg) out.push(...cg.split('\n').map((l) => `cgroup: ${l}`));
  return out;
}

beforeAll(() => {
  if (skip) return;
  netnsBefore = netns();
  const r = `${work}/rootfs`;
  for (const d of ['bin', 'etc', 'run', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(`${r}/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${r}/bin/busybox`);
  for (const a of ['sh', 'echo', 'cat', 'sleep', 'id', 'hostname', 'grep', 'touch', 'true', 'stty', 'tty', 'mkdir', 'httpd', 'tr']) symlinkSync('busybox', `${r}/bin/${a}`);
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

  it.skipIf(scriptSkip)('-it through script: a real controlling terminal, its size, and a resize reach the container', () => {
    const name = `nsbox-tty-${process.pid}`;
    const p = [podmanPath!, ...BASE].join(' ');
    // the outer shell is script's session on a new pty: it sets the size, starts podman, and
    // once the container runs resizes the pty (podman gets SIGWINCH and passes the size on);
    // the container prints its tty, whether it is its controlling terminal (tty_nr in
    // /proc/self/stat), the size, then waits (up to 30 s) for the new size (stty may set rows
    // and columns one after the other: two resizes)
    const inner = 'tty; set -- $(cat /proc/$$/stat); echo "tty_nr=$7"; stty size; i=0; '
      + 'while [ "$(stty size)" != "40 120" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; stty size; exit 3';
    const outer = `stty rows 30 cols 100; (until [ -n "$(${p} ps -q --filter name=${name})" ]; do sleep 0.2; done; sleep 1; stty rows 40 cols 120 < /dev/tty) & `
      + `${p} run --rm -it --name ${name} ${RUN.join(' ')} ${image} sh -c '${inner}'`;
    const r = spawnSync('/usr/bin/script', ['-qec', outer, '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
    expect(r.status, r.stdout + r.stderr).toBe(3);
    // (a NUL podman's attach writes first shows as ^@ through the pty's echo)
    const lines = r.stdout.replace(/\0|\^@/g, '').split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
    expect(lines[0]).toBe('/dev/pts/0');
    expect(Number(lines[1]!.replace('tty_nr=', ''))).toBeGreaterThan(0);
    expect(lines.slice(2, 4)).toEqual(['30 100', '40 120']);
    expect(leftovers()).toEqual([]);
  }, 180000);

  it("podman's default bridge network: the container's own address, net.* sysctls written in the namespace podman made; -p 127.0.0.1:H:C reaches it", async () => {
    // regression: podman's net.ipv4.ping_group_range (and any --sysctl net.*) was refused as
    // "needs a network namespace of the sandbox's own": nsbox now writes them in the joined one
    const out = ok(['run', '--rm', ...LIMITS, '--sysctl', 'net.ipv4.ip_unprivileged_port_start=80', image,
      'sh', '-c', 'cat /proc/sys/net/ipv4/ip_unprivileged_port_start; grep -c 10.88 /proc/net/fib_trie']);
    const [port, routes] = out.trim().split('\n');
    expect(port).toBe('80');
    expect(Number(routes)).toBeGreaterThan(0);
    expect(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()).not.toBe('80');
    const hostPort = 20000 + (process.pid % 20000);
    const id = ok(['run', '-d', ...LIMITS, '-p', `127.0.0.1:${hostPort}:8080`, image,
      'sh', '-c', 'mkdir /www && echo hello-port > /www/index.html && exec httpd -f -p 8080 -h /www']).trim();
    let body = '';
    for (let i = 0; i < 50 && body !== 'hello-port\n'; i++) {
      await sleep(200);
      body = spawnSync('curl', ['-s', '--max-time', '2', `http://127.0.0.1:${hostPort}/index.html`], { encoding: 'utf8' }).stdout ?? '';
    }
    expect(body).toBe('hello-port\n');
    ok(['rm', '-f', id]);
    expect(spawnSync('curl', ['-s', '--max-time', '2', `http://127.0.0.1:${hostPort}/index.html`]).status).not.toBe(0);
    expect(leftovers()).toEqual([]);
  }, 180000);

  it.skipIf(initSkip)("--init: podman's container-init runs the command and reaps for it", () => {
    // nsbox's own pid 1 (nsbox-init) holds the container; podman-init (catatonit) is the
    // command's parent, as a subreaper
    const out = ok(['run', '--rm', '--init', ...RUN, image, 'sh', '-c', 'tr "\\0" " " < /proc/$PPID/cmdline; echo; sleep 0 & wait; echo done']);
    expect(out).toMatch(/^\/run\/podman-init -- sh -c /);
    expect(out).toMatch(/done\n$/);
    expect(leftovers()).toEqual([]);
  }, 120000);
});

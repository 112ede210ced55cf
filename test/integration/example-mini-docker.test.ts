// examples/mini-docker: the README's walk-through, end to end, with a busybox image the test builds.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { isRoot, noIdmappedLayers, skipReason } from '../helpers/host.js';
import { nftUnavailableReason, sweepNetwork } from '../../lib/index.js';

const dist = new URL('../../dist/index.js', import.meta.url).pathname;
const cli = new URL('../../examples/mini-docker/mini-docker.mjs', import.meta.url).pathname;
const mkimage = new URL('../../examples/mini-docker/make-busybox-image.sh', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'example-mini-docker: needs root')
  || skipReason(!existsSync(dist) || !readFileSync(dist, 'utf8').includes('DEFAULT_HOLDER'), 'example-mini-docker: the CLI imports the built package (dist/ missing or older than Sandbox: npm run build:ts)')
  || skipReason(spawnSync('sh', ['-c', 'command -v busybox']).status !== 0, 'example-mini-docker: needs busybox on the host to build the image');

const root = `/tmp/nsbox-mdtest-${process.pid}`;
const state = `/run/nsbox-mdtest-${process.pid}`;
const env = { ...process.env, MINI_DOCKER_ROOT: root, MINI_DOCKER_STATE: state };

function md(...args: string[]): { out: string; err: string; code: number | null } {
  const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 30_000 });
  return { out: r.stdout, err: r.stderr, code: r.status };
}

afterAll(async () => {
  for (const n of existsSync(state) ? readdirSync(state) : []) if (n.endsWith('.json')) md('rm', '-f', n.slice(0, -5));
  rmSync(state, { recursive: true, force: true });
  rmSync(root, { recursive: true, force: true });
  rmSync(`${root}.tar`, { force: true });
});

describe.skipIf(skip)('examples/mini-docker', () => {
  it('walk-through: import, run, see the layers, write a file, see it in the upper dir, commit, run the new image', () => {
    execFileSync('sh', [mkimage, `${root}.tar`]);
    const imp = md('import', `${root}.tar`);
    expect(imp.code).toBe(0);
    expect(imp.out).toMatch(/^busybox:latest +sha256:[0-9a-f]{64} +\(1 layer\)/);
    expect(md('images').out).toMatch(/busybox:latest/);

    const run = md('run', '--name', 'demo', '-m', '64M', '--cpus', '0.5', 'busybox', 'sh', '-c',
      'echo hello > /data/hello.txt; hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; exit 3');
    expect(run.err).toBe('');
    expect(run.code).toBe(3);
    expect(run.out.split('\n')[0]).toBe('demo');
    expect(run.out).toContain('67108864');
    expect(md('ps').out.trim().split('\n').length).toBe(1); // stopped with its command
    expect(md('ps', '-a').out).toMatch(/demo +busybox +Exited/);

    const info = JSON.parse(md('inspect', 'demo').out);
    expect(info.layers).toHaveLength(1);
    expect(existsSync(`${info.layers[0].path}/bin/busybox`)).toBe(true);
    expect(readFileSync(`${info.upperDir}/data/hello.txt`, 'utf8')).toBe('hello\n');
    expect(existsSync(`${info.layers[0].path}/data/hello.txt`)).toBe(false);
    expect(md('diff', 'demo').out).toBe('A /data/hello.txt\n');

    const commit = md('commit', 'demo', 'mine:v1');
    expect(commit.code).toBe(0);
    expect(md('images').out).toMatch(/mine:v1 +[0-9a-f]{12} +[0-9a-f]{12} [0-9a-f]{12}/);
    const again = md('run', '--name', 'demo2', 'mine:v1', 'cat', '/data/hello.txt');
    expect(again.out).toBe('hello\n');
    expect(md('rm', 'demo', 'demo2').code).toBe(0);
    expect(md('ps', '-a').out.trim().split('\n').length).toBe(1);
  });

  it("container root owns the image root's files (idmapped layers) and can write them", (ctx) => {
    // the walk-through imported busybox:latest; its files are owned by uid 0 in the tar
    if (skipReason(!!noIdmappedLayers(), noIdmappedLayers())) return ctx.skip();
    const r = md('run', '--name', 'owner', 'busybox', 'sh', '-c', 'stat -c %u:%g / /etc/passwd; echo x >> /etc/passwd && echo wrote');
    md('rm', 'owner');
    expect([r.out, r.err, r.code]).toEqual(['0:0\n0:0\nwrote\n', '', 0]);
  });

  it('run -d, exec, ps, stop, rm', () => {
    const d = md('run', '-d', '--name', 'bg', 'busybox', 'sleep', '1000');
    expect(d.out).toBe('bg\n');
    expect(md('ps').out).toMatch(/bg +busybox +Up +\d+/);
    const ex = md('exec', 'bg', 'sh', '-c', 'ps -o comm | grep -c sleep; echo $$; hostname');
    expect(ex.err).toBe('');
    const [sleeps, pid, host] = ex.out.trim().split('\n');
    expect(Number(sleeps)).toBeGreaterThanOrEqual(1);
    expect(Number(pid)).toBeGreaterThan(1);
    expect(host).toBe('bg');
    expect(md('rm', 'bg').code).toBe(2); // running: refused without -f
    expect(md('stop', '-t', '2', 'bg').code).toBe(0);
    expect(md('ps', '-a').out).toMatch(/bg +busybox +Exited/);
    expect(md('rm', 'bg').code).toBe(0);
  });

  it('run -p publishes a port', async () => {
    if (skipReason(nftUnavailableReason() !== undefined, `example-mini-docker -p: ${nftUnavailableReason()}`)) return;
    const ip = execFileSync('sh', ['-c', "ip -o -4 route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'"], { encoding: 'utf8' }).trim();
    if (skipReason(!ip, 'example-mini-docker -p: no host address to connect to')) return;
    expect(md('run', '-d', '--name', 'web', '-p', '18089:80', 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www').code).toBe(0);
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      body = await fetch(`http://${ip}:18089/index.html`).then((r) => r.text(), () => '');
      if (!body) await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe('hello from the busybox image\n');
    expect(md('rm', '-f', 'web').code).toBe(0);
  });

  it.skipIf(skipReason(!existsSync('/usr/bin/script'), 'no script(1) (util-linux) for a terminal'))('run -it gives the command a terminal, as docker run -it', async () => {
    // (the image was imported by the walk-through above)
    const cmd = `stty cols 77 rows 22; exec ${process.execPath} ${cli} run -it --name ttydemo busybox sh -c 'stty size; tty; echo ready; read x; echo you:$x'`;
    const s = spawn('script', ['-qfec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    s.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready') && !out.includes('[typed]')) { out += '[typed]'; s.stdin.write('hello\r'); }
    });
    const code = await new Promise<number | null>((res) => s.on('exit', res));
    const rm = md('rm', '-f', 'ttydemo');
    expect(out).toContain('22 77');
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(out).toContain('you:hello');
    expect(code).toBe(0);
    expect(rm.code).toBe(0);
  });

  it.skipIf(skipReason(!existsSync('/usr/bin/script'), 'no script(1) (util-linux) to give mini-docker import a terminal'))('import shows layers, bytes and rate on a terminal, nothing when piped', () => {
    if (!existsSync(`${root}.tar`)) execFileSync('sh', [mkimage, `${root}.tar`]);
    const piped = md('import', `${root}.tar`, 'piped:v1');
    expect(piped).toMatchObject({ code: 0, err: '' });
    const envs = Object.entries({ MINI_DOCKER_ROOT: root, MINI_DOCKER_STATE: state }).map(([k, v]) => `${k}=${v}`).join(' ');
    const tty = spawnSync('script', ['-qfec', `env ${envs} ${process.execPath} ${cli} import ${root}.tar tty:v1`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/importing \S+\.tar: layer 1\/1 +[\d.]+ MB +[\d.]+ MB\/s/);
    expect(tty.stdout).toMatch(/\r\x1b\[K[^\r\n]*tty:v1 {2}sha256:/); // the walk-through's image: all its names
  });

  it('leaves no mount, cgroup, link or state file', async () => {
    await sweepNetwork({ idleDefaultBridge: true });
    expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(root))).toEqual([]);
    expect(execFileSync('find', ['/sys/fs/cgroup', '-name', '*nsbox-sbx*'], { encoding: 'utf8' }).trim()).toBe('');
    expect(readdirSync(state).filter((n) => n.endsWith('.json'))).toEqual([]);
    const links = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => /nsbox/.test(l));
    if (links.length) console.warn(`links named nsbox still present (other suites may own them): ${links.join('; ')}`);
  });
});

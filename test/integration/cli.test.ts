// The `nsbox` command as a person uses it (issue 13, item 12): dist/cli.js run with execFile,
// every case a real sandbox of a fresh Node process.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defaultBridgeGuard, isRoot, skipReason, sleep } from '../helpers/host.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cliPath = `${root}dist/cli.js`;
const version = JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version as string;

type Out = { code: number | null; stdout: string; stderr: string };
function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Out> {
  return new Promise((resolve) => {
    const c = execFile(process.execPath, [cliPath, ...args], { cwd: opts.cwd, env: opts.env ?? process.env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
    c.stdin!.end(opts.input ?? '');
  });
}

/** A usage error: exit 2, the flag named as typed, no API option name. */
function expectUsage(r: Out, flag: string | RegExp) {
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(typeof flag === 'string' ? new RegExp(flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : flag);
  expect(r.stderr).not.toMatch(/options\.|limits\./);
}

describe('nsbox CLI without a sandbox', () => {
  it('--version and --help for each command', async () => {
    for (const v of [['--version'], ['-V']]) {
      const r = await cli(v);
      expect(r).toMatchObject({ code: 0, stdout: `nsbox ${version}\n` });
    }
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const c of ['run', 'explain', 'image', 'doctor', 'gc']) expect(top.stdout).toContain(`nsbox ${c}`);
    const want: Record<string, string[]> = {
      run: ['--network', '--publish', '--memory', '--cpus', '--pids', '--image', '--store', '-e, --env', '-v, --volume', '-w, --workdir', '--timeout DURATION'],
      explain: ['nsbox explain'], image: ['image import', 'image ls', 'image rm'], doctor: ['--self-test'], gc: ['nsbox gc'],
    };
    const forms = Object.keys(want).flatMap((c) => [[c, '--help'], [c, '-h'], ['help', c]]);
    const outs = await Promise.all(forms.map((f) => cli(f)));
    forms.forEach((form, i) => {
      const c = form[0] === 'help' ? form[1]! : form[0]!;
      expect(outs[i]!.code, form.join(' ')).toBe(0);
      expect(outs[i]!.stdout).toMatch(new RegExp(`^usage: nsbox ${c}`));
      for (const w of want[c]!) expect(outs[i]!.stdout, `${form.join(' ')} mentions ${w}`).toContain(w);
    });
  });

  it('says usage errors in its own words (flags, not API option names) and exits 2', async () => {
    expectUsage(await cli(['run', '--timeout', '1x', '--', 'true']), '--timeout takes a duration');
    expectUsage(await cli(['run', '--frobnicate', '--', 'true']), 'unknown option --frobnicate');
    expectUsage(await cli(['run', '--network', 'weird', '--', 'true']), '--network takes none, loopback, host, user, bridge');
    expectUsage(await cli(['run', '-p', '80', '--', 'true']), '--publish takes [IP:]HOST:CONTAINER');
    expectUsage(await cli(['run', '--network', 'none', '-p', '8080:80', '--', 'true']), '--publish needs --network bridge or user');
    expectUsage(await cli(['run', '--cpus', 'half', '--', 'true']), "--cpus takes a number (got 'half')");
    expectUsage(await cli(['run', '--share', 'bogus', '--', 'true']), '--share takes one of');
    expectUsage(await cli(['run', '--tty=yes', '--', 'true']), '--tty takes no value');
    expectUsage(await cli(['frob']), "unknown command 'frob'");
    expectUsage(await cli(['explain', '--image', 'busybox', '--', 'true']), 'explain does not take --image');
  });

  it('explain reports the network the flags asked for', async () => {
    for (const [flags, want] of [[['--network', 'user', '-p', '8080:80'], 'user'], [['-p', '8080:80'], 'bridge'], [['--network', 'host'], 'host'], [[], 'none'],
      [['--network', 'egress'], 'egress'], [['--allow', 'registry.npmjs.org'], 'egress'], [['--transparent'], 'egress']] as const) {
      const r = await cli(['explain', ...flags, '--', 'true']);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout).isolation.network, flags.join(' ')).toBe(want);
    }
  });

  it('--network egress with --allow, --deny, --allow-private: explain lists the proxy variables nsbox sets; mistakes name the flag', async () => {
    const r = await cli(['explain', '-e', 'HTTP_PROXY=http://mine:1', '-e', 'KEEP=1', '--allow', 'registry.npmjs.org', '--allow', '*.pypi.org:443', '--deny', 'evil.pypi.org', '--allow-private', '10.0.0.5', '--', 'true']);
    expect(r.stderr).toBe('');
    const env = JSON.parse(r.stdout).env as string[];
    const proxy = 'http://127.0.0.1:3128', socks = 'socks5h://127.0.0.1:1080', no = 'localhost,127.0.0.1,::1';
    // set over the caller's (-e HTTP_PROXY is replaced), the caller's other variables kept
    expect(env).toEqual(expect.arrayContaining(['KEEP=1', `HTTP_PROXY=${proxy}`, `HTTPS_PROXY=${proxy}`, `ALL_PROXY=${socks}`, `NO_PROXY=${no}`,
      `http_proxy=${proxy}`, `https_proxy=${proxy}`, `all_proxy=${socks}`, `no_proxy=${no}`]));
    expect(env).not.toContain('HTTP_PROXY=http://mine:1');
    expect(env.filter((e) => /^SSL_CERT_FILE=/.test(e))).toEqual([]); // no interception from the CLI
    expect(JSON.parse(r.stdout).isolation.egressTransparent).toBeUndefined();
    expect(JSON.parse((await cli(['explain', '--allow', 'a.test', '--transparent', '--', 'true'])).stdout).isolation.egressTransparent).toBe(true);
    // mistakes: the flag as typed, exit 2
    expectUsage(await cli(['run', '--allow', 'a..b', '--', 'true']), "nsbox: --allow a..b 'a..b' is not a valid host name");
    expectUsage(await cli(['run', '--allow', 'ok.test', '--deny', '*.', '--', 'true']), "nsbox: --deny *. '*.' is not a valid wildcard pattern");
    expectUsage(await cli(['run', '--allow', 'a.test:70000', '--', 'true']), 'nsbox: --allow a.test:70000 must be a port in 1..65535 (got 70000)');
    expectUsage(await cli(['run', '--allow', '169.254.169.254', '--', 'true']), "nsbox: --allow 169.254.169.254 '169.254.169.254' is in a protected range (link-local (cloud metadata)): give --allow-private 169.254.169.254 to mean it");
    expectUsage(await cli(['run', '--network', 'host', '--allow', 'a.test', '--', 'true']), '--allow, --allow-private, --deny and --transparent need --network egress (got --network host)');
    expectUsage(await cli(['run', '--network', 'egress:x', '--', 'true']), '--network takes none, loopback, host, user, bridge, bridge:NAME or egress');
    expectUsage(await cli(['run', '--allow', '', '--', 'true']), "--allow takes HOST[:PORTS] (got '')");
  });
});

describe.skipIf(skipReason(!isRoot, 'the CLI tests run sandboxes with cgroups and images, which needs root'))('nsbox CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync('/tmp/nsbox-test-cli-');
    chmodSync(dir, 0o755); // sandbox root (an unprivileged host id) walks to the binds and the store under it
  });
  // --network bridge without a name uses nsbox0
  const dropDefaultBridge = defaultBridgeGuard();
  afterAll(async () => { rmSync(dir, { recursive: true, force: true }); await dropDefaultBridge(); });

  it('maps API argument errors back to the flag the user typed', async () => {
    // each of these is refused by the API (TypeError/RangeError naming options.*)
    expectUsage(await cli(['run', '--hostname', 'x'.repeat(70), '--', 'true']), /^nsbox: --hostname may be at most 64 bytes/);
    expectUsage(await cli(['run', '-w', 'relative', '--', 'true']), /^nsbox: --workdir must be an absolute path/);
    expectUsage(await cli(['run', '--memory', 'lots', '--', 'true']), /^nsbox: --memory: cannot read 'lots'/);
    expectUsage(await cli(['run', '--cpus', '-1', '--', 'true']), /^nsbox: --cpus must be/);
    expectUsage(await cli(['run', '--pids', '0', '--', 'true']), /^nsbox: --pids must be/);
    expectUsage(await cli(['run', '--uid', '99999999999', '--', 'true']), /^nsbox: --uid must be/);
    expectUsage(await cli(['run', '--cap-add', 'bogus', '--', 'true']), /^nsbox: --cap-add: unknown capability 'bogus'/);
    expectUsage(await cli(['run', '-v', `${dir}/missing:/data`, '--', 'true']), `nsbox: -v ${dir}/missing:/data: source does not exist`);
    expectUsage(await cli(['run', '-v', '/tmp:relative', '--', 'true']), 'nsbox: -v /tmp:relative: target must be an absolute path');
    expectUsage(await cli(['run', '--rootfs', '/no/such/dir', '--', 'true']), /^nsbox: --rootfs must be/);
  });

  it('-e, -v (a relative source is from the current directory, :ro), -w and -u as docker spells them', async () => {
    mkdirSync(`${dir}/work/data`, { recursive: true });
    writeFileSync(`${dir}/work/data/in.txt`, 'from the host\n');
    const r = await cli(['run', '-e', 'A=1', '--env', 'B=two words', '-e', 'FROM_HOST', '--env=C=3', '-v', 'data:/data:ro', '--volume', `./data:/rw`,
      '-w', '/data', '-u', '1000:1001', '--', 'sh', '-c', 'echo "$A|$B|$FROM_HOST|$C"; pwd; cat in.txt; id -u; id -g; grep -E " /(data|rw) " /proc/self/mounts | cut -d" " -f2,4 | cut -d, -f1'],
    { cwd: `${dir}/work`, env: { ...process.env, FROM_HOST: 'passed' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toEqual(['1|two words|passed|3', '/data', 'from the host', '1000', '1001', '/data ro', '/rw rw']);
  });

  it('--timeout takes durations: 1s, 500ms, --timeout=…', async () => {
    const t0 = Date.now();
    const r = await cli(['run', '--timeout', '1s', '--', 'sleep', '30']);
    expect(r.code).toBe(137);
    expect(r.stderr).toBe('nsbox: timed out after 1 s (--timeout)\n');
    expect(Date.now() - t0).toBeLessThan(20_000); // not the 30 s of the program
    const ms = await cli(['run', '--timeout=500ms', '--', 'sleep', '30']);
    expect(ms.code).toBe(137);
    expect(ms.stderr).toBe('nsbox: timed out after 500 ms (--timeout)\n');
    const ok = await cli(['run', '--timeout', '1m', '--', 'true']);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
  });

  it('--memory, --cpus and --pids limit the sandbox through its cgroup', async () => {
    const r = await cli(['run', '-m', '64m', '--cpus', '0.5', '--pids-limit', '10', '--', 'sh', '-c',
      'cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max cpu.max pids.max; else cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max; fi']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const v = r.stdout.trim().split('\n');
    expect(v[0]).toBe(String(64 << 20));
    if (v.length === 3) expect([v[1], v[2]]).toEqual(['50000 100000', '10']);
    else expect(v.slice(1)).toEqual(['50000', '100000', '10']);
  });

  it('--network egress: the sandbox reaches what --allow names through the proxy, the rest is denied and said on stderr', async () => {
    // a server on this host's loopback (protected: reached only with --allow-private)
    const { createServer } = await import('node:http');
    const seen: string[] = [];
    const server = createServer((q, s) => { seen.push(q.url!); s.end(`served ${q.url}\n`); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      // NO_PROXY names 127.0.0.1 (for the sandbox's own loopback): unset here to go through the proxy
      const get = (url: string) => `env -u NO_PROXY -u no_proxy /bin/busybox wget -q -O- ${url} 2>&1; echo "rc=$?"`;
      const r = await cli(['run', '--allow-private', `127.0.0.1:${port}`, '--', 'sh', '-c',
        `${get(`http://127.0.0.1:${port}/yes`)}; ${get(`http://127.0.0.2:${port}/no`)}; ${get(`http://127.0.0.1:${port + (port > 1024 ? -1 : 1)}/port`)}; ls /sys/class/net`]);
      expect(r.code).toBe(0);
      const lines = r.stdout.split('\n');
      expect(lines.slice(0, 2)).toEqual([`served /yes`, 'rc=0']);
      expect(lines[2]).toMatch(/403 Forbidden/);
      expect(lines[4]).toMatch(/403 Forbidden/);
      expect(lines.slice(6)).toEqual(['lo', '']);
      expect(seen).toEqual(['/yes']);
      expect(r.stderr).toBe(`nsbox: egress denied: GET http://127.0.0.2:${port}/no (protected-address: loopback)\n`
        + `nsbox: egress denied: GET http://127.0.0.1:${port + (port > 1024 ? -1 : 1)}/port (protected-address: the host's own)\n`);
    } finally {
      server.close();
    }
  });

  it('--network none, loopback and host', async () => {
    for (const mode of ['none', 'loopback']) {
      const r = await cli(['run', '--network', mode, '--', 'sh', '-c', 'ls /sys/class/net; readlink /proc/self/ns/net']);
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines.slice(0, -1)).toEqual(['lo']);
      expect(lines.at(-1)).not.toBe(readlinkSync('/proc/self/ns/net'));
    }
    const host = await cli(['run', '--net', 'host', '--', 'readlink', '/proc/self/ns/net']);
    expect(host).toMatchObject({ code: 0, stdout: `${readlinkSync('/proc/self/ns/net')}\n` });
  });

  it.skipIf(skipReason(!existsSync('/usr/bin/pasta') && !existsSync('/usr/bin/slirp4netns'), 'no pasta or slirp4netns: --network user cannot be tried'))('--network user gives the sandbox an eth0', async () => {
    const r = await cli(['run', '--network', 'user', '--', 'sh', '-c', 'ls /sys/class/net 2>/dev/null || ip -o link; cat /proc/net/route | wc -l']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/eth0/);
  });

  it('--network bridge with --publish serves a port of the host (a fresh process: the first bridge spawn of it)', async () => {
    const port = 20000 + (process.pid % 20000);
    // busybox httpd inside, published on the host; the CLI forwards SIGTERM to the sandbox
    const c = spawn(process.execPath, [cliPath, 'run', '--network', 'bridge', '-p', `127.0.0.1:${port}:8000`, '--timeout', '30s', '--hostname', 'pub',
      '--', 'busybox', 'httpd', '-f', '-p', '8000', '-h', '/etc'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((r) => c.on('exit', (code) => r(code)));
    let body = '';
    for (let i = 0; i < 100 && !body && c.exitCode === null; i++) {
      try { body = await (await fetch(`http://127.0.0.1:${port}/hostname`)).text(); } catch { await sleep(100); }
    }
    c.kill('SIGTERM');
    const code = await exited;
    expect(err).toBe('');
    expect(body).toBe(readFileSync('/etc/hostname', 'utf8')); // the host's /etc, read-only in the default view
    expect(code).toBe(128 + 15);
  });

  describe.skipIf(skipReason(spawnSync('sh', ['-c', 'command -v busybox']).status !== 0, 'no busybox on the host to build a test image'))('images', () => {
    let store: string;
    let tar: string;
    beforeAll(() => {
      store = `${dir}/store`;
      tar = `${dir}/busybox.tar`;
      execFileSync('sh', [`${root}examples/mini-docker/make-busybox-image.sh`, tar]);
    });

    it('image import (quiet when piped), ls, run --image with and without a command, rm', async () => {
      const imp = await cli(['image', 'import', '--store', store, 'busybox.tar'], { cwd: dir }); // relative FILE
      expect(imp.stderr).toBe(''); // no progress when not on a terminal
      expect(imp.code).toBe(0);
      expect(imp.stdout).toMatch(/^busybox:latest {2}sha256:[0-9a-f]{64} {2}\(1 layer, [\d.]+ MB in [\d.]+ s\)\n$/);
      const ls = await cli(['image', 'ls', '--store', store]);
      expect(ls.stdout).toMatch(/^NAME +IMAGE ID +LAYERS +CREATED\nbusybox:latest +[0-9a-f]{12} +1 /);
      const json = await cli(['images', '--json', '--store', store]);
      expect(JSON.parse(json.stdout)[0].names).toEqual(['busybox:latest']);

      const env = { ...process.env, NSBOX_STORE: store };
      const r = await cli(['run', '--image', 'busybox', '-e', 'X=y', '--', 'sh', '-c', 'echo $X $PATH; ls /bin/busybox; cat /www/index.html'], { env });
      expect(r.stderr).toBe('');
      expect(r).toMatchObject({ code: 0, stdout: 'y /bin\n/bin/busybox\nhello from the busybox image\n' });
      // no command: the image's Cmd (/bin/sh), reading this stdin
      const cmd = await cli(['run', '--image', 'busybox', '--store', store], { input: 'echo from the image cmd; exit 4\n' });
      expect(cmd).toMatchObject({ code: 4, stdout: 'from the image cmd\n' });

      expectUsage(await cli(['run', '--image', 'nosuch', '--', 'true'], { env }), /^nsbox: --image: no image 'nosuch'/);
      expectUsage(await cli(['run', '--image', 'busybox', '--store', `${dir}/nostore`, '--', 'true']), /--store .*nostore: no image store there/);
      expectUsage(await cli(['image', 'import', '--store', store, `${dir}/missing.tar`]), /^nsbox: FILE does not exist/);

      expect(await cli(['image', 'rm', '--store', store, 'busybox'])).toMatchObject({ code: 0, stdout: 'removed busybox\n' });
      expect((await cli(['image', 'ls', '--store', store])).stdout.trim().split('\n')).toHaveLength(1);
    });

    it.skipIf(skipReason(!existsSync('/usr/bin/script'), 'no script(1) (util-linux) to give nsbox image import a terminal'))('image import shows layers, bytes and rate on a terminal', () => {
      const r = spawnSync('script', ['-qfec', `${process.execPath} ${cliPath} image import --store ${dir}/store2 --name bb:t ${tar}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/importing busybox\.tar \([\d.]+ MB archive\): reading/);
      expect(r.stdout).toMatch(/importing busybox\.tar: layer 1\/1 +[\d.]+ MB +[\d.]+ MB\/s/);
      expect(r.stdout).toMatch(/\r\x1b\[Kbb:t {2}sha256:/); // the line is cleared before the result
    });
  });
});

// User-mode networking ({ mode: 'user' }): pasta and slirp4netns as helper processes, for root
// and for an unprivileged caller; 'none'/'loopback' without privileges; a clear error when no
// helper is installed; published ports; nothing (helper, holder, temp dir) survives the sandbox
// or a killed Node process.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { readdirSync, readFileSync, readlinkSync, rmSync, mkdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { build } from 'esbuild';
import { findExecutable } from '../../lib/net/usernet.js';
import { networkSettled } from '../../lib/net/network.js';
import { IDBLOCK_DIR, sweepIdBlocks } from '../../lib/ns/idblocks.js';
import { isRoot, skipReason, alive, sleep } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

type Result = { exitCode: number | null; stdout: string; stderr: string };
type Proc = PromiseLike<Result> & { pid?: number; once(e: string, f: () => void): void; kill(s?: string): boolean; catch(f: (e: unknown) => void): Promise<unknown> };
type Spawn = (file: string, args?: string[], o?: object) => Proc;
let spawnIsolated: Spawn | undefined;
let explain: ((file: string, args: string[], o: object) => { isolation: Record<string, unknown> }) | undefined;
let NsboxErrorClass: (new (...a: never[]) => Error) | undefined;
let reason = isRoot ? '' : 'user-mode network tests start as root (they run an unprivileged child themselves)';
try {
  ({ spawnIsolated, explain, NsboxError: NsboxErrorClass } = (await import('../../lib/index.js')) as unknown as { spawnIsolated: Spawn; explain: typeof explain; NsboxError: new () => Error });
} catch (e) {
  reason ||= `spawnIsolated does not load in this tree: ${(e as Error).message.split('\n')[0]}`;
}
const helpers = (['pasta', 'slirp4netns'] as const).filter((h) => findExecutable(h));
const missing = (['pasta', 'slirp4netns'] as const).filter((h) => !helpers.includes(h));
if (missing.length) console.warn(`SKIPPED (part): ${missing.join(', ')} not installed (apt-get install ${missing.map((m) => (m === 'pasta' ? 'passt' : m)).join(' ')}); its tests are skipped`);

const before = isRoot ? netState() : undefined;
const tmpBefore = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('nsbox-usernet-')));
const pid = process.pid;
/** pasta runs as passt.avx2 (or passt) after its exec. */
const isHelper = (comm: string) => /^(pasta|passt)/.test(comm) || comm === 'slirp4netns';
const port = (k: number) => 20000 + ((pid * 7 + k * 101) % 20000);
// inside the package (git-ignored build-test/), so the addon loader finds the package root
const bundle = `${process.cwd()}/build-test/nsbox-usernet-test-${pid}.mjs`;

/** The host's interfaces, as /sys shows them to the test (root, the host's namespaces). */
const hostLinks = () => readdirSync('/sys/class/net').sort();
/** What a sandbox's `ls /sys/class/net` printed, checked against the host's list: only `lo` and the sandbox's tap. */
function expectOwnSysClassNet(stdout: string, tap: string): void {
  const listed = stdout.trim().split('\n').sort();
  expect(listed).toEqual(['lo', tap].sort());
  expect(listed.filter((n) => n !== 'lo' && hostLinks().includes(n))).toEqual([]);
}

/** pids and names of this process's children. */
function children(of = pid): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === of) out.push({ pid: Number(d), comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')) });
    } catch { /* gone */ }
  }
  return out;
}

const PROBE = `
import socket, os
names = [n for _, n in socket.if_nameindex()]
routes = [l.split() for l in open('/proc/net/route').read().splitlines()[1:]]
default = [r for r in routes if r[1] == '00000000']
print(sorted(names), os.getuid(), bool(default), open('/etc/resolv.conf').read().split())
`;

beforeAll(async () => {
  if (reason) return;
  mkdirSync(`${process.cwd()}/build-test`, { recursive: true });
  await build({ entryPoints: ['lib/index.ts'], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent',
    banner: { js: "import { createRequire as __nsboxCreateRequire } from 'node:module'; const require = __nsboxCreateRequire(import.meta.url);" } });
  chmodSync(bundle, 0o644);
});
afterAll(() => { rmSync(bundle, { force: true }); });

/** Runs `body` in a child Node process (as `uid` if given) with nsbox imported as `nsbox`; resolves its stdout. */
function child(body: string, opts: { uid?: number; env?: Record<string, string>; keep?: boolean } = {}) {
  const script = `const nsbox = await import(${JSON.stringify(bundle)});\n${body}`;
  const proc = cpSpawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', env: { ...process.env, ...opts.env }, ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  let out = '', err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const firstLine = new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', () => { if (out.includes('\n')) resolve(out.split('\n')[0]!); });
    proc.on('exit', (code) => reject(new Error(`child exited ${code} before answering: ${err}`)));
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => proc.on('exit', (code) => resolve({ code, out, err })));
  return { proc, firstLine, done };
}

describe.skipIf(skipReason(!!reason, reason))("user-mode networking (network: { mode: 'user' })", () => {
  for (const helper of ['pasta', 'slirp4netns'] as const) {
    describe.skipIf(!helpers.includes(helper))(helper, () => {
      it('the tap is configured when the program starts: eth0, a default route, the helper as DNS; sandbox root is uid 0; mtu, interfaceName, hostname apply', async () => {
        const r = await spawnIsolated!('/usr/bin/python3', ['-c', PROBE], { network: { mode: 'user', helper, hostname: 'box' } });
        expect(r.stderr).toBe('');
        const dns = helper === 'pasta' ? '169.254.1.1' : '10.0.2.3';
        expect(r.stdout.trim()).toBe(`['eth0', 'lo'] 0 True ['nameserver', '${dns}']`);
        const m = await spawnIsolated!('/usr/bin/python3', ['-c', `
import socket, fcntl, struct
print(struct.unpack('16si', fcntl.ioctl(socket.socket(), 0x8921, struct.pack('16si', b'tap7', 0)))[1], open('/etc/hosts').read().splitlines()[-1].split()[-1])`],
        { network: { mode: 'user', helper, mtu: 1400, interfaceName: 'tap7', hostname: 'box', dns: ['192.0.2.53'] } });
        expect(m.stdout.trim()).toBe('1400 box');
        await networkSettled();
        expect(children().filter((c) => isHelper(c.comm) || c.comm === 'sleep')).toEqual([]);
      });

      it("/sys is a sysfs of the sandbox's own network namespace: /sys/class/net lists lo and its tap, none of the host's interfaces; result.isolation and explain() say so", async () => {
        expect(hostLinks().filter((n) => n !== 'lo').length).toBeGreaterThan(0); // else the comparison proves nothing
        const opts = { network: { mode: 'user', helper, interfaceName: 'tap0' } };
        const r = await spawnIsolated!('/bin/ls', ['/sys/class/net'], opts) as Result & { isolation: Record<string, unknown> };
        expect(r).toMatchObject({ exitCode: 0, stderr: '' });
        expectOwnSysClassNet(r.stdout, 'tap0');
        // the holder's namespaces are the sandbox's own: reported as made for it, with the holder's maps, as explain() plans them
        const want = { network: 'user', sysfs: 'own', joined: [], namespaces: ['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup'] };
        expect(r.isolation).toMatchObject(want);
        expect(explain!('/bin/ls', ['/sys/class/net'], opts).isolation).toMatchObject({ ...want, uidMap: r.isolation.uidMap, gidMap: r.isolation.gidMap });
        expect(r.isolation.uidMap).toEqual([expect.objectContaining({ inside: 0, count: 65536 })]);
      });

      it("the host's loopback services are out of reach unless hostLoopback: true", async () => {
        const srv = createServer((c) => c.end('host'));
        const p = port(helper === 'pasta' ? 1 : 2);
        await new Promise<void>((r) => srv.listen(p, '127.0.0.1', () => r()));
        const script = `
import socket
gw = [l.split() for l in open('/proc/net/route').read().splitlines()[1:] if l.split()[1] == '00000000'][0][2]
gw = socket.inet_ntoa(bytes.fromhex(gw)[::-1])
try:
    print(socket.create_connection((gw, ${p}), timeout=2).recv(10).decode() or 'closed')
except OSError as e:
    print('failed', type(e).__name__)`;
        try {
          const closed = await spawnIsolated!('/usr/bin/python3', ['-c', script], { network: { mode: 'user', helper } });
          expect(closed.stdout.trim()).toMatch(/^(failed|closed)/);
          const open = await spawnIsolated!('/usr/bin/python3', ['-c', script], { network: { mode: 'user', helper, hostLoopback: true } });
          expect(open.stdout.trim()).toBe('host');
        } finally {
          srv.close();
        }
      });

      it('a published port (sandbox root with CAP_NET_BIND_SERVICE binds port 80) answers on the host; it is closed after exit', async () => {
        const p = port(helper === 'pasta' ? 3 : 4);
        const box = spawnIsolated!('/usr/bin/python3', ['-c', `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(4)
while True:
    c, a = s.accept(); c.sendall(b'from the sandbox'); c.close()`], { network: { mode: 'user', helper, publish: [{ host: p, container: 80, hostIp: '127.0.0.1' }] }, capabilities: ['CAP_NET_BIND_SERVICE'] });
        const get = () => new Promise<string>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port: p });
          let d = '';
          s.on('data', (x) => (d += x));
          s.on('end', () => (d ? resolve(d) : reject(new Error('closed without data'))));
          s.on('error', reject);
        });
        try {
          let got = '';
          for (let i = 0; i < 100 && !got; i++) { try { got = await get(); } catch { await sleep(50); } }
          expect(got).toBe('from the sandbox');
        } finally {
          box.kill('SIGKILL');
          const r = await box;
          expect(r.stderr).toBe('');
        }
        await networkSettled();
        await expect(get()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
        expect(children().filter((c) => isHelper(c.comm) || c.comm === 'sleep')).toEqual([]);
      });

      it('a killed Node process leaves no sandbox, holder or helper behind', async () => {
        const c = child(`
          const fs = await import('node:fs');
          const p = nsbox.spawnIsolated('sleep', ['60'], { network: { mode: 'user', helper: '${helper}' } });
          p.once('spawn', () => {
            const kids = fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d)).flatMap((d) => {
              try {
                const s = fs.readFileSync('/proc/' + d + '/stat', 'utf8');
                const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
                return Number(f[1]) === process.pid ? [{ pid: Number(d), comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')) }] : [];
              } catch { return []; }
            });
            console.log(JSON.stringify(kids));
          });
          setInterval(() => {}, 1000);`);
        let kids: Array<{ pid: number; comm: string }> = [];
        try {
          kids = JSON.parse(await c.firstLine) as Array<{ pid: number; comm: string }>;
          // the helper, the holder (sleep) and the sandbox's first process (sleep, or the spawn
          // core's init when it runs one as pid 1)
          expect(kids.filter((k) => isHelper(k.comm))).toHaveLength(1);
          expect(kids.filter((k) => k.comm === 'sleep').length).toBeGreaterThanOrEqual(1);
          expect(kids).toHaveLength(3);
        } finally {
          c.proc.kill('SIGKILL'); // also when an expectation failed: the child must not outlive the test
          await c.done;
        }
        for (let i = 0; i < 100 && kids.some((k) => alive(k.pid)); i++) await sleep(50);
        expect(kids.filter((k) => alive(k.pid))).toEqual([]);
        // the one thing a killed process cannot remove itself: its id block claims (the
        // holder's, as root), which gc removes (and another process would take over)
        const dead = c.proc.pid!;
        sweepIdBlocks((pid) => pid === dead);
        expect((() => { try { return readdirSync(IDBLOCK_DIR); } catch { return []; } })().filter((n) => { try { return readlinkSync(`${IDBLOCK_DIR}/${n}`).startsWith(`nsbox-${dead}-`); } catch { return false; } })).toEqual([]);
      });
    });
  }

  it('with no helper installed: an NsboxError naming the packages, and nothing is made', async () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    let err: unknown;
    try {
      await spawnIsolated!('/bin/true', [], { network: { mode: 'user' } });
    } catch (e) {
      err = e;
    } finally {
      process.env.PATH = saved;
    }
    expect(err).toBeInstanceOf(NsboxErrorClass!);
    expect(err).toMatchObject({ code: 'ENOENT', step: 'network' });
    expect((err as Error).message).toMatch(/passt.*slirp4netns/);
    expect(children().filter((c) => c.comm === 'sleep' || isHelper(c.comm))).toEqual([]);
  });

  it('bad input: TypeError/RangeError naming the option, before anything is made', () => {
    const s = (network: unknown, more: object = {}) => () => spawnIsolated!('/bin/true', [], { network, ...more });
    expect(s({ mode: 'user', helper: 'vde' })).toThrow(/options\.network\.helper must be 'pasta' or 'slirp4netns'/);
    expect(s({ mode: 'user', mtu: 500 })).toThrow(RangeError);
    expect(s({ mode: 'user', subnet: '10.0.0.0/8' })).toThrow(/options\.network\.subnet is not a user-mode/);
    expect(s({ mode: 'user', publish: [{ host: 0, container: 80 }] })).toThrow(/options\.network\.publish\[0\]\.host/);
    expect(s({ mode: 'user', hostLoopback: 'yes' })).toThrow(/hostLoopback must be a boolean/);
    expect(s({ mode: 'tun' })).toThrow(/options\.network\.mode must be 'bridge', 'user' or 'egress'/);
    expect(s('users')).toThrow(RangeError);
    expect(s('user', { user: false })).toThrow(/needs a user namespace/);
    expect(children().filter((c) => c.comm === 'sleep')).toEqual([]);
  });

  describe('without privileges (an unprivileged child Node process, uid 65534)', () => {
    let unprivReason = '';
    // whether this host lets uid 65534 open /dev/net/tun (Debian makes it 0666; some hosts keep
    // it 0600): the helpers need it, and where it is denied nsbox must say so and how to fix it
    let tunOpen = false;
    beforeAll(() => {
      try {
        execFileSync('unshare', ['-U', '-n', 'true'], { uid: 65534, gid: 65534, stdio: 'pipe' });
      } catch (e) {
        unprivReason = `unprivileged user namespaces are not available here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
      }
      try {
        execFileSync(process.execPath, ['-e', "require('fs').closeSync(require('fs').openSync('/dev/net/tun', 'r+'))"], { uid: 65534, gid: 65534, stdio: 'pipe' });
        tunOpen = true;
      } catch { /* denied (or no tun device: then the helper's own error is what the caller sees) */ }
      console.log(`/dev/net/tun for uid 65534 on this host: ${tunOpen ? 'opens' : 'denied'}`);
    });
    const run = async (network: string, extra = '') => {
      const c = child(`
        const r = await nsbox.spawnIsolated('/usr/bin/python3', ['-c', ${JSON.stringify(PROBE)}], { network: ${network} }).catch((e) => ({ error: { name: e.name, code: e.code, step: e.step, message: e.message } }));
        console.log(JSON.stringify(r.error ? { error: r.error } : { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }));${extra}`, { uid: 65534 });
      return JSON.parse(await c.firstLine) as { exitCode?: number; stdout?: string; stderr?: string; error?: Record<string, string> };
    };

    it("'none' and 'loopback' give only lo", async (ctx) => {
      if (skipReason(!!unprivReason, unprivReason)) return ctx.skip();
      for (const n of ["'none'", "'loopback'"]) {
        const r = await run(n);
        expect(r).toMatchObject({ exitCode: 0, stderr: '' });
        expect(r.stdout!.trim()).toMatch(/^\['lo'\] 0 False/);
      }
    });

    for (const helper of ['pasta', 'slirp4netns'] as const) {
      it(`{ mode: 'user', helper: '${helper}' } works where the host lets the user open /dev/net/tun (eth0, a default route), else a clear NsboxError saying the fix`, async (ctx) => {
        if (skipReason(!!unprivReason, unprivReason)) return ctx.skip();
        if (skipReason(!helpers.includes(helper), `${helper} is not installed`)) return ctx.skip();
        const r = await run(`{ mode: 'user', helper: '${helper}' }`);
        if (tunOpen) {
          expect(r).toMatchObject({ exitCode: 0, stderr: '' });
          expect(r.stdout!.trim()).toMatch(/^\['eth0', 'lo'\] 0 True \['nameserver'/);
        } else {
          expect(r.error).toMatchObject({ name: 'NsboxError', code: 'EACCES', step: 'network' });
          expect(r.error!.message).toMatch(/the host denies \/dev\/net\/tun to this user \(mode 0\d{3}\).*chmod 0666 \/dev\/net\/tun.*or run as root/);
          expect(r.error!.message).not.toMatch(/newroot|oldroot/);
        }
      });
    }

    it('both ways whatever the host: a private /dev/net/tun of mode 0666 works, one of 0600 gives the error (a mount namespace of the test, the host untouched)', async (ctx) => {
      if (skipReason(!!unprivReason, unprivReason)) return ctx.skip();
      const tools = ['unshare', 'setpriv', 'mknod'].filter((t) => !findExecutable(t));
      if (skipReason(tools.length > 0, `util-linux tools missing: ${tools.join(', ')}`)) return ctx.skip();
      const helper = helpers[0];
      if (skipReason(!helper, 'neither pasta nor slirp4netns is installed')) return ctx.skip();
      const script = `const nsbox = await import(${JSON.stringify(bundle)});
        const r = await nsbox.spawnIsolated('/usr/bin/python3', ['-c', ${JSON.stringify(PROBE)}], { network: { mode: 'user', helper: '${helper}' } }).catch((e) => ({ error: { name: e.name, code: e.code, step: e.step, message: e.message } }));
        console.log(JSON.stringify(r.error ? { error: r.error } : { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }));`;
      for (const mode of ['0666', '0600']) {
        // /dev/net of this process only: a tmpfs with its own tun node (the same device)
        const out = execFileSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
          `mount -t tmpfs -o mode=0755 nsbox-test-tun /dev/net && mknod -m ${mode} /dev/net/tun c 10 200 && ` +
          `exec setpriv --reuid 65534 --regid 65534 --clear-groups "$0" --input-type=module -e "$1"`, process.execPath, script],
        { cwd: '/', encoding: 'utf8', timeout: 30_000 });
        const r = JSON.parse(out.trim().split('\n')[0]!) as { exitCode?: number; stdout?: string; stderr?: string; error?: Record<string, string> };
        if (mode === '0666') {
          expect(r).toMatchObject({ exitCode: 0, stderr: '' });
          expect(r.stdout!.trim()).toMatch(/^\['eth0', 'lo'\] 0 True \['nameserver'/);
        } else {
          expect(r.error).toMatchObject({ name: 'NsboxError', code: 'EACCES', step: 'network' });
          expect(r.error!.message).toMatch(/the host denies \/dev\/net\/tun to this user \(mode 0600\).*chmod 0666 \/dev\/net\/tun.*or run as root/);
        }
      }
    });

    it("/sys shows the sandbox's own network namespace (lo and its tap, none of the host's interfaces), with the host's /dev/net/tun or, where that is denied, a private one of mode 0666", async (ctx) => {
      if (skipReason(!!unprivReason, unprivReason)) return ctx.skip();
      const helper = helpers[0];
      if (skipReason(!helper, 'neither pasta nor slirp4netns is installed')) return ctx.skip();
      const tools = ['unshare', 'setpriv', 'mknod'].filter((t) => !findExecutable(t));
      if (skipReason(!tunOpen && tools.length > 0, `/dev/net/tun is denied to uid 65534 and util-linux tools for a private one are missing: ${tools.join(', ')}`)) return ctx.skip();
      const body = `
        const r = await nsbox.spawnIsolated('/bin/ls', ['/sys/class/net'], { network: { mode: 'user', helper: '${helper}', interfaceName: 'tap0' } }).catch((e) => ({ error: { name: e.name, code: e.code, step: e.step, message: e.message } }));
        console.log(JSON.stringify(r.error ? { error: r.error } : { uid: process.getuid(), exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, sysfs: r.isolation.sysfs, uidMap: r.isolation.uidMap }));`;
      let line: string;
      if (tunOpen) {
        line = await child(body, { uid: 65534 }).firstLine;
      } else {
        const script = `const nsbox = await import(${JSON.stringify(bundle)});\n${body}`;
        line = execFileSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
          'mount -t tmpfs -o mode=0755 nsbox-test-tun /dev/net && mknod -m 0666 /dev/net/tun c 10 200 && ' +
          'exec setpriv --reuid 65534 --regid 65534 --clear-groups "$0" --input-type=module -e "$1"', process.execPath, script],
        { cwd: '/', encoding: 'utf8', timeout: 30_000 }).trim().split('\n')[0]!;
      }
      const r = JSON.parse(line) as { uid?: number; exitCode?: number; stdout?: string; stderr?: string; sysfs?: string; uidMap?: unknown; error?: unknown };
      expect(r).toMatchObject({ uid: 65534, exitCode: 0, stderr: '' });
      expectOwnSysClassNet(r.stdout!, 'tap0');
      expect(r).toMatchObject({ sysfs: 'own', uidMap: [{ inside: 0, outside: 65534, count: 1 }] });
    });

    it('bridge mode is a clear NsboxError (EPERM), not a crash', async (ctx) => {
      if (skipReason(!!unprivReason, unprivReason)) return ctx.skip();
      const r = await run(`{ bridge: 'nsboxunpriv0' }`);
      expect(r.error).toMatchObject({ name: 'NsboxError', code: 'EPERM', step: 'network' });
      expect(r.error!.message).toMatch(/needs root.*network: 'user'/);
    });
  });

  it('leaves no helper, holder, temp dir, nsbox table, link, netns or IPAM entry behind', async () => {
    await networkSettled();
    expect(children().filter((c) => isHelper(c.comm) || c.comm === 'sleep')).toEqual([]);
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('nsbox-usernet-') && !tmpBefore.has(n))).toEqual([]);
    expectNoNetLeftovers(before!);
  });
});

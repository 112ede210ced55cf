// Issue 16, the runtime: nsbox-runc driven as runc's callers (conmon for podman, containerd's
// shim) drive it, one process per command, with a busybox bundle: create with stdio fds and a
// pid file, state, start, kill, exec, ps, delete; config.json fields refused by name; --log
// with --log-format json; features, spec, --version; nothing left behind.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, readlinkSync, statSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { recvFds } from '../../lib/index.js';
import { detectLayout } from '../../lib/cgroup/detect.js';
import { isRoot, skipReason, alive, sleep, nsboxCgroupsOf } from '../helpers/host.js';

const base = `/run/nsbox-test-runc-${process.pid}`;
const root = `${base}/root`;
const bundle = `${base}/bundle`;
const bin = new URL('../../dist/nsbox-runc.cjs', import.meta.url).pathname;
const front = new URL('../../build/Release/nsbox-runc', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'nsbox-runc: needs root (namespaces, cgroups)')
  || skipReason(!existsSync(bin), 'nsbox-runc: dist/nsbox-runc.cjs is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'nsbox-runc: /bin/busybox is missing (apt-get install busybox-static) for the test bundle');

/** pids of the nsbox-runc processes run (their cgroups carry them as owner) */
const runs: number[] = [];

function runc(args: string[], o: { stdio?: Array<'ignore' | 'pipe' | number>; cwd?: string } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [bin, '--root', root, ...args], { encoding: 'utf8', stdio: (o.stdio ?? ['ignore', 'pipe', 'pipe']) as never, cwd: o.cwd ?? bundle, timeout: 30000 });
  if (r.pid) runs.push(r.pid);
  return r;
}

function ok(args: string[], o?: Parameters<typeof runc>[1]): string {
  const r = runc(args, o);
  if (r.status !== 0) throw new Error(`nsbox-runc ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout ?? '';
}

/**
 * `create` as conmon runs it: the container's stdio are the runtime's own fds, here a file
 * (pipes would stay open as long as the container runs). Returns what the file got.
 */
function create(id: string, extra: string[] = []): void {
  const out = openSync(`${base}/${id}.out`, 'w');
  const r = runc(['create', '--bundle', bundle, '--pid-file', `${base}/${id}.pid`, ...extra, id], { stdio: ['ignore', out, out] });
  closeSync(out);
  if (r.status !== 0) throw new Error(`nsbox-runc create ${id}: exit ${r.status}: ${readFileSync(`${base}/${id}.out`, 'utf8')}`);
}

/** `exec --detach` with the process file p2.json: its stdio a file, as for create. */
function execDetached(id: string, name: string): void {
  const out = openSync(`${base}/${name}.out`, 'w');
  const r = runc(['exec', '--process', `${base}/p2.json`, '--detach', '--pid-file', `${base}/${name}.pid`, id], { stdio: ['ignore', out, out] });
  closeSync(out);
  if (r.status !== 0) throw new Error(`nsbox-runc exec ${id}: exit ${r.status}: ${readFileSync(`${base}/${name}.out`, 'utf8')}`);
}

function state(id: string): { status: string; pid: number; bundle: string; id: string } {
  return JSON.parse(ok(['state', id]));
}

/** A config.json like `runc spec`'s, with `args`, no terminal, and `edit` applied. */
function writeConfig(args: string[], edit: (c: Record<string, any>) => void = () => {}): void {
  rmSync(`${bundle}/config.json`, { force: true });
  ok(['spec', '--bundle', bundle]);
  const c = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
  c.process.terminal = false;
  c.process.args = args;
  // the id block nsbox gives each sandbox rather than runc spec's fixed 100000
  delete c.linux.uidMappings;
  delete c.linux.gidMappings;
  c.linux.resources = { pids: { limit: 64 } };
  edit(c);
  writeFileSync(`${bundle}/config.json`, JSON.stringify(c));
}

function leftovers(): string[] {
  const out = nsboxCgroupsOf([process.pid, ...runs]).map((c) => `cgroup: ${c}`);
  try { out.push(...readdirSync(root).filter((f) => f !== '.seccomp-cache').map((f) => `state: ${f}`)); } catch { /* none */ }
  return out;
}

async function waitFor(cond: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(20);
  }
}

beforeAll(() => {
  if (skip) return;
  mkdirSync(`${bundle}/rootfs/bin`, { recursive: true });
  for (const d of ['proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(`${bundle}/rootfs/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${bundle}/rootfs/bin/busybox`);
  for (const a of ['sh', 'echo', 'cat', 'sleep', 'ls', 'id', 'hostname', 'true', 'false', 'ps', 'kill', 'stat', 'test']) symlinkSync('busybox', `${bundle}/rootfs/bin/${a}`);
});
afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe.skipIf(skip)('nsbox-runc', () => {
  it('create (stdio fds, pid file) → created → start → running → stopped → delete; the program\'s output reaches the fds create had', async () => {
    // it ends once the test writes /etc/go into the bundle's rootfs (a bind of it)
    rmSync(`${bundle}/rootfs/etc/go`, { force: true });
    writeConfig(['sh', '-c', 'echo "hello from $(hostname) uid $(id -u)"; echo to-stderr >&2; while [ ! -e /etc/go ]; do sleep 0.05; done; exit 3']);
    const out = openSync(`${base}/c1.out`, 'w');
    // as conmon: the container's stdio are the runtime's own fds 0..2 (here: a file)
    const r = runc(['create', '--bundle', bundle, '--pid-file', `${base}/c1.pid`, 'c1'], { stdio: ['ignore', out, out] });
    closeSync(out);
    expect(r.status).toBe(0);
    const pid = Number(readFileSync(`${base}/c1.pid`, 'utf8'));
    expect(alive(pid)).toBe(true);
    expect(state('c1')).toMatchObject({ id: 'c1', status: 'created', pid, bundle, ociVersion: '1.0.2', rootfs: `${bundle}/rootfs` });
    expect(readFileSync(`${base}/c1.out`, 'utf8')).toBe('');
    expect(JSON.parse(ok(['list', '--format', 'json']))).toEqual([expect.objectContaining({ id: 'c1', status: 'created', pid })]);
    ok(['start', 'c1']);
    const s = runc(['start', 'c1']);
    expect(s.status).toBe(1);
    expect(s.stderr).toMatch(/cannot start a container that is running/);
    writeFileSync(`${bundle}/rootfs/etc/go`, '');
    await waitFor(() => !alive(pid));
    expect(state('c1')).toMatchObject({ status: 'stopped', pid: 0 });
    expect(readFileSync(`${base}/c1.out`, 'utf8')).toBe('hello from nsbox uid 0\nto-stderr\n');
    ok(['delete', 'c1']);
    const gone = runc(['state', 'c1']);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/container does not exist: c1/);
    // delete --force of a missing container succeeds (as runc)
    ok(['delete', '--force', 'c1']);
    expect(leftovers()).toEqual([]);
  });

  it('kill sends one signal (names as runc takes them), kill --all reaches every process; delete refuses a running container without --force', async () => {
    writeConfig(['sleep', '100']);
    create('c2');
    const pid = Number(readFileSync(`${base}/c2.pid`, 'utf8'));
    ok(['start', 'c2']);
    expect(state('c2').status).toBe('running');
    // exec: the process file's args, env and cwd; its exit code is ours; stdout inherited
    writeFileSync(`${base}/p.json`, JSON.stringify({ args: ['sh', '-c', 'echo "$X in $(pwd)"; exit 5'], env: ['X=exec', 'PATH=/bin'], cwd: '/tmp', user: { uid: 0, gid: 0 } }));
    const ex = runc(['exec', '--process', `${base}/p.json`, 'c2']);
    expect(ex.stdout).toBe('exec in /tmp\n');
    expect(ex.status).toBe(5);
    // detached, with a pid file: it runs on after nsbox-runc exits
    writeFileSync(`${base}/p2.json`, JSON.stringify({ args: ['sleep', '100'], env: ['PATH=/bin'], cwd: '/' }));
    execDetached('c2', 'e');
    const epid = Number(readFileSync(`${base}/e.pid`, 'utf8'));
    expect(alive(epid)).toBe(true);
    const pids = JSON.parse(ok(['ps', '--format', 'json', 'c2'])) as number[];
    expect(pids).toEqual(expect.arrayContaining([pid, epid]));
    const del = runc(['delete', 'c2']);
    expect(del.status).toBe(1);
    expect(del.stderr).toMatch(/not stopped: running/);
    // pause and resume: state says paused meanwhile (podman reads it)
    ok(['pause', 'c2']);
    expect(state('c2').status).toBe('paused');
    expect(runc(['pause', 'c2']).stderr).toMatch(/container not running: paused/);
    ok(['resume', 'c2']);
    expect(state('c2').status).toBe('running');
    // one signal (USR1 to sleep's default: it dies) — given as runc's callers give it
    ok(['kill', 'c2', 'USR1']);
    await waitFor(() => !alive(pid));
    expect(state('c2').status).toBe('stopped');
    expect(alive(epid)).toBe(false); // the pid namespace ended with its pid 1
    ok(['delete', 'c2']);

    writeConfig(['sleep', '100']);
    create('c3');
    ok(['start', 'c3']);
    execDetached('c3', 'e3');
    const e3 = Number(readFileSync(`${base}/e3.pid`, 'utf8'));
    ok(['kill', '--all', 'c3', 'KILL']);
    await waitFor(() => !alive(e3) && !alive(Number(readFileSync(`${base}/c3.pid`, 'utf8'))));
    ok(['delete', '--force', 'c3']);
    expect(leftovers()).toEqual([]);
  });

  it('a config.json field nsbox does not apply is refused naming it (stderr and --log json), and nothing is made', () => {
    const cases: Array<[(c: Record<string, any>) => void, RegExp]> = [
      [(c) => { c.linux.resources.rdma = { mlx5_0: { hcaHandles: 3 } }; }, /config\.json: linux\.resources\.rdma: /],
      [(c) => { c.linux.netDevices = { eth1: {} }; }, /config\.json: linux\.netDevices: moving host network devices/],
      [(c) => { c.windows = { layerFolders: ['C:\\x'] }; }, /config\.json: windows: is for Windows/],
      // OCI: a type not listed is the runtime's own; the runtime's mount namespace is the host's
      [(c) => { delete c.linux.namespaces; }, /config\.json: linux\.namespaces: lists no mount namespace/],
      [(c) => { c.mounts.push({ destination: '/x', type: 'bind', source: '/etc', options: ['rbind', 'bogus'] }); }, /mounts\[6\]\.options: 'bogus' is not an option of a bind mount/],
      [(c) => { c.process.apparmorProfile = 'docker-default'; }, /process\.apparmorProfile/],
      [(c) => { c.mounts.push({ destination: '/x', type: 'tmpfs', source: 'tmpfs', options: ['copy-symlink'] }); }, /mounts\[6\]\.options: 'copy-symlink'/],
      [(c) => { c.linux.namespaces.push({ type: 'ipc', path: `/proc/${process.pid}/ns/uts` }); }, /linux\.namespaces\[7\]\.path: \/proc\/\d+\/ns\/uts is a uts namespace, not ipc/],
      [(c) => { c.process.terminal = true; }, /process\.terminal: needs --console-socket/],
    ];
    for (const [edit, re] of cases) {
      writeConfig(['true'], edit);
      rmSync(`${base}/log.json`, { force: true });
      const r = runc(['--log', `${base}/log.json`, '--log-format', 'json', 'create', '--bundle', bundle, 'bad']);
      expect(r.status, String(re)).toBe(1);
      expect(r.stderr).toMatch(re);
      const line = JSON.parse(readFileSync(`${base}/log.json`, 'utf8').trim().split('\n').pop()!);
      expect(line).toMatchObject({ level: 'error' });
      expect(line.msg).toMatch(re);
      expect(line.time).toMatch(/^\d{4}-/);
    }
    expect(leftovers()).toEqual([]);
  });

  it('applies what it maps: capabilities, rlimits, hostname, mounts, env, readonly root, seccomp, createRuntime hook', async () => {
    writeFileSync(`${base}/hook.sh`, `#!/bin/sh\ncat > ${base}/hook.json\n`, { mode: 0o755 });
    writeConfig(['sh', '-c', 'grep -E "^Cap(Eff|Bnd)" /proc/self/status; ulimit -n; hostname; cat /data/f; echo $GREETING; touch /x 2>/dev/null || echo ro-root; echo > /tmp/w && echo tmp-rw; grep Seccomp: /proc/self/status'], (c) => {
      c.hostname = 'runcbox';
      c.process.env.push('GREETING=hi');
      c.process.capabilities = { bounding: ['CAP_KILL', 'CAP_CHOWN'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] };
      c.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 77, hard: 88 }];
      c.mounts.push({ destination: '/data', type: 'bind', source: `${base}/data`, options: ['rbind', 'ro'] });
      c.mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] });
      c.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdirat'], action: 'SCMP_ACT_ERRNO' }] };
      c.hooks = { createRuntime: [{ path: `${base}/hook.sh` }] };
      c.annotations = { 'org.example': 'yes' };
    });
    mkdirSync(`${base}/data`, { recursive: true });
    writeFileSync(`${base}/data/f`, 'from-host\n');
    const out = openSync(`${base}/c4.out`, 'w');
    expect(runc(['create', '--bundle', bundle, '--pid-file', `${base}/c4.pid`, 'c4'], { stdio: ['ignore', out, out] }).status).toBe(0);
    closeSync(out);
    expect(JSON.parse(readFileSync(`${base}/hook.json`, 'utf8'))).toMatchObject({ id: 'c4', status: 'created', bundle, annotations: { 'org.example': 'yes' } });
    ok(['start', 'c4']);
    await waitFor(() => !alive(Number(readFileSync(`${base}/c4.pid`, 'utf8'))));
    expect(readFileSync(`${base}/c4.out`, 'utf8').split('\n')).toEqual([
      'CapEff:\t0000000000000020', 'CapBnd:\t0000000000000021', '77', 'runcbox', 'from-host', 'hi', 'ro-root', 'tmp-rw', 'Seccomp:\t2', '',
    ]);
    ok(['delete', 'c4']);
    expect(leftovers()).toEqual([]);
  });

  it("properties the runtime spec does not define are ignored, each with a warning naming it (OCI: Extensibility); a bind's filesystem options (mode=, size=) likewise; a linux.devices FIFO is made", async () => {
    writeConfig(['sh', '-c', 'test -p /dev/fifo1 && stat -c %a /dev/fifo1; cat /mnt/etc/hostname-copy'], (c) => {
      c.someNewField = 1;
      c.process.vendorThing = 'x';
      c.linux.vendor = { a: 1 };
      c.hooks = { createRuntime: [{ path: '/bin/true', vendorKey: 1 }], vendorHook: [] };
      c.mounts.push({ destination: '/mnt/etc', type: 'bind', source: `${base}/etcdir`, options: ['nosuid', 'strictatime', 'mode=755', 'size=1k', 'rbind', 'ro'] });
      c.linux.devices = [{ path: '/dev/fifo1', type: 'p', major: 8, minor: 666, fileMode: 0o640 }];
    });
    mkdirSync(`${base}/etcdir`, { recursive: true });
    writeFileSync(`${base}/etcdir/hostname-copy`, 'bound\n');
    rmSync(`${base}/log.json`, { force: true });
    const out = openSync(`${base}/c9.out`, 'w');
    const r = runc(['--log', `${base}/log.json`, '--log-format', 'json', 'create', '--bundle', bundle, '--pid-file', `${base}/c9.pid`, 'c9'], { stdio: ['ignore', out, 'pipe'] });
    closeSync(out);
    expect(r.status, r.stderr).toBe(0);
    const warned = readFileSync(`${base}/log.json`, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.level === 'warning').map((l) => l.msg as string);
    for (const f of ['someNewField', 'process.vendorThing', 'linux.vendor', 'hooks.vendorHook', 'hooks.createRuntime[0].vendorKey']) {
      expect(warned.some((w) => w.startsWith(`config.json: ${f}: not a property of the OCI runtime spec`)), f).toBe(true);
    }
    expect(warned).toContain("config.json: mounts[6].options: 'mode=755', 'size=1k' left out: a bind mount has no filesystem options (mount(2) ignores them)");
    expect(r.stderr).toMatch(/^warning: config\.json: someNewField: /m);
    ok(['start', 'c9']);
    await waitFor(() => state('c9').status === 'stopped');
    expect(readFileSync(`${base}/c9.out`, 'utf8')).toBe('640\nbound\n');
    ok(['delete', 'c9']);
    expect(leftovers()).toEqual([]);
  });

  it('hostname in a uts namespace joined by path is set there (as runc does; runtime-tools linux_ns_path)', async () => {
    const holder = spawn('unshare', ['--uts', 'sleep', '100'], { stdio: 'ignore' });
    try {
      // unshare has switched once its namespace differs from ours
      await waitFor(() => { try { return readlinkSync(`/proc/${holder.pid}/ns/uts`) !== readlinkSync('/proc/self/ns/uts'); } catch { return false; } });
      // from a new user namespace the joined one (the host's user namespace owns it) cannot be changed: refused, naming why
      writeConfig(['hostname'], (c) => {
        c.hostname = 'joined-uts';
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'uts').concat([{ type: 'uts', path: `/proc/${holder.pid}/ns/uts` }]);
      });
      const refused = runc(['create', '--bundle', bundle, 'c10']);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/options\.hostname cannot be set in a uts namespace joined by options\.join\.uts from a new user namespace/);
      // as the suite's config: no user namespace
      writeConfig(['hostname'], (c) => {
        c.hostname = 'joined-uts';
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'uts' && n.type !== 'user').concat([{ type: 'uts', path: `/proc/${holder.pid}/ns/uts` }]);
      });
      create('c10');
      expect(readlinkSync(`/proc/${Number(readFileSync(`${base}/c10.pid`, 'utf8'))}/ns/uts`)).toBe(readlinkSync(`/proc/${holder.pid}/ns/uts`));
      ok(['start', 'c10']);
      await waitFor(() => state('c10').status === 'stopped');
      expect(readFileSync(`${base}/c10.out`, 'utf8')).toBe('joined-uts\n');
      expect(execFileSync('nsenter', ['-t', String(holder.pid), '-u', 'hostname'], { encoding: 'utf8' })).toBe('joined-uts\n');
      ok(['delete', 'c10']);
      // without a hostname, a joined namespace keeps its own
      writeConfig(['hostname'], (c) => {
        delete c.hostname;
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'uts' && n.type !== 'user').concat([{ type: 'uts', path: `/proc/${holder.pid}/ns/uts` }]);
      });
      create('c11');
      ok(['start', 'c11']);
      await waitFor(() => state('c11').status === 'stopped');
      expect(readFileSync(`${base}/c11.out`, 'utf8')).toBe('joined-uts\n');
      ok(['delete', 'c11']);
    } finally {
      holder.kill('SIGKILL');
    }
    expect(leftovers()).toEqual([]);
  });

  it('exec --preserve-fds N: the runtime\'s fds 3 .. 3+N-1 are the process\'s, no other fd reaches it', async () => {
    writeConfig(['sleep', '100']);
    create('c12');
    ok(['start', 'c12']);
    const three = openSync(`${base}/fd3.out`, 'w'), four = openSync(`${base}/fd4.out`, 'w'), five = openSync(`${base}/fd5.out`, 'w');
    writeFileSync(`${base}/pf.json`, JSON.stringify({ args: ['sh', '-c', 'echo three >&3; echo four >&4; (echo five >&5) 2>/dev/null || echo no-fd5'], env: ['PATH=/bin'], cwd: '/' }));
    const r = runc(['exec', '--preserve-fds', '2', '--process', `${base}/pf.json`, 'c12'], { stdio: ['ignore', 'pipe', 'pipe', three, four, five] });
    for (const fd of [three, four, five]) closeSync(fd);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('no-fd5\n');
    expect(readFileSync(`${base}/fd3.out`, 'utf8')).toBe('three\n');
    expect(readFileSync(`${base}/fd4.out`, 'utf8')).toBe('four\n');
    expect(readFileSync(`${base}/fd5.out`, 'utf8')).toBe('');
    expect(runc(['exec', '--preserve-fds', 'x', '--process', `${base}/pf.json`, 'c12']).stderr).toMatch(/--preserve-fds must be a number of fds/);
    ok(['delete', '--force', 'c12']);
    expect(leftovers()).toEqual([]);
  });

  it('create --preserve-fds N: the runtime\'s fds 3 .. 3+N-1 are the container process\'s at start, no other fd reaches it', async () => {
    writeConfig(['sh', '-c', 'echo three >&3; echo four >&4; (echo five >&5) 2>/dev/null || echo no-fd5 >&3']);
    const three = openSync(`${base}/cfd3.out`, 'w'), four = openSync(`${base}/cfd4.out`, 'w'), five = openSync(`${base}/cfd5.out`, 'w');
    const out = openSync(`${base}/c13.out`, 'w');
    const r = runc(['create', '--bundle', bundle, '--preserve-fds', '2', 'c13'], { stdio: ['ignore', out, out, three, four, five] });
    // the runtime's copies are gone with it: pid 1 holds its own until the start
    for (const fd of [three, four, five, out]) closeSync(fd);
    expect(r.status, readFileSync(`${base}/c13.out`, 'utf8')).toBe(0);
    ok(['start', 'c13']);
    await waitFor(() => state('c13').status === 'stopped');
    expect(readFileSync(`${base}/cfd3.out`, 'utf8')).toBe('three\nno-fd5\n');
    expect(readFileSync(`${base}/cfd4.out`, 'utf8')).toBe('four\n');
    expect(readFileSync(`${base}/cfd5.out`, 'utf8')).toBe('');
    ok(['delete', 'c13']);
    expect(runc(['create', '--bundle', bundle, '--preserve-fds', '252', 'c14']).stderr).toMatch(/--preserve-fds must be a number of fds, at most 251/);
    expect(leftovers()).toEqual([]);
  });

  it('joins a network namespace given by path (as podman and CNI give theirs)', async () => {
    const name = `nsbox-test-runc-${process.pid}`;
    execFileSync('ip', ['netns', 'add', name]);
    try {
      const inode = statSync(`/run/netns/${name}`).ino;
      writeConfig(['sh', '-c', 'ls -iL /proc/self/ns/net'], (c) => {
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'network').concat([{ type: 'network', path: `/run/netns/${name}` }]);
      });
      create('c6');
      ok(['start', 'c6']);
      await waitFor(() => state('c6').status === 'stopped');
      expect(readFileSync(`${base}/c6.out`, 'utf8').trim().split(/\s+/)[0]).toBe(String(inode));
      ok(['delete', 'c6']);
      // net.* sysctls go into the joined namespace (podman's bridge network sets two);
      // regression: refused as "needs a network namespace of the sandbox's own"
      const inNs = (k: string) => execFileSync('ip', ['netns', 'exec', name, 'cat', `/proc/sys/${k.replaceAll('.', '/')}`], { encoding: 'utf8' }).trim();
      const hostPing = readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8');
      writeConfig(['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start'], (c) => {
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'network' && n.type !== 'user').concat([{ type: 'network', path: `/run/netns/${name}` }]);
        c.linux.sysctl = { 'net.ipv4.ip_unprivileged_port_start': '80', 'net.ipv4.ping_group_range': '0 0' };
      });
      create('c6s');
      ok(['start', 'c6s']);
      await waitFor(() => state('c6s').status === 'stopped');
      expect(readFileSync(`${base}/c6s.out`, 'utf8').trim()).toBe('80');
      expect(inNs('net.ipv4.ip_unprivileged_port_start')).toBe('80');
      expect(inNs('net.ipv4.ping_group_range').split(/\s+/)).toEqual(['0', '0']);
      expect(readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8')).toBe(hostPing);
      ok(['delete', 'c6s']);
    } finally {
      execFileSync('ip', ['netns', 'delete', name]);
    }
    expect(leftovers()).toEqual([]);
  });

  it('process.terminal with --console-socket: the master is sent there, the program has it as its terminal; exec with a terminal too', async () => {
    const sock = `${base}/console.sock`;
    rmSync(sock, { force: true });
    const server = createServer({ pauseOnConnect: true });
    await new Promise<void>((r) => server.listen(sock, r));
    const master = new Promise<number>((resolve, reject) => {
      server.once('connection', (c) => { recvFds(c).then((m) => { c.destroy(); resolve(m.fds[0]!); }, reject); });
    });
    try {
      // it ends once the test writes /etc/go (as in the first test), after the exec below
      rmSync(`${bundle}/rootfs/etc/go`, { force: true });
      writeConfig(['sh', '-c', 'tty; echo done; while [ ! -e /etc/go ]; do sleep 0.05; done'], (c) => { c.process.terminal = true; });
      const create = spawnSync(process.execPath, [bin, '--root', root, 'create', '--bundle', bundle, '--console-socket', sock, '--pid-file', `${base}/c5.pid`, 'c5'], { encoding: 'utf8', timeout: 30000 });
      if (create.pid) runs.push(create.pid);
      expect(create.stderr).toBe('');
      const fd = await master;
      const { ReadStream } = await import('node:tty');
      const t = new ReadStream(fd);
      let text = '';
      t.on('data', (c: Buffer) => { text += c.toString(); });
      t.on('error', () => {});
      ok(['start', 'c5']);
      await waitFor(() => text.includes('done'));
      expect(text.replace(/\r/g, '').split('\n')[0]).toMatch(/^\/dev\/pts\/\d+$/);
      // exec --tty --console-socket (podman exec -it): a terminal of its own, sent there
      const master2 = new Promise<number>((resolve, reject) => {
        server.once('connection', (c) => { recvFds(c).then((m) => { c.destroy(); resolve(m.fds[0]!); }, reject); });
      });
      writeFileSync(`${base}/pt.json`, JSON.stringify({ terminal: true, args: ['sh', '-c', 'tty; echo exec-done; exit 6'], env: ['PATH=/bin'], cwd: '/' }));
      const exProc = spawn(process.execPath, [bin, '--root', root, 'exec', '--process', `${base}/pt.json`, '--console-socket', sock, 'c5'], { stdio: 'ignore' });
      const exCode = new Promise<number | null>((r) => exProc.once('close', (code) => r(code)));
      const fd2 = await master2;
      const t2 = new ReadStream(fd2);
      let text2 = '';
      t2.on('data', (c: Buffer) => { text2 += c.toString(); });
      t2.on('error', () => {});
      await waitFor(() => text2.includes('exec-done'));
      t2.destroy();
      expect(await exCode).toBe(6);
      const lines2 = text2.replace(/\r/g, '').split('\n');
      expect(lines2[0]).toMatch(/^\/dev\/pts\/\d+$/);
      expect(lines2[0]).not.toBe(text.replace(/\r/g, '').split('\n')[0]);
      writeFileSync(`${bundle}/rootfs/etc/go`, '');
      await waitFor(() => state('c5').status === 'stopped');
      // (closed only now: the master's last close hangs up the program's session)
      t.destroy();
      ok(['delete', 'c5']);
    } finally {
      server.close();
    }
    expect(leftovers()).toEqual([]);
  });

  it('linux.devices: a node by number the host lacks is made (mknod) in a container without a user namespace; refused naming why with one', () => {
    const dev = { path: '/dev/nsbox-test-node', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 };
    writeConfig(['sh', '-c', 'echo hi > /dev/nsbox-test-node && ls -ln /dev/nsbox-test-node'], (c) => {
      c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'user');
      c.linux.devices = [dev];
      c.linux.resources.devices = [{ allow: false, access: 'rwm' }];
    });
    create('c9');
    ok(['start', 'c9']);
    const out = () => readFileSync(`${base}/c9.out`, 'utf8');
    return waitFor(() => out().includes('nsbox-test-node')).then(() => {
      expect(out()).toMatch(/^crw-rw-rw- +1 0 +0 +1, +3 .* \/dev\/nsbox-test-node$/m);
      ok(['delete', '--force', 'c9']);
      writeConfig(['true'], (c) => { c.linux.devices = [dev]; });
      const r = runc(['create', '--bundle', bundle, 'c10']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/linux\.devices\[0\]: the host's \/dev\/nsbox-test-node is missing, and a node made by number \(mknod\) needs a container without a user namespace/);
      expect(leftovers()).toEqual([]);
    });
  });

  it('joins the user, ipc and uts namespaces given by path (a pod\'s, as podman gives them)', async () => {
    writeConfig(['sleep', '100'], (c) => { c.hostname = 'pod-infra'; });
    create('c7');
    ok(['start', 'c7']);
    const infra = Number(readFileSync(`${base}/c7.pid`, 'utf8'));
    writeConfig(['sleep', '100'], (c) => {
      delete c.hostname;
      c.linux.namespaces = c.linux.namespaces.map((n: { type: string }) => (['ipc', 'uts', 'user'].includes(n.type) ? { type: n.type, path: `/proc/${infra}/ns/${n.type}` } : n));
    });
    create('c8');
    ok(['start', 'c8']);
    const member = Number(readFileSync(`${base}/c8.pid`, 'utf8'));
    for (const t of ['ipc', 'uts', 'user']) expect(readlinkSync(`/proc/${member}/ns/${t}`)).toBe(readlinkSync(`/proc/${infra}/ns/${t}`));
    expect(readlinkSync(`/proc/${member}/ns/mnt`)).not.toBe(readlinkSync(`/proc/${infra}/ns/mnt`));
    writeFileSync(`${base}/ph.json`, JSON.stringify({ args: ['hostname'], env: ['PATH=/bin'], cwd: '/' }));
    expect(runc(['exec', '--process', `${base}/ph.json`, 'c8']).stdout).toBe('pod-infra\n');
    ok(['delete', '--force', 'c8']);
    ok(['delete', '--force', 'c7']);
    expect(leftovers()).toEqual([]);
  });

  it("linux.cgroupsPath is the container's cgroup itself; update changes its limits live (runc's flags and --resources); delete removes what create made", async () => {
    const layout = detectLayout();
    const cgPath = `/nsbox-runc-test-${process.pid}/ctr`;
    const dir = (c: string, p = cgPath) => (layout.mode === 'v2' ? `${layout.v2Mount}${p}` : `${layout.v1.find((h) => h.controllers.includes(c))!.mount}${p}`);
    const memFile = layout.mode === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
    writeConfig(['sleep', '100'], (c) => { c.linux.cgroupsPath = cgPath; });
    create('c6');
    const pid = Number(readFileSync(`${base}/c6.pid`, 'utf8'));
    ok(['start', 'c6']);
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
    const line = layout.mode === 'v2' ? lines.find((l) => l.startsWith('0::'))! : lines.find((l) => l.split(':')[1]!.split(',').includes('pids'))!;
    expect(line.split(':')[2]).toBe(cgPath);
    expect(readFileSync(`${dir('pids')}/pids.max`, 'utf8').trim()).toBe('64');
    ok(['update', '--pids-limit', '77', '--memory', '96m', 'c6']);
    expect(readFileSync(`${dir('pids')}/pids.max`, 'utf8').trim()).toBe('77');
    expect(readFileSync(`${dir('memory')}/${memFile}`, 'utf8').trim()).toBe(String(96 * 1024 * 1024));
    writeFileSync(`${base}/res.json`, JSON.stringify({ pids: { limit: 55 } }));
    ok(['update', '--resources', `${base}/res.json`, 'c6']);
    expect(readFileSync(`${dir('pids')}/pids.max`, 'utf8').trim()).toBe('55');
    const bad = runc(['update', '--cpu-burst', '10', 'c6']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--cpu-burst: is not supported by nsbox-runc/);
    ok(['delete', '--force', 'c6']);
    expect(existsSync(dir('pids'))).toBe(false);
    expect(existsSync(dir('pids', `/nsbox-runc-test-${process.pid}`))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('--version, features, spec; --systemd-cgroup and unknown commands are refused clearly', () => {
    expect(ok(['--version'])).toMatch(/^nsbox-runc version \d+\.\d+\.\d+\nspec: 1\.0\.2\n$/);
    const f = JSON.parse(ok(['features']));
    expect(f.hooks).toEqual(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);
    expect(f.linux.cgroup.systemd).toBe(false);
    const dir = `${base}/specdir`;
    mkdirSync(dir, { recursive: true });
    ok(['spec', '--bundle', dir]);
    expect(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'))).toMatchObject({ ociVersion: '1.0.2', root: { path: 'rootfs' } });
    expect(runc(['spec', '--bundle', dir]).stderr).toMatch(/exists/);
    const sd = runc(['--systemd-cgroup', 'state', 'x']);
    expect(sd.status).toBe(1);
    expect(sd.stderr).toMatch(/--systemd-cgroup is not supported.*cgroupfs/);
    expect(runc(['frobnicate']).stderr).toMatch(/unknown command frobnicate/);
    expect(runc(['create', '--no-pivot', '--bundle', bundle, 'x']).stderr).toMatch(/--no-pivot is not supported/);
  });

  it.skipIf(!existsSync(front))('the native front end answers state, kill, start and --version without Node, as the Node runtime does; it hands everything else to it', async () => {
    // NSBOX_NODE=/bin/false: a command handed to Node fails, so a success below was native
    const fast = (args: string[], o: { node?: boolean; stdio?: Array<'ignore' | 'pipe' | number> } = {}) => {
      const r = spawnSync(front, ['--root', root, ...args], { encoding: 'utf8', stdio: (o.stdio ?? ['ignore', 'pipe', 'pipe']) as never, cwd: bundle, timeout: 30000, env: o.node ? process.env : { ...process.env, NSBOX_NODE: '/bin/false' } });
      if (r.pid) runs.push(r.pid);
      return r;
    };
    const both = (id: string) => {
      const n = JSON.parse(ok(['state', id]));
      const f = fast(['state', id]);
      expect(f.status, f.stderr).toBe(0);
      expect(JSON.parse(f.stdout)).toEqual(n);
      return n;
    };
    writeConfig(['sh', '-c', 'trap "exit 7" USR1; while :; do sleep 0.05; done'], (c) => { c.annotations = { 'a.b': 'c "d"' }; });
    const out = openSync(`${base}/f1.out`, 'w');
    // create: handed to Node (which also writes the front end's f1.runc)
    expect(fast(['create', '--bundle', bundle, '--pid-file', `${base}/f1.pid`, 'f1'], { node: true, stdio: ['ignore', out, out] }).status).toBe(0);
    closeSync(out);
    expect(both('f1')).toMatchObject({ id: 'f1', status: 'created', pid: Number(readFileSync(`${base}/f1.pid`, 'utf8')), annotations: { 'a.b': 'c "d"' } });
    expect(fast(['start', 'f1']).status).toBe(0);
    expect(both('f1').status).toBe('running');
    ok(['pause', 'f1']);
    expect(both('f1').status).toBe('paused');
    ok(['resume', 'f1']);
    expect(fast(['kill', 'f1', 'USR1']).status).toBe(0);
    await waitFor(() => JSON.parse(ok(['state', 'f1'])).status === 'stopped');
    expect(both('f1')).toMatchObject({ status: 'stopped', pid: 0 });
    // what it does not do itself gets Node's answer
    const again = fast(['start', 'f1'], { node: true });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/cannot start a container that is stopped/);
    expect(fast(['kill', 'f1'], { node: true }).stderr).toMatch(/container not running/);
    expect(fast(['state', 'nope'], { node: true }).stderr).toMatch(/container does not exist: nope/);
    expect(fast(['delete', 'f1']).status).toBe(0); // native (the next test has more)
    expect(existsSync(`${root}/f1.runc`)).toBe(false);
    // a program that cannot be run: start fails with the error nsbox gives, also in the --log
    writeConfig(['/no/such/program']);
    create('f2');
    const bad = fast(['--log', `${base}/f2.log`, '--log-format', 'json', 'start', 'f2']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^execve failed at step 'exec' \(\/no\/such\/program\): ENOENT$/m);
    expect(JSON.parse(readFileSync(`${base}/f2.log`, 'utf8').trim())).toMatchObject({ level: 'error', msg: expect.stringMatching(/ENOENT/) });
    ok(['delete', '--force', 'f2']);
    const v = fast(['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout).toBe(ok(['--version']));
    expect(leftovers()).toEqual([]);
  });

  it.skipIf(!existsSync(front))('the native front end deletes (kill, wait, cgroup, state) as Node does; a poststop hook or a refused delete is handed to Node', async () => {
    // NSBOX_NODE=/bin/false: a command handed to Node fails, so a success below was native
    const fast = (args: string[], node = false) => {
      const r = spawnSync(front, ['--root', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: bundle, timeout: 30000, env: node ? process.env : { ...process.env, NSBOX_NODE: '/bin/false' } });
      if (r.pid) runs.push(r.pid);
      return r;
    };
    const layout = detectLayout();
    const cgDir = (p: string) => (layout.mode === 'v2' ? `${layout.v2Mount}${p}` : `${layout.v1.find((h) => h.controllers.includes('pids'))!.mount}${p}`);
    // a running container with a second process (exec --detach), in a cgroupsPath nsbox makes
    const cgPath = `/nsbox-runc-test-${process.pid}/del`;
    writeConfig(['sleep', '100'], (c) => { c.linux.cgroupsPath = cgPath; });
    create('d1');
    ok(['start', 'd1']);
    writeFileSync(`${base}/p2.json`, JSON.stringify({ args: ['sleep', '100'], env: ['PATH=/bin'], cwd: '/' }));
    execDetached('d1', 'd1x');
    const pids = [Number(readFileSync(`${base}/d1.pid`, 'utf8')), Number(readFileSync(`${base}/d1x.pid`, 'utf8'))];
    expect(pids.every(alive)).toBe(true);
    // without --force: Node's refusal, nothing changed
    const refused = fast(['delete', 'd1'], true);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/cannot delete container that is not stopped: running/);
    expect(pids.every(alive)).toBe(true);
    const d = fast(['delete', '--force', 'd1']);
    expect(d.status, d.stderr).toBe(0);
    expect(pids.some(alive)).toBe(false);
    expect(existsSync(cgDir(cgPath))).toBe(false);
    expect(existsSync(cgDir(`/nsbox-runc-test-${process.pid}`))).toBe(false);
    expect(readdirSync(root).filter((f) => f.startsWith('d1.'))).toEqual([]);
    // a paused one (frozen cgroup), and a created one (its program never ran), in nsbox's own cgroup
    writeConfig(['sleep', '100']);
    create('d2');
    ok(['start', 'd2']);
    ok(['pause', 'd2']);
    create('d3');
    const d2pid = Number(readFileSync(`${base}/d2.pid`, 'utf8'));
    expect(fast(['delete', '-f', 'd2']).status).toBe(0);
    expect(alive(d2pid)).toBe(false);
    expect(fast(['delete', 'd3']).status).toBe(0);
    // gone: the next delete is Node's (runc: --force of a missing container succeeds)
    expect(fast(['delete', 'd3'], true).stderr).toMatch(/container does not exist: d3/);
    expect(fast(['delete', '--force', 'd3'], true).status).toBe(0);
    // a poststop hook: the front end hands the delete to Node, which runs the hook
    writeConfig(['true'], (c) => { c.hooks = { poststop: [{ path: '/bin/sh', args: ['sh', '-c', `echo ran > ${base}/poststop.out`] }] }; });
    create('d4');
    expect(fast(['delete', '--force', 'd4']).status).not.toBe(0); // handed to Node (/bin/false here)
    expect(existsSync(`${root}/d4.json`)).toBe(true);
    expect(fast(['delete', '--force', 'd4'], true).status).toBe(0);
    expect(readFileSync(`${base}/poststop.out`, 'utf8')).toBe('ran\n');
    expect(leftovers()).toEqual([]);
  });

  it('a failing poststop hook is a warning: delete goes on, exits 0 and leaves nothing (not even the front end\'s file)', () => {
    // regression: delete failed with the hook's error and left <id>.runc behind
    writeConfig(['true'], (c) => { c.hooks = { poststop: [{ path: '/bin/false' }] }; });
    create('ps1');
    expect(existsSync(`${root}/ps1.runc`)).toBe(true);
    const d = runc(['delete', '--force', 'ps1']);
    expect(d.status, d.stderr).toBe(0);
    expect(d.stderr).toMatch(/^warning: poststop failed at step 'hook'/m);
    expect(existsSync(`${root}/ps1.runc`)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('leaves nothing behind', () => {
    expect(leftovers()).toEqual([]);
  });
});

// Sandbox: a long-lived sandbox held open by pid 1, with exec() joining its namespaces and cgroup.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { Sandbox, NsboxError } from '../../lib/index.js';
import { isRoot, skipReason, sleep, alive } from '../helpers/host.js';

const stateDir = `/run/nsbox-test-runner-${process.pid}/sandboxes`;
const skip = skipReason(!isRoot, 'runner-sandbox: needs root (namespaces, cgroups)');

function leftovers(): string[] {
  const out: string[] = [];
  const mi = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes('nsbox'));
  out.push(...mi.map((l) => `mount: ${l}`));
  const cg = execFileSync('find', ['/sys/fs/cgroup', '-name', '*nsbox-sbx*'], { encoding: 'utf8' }).trim();
  if (cg) out.push(...cg.split('\n').map((l) => `cgroup: ${l}`));
  return out;
}

afterAll(() => {
  rmSync(`/run/nsbox-test-runner-${process.pid}`, { recursive: true, force: true });
});

describe.skipIf(skip)('Sandbox', () => {
  it('exec joins the holder\'s namespaces, cgroup and filesystem, with the same ids, caps and seccomp', async () => {
    await using box = await Sandbox.create({ stateDir, hostname: 'boxy', capabilities: ['CAP_NET_BIND_SERVICE'], limits: { pids: 64 } });
    const holderNs = Object.fromEntries(['mnt', 'pid', 'net', 'uts', 'ipc', 'cgroup', 'user'].map((t) => [t, readlinkSync(`/proc/${box.pid}/ns/${t}`)]));
    const a = await box.exec('/bin/sh', ['-c', 'echo one > /tmp/shared; mkdir /run/x; echo $$']);
    expect(a.stderr).toBe('');
    expect(a.exitCode).toBe(0);
    const r = await box.exec('/bin/sh', ['-c', [
      'cat /tmp/shared', 'ls -d /run/x', 'hostname', 'ps -o pid=,comm= -p 1',
      'for t in mnt pid net uts ipc cgroup user; do readlink /proc/self/ns/$t; done',
      'grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status', 'id -u', 'cat /proc/self/cgroup | tail -1',
    ].join('; ')]);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('one');
    expect(lines[1]).toBe('/run/x');
    expect(lines[2]).toBe('boxy');
    expect(lines[3].trim()).toMatch(/^1 (sh|nsbox-init)$/); // nsbox-init above the holder when the spawn core has it
    expect(lines.slice(4, 11)).toEqual(['mnt', 'pid', 'net', 'uts', 'ipc', 'cgroup', 'user'].map((t) => holderNs[t]));
    expect(lines[11]).toBe('CapEff:\t0000000000000400'); // CAP_NET_BIND_SERVICE only
    expect(lines[12]).toBe('NoNewPrivs:\t1');
    expect(lines[13]).toBe('Seccomp:\t2');
    expect(lines[14]).toBe('0');
    expect(lines[15]).toBe('0::/');
    expect(Number(a.stdout.trim())).toBeGreaterThan(1); // not pid 1: inside the holder's pid ns

    // the exec'd process is in the sandbox's cgroup (host view)
    const p = box.exec('/bin/sleep', ['30']);
    await new Promise((res) => p.once('spawn', res));
    expect(await box.cgroup!.pids()).toContain(p.pid);
    expect(await box.cgroup!.pids()).toContain(box.pid);
    p.kill();
    const pr = await p;
    expect(pr.signal).toBe('SIGKILL');
    const st = await box.stats();
    expect(st.pidsPeak).toBeGreaterThanOrEqual(3);
  });

  it('exec can change env, cwd and uid; unknown options and cgroup limits are TypeErrors', async () => {
    await using box = await Sandbox.create({ stateDir, env: { PATH: '/usr/bin:/bin', A: 'from-template' } });
    const r = await box.exec('sh', ['-c', 'echo $A; pwd; id -u'], { env: { PATH: '/usr/bin:/bin', A: 'mine' }, cwd: '/tmp', uid: 1000 });
    expect(r.stdout).toBe('mine\n/tmp\n1000\n');
    const d = await box.exec('sh', ['-c', 'echo $A']);
    expect(d.stdout).toBe('from-template\n');
    expect(() => box.exec('true', [], { rootfs: '/x' } as never)).toThrow(TypeError);
    expect(() => box.exec('true', [], { limits: { memory: '1M' } } as never)).toThrow(/options.limits.memory/);
  });

  it('pause stops CPU use, resume restarts it', async () => {
    await using box = await Sandbox.create({ stateDir });
    const p = box.exec('/bin/sh', ['-c', 'while :; do :; done']);
    await new Promise((res) => p.once('spawn', res));
    await sleep(200);
    await box.pause();
    const a = (await box.stats()).cpuUsageMs!;
    await sleep(400);
    const b = (await box.stats()).cpuUsageMs!;
    expect(b - a).toBeLessThan(20);
    await box.resume();
    await sleep(400);
    const c = (await box.stats()).cpuUsageMs!;
    expect(c - b).toBeGreaterThan(100);
    p.kill();
    await p;
  });

  it('limits: memory and pids are the sandbox cgroup\'s; cpuTimeMs and wallTimeMs are per exec', async () => {
    await using box = await Sandbox.create({ stateDir, limits: { memory: '64M', memorySwap: '64M', pids: 20 } });
    const mem = await box.exec('/usr/bin/python3', ['-c', 'x = bytearray(200 << 20); print(len(x))']);
    expect(mem.verdict).toBe('memory');
    expect(box.running).toBe(true); // the holder survives the OOM kill of the big process
    const cpu = await box.exec('/bin/sh', ['-c', 'while :; do :; done'], { limits: { cpuTimeMs: 300 } });
    expect(cpu.verdict).toBe('cpu-time');
    const wall = await box.exec('/bin/sleep', ['10'], { limits: { wallTimeMs: 200 } });
    expect(wall.verdict).toBe('timeout');
    const ok = await box.exec('/bin/echo', ['fine']);
    expect(ok.verdict).toBe('exited');
    expect(ok.stdout).toBe('fine\n');
  });

  it('kill stops it (exec then fails with ESRCH); destroy removes cgroup and state file; both idempotent', async () => {
    const box = await Sandbox.create({ stateDir });
    const file = `${stateDir}/${box.id}.json`;
    expect(existsSync(file)).toBe(true);
    const cgDirs = Object.values(box.cgroup!.paths);
    const holder = box.pid;
    await box.kill();
    expect(box.running).toBe(false);
    expect(alive(holder)).toBe(false);
    await expect(box.exec('/bin/true')).rejects.toMatchObject({ name: 'NsboxError', code: 'ESRCH' });
    expect(Sandbox.list({ stateDir }).find((s) => s.id === box.id)?.status).toBe('exited');
    await Promise.all([box.destroy(), box.destroy()]);
    await box.destroy();
    expect(existsSync(file)).toBe(false);
    for (const d of cgDirs) expect(existsSync(d)).toBe(false);
    await expect(box.stats()).rejects.toBeInstanceOf(NsboxError);
  });

  it('destroy kills everything inside, frozen or not', async () => {
    const box = await Sandbox.create({ stateDir });
    const p = box.exec('/bin/sh', ['-c', 'sleep 100 & sleep 100 & wait']);
    await new Promise((res) => p.once('spawn', res));
    await box.pause();
    await box.destroy();
    const r = await p;
    expect(r.signal).toBe('SIGKILL');
    expect(leftovers()).toEqual([]);
  });

  it('bad options throw before anything is made', async () => {
    const before = Sandbox.list({ stateDir }).length;
    await expect(Sandbox.create({ stateDir, timeout: 5 } as never)).rejects.toThrow(/options.timeout/);
    await expect(Sandbox.create({ stateDir, id: '../x' })).rejects.toThrow(TypeError);
    await expect(Sandbox.create({ stateDir, limits: { memory: -1 } })).rejects.toThrow(RangeError);
    await expect(Sandbox.create({ stateDir, hostname: 7 as never })).rejects.toThrow(/options.hostname/);
    await expect(Sandbox.create({ stateDir: 'rel' })).rejects.toThrow(/options.stateDir/);
    await expect(Sandbox.create({ stateDir, holder: { file: '' } })).rejects.toThrow(/options.holder.file/);
    expect(Sandbox.list({ stateDir }).length).toBe(before);
    expect(leftovers()).toEqual([]);
  });

  it('a missing holder program is an NsboxError and leaves nothing', async () => {
    const err = await Sandbox.create({ stateDir, holder: { file: '/no/such/holder' } }).catch((e) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect(err.step).toBe('exec');
    expect(Sandbox.list({ stateDir })).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  it('a name can be used once at a time', async () => {
    await using a = await Sandbox.create({ stateDir, id: 'nsbox-test-dup' });
    await expect(Sandbox.create({ stateDir, id: 'nsbox-test-dup' })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(a.running).toBe(true);
  });

  it('list and attach: another process finds a keepAlive sandbox and takes it over', async () => {
    const dist = new URL('../../dist/index.js', import.meta.url).pathname;
    if (skipReason(!existsSync(dist) || !readFileSync(dist, 'utf8').includes('DEFAULT_HOLDER'), 'attach across processes: dist/ is missing or older than Sandbox (npm run build:ts)')) return;
    // a separate Node process makes the sandbox and exits, as a tool would before a restart
    const script = `import { Sandbox } from ${JSON.stringify(dist)};
      const b = await Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'nsbox-test-keep', keepAlive: true, hostname: 'kept' });
      const r = await b.exec('/bin/sh', ['-c', 'echo kept > /tmp/note']);
      console.log(b.pid, r.exitCode);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim().split(' ');
    const holder = Number(out[0]);
    expect(out[1]).toBe('0');
    expect(alive(holder)).toBe(true);
    const info = Sandbox.list({ stateDir }).find((s) => s.id === 'nsbox-test-keep');
    expect(info).toMatchObject({ status: 'running', holderPid: holder, keepAlive: true });
    const box = await Sandbox.attach('nsbox-test-keep', { stateDir });
    const r = await box.exec('/bin/sh', ['-c', 'cat /tmp/note; hostname']);
    expect(r.stdout).toBe('kept\nkept\n');
    await box.pause();
    await box.resume();
    await box.destroy();
    expect(alive(holder)).toBe(false);
    expect(Sandbox.list({ stateDir }).find((s) => s.id === 'nsbox-test-keep')).toBeUndefined();
    await expect(Sandbox.attach('nsbox-test-keep', { stateDir })).rejects.toMatchObject({ code: 'ENOENT' });
    expect(leftovers()).toEqual([]);
  });

  it('leaves no mount, cgroup or state file', async () => {
    expect(leftovers()).toEqual([]);
    expect(Sandbox.list({ stateDir })).toEqual([]);
  });
});

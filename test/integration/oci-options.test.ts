// Issue 16 (items 4 and 8, and the default subnet), on the real kernel: sysctl, umask and
// oomScoreAdj reach the sandbox; a profile from OCI JSON denies what it says; Sandbox.signal
// sends one signal, to pid 1 or to every process; a bridge subnet the host already uses is
// refused naming the interface.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync, rmSync } from 'node:fs';
import { spawnIsolated } from '../../lib/spawn/spawn.js';
import { explain, Namespace, Sandbox, NsboxError, Seccomp } from '../../lib/index.js';
import { isRoot, skipReason, sleep } from '../helpers/host.js';

const stateDir = `/run/nsbox-test-oci-${process.pid}/sandboxes`;
afterAll(() => rmSync(`/run/nsbox-test-oci-${process.pid}`, { recursive: true, force: true }));

/** Whether this process has CAP_SYS_RESOURCE (lowering oom_score_adj needs it). */
const sysResource = (BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n;

describe.skipIf(skipReason(!isRoot, 'oci-options: spawnIsolated integration tests need root'))('issue 16 options', () => {
  for (const viewTemplate of [true, false]) {
    it(`sysctl writes the sandbox's own values and leaves the host's (viewTemplate ${viewTemplate})`, async () => {
      const hostShm = readFileSync('/proc/sys/kernel/shmmax', 'utf8');
      const hostPort = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8');
      const r = await spawnIsolated('/bin/sh', ['-c', 'cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/fs/mqueue/msg_max; hostname; echo 1 > /proc/sys/kernel/shmmax || echo ro'], {
        viewTemplate,
        sysctl: { 'kernel.shmmax': '12345678', 'net.ipv4.ip_unprivileged_port_start': '80', 'fs.mqueue.msg_max': '33', 'kernel.hostname': 'sysbox' },
      });
      expect(r.stderr).toMatch(/Read-only file system/);
      expect(r.stdout.trim().split('\n')).toEqual(['12345678', '80', '33', 'sysbox', 'ro']);
      expect(readFileSync('/proc/sys/kernel/shmmax', 'utf8')).toBe(hostShm);
      expect(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8')).toBe(hostPort);
      // the result says what was written (hostname shows as such)
      expect(r.isolation.sysctl).toEqual({ 'kernel.shmmax': '12345678', 'net.ipv4.ip_unprivileged_port_start': '80', 'fs.mqueue.msg_max': '33' });
      expect(explain('/bin/true', [], { sysctl: { 'kernel.shmmax': '1' } }).isolation.sysctl).toEqual({ 'kernel.shmmax': '1' });
    });
  }

  it('a sysctl the kernel has not is an NsboxError naming its path', async () => {
    const e = await spawnIsolated('/bin/true', [], { sysctl: { 'net.ipv4.no_such_knob': '1' } }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect((e as NsboxError).path).toBe('/proc/sys/net/ipv4/no_such_knob');
  });

  it('umask: the given one at exec, the caller\'s by default', async () => {
    const set = await spawnIsolated('/bin/sh', ['-c', 'umask; touch /tmp/f; stat -c %a /tmp/f'], { umask: 0o027 });
    expect(set.stdout.trim().split('\n')).toEqual(['0027', '640']);
    const dflt = await spawnIsolated('/bin/sh', ['-c', 'umask']);
    expect(dflt.stdout.trim()).toBe(process.umask().toString(8).padStart(4, '0'));
  });

  it('oomScoreAdj: raising works, for the sandbox only (not the caller, whose mm the child shares until exec)', async () => {
    const mine = readFileSync('/proc/self/oom_score_adj', 'utf8');
    for (const init of [true, false]) {
      const r = await spawnIsolated('/bin/sh', ['-c', 'cat /proc/self/oom_score_adj; cat /proc/1/oom_score_adj'], { oomScoreAdj: 500, init });
      expect(r.stdout.trim().split('\n')).toEqual(['500', '500']);
      expect(readFileSync('/proc/self/oom_score_adj', 'utf8')).toBe(mine);
    }
    // a spawn after it has the caller's value
    expect((await spawnIsolated('/bin/cat', ['/proc/self/oom_score_adj'])).stdout).toBe(mine);
  });

  it(`oomScoreAdj: lowering below the caller's ${sysResource ? 'works with' : 'is refused without'} CAP_SYS_RESOURCE`, async () => {
    const mine = Number(readFileSync('/proc/self/oom_score_adj', 'utf8'));
    const want = Math.max(-1000, mine - 100);
    const p = spawnIsolated('/bin/cat', ['/proc/self/oom_score_adj'], { oomScoreAdj: want });
    if (sysResource) {
      expect((await p).stdout.trim()).toBe(String(want));
      return;
    }
    const e = await p.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ code: 'EACCES', step: 'oom_score_adj' });
    expect((e as Error).message).toMatch(/needs CAP_SYS_RESOURCE: give a higher oomScoreAdj, or run with CAP_SYS_RESOURCE/);
  });

  it('a seccomp profile from OCI JSON denies what it says', async () => {
    const seccomp = Seccomp.fromOCI(JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
    }));
    const r = await spawnIsolated('/bin/sh', ['-c', 'mkdir /tmp/d && echo made; touch /tmp/f && echo touched'], { seccomp });
    expect(r.stderr).toMatch(/Operation not permitted/);
    expect(r.stdout.trim()).toBe('touched');
  });

  it('Sandbox.signal sends one signal to pid 1 (nothing after it), and { all } to every process', async () => {
    await using box = await Sandbox.create({
      stateDir,
      holder: { file: '/bin/sh', args: ['-c', 'trap "echo holder-usr1 >> /tmp/got" USR1; trap "echo holder-usr2 >> /tmp/got" USR2; while :; do sleep 0.05; done'] },
    });
    await sleep(200);
    await box.signal('SIGUSR1');
    // past IsolatedProcess.kill's forceKillAfterMs (2000): the holder must still run
    await sleep(2300);
    expect(box.running).toBe(true);
    const worker = box.exec('/bin/sh', ['-c', 'trap "echo worker-usr2 >> /tmp/got; exit 0" USR2; while :; do sleep 0.05; done']);
    await sleep(300);
    await box.signal(12, { all: true });
    const w = await worker;
    expect(w.exitCode).toBe(0);
    await sleep(200);
    const got = (await box.exec('/bin/cat', ['/tmp/got'])).stdout.trim().split('\n').sort();
    expect(got).toEqual(['holder-usr1', 'holder-usr2', 'worker-usr2']);
    await expect(box.signal('SIGNOPE' as NodeJS.Signals)).rejects.toThrow(TypeError);
    await expect(box.signal('SIGNOPE' as NodeJS.Signals)).rejects.toThrow(/signal must be a signal name/);
    await expect(box.signal('SIGUSR1', { every: true } as { all?: boolean })).rejects.toThrow(/options has an unknown key 'every'/);
    await box.signal('SIGKILL', { all: true });
    await box.wait();
    await expect(box.signal('SIGTERM')).rejects.toMatchObject({ code: 'ESRCH' });
  });

  it('IsolatedProcess.signal sends one signal; kill(sig) follows it with SIGKILL after forceKillAfterMs', async () => {
    const script = 'trap "echo usr1" USR1; i=0; while [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done; echo done';
    const a = spawnIsolated('/bin/sh', ['-c', script], { init: false, forceKillAfterMs: 100 });
    await sleep(300);
    expect(a.signal('SIGUSR1')).toBe(true);
    const ra = await a;
    expect(ra.stdout).toBe('usr1\ndone\n');
    expect(a.killed).toBe(false);
    const b = spawnIsolated('/bin/sh', ['-c', script], { init: false, forceKillAfterMs: 100 });
    await sleep(300);
    expect(b.kill('SIGUSR1')).toBe(true);
    const rb = await b;
    expect(rb.signal).toBe('SIGKILL');
    expect(b.signal('SIGUSR1')).toBe(false);
  });

  it('Sandbox: sysctl and umask apply to the holder, exec inherits umask and oomScoreAdj or sets its own', async () => {
    const mine = readFileSync('/proc/self/oom_score_adj', 'utf8');
    await using box = await Sandbox.create({ stateDir, sysctl: { 'kernel.msgmax': '4321' }, umask: 0o077, oomScoreAdj: 200 });
    const r = await box.exec('/bin/sh', ['-c', 'cat /proc/sys/kernel/msgmax; umask; cat /proc/self/oom_score_adj /proc/1/oom_score_adj']);
    expect(r.stdout.trim().split('\n')).toEqual(['4321', '0077', '200', '200']);
    const own = await box.exec('/bin/sh', ['-c', 'umask; cat /proc/self/oom_score_adj'], { umask: 0o022, oomScoreAdj: 300 });
    expect(own.stdout.trim().split('\n')).toEqual(['0022', '300']);
    expect(readFileSync('/proc/self/oom_score_adj', 'utf8')).toBe(mine);
    expect(() => box.exec('/bin/true', [], { sysctl: {} } as object)).toThrow(/options has an unknown key 'sysctl'/);
  });

  it('device nodes by number: made with mknod as root without a user namespace (mode, owner, numbers as given); refused naming the fix elsewhere', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'stat -c "%F %t:%T %a %u:%g" /dev/mynull /dev/big; echo hi > /dev/mynull && echo written'], {
      user: false,
      devices: [{ target: '/dev/mynull', type: 'c', major: 1, minor: 3, mode: 0o626, uid: 1000, gid: 5 }, { target: '/dev/big', type: 'b', major: 259, minor: 300 }],
    });
    expect(r.stdout.split('\n')).toEqual(['character special file 1:3 626 1000:5', 'block special file 103:12c 666 0:0', 'written', '']);
    expect(r.isolation.devices).toEqual(['/dev/mynull (c 1:3)', '/dev/big (b 259:300)']);
    expect(() => explain('/bin/true', [], { devices: [{ target: '/dev/x', type: 'c', major: 1, minor: 3 }] })).toThrow(/options\.devices\[0\] a device node by number needs a sandbox without a user namespace \(user: false\)/);
    expect(() => explain('/bin/true', [], { user: false, devices: [{ target: '/etc/x', type: 'c', major: 1, minor: 3 }] })).toThrow(/options\.devices\[0\]\.target must be under \/dev/);
  });

  it('Sandbox.create({ join }): the holder enters the given namespaces (a pod: user, ipc and uts of another sandbox), its exec()s too', async () => {
    const infra = await Sandbox.create({ id: 'join-infra', stateDir, hostname: 'infra' });
    try {
      const join = { user: Namespace.ofProcess(infra.pid, 'user'), ipc: Namespace.ofProcess(infra.pid, 'ipc'), uts: Namespace.ofProcess(infra.pid, 'uts') };
      const member = await Sandbox.create({ id: 'join-member', stateDir, join });
      try {
        for (const t of ['user', 'ipc', 'uts']) expect(readlinkSync(`/proc/${member.pid}/ns/${t}`)).toBe(readlinkSync(`/proc/${infra.pid}/ns/${t}`));
        expect(readlinkSync(`/proc/${member.pid}/ns/mnt`)).not.toBe(readlinkSync(`/proc/${infra.pid}/ns/mnt`));
        expect((await member.exec('/bin/hostname', [])).stdout).toBe('infra\n');
      } finally {
        await member.destroy();
        for (const n of Object.values(join)) n.close();
      }
    } finally {
      await infra.destroy();
    }
  });

  it('a bridge subnet the host already uses is refused, naming the interface and the option', async () => {
    // (a veth pair: this kernel has no dummy links)
    const dummy = 'oci16dum0';
    execFileSync('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', 'oci16dum1']);
    try {
      execFileSync('ip', ['addr', 'add', '10.123.4.1/24', 'dev', dummy]);
      const e = await spawnIsolated('/bin/true', [], { network: { bridge: 'nsboxoci0', subnet: '10.123.0.0/16' } }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NsboxError);
      expect(e).toMatchObject({ code: 'EADDRINUSE' });
      expect((e as Error).message).toMatch(/subnet 10.123.0.0\/16 of the new bridge 'nsboxoci0' overlaps address 10.123.4.1\/24 on oci16dum0 of the host: choose another with options.network.subnet/);
      expect(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' })).not.toMatch(/nsboxoci0/);
    } finally {
      execFileSync('ip', ['link', 'del', dummy]);
    }
  });
});

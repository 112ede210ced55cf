// Issue 16 (items 4 and 8, and the default subnet): the planning side of sysctl, umask and
// oomScoreAdj, Seccomp.fromOCI, and the bridge subnet collision check. Pure: a fake HostFacts
// stands in for the host, rtnetlink's lists are given as data.
import { describe, it, expect } from 'vitest';
import { buildPlan, encodeOps, Op, type HostFacts } from '../../lib/plan/index.js';
import { Seccomp } from '../../lib/security/seccomp/index.js';
import { bridgeSubnetCollision, DEFAULT_SUBNET } from '../../lib/net/network.js';
import { parseCidr } from '../../lib/net/addr.js';

// every system dir exists as a directory, except those named missing
const host = (over: Partial<HostFacts> = {}): HostFacts => Object.assign({
  euid: 0, egid: 0, lastCap: 40, subordinate: () => null,
  cgroups: () => ({ version: 1 as const, v1: [['memory'], ['pids']] }),
  pathKind: (p: string) => ({ kind: ['/libx32', '/lib32'].includes(p) ? 'missing' as const : 'dir' as const }),
}, over);
const plan = (options: object, h = host()) => buildPlan({ file: '/bin/true', args: [], options }, h);

describe('sysctl', () => {
  it.each([
    ['a host-wide sysctl', { sysctl: { 'vm.swappiness': '10' } }, RangeError, /options.sysctl\['vm.swappiness'\] is not a namespaced sysctl/],
    ['kernel.* outside the ipc ones', { sysctl: { 'kernel.pid_max': '100' } }, RangeError, /options.sysctl\['kernel.pid_max'\] is not a namespaced sysctl/],
    ['net.* with the host network', { network: 'host', sysctl: { 'net.ipv4.ip_forward': '1' } }, RangeError, /options.sysctl\['net.ipv4.ip_forward'\] needs a network namespace of the sandbox's own/],
    ['ipc ones without an ipc namespace', { namespaces: { ipc: false }, sysctl: { 'kernel.shmmax': '1' } }, RangeError, /options.sysctl\['kernel.shmmax'\] needs a new ipc namespace/],
    ['kernel.hostname without a uts namespace', { namespaces: { uts: false }, sysctl: { 'kernel.hostname': 'x' } }, RangeError, /needs a new uts namespace/],
    ['kernel.hostname beside hostname', { hostname: 'a', sysctl: { 'kernel.hostname': 'b' } }, TypeError, /cannot set 'kernel.hostname' together with options.hostname/],
    ['a key with a path in it', { sysctl: { 'net.ipv4/../../x': '1' } }, RangeError, /has a key that is not a sysctl name/],
    ['a key with ..', { sysctl: { 'net..ipv4': '1' } }, RangeError, /has a key that is not a sysctl name/],
    ['a value that is not a string', { sysctl: { 'kernel.shmmax': 1 } }, TypeError, /options.sysctl\['kernel.shmmax'\] must be a string/],
    ['not an object', { sysctl: 'kernel.shmmax=1' }, TypeError, /options.sysctl must be an object/],
    ['without a mount namespace', { namespaces: { mount: false }, sysctl: { 'kernel.shmmax': '1' } }, TypeError, /options.sysctl needs a new mount namespace/],
  ])('refuses %s', (_w, o, Err, msg) => {
    expect(() => plan(o)).toThrow(Err);
    expect(() => plan(o)).toThrow(msg);
  });

  it('writes each value into the sandbox\'s /proc/sys after the network namespace is entered, before /proc/sys is made read-only', () => {
    const p = plan({ viewTemplate: false, sysctl: { 'kernel.shmmax': '4096', 'net.ipv4.ip_unprivileged_port_start': '0', 'fs.mqueue.msg_max': '20' } });
    const at = (path: string) => p.ops.findIndex((o) => o.op === Op.WriteFile && o.path === path);
    const shm = at('/newroot/proc/sys/kernel/shmmax');
    const port = at('/newroot/proc/sys/net/ipv4/ip_unprivileged_port_start');
    const mq = at('/newroot/proc/sys/fs/mqueue/msg_max');
    expect(shm).toBeGreaterThan(0);
    expect(p.ops[shm]).toMatchObject({ data: '4096', trusted: true });
    expect(port).toBe(shm + 1);
    expect(mq).toBe(shm + 2);
    const proc = p.ops.findIndex((o) => o.op === Op.Mount && o.fstype === 'proc');
    const sysfs = p.ops.findIndex((o) => o.netSysfs === true);
    const ro = p.ops.findIndex((o) => o.op === Op.Bind && o.readonly === true && o.path === '/newroot/proc/sys');
    expect(proc).toBeLessThan(shm);
    expect(sysfs).toBeLessThan(shm);
    expect(ro).toBeGreaterThan(mq);
    expect(p.netPremade).toBe(false);
  });

  it('does the same in a view template\'s copy, and leaves the shared default view as it was', () => {
    const h = host({ viewTemplates: () => true });
    const base = plan({}, h);
    const p = plan({ sysctl: { 'kernel.msgmax': '9000' } }, h);
    expect(p.template).toBeDefined();
    const c = p.template!.child;
    const w = c.findIndex((o) => o.op === Op.WriteFile && o.path === '/proc/sys/kernel/msgmax');
    expect(w).toBeGreaterThan(c.findIndex((o) => o.netSysfs === true));
    expect(c.findIndex((o) => o.op === Op.Bind && o.path === '/proc/sys')).toBeGreaterThan(w);
    expect(p.template!.build).toEqual(base.template!.build);
    // the default view (shared, encoded once) has no sysctl in it, also after this plan
    const again = plan({}, h);
    expect(again.template!.child.some((o) => o.path?.startsWith('/proc/sys/kernel'))).toBe(false);
    expect(again.ops.some((o) => o.path?.includes('/proc/sys/kernel'))).toBe(false);
    expect(encodeOps(again.ops).equals(encodeOps(base.ops))).toBe(true);
  });

  it('takes kernel.hostname and kernel.domainname as the uts names', () => {
    const p = plan({ sysctl: { 'kernel.hostname': 'h1', 'kernel.domainname': 'd1' } });
    expect(p.hostname).toBe('h1');
    expect(p.domainname).toBe('d1');
    expect(p.ops.some((o) => o.path?.includes('/proc/sys/kernel/hostname'))).toBe(false);
  });
});

describe('umask and oomScoreAdj', () => {
  it('are absent by default (inherited from the caller)', () => {
    const p = plan({});
    expect(p.umask).toBeUndefined();
    expect(p.oomScoreAdj).toBeUndefined();
  });
  it('are carried in the plan', () => {
    const p = plan({ umask: 0o077, oomScoreAdj: -5 });
    expect(p.umask).toBe(0o077);
    expect(p.oomScoreAdj).toBe(-5);
  });
  it.each([
    [{ umask: 0o1000 }, RangeError, /options.umask must be between 0 and 511/],
    [{ umask: '022' }, TypeError, /options.umask must be an integer/],
    [{ oomScoreAdj: 1001 }, RangeError, /options.oomScoreAdj must be between -1000 and 1000/],
    [{ oomScoreAdj: -1001 }, RangeError, /options.oomScoreAdj must be between -1000 and 1000/],
    [{ oomScoreAdj: 1.5 }, TypeError, /options.oomScoreAdj must be an integer/],
  ])('refuses %o', (o, Err, msg) => {
    expect(() => plan(o)).toThrow(Err);
    expect(() => plan(o)).toThrow(msg);
  });
});

describe('Seccomp.fromOCI', () => {
  const rule = (p: ReturnType<typeof Seccomp.fromOCI>, i: number) => p.rules[i]!;
  it('maps every OCI action but NOTIFY', () => {
    const acts = ['SCMP_ACT_KILL', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG'];
    const p = Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, syscalls: acts.map((a, i) => ({ names: [['getpid', 'getppid', 'gettid', 'getuid', 'mkdir', 'chdir', 'read', 'write'][i]], action: a })) });
    expect(p.defaultAction).toEqual({ errno: 38 });
    expect(p.rules.map((r) => r.action)).toEqual(['kill-thread', 'kill-thread', 'kill-process', 'trap', { errno: 1 }, { trace: 1 }, 'allow', 'log']);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Seccomp.compile(p).length).toBeGreaterThan(0);
  });
  it('refuses SCMP_ACT_NOTIFY and its listener, saying so', () => {
    expect(() => Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] }))
      .toThrow(/linux.seccomp.syscalls\[0\].action: SCMP_ACT_NOTIFY is not supported by nsbox/);
    expect(() => Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_NOTIFY' })).toThrow(/defaultAction: SCMP_ACT_NOTIFY is not supported/);
    expect(() => Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/x.sock' })).toThrow(/listenerPath: seccomp user notification/);
  });
  it.each([
    [{ defaultAction: 'SCMP_ACT_ALLOW', bogus: 1 }, TypeError, /linux.seccomp.bogus: not an OCI seccomp field/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', comment: 'x' }] }, TypeError, /syscalls\[0\].comment: not an OCI seccomp field/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ', extra: 1 }] }] }, TypeError, /args\[0\].extra: not an OCI seccomp field/],
    [{ defaultAction: 'SCMP_ACT_DENY' }, RangeError, /defaultAction: unknown action "SCMP_ACT_DENY"/],
    [{}, TypeError, /defaultAction: required/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] }, RangeError, /architectures\[0\]: unknown architecture "SCMP_ARCH_VAX"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG'] }, RangeError, /flags\[0\]: SECCOMP_FILTER_FLAG_LOG is not supported/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['nosuchcall'], action: 'SCMP_ACT_ERRNO' }] }, RangeError, /names\[0\]: unknown system call 'nosuchcall'/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_ABOUT' }] }] }, RangeError, /args\[0\].op: unknown operator "SCMP_CMP_ABOUT"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ALLOW', errnoRet: 1 }] }, RangeError, /syscalls\[0\].errnoRet: only for SCMP_ACT_ERRNO/],
    ['{not json', TypeError, /not JSON/],
  ])('refuses %o', (o, Err, msg) => {
    expect(() => Seccomp.fromOCI(o)).toThrow(Err);
    expect(() => Seccomp.fromOCI(o)).toThrow(msg);
  });
  it('reads args (MASKED_EQ as libseccomp: value is the mask), splits tests of one index, puts tested rules first', () => {
    const p = Seccomp.fromOCI(JSON.stringify({
      defaultAction: 'SCMP_ACT_ERRNO',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM'],
      flags: ['SECCOMP_FILTER_FLAG_TSYNC'],
      syscalls: [
        { names: ['read', 'write', 'cachestat_from_the_future'], action: 'SCMP_ACT_ALLOW' },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
        { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['kill'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }, { index: 1, value: 9, op: 'SCMP_CMP_EQ' }] },
      ],
    }));
    expect(p.architectures).toEqual(process.arch === 'x64' ? ['x86_64', 'i386', 'x32'] : expect.any(Array));
    expect(rule(p, 0)).toEqual({ syscalls: ['personality'], action: 'allow', args: [{ index: 0, op: 'eq', value: 0 }] });
    expect(rule(p, 1)).toEqual({ syscalls: ['personality'], action: 'allow', args: [{ index: 0, op: 'eq', value: 8 }] });
    expect(rule(p, 2)).toEqual({ syscalls: ['clone'], action: 'allow', args: [{ index: 0, op: 'masked-eq', mask: 2114060288, value: 0 }] });
    expect(rule(p, 3)).toEqual({ syscalls: ['kill'], action: { errno: 13 }, args: [{ index: 0, op: 'eq', value: 1 }, { index: 1, op: 'eq', value: 9 }] });
    // an unknown name in an allow rule is left out (denied by the default action)
    expect(rule(p, 4)).toEqual({ syscalls: ['read', 'write'], action: 'allow' });
  });
  it('an unknown name in a denying rule under a denying default is left out (podman\'s default profile has such); under an allowing default it is refused', () => {
    const p = Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, syscalls: [{ names: ['pciconfig_iobase', 'kexec_load'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] });
    expect(p.rules.map((r) => r.syscalls)).toEqual([['kexec_load']]);
    expect(() => Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_LOG', syscalls: [{ names: ['pciconfig_iobase'], action: 'SCMP_ACT_KILL' }] })).toThrow(/unknown system call 'pciconfig_iobase'/);
  });
  it('denies what the profile says, checked on the compiled program', () => {
    if (process.arch !== 'x64') return;
    const p = Seccomp.fromOCI({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] });
    const prog = Seccomp.compile(p);
    expect(Seccomp.describeVerdict(Seccomp.evaluate(prog, { nr: 83, arch: 0xc000003e }))).toBe('errno(1)');
    expect(Seccomp.describeVerdict(Seccomp.evaluate(prog, { nr: 0, arch: 0xc000003e }))).toBe('allow');
  });
});

describe('the default bridge subnet', () => {
  it('is not podman\'s (10.88.0.0/16), docker\'s (172.17.0.0/16) nor kubernetes\' or flannel\'s', () => {
    const d = parseCidr(DEFAULT_SUBNET, 'd');
    for (const other of ['10.88.0.0/16', '10.89.0.0/16', '172.16.0.0/12', '10.96.0.0/12', '10.244.0.0/16', '192.168.0.0/16', '10.42.0.0/15', '10.0.0.0/16', '10.77.0.0/16', '10.80.0.0/12']) {
      expect(bridgeSubnetCollision(d, [], [{ family: 4, dst: other, table: 254, scope: 0, protocol: 4, type: 1 }], [])).toBeUndefined();
    }
  });
  it('meets an address or route of the host it overlaps, naming the interface', () => {
    const sub = parseCidr('10.77.0.0/16', 's');
    const links = [{ ifindex: 7, name: 'podman0' }, { ifindex: 2, name: 'eth0' }];
    expect(bridgeSubnetCollision(sub, [{ ifindex: 7, family: 4, address: '10.77.3.1', prefixlen: 24, scope: 0 }], [], links))
      .toEqual({ what: 'address 10.77.3.1/24', link: 'podman0' });
    expect(bridgeSubnetCollision(sub, [], [{ family: 4, dst: '10.0.0.0/8', gateway: '192.0.2.1', ifindex: 2, table: 254, scope: 0, protocol: 4, type: 1 }], links))
      .toEqual({ what: 'route 10.0.0.0/8 via 192.0.2.1', link: 'eth0' });
    // a default route, other families and neighbours do not count
    expect(bridgeSubnetCollision(sub, [{ ifindex: 2, family: 4, address: '10.78.0.1', prefixlen: 16, scope: 0 }],
      [{ family: 4, dst: '0.0.0.0/0', gateway: '10.77.0.1', ifindex: 2, table: 254, scope: 0, protocol: 4, type: 1 }], links)).toBeUndefined();
  });
});

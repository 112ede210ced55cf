// rtnetlink through the addon against the kernel, checked with `ip -j` as the reference.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { VethPair } from '../../lib/net/veth.js';
import { Bridge } from '../../lib/net/bridge.js';
import { listLinks, addRoute, deleteRoute, listRoutes, setLink, deleteLink, getLink, addAddress, removeAddress, listAddresses } from '../../lib/net/link.js';
import { netNative } from '../../lib/net/native.js';
import { NsboxError } from '../../lib/errors.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

const pid = process.pid;
let n = 0;
const uniq = () => `${pid.toString(36)}${(n++).toString(36)}`;
const netnsMade: string[] = [];
const children: ChildProcess[] = [];

/** A test network namespace (test setup through `ip netns`, removed in afterAll). */
function makeNetns(): string {
  const name = `nsbox-test-${pid}-${n++}`;
  execFileSync('ip', ['netns', 'add', name]);
  netnsMade.push(name);
  return name;
}
const ipj = (args: string[], ns?: string): any[] => JSON.parse(execFileSync('ip', [...(ns ? ['-n', ns] : []), '-j', ...args], { encoding: 'utf8' }) || '[]');
const ourLinks = () => ipj(['link', 'show']).map((l) => l.ifname as string).filter((x) => x.includes(`nsbox`) && (x.includes(pid.toString(36)) || x.includes(String(pid))));

/** A process alone in a new network namespace (test setup through `unshare`). */
async function sleeper(): Promise<number> {
  const c = spawn('unshare', ['-n', 'sleep', '60'], { stdio: 'ignore' });
  children.push(c);
  // wait until it is in its own netns
  const me = execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' });
  for (let i = 0; i < 200; i++) {
    try { if (execFileSync('readlink', [`/proc/${c.pid}/ns/net`], { encoding: 'utf8' }) !== me) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 5));
  }
  return c.pid!; // unshare without -f execs the program in place
}

function cleanup(): void {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const ns of netnsMade.splice(0)) { try { execFileSync('ip', ['netns', 'del', ns]); } catch { /* gone */ } }
}
afterAll(cleanup);
const before = isRoot ? netState() : undefined;

describe.skipIf(skipReason(!isRoot, 'netlink tests need root'))('rtnetlink in the addon', () => {
  it('creates a veth pair, moves the peer into a netns renamed, addresses and brings it up', async () => {
    const ns = makeNetns();
    const v = VethPair.create({ mtu: 1400 });
    expect(v.host).toMatch(/^nsbox/);
    const host = ipj(['link', 'show', 'dev', v.host])[0];
    expect(host.mtu).toBe(1400);
    expect(host.link).toBe(v.peer);
    v.moveToNamespace({ path: `/run/netns/${ns}` }, { name: 'eth0' }).setAddress('10.77.0.2/24').setAddress('fd77::2/64');
    v.setAddress('10.77.0.1/24', 'host').up();
    const inside = ipj(['addr', 'show', 'dev', 'eth0'], ns)[0];
    expect(inside.mtu).toBe(1400);
    expect(inside.flags).toContain('UP');
    const addrs = inside.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
    expect(addrs).toEqual(expect.arrayContaining(['10.77.0.2/24', 'fd77::2/64']));
    expect(ipj(['link', 'show'], ns).some((l) => l.ifname === v.host)).toBe(false);
    // the route to the gateway works: a ping from inside goes over the veth
    addRoute({ gateway: '10.77.0.1' }, { path: `/run/netns/${ns}` });
    expect(ipj(['route', 'show', 'default'], ns)[0]).toMatchObject({ gateway: '10.77.0.1', dev: 'eth0' });
    expect(listRoutes({ path: `/run/netns/${ns}` }).some((r) => r.dst === 'default' && r.gateway === '10.77.0.1')).toBe(true);
    await v.destroy();
    expect(ipj(['link', 'show'], ns).some((l) => l.ifname === 'eth0')).toBe(false);
    expect(ourLinks()).not.toContain(v.host);
  });

  it('creates a bridge, attaches a veth, and lists links like ip does', async () => {
    const br = Bridge.create(`nsbox${uniq()}b`, { address: '10.78.0.1/24' });
    const v = VethPair.create();
    br.attach(v);
    const l = ipj(['link', 'show', 'dev', v.host])[0];
    expect(l.master).toBe(br.name);
    expect(l.flags).toContain('UP');
    const ours = listLinks().find((x) => x.name === br.name)!;
    expect(ours).toMatchObject({ kind: 'bridge', up: true, ifindex: ipj(['link', 'show', 'dev', br.name])[0].ifindex });
    expect(ipj(['addr', 'show', 'dev', br.name])[0].addr_info.map((a: any) => a.local)).toContain('10.78.0.1');
    expect(Bridge.open(br.name).ipv4).toMatchObject({ address: '10.78.0.1', prefix: 24 });
    setLink(v.host, { mac: '02:00:00:00:00:42', mtu: 1300 });
    expect(ipj(['link', 'show', 'dev', v.host])[0]).toMatchObject({ address: '02:00:00:00:00:42', mtu: 1300 });
    br.detach(v);
    expect(ipj(['link', 'show', 'dev', v.host])[0].master).toBeUndefined();
    await v.destroy();
    await br.destroy();
    expect(getLink(br.name)).toBeUndefined();
    expect(await deleteLink(br.name)).toBe(false);
  });

  it('turns kernel refusals into NsboxError with errno and the extended ack text; nothing half-made', async () => {
    const name = `nsbox${uniq()}c`;
    const br = Bridge.create(name);
    try {
      let err: unknown;
      try { Bridge.create(name, { address: '10.79.0.1/24' }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(NsboxError);
      expect(err).toMatchObject({ code: 'EEXIST', errno: -17, step: 'network', syscall: 'RTM_NEWLINK' });
      // mtu below the device minimum: the kernel explains in the extended ack
      try { netNative().netlinkLinkSet(br.ifindex, { mtu: 60 }); } catch (e) { err = e; }
      expect(err).toMatchObject({ code: 'EINVAL' });
      expect((err as NsboxError).detail).toMatch(/mtu/i);
      expect(() => VethPair.create({ host: 'nsbox-very-long-name' })).toThrow(RangeError);
      expect(() => Bridge.create(`nsbox${uniq()}d`, { address: '10.0.0.1' })).toThrow(/address must be in CIDR form/);
      expect(ourLinks().filter((x) => x !== name)).toEqual([]);
    } finally {
      await br.destroy();
    }
  });

  it('a kernel refusal names what the caller gave in err.path (the name, the CIDR, the route, the ifindex)', async () => {
    const ns = makeNetns();
    const at = { path: `/run/netns/${ns}` };
    const name = `nsbox${uniq()}p`;
    const nl = netNative();
    const refusal = (f: () => unknown): NsboxError => { try { f(); } catch (e) { return e as NsboxError; } throw new Error('no error'); };
    nl.netlinkLinkAdd({ kind: 'bridge', name }, at);
    expect(refusal(() => nl.netlinkLinkAdd({ kind: 'bridge', name }, at))).toMatchObject({ code: 'EEXIST', step: 'network', syscall: 'RTM_NEWLINK', path: name });
    expect(refusal(() => nl.netlinkLinkSet(name, { mtu: 60 }, at))).toMatchObject({ code: 'EINVAL', syscall: 'RTM_NEWLINK', path: name });
    nl.netlinkAddr(true, name, '10.82.0.1/24', at);
    expect(refusal(() => nl.netlinkAddr(true, name, '10.82.0.1/24', at))).toMatchObject({ code: 'EEXIST', syscall: 'RTM_NEWADDR', path: '10.82.0.1/24' });
    // the link is down: no route through it, nor a default one
    expect(refusal(() => nl.netlinkRoute(true, { dst: '198.51.100.0/24', gateway: '10.82.0.9' }, at))).toMatchObject({ step: 'network', syscall: 'RTM_NEWROUTE', path: '198.51.100.0/24' });
    expect(refusal(() => nl.netlinkRoute(true, { gateway: '10.82.0.9' }, at))).toMatchObject({ syscall: 'RTM_NEWROUTE', path: 'default' });
    nl.netlinkLinkDel(name, at);
    expect(refusal(() => nl.netlinkLinkDel(name, at))).toMatchObject({ code: 'ENODEV', syscall: 'RTM_DELLINK', path: name });
    // the hand-off of a link that is not there names its ifindex
    const target = await sleeper();
    expect(refusal(() => nl.netlinkHandoff({ ifindex: 0x7ffffff0, name: 'eth0', addresses: [] }, target)))
      .toMatchObject({ code: 'ENODEV', step: 'network', syscall: 'RTM_NEWLINK', path: `ifindex ${0x7ffffff0}` });
  });

  it("NetHandoff 'create' makes the pair with the peer born in the process netns; a failure leaves no pair", async () => {
    const target = await sleeper();
    const br = Bridge.create(`nsbox${uniq()}f`, { address: '10.80.1.1/24' });
    const host = `nsbox${uniq()}fh`;
    try {
      netNative().netlinkHandoff({ ifindex: 0, hostName: host, master: br.ifindex, name: 'eth0', mtu: 1400, addresses: ['10.80.1.2/24'], gateway4: '10.80.1.1' }, target);
      const h = ipj(['link', 'show', 'dev', host])[0];
      expect(h).toMatchObject({ master: br.name, mtu: 1400 });
      expect(h.flags).toContain('UP');
      const sh = (cmd: string[]) => JSON.parse(execFileSync('nsenter', ['-t', String(target), '-n', 'ip', '-j', ...cmd], { encoding: 'utf8' }));
      expect(sh(['addr', 'show', 'dev', 'eth0'])[0]).toMatchObject({ mtu: 1400, operstate: 'UP' });
      expect(sh(['route', 'show', 'default'])[0]).toMatchObject({ gateway: '10.80.1.1', dev: 'eth0' });
      await deleteLink(host);
      // a gateway off the link: the kernel refuses the route, and the new pair is removed
      let err: unknown;
      try { netNative().netlinkHandoff({ ifindex: 0, hostName: host, master: br.ifindex, name: 'eth1', addresses: ['10.80.1.3/24'], gateway4: '192.0.2.1' }, target); } catch (e) { err = e; }
      expect(err).toMatchObject({ step: 'network', syscall: 'RTM_NEWROUTE', path: '192.0.2.1' });
      expect(getLink(host)).toBeUndefined();
      expect(sh(['link', 'show']).some((l: any) => l.ifname === 'eth1')).toBe(false);
    } finally {
      await deleteLink(host);
      await br.destroy();
    }
  });

  it('NetHandoff moves a link into a process netns as eth0 with address and default route', async () => {
    const target = await sleeper();
    const br = Bridge.create(`nsbox${uniq()}e`, { address: ['10.80.0.1/24', 'fd80::1/64'] });
    const v = VethPair.create({ master: br.ifindex, up: true });
    try {
      netNative().netlinkHandoff({ ifindex: v.peerIndex, name: 'eth0', mtu: 1450, addresses: ['10.80.0.2/24', 'fd80::2/64'], gateway4: '10.80.0.1', gateway6: 'fd80::1' }, target);
      const sh = (cmd: string[]) => JSON.parse(execFileSync('nsenter', ['-t', String(target), '-n', 'ip', '-j', ...cmd], { encoding: 'utf8' }));
      const eth0 = sh(['addr', 'show', 'dev', 'eth0'])[0];
      expect(eth0.mtu).toBe(1450);
      expect(eth0.flags).toContain('UP');
      expect(eth0.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`)).toEqual(expect.arrayContaining(['10.80.0.2/24', 'fd80::2/64']));
      expect(sh(['route', 'show', 'default'])[0]).toMatchObject({ gateway: '10.80.0.1', dev: 'eth0' });
      expect(sh(['-6', 'route', 'show', 'default'])[0]).toMatchObject({ gateway: 'fd80::1', dev: 'eth0' });
      // bad pid: a clear error
      let err: unknown;
      try { netNative().netlinkHandoff({ ifindex: v.peerIndex, name: 'eth0', addresses: [] }, 0x3fffff); } catch (e) { err = e; }
      expect(err).toMatchObject({ code: 'ENOENT', step: 'network', syscall: 'open' });
    } finally {
      await v.destroy();
      await br.destroy();
    }
  });
  it('IPv6: addresses and routes (default via a gateway, a prefix via a link) are set, listed and removed', () => {
    const ns = makeNetns();
    const ref = { path: `/run/netns/${ns}` };
    netNative().netlinkLinkAdd({ kind: 'veth', name: 'v6a', up: true, peer: { name: 'v6b' } }, ref);
    setLink('v6b', { up: true }, ref);
    setLink('lo', { up: true }, ref);
    addAddress('v6a', 'fd81::1/64', ref);
    addAddress('v6a', '2001:db8:81::1/48', ref);
    const mine = () => listAddresses(ref).filter((a) => a.family === 6 && a.scope === 0).map((a) => `${a.address}/${a.prefixlen}`).sort();
    expect(mine()).toEqual(['2001:db8:81::1/48', 'fd81::1/64']);
    expect(ipj(['-6', 'addr', 'show', 'dev', 'v6a'], ns)[0].addr_info.filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`).sort())
      .toEqual(['2001:db8:81::1/48', 'fd81::1/64']);
    // nodad: the gateway is usable at once
    addRoute({ gateway: 'fd81::fe', link: 'v6a' }, ref);
    addRoute({ dst: 'fd99::/64', link: 'v6b' }, ref);
    const r6 = ipj(['-6', 'route', 'show'], ns);
    expect(r6.find((r) => r.dst === 'default')).toMatchObject({ gateway: 'fd81::fe', dev: 'v6a' });
    expect(r6.find((r) => r.dst === 'fd99::/64')).toMatchObject({ dev: 'v6b' });
    expect(listRoutes(ref).filter((r) => r.family === 6 && (r.dst === 'default' || r.dst === 'fd99::/64')).map((r) => [r.dst, r.gateway ?? null]).sort())
      .toEqual([['default', 'fd81::fe'], ['fd99::/64', null]]);
    deleteRoute({ dst: 'fd99::/64', link: 'v6b' }, ref);
    deleteRoute({ gateway: 'fd81::fe', link: 'v6a' }, ref);
    expect(ipj(['-6', 'route', 'show'], ns).some((r) => r.dst === 'default' || r.dst === 'fd99::/64')).toBe(false);
    removeAddress('v6a', 'fd81::1/64', ref);
    expect(mine()).toEqual(['2001:db8:81::1/48']);
    // a v6 gateway for a v4 destination, or a bad address: clear errors before the kernel
    expect(() => addRoute({ dst: '10.0.0.0/8', gateway: 'fd81::fe' }, ref)).toThrow(RangeError);
    expect(() => addAddress('v6a', 'fd81::zz/64', ref)).toThrow(RangeError);
  });

  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', () => {
    cleanup();
    expectNoNetLeftovers(before!);
  });
});

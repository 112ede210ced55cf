// VXLAN overlay between two network namespaces that play two hosts: a bridge on each side with
// the VXLAN link attached, overlay addresses on one subnet, TCP across; underlay on a veth.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { Vxlan } from '../../lib/net/vxlan.js';
import { setLink, addAddress, listLinks } from '../../lib/net/link.js';
import { netNative } from '../../lib/net/native.js';
import { isRoot, skipReason, sleep } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

const pid = process.pid;
const made: string[] = [];
const cleanup = () => { for (const ns of made.splice(0)) { try { execFileSync('ip', ['netns', 'del', ns]); } catch { /* gone */ } } };
afterAll(cleanup);
const before = isRoot ? netState() : undefined;

describe.skipIf(skipReason(!isRoot, 'vxlan tests need root'))('VXLAN overlay', () => {
  it('two "hosts" share one overlay subnet over VXLAN', async () => {
    const [A, B] = ['a', 'b'].map((x) => { const n = `nsbox-test-${pid}-vx${x}`; execFileSync('ip', ['netns', 'add', n]); made.push(n); return n; });
    const nsA = { path: `/run/netns/${A}` }, nsB = { path: `/run/netns/${B}` };
    // underlay: a veth between the two hosts
    netNative().netlinkLinkAdd({ kind: 'veth', name: 'under0', up: true, peer: { name: 'under0', netns: nsB } }, nsA);
    setLink('under0', { up: true }, nsB);
    addAddress('under0', '192.168.77.1/24', nsA);
    addAddress('under0', '192.168.77.2/24', nsB);
    for (const [ns, local, remote, ip] of [[nsA, '192.168.77.1', '192.168.77.2', '10.99.0.1/24'], [nsB, '192.168.77.2', '192.168.77.1', '10.99.0.2/24']] as const) {
      setLink('lo', { up: true }, ns);
      netNative().netlinkLinkAdd({ kind: 'bridge', name: 'nsboxov0', up: true }, ns);
      const vx = Vxlan.create('nsboxvx42', { id: 42, local, remote, dev: 'under0', mtu: 1450, netns: ns });
      setLink(vx.ifindex, { master: 'nsboxov0', up: true }, ns);
      addAddress('nsboxov0', ip, ns);
    }
    expect(listLinks(nsA).find((l) => l.name === 'nsboxvx42')).toMatchObject({ kind: 'vxlan', master: listLinks(nsA).find((l) => l.name === 'nsboxov0')!.ifindex });
    const details = JSON.parse(execFileSync('ip', ['-n', A, '-d', '-j', 'link', 'show', 'dev', 'nsboxvx42'], { encoding: 'utf8' }))[0];
    expect(details.linkinfo.info_data).toMatchObject({ id: 42, remote: '192.168.77.2', local: '192.168.77.1', port: 4789 });
    // TCP across the overlay (test processes started with `ip netns exec`)
    const server = spawn('ip', ['netns', 'exec', B, 'python3', '-c', `
import socket
s = socket.socket(); s.bind(('10.99.0.2', 7000)); s.listen(1)
c, a = s.accept(); c.sendall(b'over vxlan from ' + a[0].encode()); c.close()`], { stdio: 'ignore' });
    let out = '';
    for (let i = 0; i < 50 && !out; i++) {
      try {
        out = execFileSync('ip', ['netns', 'exec', A, 'python3', '-c', `
import socket
print(socket.create_connection(('10.99.0.2', 7000), timeout=2).recv(100).decode())`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      } catch { await sleep(50); }
    }
    server.kill();
    expect(out.trim()).toBe('over vxlan from 10.99.0.1');
    // the overlay really is encapsulated: the underlay carried UDP to 4789
    const stats = JSON.parse(execFileSync('ip', ['-n', A, '-s', '-j', 'link', 'show', 'dev', 'under0'], { encoding: 'utf8' }))[0];
    expect(stats.stats64.tx.packets).toBeGreaterThan(0);
  });

  it('rejects bad options before the kernel', () => {
    expect(() => Vxlan.create('nsboxvx', { id: 1 << 24 })).toThrow(/id must be an integer in 0..16777215/);
    expect(() => Vxlan.create('nsboxvx', { id: 1, remote: '10.0.0.1', group: '239.1.1.1' })).toThrow(TypeError);
    expect(() => Vxlan.create('nsboxvx', { id: 1, group: '239.1.1.1' })).toThrow(/dev is required/);
    expect(() => Vxlan.create('nsbox-vxlan-too-long', { id: 1 })).toThrow(RangeError);
  });

  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', () => {
    cleanup();
    expectNoNetLeftovers(before!);
  });
});

// The `network` option through spawnIsolated (plan.net -> NetHandoff before "go").
import { describe, it, expect, afterAll } from 'vitest';
import { Bridge } from '../../lib/net/bridge.js';
import { VethPair } from '../../lib/net/veth.js';
import { Namespace } from '../../lib/ns/namespace.js';
import { listIpam } from '../../lib/net/ipam.js';
import { networkSettled } from '../../lib/net/network.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

type Spawn = (file: string, args?: string[], o?: object) => PromiseLike<{ exitCode: number | null; stdout: string; stderr: string }> & { kill(s?: string): boolean; catch(f: () => void): Promise<unknown> };
let spawnIsolated: Spawn | undefined;
let reason = isRoot ? '' : 'network spawn tests need root';
try {
  ({ spawnIsolated } = (await import('../../lib/index.js')) as unknown as { spawnIsolated: Spawn });
} catch (e) {
  reason ||= `spawnIsolated does not load in this tree: ${(e as Error).message.split('\n')[0]}`;
}
const bridges: Bridge[] = [];
afterAll(async () => { for (const b of bridges) await b.destroy().catch(() => {}); });

const before = isRoot ? netState() : undefined;

describe.skipIf(skipReason(!!reason, reason))('network option of spawnIsolated', () => {
  it("default 'none': only lo, and the host's listening ports are unreachable", async () => {
    const { createServer } = await import('node:net');
    const { networkInterfaces } = await import('node:os');
    const hostIp = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';
    const srv = createServer((c) => c.end('x'));
    await new Promise<void>((r) => srv.listen(0, '0.0.0.0', () => r()));
    const port = (srv.address() as { port: number }).port;
    try {
      const r = await spawnIsolated!('/usr/bin/python3', ['-c', `
import socket, os
print(sorted(os.listdir('/sys/class/net')))
for ip in ('${hostIp}', '127.0.0.1'):
    try:
        socket.create_connection((ip, ${port}), timeout=1); print('connected')
    except OSError as e: print('failed', e.errno)
`]);
      expect(r.stdout).toMatch(/^\['lo'\]\nfailed \d+\nfailed \d+\n$/);
    } finally {
      srv.close();
    }
  });

  it('two sandboxes on one bridge exchange TCP data; eth0 is ready when the program starts', async () => {
    const br = Bridge.create(`nsbox${process.pid.toString(36)}s`, { address: '10.92.0.1/24' });
    bridges.push(br);
    const server = spawnIsolated!('/usr/bin/python3', ['-c', `
import socket
s = socket.socket(); s.bind(('0.0.0.0', 8000)); s.listen(4)
c, a = s.accept(); c.sendall(b'hi ' + a[0].encode()); c.close()`], { network: { bridge: br, address: '10.92.0.10' } });
    try {
      let r;
      for (let i = 0; i < 40; i++) {
        r = await spawnIsolated!('/usr/bin/python3', ['-c', `
import socket
print(socket.create_connection(('10.92.0.10', 8000), timeout=2).recv(100).decode())`], { network: { bridge: br } });
        if (r.exitCode === 0) break;
      }
      expect(r!.stdout.trim()).toMatch(/^hi 10\.92\.0\.\d+$/);
    } finally {
      server.kill('SIGKILL');
      await server.catch(() => {});
    }
    expect(listIpam().filter((e) => e.key === br.name)).toEqual([]);
  });
  it("/etc/resolv.conf and /etc/hosts follow the options; 'host' shares the host's network; { join } enters another sandbox's", async () => {
    const br = Bridge.create(`nsbox${process.pid.toString(36)}r`, { address: '10.93.0.1/24' });
    bridges.push(br);
    const r = await spawnIsolated!('/bin/sh', ['-c', 'cat /etc/resolv.conf /etc/hosts'], { network: { bridge: br, address: '10.93.0.7', dns: ['192.0.2.53', '2001:db8::53'], hostname: 'web' } });
    expect(r.stdout).toContain('nameserver 192.0.2.53\nnameserver 2001:db8::53\n');
    expect(r.stdout).toMatch(/^10\.93\.0\.7\tweb$/m);
    expect(r.stdout).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
    const { readlinkSync } = await import('node:fs');
    const h = await spawnIsolated!('/bin/sh', ['-c', 'readlink /proc/self/ns/net'], { network: 'host' });
    expect(h.stdout.trim()).toBe(readlinkSync('/proc/self/ns/net'));
    // a second sandbox joins the first one's network namespace and sees its eth0 address
    const first = spawnIsolated!('/bin/sleep', ['30'], { network: { bridge: br, address: '10.93.0.8' } });
    await new Promise<void>((res) => (first as unknown as { once(e: string, f: () => void): void }).once('spawn', res));
    const net = Namespace.ofProcess((first as unknown as { pid: number }).pid, 'net');
    try {
      const j = await spawnIsolated!('/bin/sh', ['-c', 'cat /proc/net/fib_trie'], { network: { join: net } });
      expect(j.stdout).toContain('10.93.0.8');
    } finally {
      net.close();
      first.kill('SIGKILL');
      await first.catch(() => {});
    }
  });

  it('a bridge name taken by another kind of link, or an address outside the subnet: clear errors, nothing made', async () => {
    const v = VethPair.create();
    try {
      await expect(spawnIsolated!('/bin/true', [], { network: { bridge: v.host } })).rejects.toThrow(/is a veth link, not a bridge/);
      const br = Bridge.create(`nsbox${process.pid.toString(36)}o`, { address: '10.94.0.1/24' });
      bridges.push(br);
      await expect(spawnIsolated!('/bin/true', [], { network: { bridge: br.name, address: '10.95.0.2' } })).rejects.toThrow(/outside the bridge subnet/);
      expect(() => spawnIsolated!('/bin/true', [], { network: { bridge: 'nsbox-0123456789' } })).toThrow(/options\.network\.bridge must be at most 15 bytes/);
      expect(listIpam().filter((e) => e.owner.pid === process.pid)).toEqual([]);
    } finally {
      await v.destroy();
    }
  });

  it('dual stack: a bridge with an IPv6 address gives eth0 an IPv6 address (same host part) and a v6 default route; TCP over v6 to the host', async () => {
    const br = Bridge.create(`nsbox${process.pid.toString(36)}6`, { address: ['10.96.0.1/24', 'fd96::1/64'] });
    bridges.push(br);
    const { createServer } = await import('node:net');
    const srv = createServer((c) => c.end('v6 ok'));
    await new Promise<void>((r) => srv.listen(0, 'fd96::1', () => r()));
    const port = (srv.address() as { port: number }).port;
    try {
      const r = await spawnIsolated!('/usr/bin/python3', ['-c', `
import socket
print([l.split()[0] for l in open('/proc/net/if_inet6') if l.split()[5] == 'eth0' and not l.startswith('fe80')])
print([l.split()[4] for l in open('/proc/net/ipv6_route') if l.startswith('00000000000000000000000000000000 00') and l.split()[9] == 'eth0'])
print(socket.create_connection(('fd96::1', ${port}), timeout=5).recv(10).decode())
print(open('/etc/hosts').read().splitlines()[-1])`], { network: { bridge: br, address: '10.96.0.23' } });
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n').slice(0, 4)).toEqual([
        "['fd960000000000000000000000000017']", "['fd960000000000000000000000000001']", 'v6 ok', 'fd96::17\tsandbox',
      ]);
    } finally {
      srv.close();
    }
  });

  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', async () => {
    for (const b of bridges.splice(0)) await b.destroy();
    await networkSettled();
    expectNoNetLeftovers(before!);
  });
});

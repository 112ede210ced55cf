// The `network` option through spawnIsolated (plan.net -> NetHandoff before "go").
import { describe, it, expect, afterAll } from 'vitest';
import { Bridge } from '../../lib/net/bridge.js';
import { listIpam } from '../../lib/net/ipam.js';
import { networkSettled } from '../../lib/net/network.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

type Spawn = (file: string, args?: string[], o?: object) => PromiseLike<{ exitCode: number | null; stdout: string; stderr: string }> & { kill(s?: string): boolean; catch(f: () => void): Promise<unknown> };
let spawnIsolated: Spawn | undefined;
let reason = isRoot ? '' : 'network spawn tests need root';
try {
  ({ spawnIsolated } = (await import('../../lib/index.js')) as unknown as { spawnIsolated: Spawn });
  const { enableNetworkForSpawn } = await import('../../lib/net/spawn.js');
  enableNetworkForSpawn();
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
  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', async () => {
    for (const b of bridges.splice(0)) await b.destroy();
    await networkSettled();
    expectNoNetLeftovers(before!);
  });
});

// Bridge networking end to end (hand-off exactly as on the spawn path, see net-sandbox-helper): sandboxes talk over a bridge, bridges are
// isolated, published ports answer on 127.0.0.1 and the bridge address, and nothing remains.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { runSandboxed } from './net-sandbox-helper.js';
import { Bridge } from '../../lib/net/bridge.js';
import { prepareSandboxNetwork, validateNetworkOption } from '../../lib/net/network.js';
import { nftListPublished, nftUnavailableReason } from '../../lib/net/nft.js';
import { listIpam } from '../../lib/net/ipam.js';
import { isRoot, skipReason, sleep } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

const pid = process.pid;
let n = 0;
const uniq = () => `${pid.toString(36)}${(n++).toString(36)}`;
const bridges: Bridge[] = [];
afterAll(async () => { for (const b of bridges) await b.destroy().catch(() => {}); });

/** Our links (names carry our pid in base 36 after `nsbox`). */
const ourLinks = () => (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>)
  .map((l) => l.ifname).filter((x) => x.startsWith(`nsbox${pid.toString(36).padStart(5, '0')}`) || x.startsWith(`nsbox${pid.toString(36)}`));

const SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8000)); s.listen(16)
while True:
    c, a = s.accept(); c.sendall(b'hello from ' + a[0].encode()); c.close()
`;
const client = (ip: string, port = 8000) => `
import socket, sys
s = socket.create_connection(('${ip}', ${port}), timeout=2)
print(s.recv(100).decode())
`;

/** Reads one greeting from host to ip:port, retrying while the server starts. */
async function hostGet(ip: string, port: number, tries = 100): Promise<string> {
  for (let i = 0; ; i++) {
    try {
      return await new Promise<string>((resolve, reject) => {
        const s = connect({ host: ip, port, timeout: 1000 });
        let data = '';
        s.on('data', (d) => (data += d));
        s.on('end', () => (data ? resolve(data) : reject(new Error('closed without data')))); // a proxy closes when the target is not up yet
        s.on('timeout', () => { s.destroy(); reject(new Error('timeout')); });
        s.on('error', reject);
      });
    } catch (e) {
      if (i >= tries) throw e;
      await sleep(50);
    }
  }
}

const before = isRoot ? netState() : undefined;

describe.skipIf(skipReason(!isRoot, 'bridge networking needs root'))('bridge networking', () => {
  it('two sandboxes on one bridge exchange TCP data; a sandbox on another bridge cannot reach them', async () => {
    const a = Bridge.create(`nsbox${uniq()}a`, { address: '10.81.0.1/24' });
    const b = Bridge.create(`nsbox${uniq()}b`, { address: '10.82.0.1/24' });
    bridges.push(a, b);
    const server = await runSandboxed(SERVER, { bridge: a, address: '10.81.0.10' });
    try {
      expect(await hostGet('10.81.0.10', 8000)).toBe('hello from 10.81.0.1');
      const c = await (await runSandboxed(client('10.81.0.10'), { bridge: a }, 'move')).result; // the plan.h contract: move
      expect(c.code).toBe(0);
      expect(c.stdout).toMatch(/^hello from 10\.81\.0\.\d+/);
      const d = await (await runSandboxed(client('10.81.0.10'), { bridge: b })).result;
      expect(d.code).not.toBe(0);
      expect(d.stderr).toMatch(/timed out|unreachable|refused/i);
      // eth0 inside: configured before the program started
      const e = await (await runSandboxed("print(open('/proc/net/route').read())", { bridge: a, address: '10.81.0.20' })).result;
      expect(e.stdout).toMatch(/^eth0\s+00000000\s+0100510A/m);
    } finally {
      server.kill();
      await server.result;
    }
    await sleep(50);
    expect(ourLinks().filter((l) => l !== a.name && l !== b.name)).toEqual([]);
    expect(listIpam().filter((e) => e.owner.pid === pid)).toEqual([]);
  });

  it.skipIf(skipReason(!!nftUnavailableReason(), `nftables: ${nftUnavailableReason()}`))(
    'a published port answers on 127.0.0.1 and the bridge address; the rule goes away after exit', async () => {
      const a = Bridge.create(`nsbox${uniq()}p`, { address: '10.83.0.1/24' });
      bridges.push(a);
      const port = 20000 + (pid % 20000);
      const server = await runSandboxed(SERVER, { bridge: a, publish: [{ host: port, container: 8000 }] });
      try {
        expect(await hostGet('127.0.0.1', port)).toMatch(/^hello from 10\.83\.0\.1$/);
        expect(await hostGet('10.83.0.1', port)).toMatch(/^hello from 10\.83\.0\.1$/);
        expect(nftListPublished().filter((p) => p.hostPort === port)).toHaveLength(1);
        // the same host port again: refused, nothing made
        const before = ourLinks().length;
        await expect(prepareSandboxNetwork({ bridge: a, publish: [{ host: port, container: 80 }] }, { id: 'dup' })).rejects.toMatchObject({ code: 'EADDRINUSE' });
        expect(ourLinks().length).toBe(before);
      } finally {
        server.kill();
        await server.result;
      }
      expect(nftListPublished().filter((p) => p.hostPort === port)).toEqual([]);
      await expect(hostGet('127.0.0.1', port, 0)).rejects.toThrow();
    });

  it('without nftables, a published TCP port is served by the userland proxy; it stops after exit', async () => {
    const a = Bridge.create(`nsbox${uniq()}q`, { address: '10.83.1.1/24' });
    bridges.push(a);
    const port = 21000 + (pid % 20000);
    process.env.NSBOX_NO_NFTABLES = '1';
    let server;
    try {
      server = await runSandboxed(SERVER, { bridge: a, publish: [{ host: port, container: 8000, hostIp: '127.0.0.1' }] });
    } finally {
      delete process.env.NSBOX_NO_NFTABLES;
    }
    try {
      expect(server.prepared.publishMode).toBe('proxy');
      expect(await hostGet('127.0.0.1', port)).toMatch(/^hello from 10\.83\.1\.1$/);
      expect(nftListPublished().filter((p) => p.hostPort === port)).toEqual([]);
    } finally {
      server.kill();
      await server.result;
    }
    await expect(hostGet('127.0.0.1', port, 0)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('bad input: clear errors, nothing created', async () => {
    const before = ourLinks();
    expect(() => validateNetworkOption({ bridge: 'nsbox-much-too-long' })).toThrow(/options.network.bridge must be at most 15 bytes/);
    expect(() => validateNetworkOption({ publish: [{ host: 70000, container: 80 }] })).toThrow(/publish\[0\]\.host must be in 1..65535/);
    expect(() => validateNetworkOption({ subnet: '10.90.0.0/24', address: '10.91.0.5' })).toThrow(/outside/);
    expect(() => validateNetworkOption('bridge')).toThrow(RangeError);
    expect(() => validateNetworkOption({ mtu: 20 })).toThrow(/options.network.mtu/);
    const a = Bridge.create(`nsbox${uniq()}x`, { address: '10.84.0.1/24' });
    bridges.push(a);
    await expect(prepareSandboxNetwork({ bridge: a.name, address: '10.85.0.9' }, { id: 'x' })).rejects.toThrow(/outside the bridge subnet/);
    // a host port something on the host already listens on
    const srv = (await import('node:net')).createServer().listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    const port = (srv.address() as { port: number }).port;
    await expect(prepareSandboxNetwork({ bridge: a, publish: [{ host: port, container: 80, hostIp: '127.0.0.1' }] }, { id: 'y' })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    srv.close();
    expect(ourLinks().filter((l) => l !== a.name)).toEqual(before);
    expect(listIpam().filter((e) => e.owner.pid === pid)).toEqual([]);
  });
  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', async () => {
    for (const b of bridges.splice(0)) await b.destroy();
    expectNoNetLeftovers(before!);
  });
});

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

  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', async () => {
    for (const b of bridges.splice(0)) await b.destroy();
    await networkSettled();
    expectNoNetLeftovers(before!);
  });
});

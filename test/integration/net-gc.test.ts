// Leftovers of a killed Node process are swept; IPAM is unique across processes; 100
// concurrent bridge sandboxes get unique names/addresses, reach the gateway and leave nothing.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:net';
import { build } from 'esbuild';
import { Bridge } from '../../lib/net/bridge.js';
import { sweepNetwork } from '../../lib/net/gc.js';
import { prepareSandboxNetwork, DEFAULT_BRIDGE } from '../../lib/net/network.js';
import { listIpam } from '../../lib/net/ipam.js';
import { nftListPublished, nftListBridges, nftUnavailableReason, ensureNftBase } from '../../lib/net/nft.js';
import { getLink } from '../../lib/net/link.js';
import { runSandboxed } from './net-sandbox-helper.js';
import { isRoot, skipReason, sleep } from '../helpers/host.js';
import { netState, expectNoNetLeftovers } from './net-leftovers.js';

const pid = process.pid;
// inside the package (git-ignored build-test/), so the addon loader finds the package root
const bundle = `${process.cwd()}/build-test/nsbox-net-test-${pid}.mjs`;
const bridges: Bridge[] = [];
let n = 0;
const uniq = () => `${pid.toString(36)}${(n++).toString(36)}`;

beforeAll(async () => {
  if (!isRoot) return;
  // network.ts and gc.ts only: the child needs no spawn code
  await build({ stdin: { contents: "export * from './lib/net/network.js'; export * from './lib/net/gc.js';", resolveDir: process.cwd(), loader: 'ts' }, bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
});
afterAll(async () => {
  for (const b of bridges) await b.destroy().catch(() => {});
  rmSync(bundle, { force: true });
});

/** Runs `body` in a child Node process with lib/net imported as `net`; resolves its first stdout line. */
function child(body: string): { proc: ReturnType<typeof cpSpawn>; line: Promise<string> } {
  const script = `const net = await import(${JSON.stringify(bundle)});\n${body}`;
  const proc = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  const line = new Promise<string>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c) => { buf += c; if (buf.includes('\n')) resolve(buf.split('\n')[0]!); });
    proc.on('exit', (code) => reject(new Error(`child exited ${code} before answering`)));
  });
  return { proc, line };
}

const before = isRoot ? netState() : undefined;

describe.skipIf(skipReason(!isRoot, 'network sweep tests need root'))('network leftovers and IPAM', () => {
  it('a Node process killed mid-run leaves a veth, an IPAM entry and a DNAT entry; sweepNetwork removes them', async () => {
    const br = Bridge.create(`nsbox${uniq()}g`, { address: '10.86.0.1/24' });
    bridges.push(br);
    const port = 30000 + (pid % 20000);
    const withNft = !nftUnavailableReason();
    const c = child(`
      const p = await net.prepareSandboxNetwork({ bridge: ${JSON.stringify(br.name)}, publish: ${withNft ? `[{ host: ${port}, container: 80 }]` : '[]'} }, { id: 'killed' });
      console.log(JSON.stringify({ link: p.hostLink, address: p.address }));
      setInterval(() => {}, 1000);`);
    const info = JSON.parse(await c.line) as { link: string; address: string };
    const cpid = c.proc.pid!;
    c.proc.kill('SIGKILL');
    await new Promise((r) => c.proc.once('exit', r));
    expect(getLink(info.link)).toBeDefined();
    expect(listIpam().some((e) => e.owner.pid === cpid && e.address === info.address)).toBe(true);
    if (withNft) expect(nftListPublished().some((p) => p.hostPort === port)).toBe(true);
    else console.warn(`SKIPPED (part): nftables leftovers: ${nftUnavailableReason()}`);

    const report = await sweepNetwork();
    expect(report.links).toContain(info.link);
    expect(report.ipam).toContain(`${br.name}:${info.address}`);
    expect(getLink(info.link)).toBeUndefined();
    expect(listIpam().some((e) => e.owner.pid === cpid)).toBe(false);
    expect(nftListPublished().some((p) => p.hostPort === port)).toBe(false);
    // the bridge itself is alive and owned by this test: kept
    expect(getLink(br.name)).toBeDefined();
    await br.destroy();
    expect(nftListBridges().some((b) => b.bridge === br.name)).toBe(false);
  });

  it('without a bridge option the default bridge nsbox0 (10.66.0.0/16) is made on demand and kept; the sweep removes it when idle', async () => {
    const existed = getLink(DEFAULT_BRIDGE) !== undefined;
    const p = await prepareSandboxNetwork({}, { id: 'default' });
    try {
      expect(p.address).toMatch(/^10\.66\.\d+\.\d+$/);
      expect(p.handoff[0]).toMatchObject({ name: 'eth0', gateway4: '10.66.0.1', addresses: [`${p.address}/16`] });
      expect(getLink(DEFAULT_BRIDGE)).toMatchObject({ kind: 'bridge', up: true });
      expect(getLink(p.hostLink!)!.master).toBe(getLink(DEFAULT_BRIDGE)!.ifindex);
    } finally {
      await p.release();
    }
    expect(getLink(p.hostLink!)).toBeUndefined();
    expect(getLink(DEFAULT_BRIDGE)).toBeDefined(); // kept between sandboxes, like docker0
    if (existed) {
      console.warn(`SKIPPED (part): ${DEFAULT_BRIDGE} existed before this test; not sweeping it`);
      return;
    }
    const report = await sweepNetwork({ idleDefaultBridge: true });
    expect(report.links).toContain(DEFAULT_BRIDGE);
    expect(getLink(DEFAULT_BRIDGE)).toBeUndefined();
    expect(nftListBridges().some((b) => b.bridge === DEFAULT_BRIDGE)).toBe(false);
  });

  it('IPAM hands out unique addresses to 4 processes allocating at once', async () => {
    const br = Bridge.create(`nsbox${uniq()}i`, { address: '10.87.0.1/24' });
    bridges.push(br);
    const kids2 = [0, 1, 2, 3].map(() => child(`
      const ps = await Promise.all(Array.from({ length: 10 }, (_, i) => net.prepareSandboxNetwork({ bridge: ${JSON.stringify(br.name)} }, { id: 'c' + i })));
      console.log(JSON.stringify(ps.map((p) => [p.address, p.hostLink])));
      await Promise.all(ps.map((p) => p.release()));
      process.exit(0);`));
    const all = (await Promise.all(kids2.map((k) => k.line))).flatMap((l) => JSON.parse(l) as string[][]);
    expect(all).toHaveLength(40);
    expect(new Set(all.map((a) => a[0])).size).toBe(40);
    expect(new Set(all.map((a) => a[1])).size).toBe(40);
    for (const k of kids2) await new Promise((r) => (k.proc.exitCode !== null ? r(0) : k.proc.once('exit', r)));
    expect(listIpam().filter((e) => e.key === br.name)).toEqual([]);
  });

  it('100 concurrent bridge sandboxes get unique names and addresses, all reach the gateway, and nothing remains', async () => {
    const br = Bridge.create(`nsbox${uniq()}c`, { address: '10.89.1.1/24' });
    bridges.push(br);
    const server: Server = createServer((s) => s.end('gw'));
    await new Promise<void>((r) => server.listen(9999, '10.89.1.1', () => r()));
    try {
      const script = `
import socket
s = socket.create_connection(('10.89.1.1', 9999), timeout=60)
print(s.recv(10).decode(), open('/proc/net/fib_trie').read().count('eth0') >= 0)
`;
      const boxes = await Promise.all(Array.from({ length: 100 }, () => runSandboxed(script, { bridge: br })));
      const addrs = boxes.map((b) => b.prepared.address);
      const links = boxes.map((b) => b.prepared.hostLink);
      expect(new Set(addrs).size).toBe(100);
      expect(new Set(links).size).toBe(100);
      const results = await Promise.all(boxes.map((b) => b.result));
      expect(results.filter((r) => r.code !== 0).map((r) => r.stderr)).toEqual([]);
      expect(results.every((r) => r.stdout.startsWith('gw'))).toBe(true);
      await sleep(100);
      const left = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname);
      expect(left.filter((l) => links.includes(l))).toEqual([]);
      expect(listIpam().filter((e) => e.key === br.name)).toEqual([]);
    } finally {
      server.close();
    }
  });
  it('the nsbox table goes with the last bridge using it; sweepNetwork (nsbox gc) deletes an unused one', async () => {
    if (nftUnavailableReason()) { console.warn(`SKIPPED (part): nftables: ${nftUnavailableReason()}`); return; }
    for (const b of bridges.splice(0)) await b.destroy(); // the earlier tests' bridges
    if (netState().tables.length) { console.warn('SKIPPED (part): table ip nsbox is in use by another nsbox user on this host'); return; }
    const br = Bridge.create(`nsbox${uniq()}t`, { address: '10.85.0.1/24' });
    const p = await prepareSandboxNetwork({ bridge: br }, { id: 'table' });
    expect(netState().tables).toEqual(['ip nsbox']);
    await p.release();
    expect(netState().tables).toEqual(['ip nsbox']); // the bridge is still registered
    await br.destroy();
    expect(netState().tables).toEqual([]);
    // a table left empty (e.g. by an older nsbox): the sweep removes it, and reports it
    ensureNftBase();
    expect(netState().tables).toEqual(['ip nsbox']);
    // and a user-mode start-up directory of a process that died mid start-up
    const dead = cpSpawn('true');
    await new Promise((r) => dead.once('exit', r));
    const dir = `${tmpdir()}/nsbox-usernet-${dead.pid}-test`;
    mkdirSync(dir);
    const report = await sweepNetwork();
    expect(report.tables).toEqual(['ip nsbox']);
    expect(report.files).toEqual([dir]);
    expect(existsSync(dir)).toBe(false);
    expect(netState().tables).toEqual([]);
  });

  it('leaves no nsbox nftables table, link, netns, IPAM entry or state file behind', async () => {
    for (const b of bridges.splice(0)) await b.destroy();
    expectNoNetLeftovers(before!);
  });
});

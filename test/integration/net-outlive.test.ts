// A bridge sandbox that outlives the Node process that made it (a keepAlive Sandbox, a created
// sandbox, a spawn with parentDeathSignal: false): once it runs, its IPAM lease, its host veth
// and its published-port (DNAT) entries count as the sandbox's (its pid 1 and start time), not
// its creator's. After the creator has exited, another allocation does not take its address
// and `nsbox gc` leaves all three; once the sandbox is gone, gc removes them.
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { Sandbox, gc, spawnIsolated } from '../../lib/index.js';
import { Bridge } from '../../lib/net/bridge.js';
import { prepareSandboxNetwork, networkSettled } from '../../lib/net/network.js';
import { listIpam } from '../../lib/net/ipam.js';
import { nftListPublished, nftUnavailableReason } from '../../lib/net/nft.js';
import { getLink } from '../../lib/net/link.js';
import { processStart } from '../../lib/owner.js';
import { isRoot, skipReason, alive, sleep } from '../helpers/host.js';

const base = `/run/nsbox-test-outlive-${process.pid}`;
const stateDir = `${base}/sandboxes`;
const dist = new URL('../../dist/index.js', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'bridge networking needs root (veths, a bridge and NAT)')
  || skipReason(!existsSync(dist) || !readFileSync(dist, 'utf8').includes('spawnCreated'), 'sandboxes across processes: dist/ is missing or old (npm run build:ts)');

const bridges: Bridge[] = [];
const sandboxes: number[] = [];
afterAll(async () => {
  // a failed test's sandbox (and what it holds) does not outlive the test
  for (const p of sandboxes) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  if (sandboxes.length) { await sleep(200); await gc(); }
  for (const b of bridges) await b.destroy().catch(() => {});
  rmSync(base, { recursive: true, force: true });
});

/** Runs `body` in a fresh Node process (nsbox from dist/ as `nsbox`); its stdout once it has exited. */
function inAnotherProcess(body: string): { out: string; pid: number } {
  const script = `const nsbox = await import(${JSON.stringify(dist)});\n${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`the other process failed: ${r.stderr}`);
  return { out: r.stdout.trim(), pid: r.pid! };
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(20);
  }
}

let n = 0;
const kinds = [
  {
    name: 'a keepAlive Sandbox',
    make: (net: string) => `const b = await nsbox.Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'o${n}', keepAlive: true, network: ${net} }); console.log(b.pid);`,
    end: async (pid: number) => { void pid; await (await Sandbox.attach(`o${n}`, { stateDir })).destroy(); },
    destroys: true,
  },
  {
    name: 'a created sandbox (program, keepAlive)',
    make: (net: string) => `const b = await nsbox.Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'o${n}', keepAlive: true, network: ${net}, program: { file: 'sleep', args: ['60'] } }); console.log(b.pid);`,
    end: async (pid: number) => { void pid; await (await Sandbox.attach(`o${n}`, { stateDir })).destroy(); },
    destroys: true,
  },
  {
    name: 'a spawn with parentDeathSignal: false',
    make: (net: string) => `const p = nsbox.spawnIsolated('sleep', ['60'], { network: ${net}, parentDeathSignal: false, stdio: 'ignore', buffer: false }); p.catch(() => {}); await new Promise((r) => p.once('spawn', r)); console.log(p.pid); p.unref();`,
    end: async (pid: number) => { process.kill(pid, 'SIGKILL'); await waitFor(() => !alive(pid)); },
    destroys: false,
  },
];

describe.skipIf(skip)('a bridge sandbox that outlives its creator', () => {
  for (const kind of kinds) {
    it(`${kind.name}, the creator's first spawn: its lease, veth and DNAT entries are the sandbox's until it ends`, async () => {
      n++;
      const br = Bridge.create(`nsbox${process.pid.toString(36)}${n}o`, { address: `10.87.${n}.1/24` });
      bridges.push(br);
      const withNft = !nftUnavailableReason();
      const port = 20000 + ((process.pid * 3 + n) % 20000);
      const net = JSON.stringify({ bridge: br.name, ...(withNft ? { publish: [{ host: port, container: 80 }] } : {}) });
      const { out, pid: creator } = inAnotherProcess(kind.make(net));
      const pid = Number(out);
      sandboxes.push(pid);
      expect(pid).toBeGreaterThan(1);
      expect(alive(creator)).toBe(false);
      expect(alive(pid)).toBe(true);
      const leases = () => listIpam().filter((e) => e.key === br.name);
      expect(leases()).toHaveLength(1);
      const lease = leases()[0]!;
      const link = lease.owner.link!;
      expect(link).toMatch(/^nsbox/);
      expect(getLink(link)).toBeDefined();
      const published = () => nftListPublished().filter((p) => p.hostPort === port);
      if (withNft) expect(published()).toHaveLength(1);
      else console.warn(`SKIPPED (part): published ports: ${nftUnavailableReason()}`);

      // another allocation on the bridge: the running sandbox's address is not taken
      const taken = await prepareSandboxNetwork({ bridge: br.name, address: lease.address }, { id: 'other' }).catch((e: unknown) => e);
      if (!(taken instanceof Error)) await (taken as { release(): Promise<void> }).release();
      expect(taken).toMatchObject({ code: 'EADDRINUSE' });
      const other = await prepareSandboxNetwork({ bridge: br.name }, { id: 'other' });
      expect(other.address).not.toBe(lease.address);
      expect(leases().map((e) => e.address).sort()).toEqual([lease.address, other.address].sort());
      await other.release();

      // gc leaves everything of the live sandbox
      await gc();
      expect(getLink(link)).toBeDefined();
      expect(leases()).toEqual([lease]);
      if (withNft) expect(published()).toHaveLength(1);
      // all three name the sandbox's pid 1 (with its start time), not the creator that is gone
      expect(lease.owner).toMatchObject({ pid, start: processStart(pid) });
      if (withNft) expect(published()[0]!.comment).toMatch(new RegExp(`^nsbox:${pid}:${processStart(pid)}:`));

      // the sandbox ends: Sandbox.destroy() (from this process, not the creator) removes its
      // lease, veth and DNAT entries; what a plain kill leaves, gc removes
      await kind.end(pid);
      if (kind.destroys) {
        expect(leases()).toEqual([]);
        if (withNft) expect(published()).toEqual([]);
        await waitFor(() => getLink(link) === undefined);
      }
      await gc();
      await waitFor(() => getLink(link) === undefined);
      expect(leases()).toEqual([]);
      if (withNft) expect(published()).toEqual([]);
      await br.destroy();
    });
  }

  it('a creator that stays frees the handed-over lease and DNAT entries itself when the sandbox ends', async () => {
    n++;
    const br = Bridge.create(`nsbox${process.pid.toString(36)}${n}o`, { address: `10.87.${n}.1/24` });
    bridges.push(br);
    const withNft = !nftUnavailableReason();
    const port = 20000 + ((process.pid * 3 + n) % 20000);
    const p = spawnIsolated('sh', ['-c', 'read x'], { network: { bridge: br.name, ...(withNft ? { publish: [{ host: port, container: 80 }] } : {}) }, parentDeathSignal: false, stdio: ['pipe', 'ignore', 'ignore'] });
    await new Promise((r) => p.once('spawn', r));
    sandboxes.push(p.pid!);
    const leases = () => listIpam().filter((e) => e.key === br.name);
    expect(leases().map((e) => e.owner.pid)).toEqual([p.pid]);
    p.stdin!.end('\n');
    await p;
    expect(leases()).toEqual([]);
    if (withNft) expect(nftListPublished().filter((q) => q.hostPort === port)).toEqual([]);
    await networkSettled();
    await br.destroy();
  });
});

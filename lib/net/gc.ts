// The sweep (`nsbox gc`): removes what nsbox processes that died without cleaning up left in
// the network layer. Only things that carry nsbox's marks are touched: links named by
// ownedLinkName (nsbox + owner pid), IPAM entries and nftables elements naming their owner,
// and bridges registered in the nsbox table.
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { netNative } from './native.js';
import { parseOwnedName } from './link.js';
import { ipamKeys, ownerAlive, processStart, sweepIpam, sweepIpamTmp, listIpam, dropIpamKey, removeEmptyStateDirs } from './ipam.js';
import { NFT_TABLE, nftDropTableIfUnused, nftListBridges, nftListPublished, nftRemoveBridge, nftUnavailableReason, nftUnpublish } from './nft.js';
import { DEFAULT_BRIDGE } from './network.js';

/** What {@link sweepNetwork} removed. */
export interface NetworkSweepReport {
  /** Links deleted (host veth ends of dead owners, idle bridges when asked). */
  links: string[];
  /** IPAM entries freed, as `bridge:address`. */
  ipam: string[];
  /** nftables DNAT entries removed, as `hostIp:port/proto`. */
  published: string[];
  /** Bridges forgotten in nftables/IPAM because their link is gone (or was removed). */
  bridges: string[];
  /** nftables tables deleted because nothing used them any more (`ip nsbox`). */
  tables: string[];
  /** Temporary directories of user-mode helper start-ups whose process died meanwhile. */
  files: string[];
}

/** Options of {@link sweepNetwork}. */
export interface NetworkSweepOptions {
  /**
   * Also delete nsbox's default bridge (`nsbox0`) when no live sandbox holds an address on
   * it. Default false: like docker0 it is kept between runs.
   */
  idleDefaultBridge?: boolean;
  /**
   * Only what these processes left (their pids; each must be gone). Bridges, whose records
   * name no owner, are then left alone. Default: every dead owner's.
   */
  owners?: number[];
}

/** Parses `nsbox:<pid>:<start>:<id>`; undefined for other comments. */
function ownerOfComment(c: string | undefined): { pid: number; start: number } | undefined {
  const m = /^nsbox:(\d+):(\d+):/.exec(c ?? '');
  return m ? { pid: Number(m[1]), start: Number(m[2]) } : undefined;
}

/**
 * Removes leftovers of dead nsbox processes: IPAM entries, their veths, DNAT entries, and the
 * nftables/IPAM records of bridges that no longer exist. Safe to run at any time, alongside
 * live nsbox processes (their entries are kept).
 */
export async function sweepNetwork(opts: NetworkSweepOptions = {}): Promise<NetworkSweepReport> {
  const n = netNative();
  const report: NetworkSweepReport = { links: [], ipam: [], published: [], bridges: [], tables: [], files: [] };
  const only = opts.owners === undefined ? undefined : new Set(opts.owners);
  const mine = (pid: number) => !only || only.has(pid);
  // 1. IPAM entries of dead owners, and their links
  const linkNames = new Set<string>();
  for (const e of sweepIpam(only)) {
    report.ipam.push(`${e.key}:${e.address}`);
    if (e.owner.link) linkNames.add(e.owner.link);
  }
  // 2. links named by a dead pid (the name carries the pid; a reused pid only delays removal),
  // except the veth of a sandbox that outlives its creator: the lease handed over to the
  // sandbox's pid 1 names it (PreparedNetwork.handOver), and it stays while that process runs
  const links = n.netlinkLinks();
  const leased = new Set(listIpam().filter((e) => e.owner.link && ownerAlive(e.owner)).map((e) => e.owner.link!));
  for (const l of links) {
    const pid = parseOwnedName(l.name);
    if (pid !== undefined && mine(pid) && processStart(pid) === undefined && !leased.has(l.name)) linkNames.add(l.name);
  }
  for (const name of linkNames) {
    if (!links.some((l) => l.name === name)) continue;
    if (await n.netlinkLinkDelAsync(name, undefined, true)) report.links.push(name);
  }
  // 3. nftables: DNAT entries of dead owners; bridges whose link is gone
  if (!nftUnavailableReason()) {
    const dead = nftListPublished().filter((p) => {
      const o = ownerOfComment(p.comment);
      return o !== undefined && mine(o.pid) && !ownerAlive(o);
    });
    nftUnpublish(dead);
    report.published.push(...dead.map((p) => `${p.hostIp ?? '0.0.0.0'}:${p.hostPort}/${p.protocol}`));
  }
  if (only) return sweepTmp(report, mine);
  const live = new Set(n.netlinkLinks().map((l) => l.name));
  const busy = new Set(listIpam().filter((e) => ownerAlive(e.owner)).map((e) => e.key));
  if (opts.idleDefaultBridge && live.has(DEFAULT_BRIDGE) && !busy.has(DEFAULT_BRIDGE)) {
    if (await n.netlinkLinkDelAsync(DEFAULT_BRIDGE, undefined, true)) report.links.push(DEFAULT_BRIDGE);
    live.delete(DEFAULT_BRIDGE);
  }
  const known = new Set<string>([...ipamKeys(), ...(nftUnavailableReason() ? [] : nftListBridges().map((b) => b.bridge))]);
  for (const b of known) {
    if (live.has(b) || busy.has(b)) continue;
    if (!nftUnavailableReason()) nftRemoveBridge(b);
    dropIpamKey(b);
    report.bridges.push(b);
  }
  // the table goes once no bridge and no published port uses it
  if (!nftUnavailableReason() && nftDropTableIfUnused()) report.tables.push(`ip ${NFT_TABLE}`);
  removeEmptyStateDirs();
  return sweepTmp(report, mine);
}

/**
 * Removes the network a sandbox that outlived its creator was handed (its lease, DNAT entries
 * and veth name `pid`, started at `start`: PreparedNetwork.handOver) once that process is
 * gone; for `Sandbox.destroy()` from another process than the creator. Does nothing when no
 * lease names it (or this process cannot read the leases). Never throws.
 */
export async function sweepHandedNetwork(pid: number, start: number): Promise<void> {
  try {
    if (!listIpam().some((e) => e.owner.pid === pid && e.owner.start === start && !ownerAlive(e.owner))) return;
    await sweepNetwork({ owners: [pid] });
  } catch { /* gc finishes the job */ }
}

/**
 * 4. IPAM state files half-written by a dead owner; a user-mode helper's start-up directory (pid file / API socket) of a process that died
 * during the start-up (it is removed as soon as the helper is ready)
 */
function sweepTmp(report: NetworkSweepReport, mine: (pid: number) => boolean): NetworkSweepReport {
  // an IPAM state file half-written by a process killed between its write and its rename
  report.files.push(...sweepIpamTmp(mine));
  try {
    for (const name of readdirSync(tmpdir())) {
      const m = /^nsbox-usernet-(\d+)-/.exec(name);
      if (!m || !mine(Number(m[1])) || processStart(Number(m[1])) !== undefined) continue;
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
      report.files.push(join(tmpdir(), name));
    }
  } catch { /* no tmpdir listing */ }
  return report;
}

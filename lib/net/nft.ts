// NAT and published ports with nftables, through libnftables (loaded by the addon with
// dlopen at run time) and its command API: never the `nft` CLI.
//
// One table `ip nsbox`, made on first use, shared by every nsbox process and deleted when the
// last bridge and published port in it are gone (under a lock file beside the IPAM state). Per-sandbox and
// per-bridge state lives in sets and maps, so adding or removing a sandbox is one atomic
// element operation and never rewrites rules:
//   masq     bridge subnets       -> masquerade outbound traffic
//   bridges  bridge names         -> cross-bridge forwarding is dropped
//   same     bridge . bridge      -> traffic staying on one bridge is allowed
//   pub      hostIp . proto . port -> container ip . port   (DNAT, specific host address)
//   puball   proto . port           -> container ip . port   (DNAT, any local address)
// Element comments carry `nsbox:<pid>:<start>:<id>` so a sweep can remove a dead owner's.
import type { NsboxError } from '../errors.js';
import { netError } from './addr.js';
import { dirname, join } from 'node:path';
import { netNative } from './native.js';
import { unlinkSync } from 'node:fs';
import { ipamDir, removeEmptyStateDirs, withFileLock } from './ipam.js';

/** The nftables table nsbox uses (family ip). */
export const NFT_TABLE = 'nsbox';

const BASE = `
add table ip nsbox
add set ip nsbox masq { type ipv4_addr; flags interval; }
add set ip nsbox bridges { type ifname; }
add set ip nsbox same { type ifname . ifname; }
add map ip nsbox pub { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add map ip nsbox puball { type inet_proto . inet_service : ipv4_addr . inet_service; }
add chain ip nsbox prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip nsbox output { type nat hook output priority -100; policy accept; }
add chain ip nsbox postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip nsbox forward { type filter hook forward priority filter; policy accept; }
flush chain ip nsbox prerouting
flush chain ip nsbox output
flush chain ip nsbox postrouting
flush chain ip nsbox forward
add rule ip nsbox prerouting fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub
add rule ip nsbox prerouting fib daddr type local dnat ip to meta l4proto . th dport map @puball
add rule ip nsbox output fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub
add rule ip nsbox output fib daddr type local dnat ip to meta l4proto . th dport map @puball
add rule ip nsbox postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade
add rule ip nsbox postrouting ct status dnat oifname @bridges ip saddr @masq masquerade
add rule ip nsbox postrouting ip saddr @masq oifname != @bridges masquerade
add rule ip nsbox forward ct status dnat accept
add rule ip nsbox forward iifname . oifname @same accept
add rule ip nsbox forward iifname @bridges oifname @bridges drop
`;

/** Why nftables cannot be used here, or undefined when it can. */
export function nftUnavailableReason(): string | undefined {
  if (process.env.NSBOX_NO_NFTABLES === '1') return 'disabled by NSBOX_NO_NFTABLES=1';
  return netNative().nftAvailable() ?? undefined;
}

/** Runs one atomic nftables batch (command syntax). Throws NsboxError (step 'nftables'). */
export function nftRun(commands: string, opts?: { json?: boolean; handles?: boolean }): string {
  return netNative().nftRun(commands, opts);
}

/** The lock that orders table creation, element changes and table removal across processes. */
const nftLockPath = () => join(dirname(ipamDir()), 'nftables.lock');
function withNftLock<T>(fn: () => T): T {
  return withFileLock(nftLockPath(), fn);
}

/** Creates (or refreshes) the `nsbox` table, its sets, maps, chains and rules. Idempotent. */
export function ensureNftBase(): void {
  withNftLock(() => nftRun(BASE));
}

/** Runs `cmds` under the lock, creating the base table in the same batch if it is missing. */
function runWithBase(cmds: string): void {
  withNftLock(() => {
    try {
      nftRun(cmds);
    } catch (e) {
      if ((e as NsboxError).code !== 'ENOENT') throw e;
      nftRun(BASE + cmds);
    }
  });
}

/**
 * Deletes the `nsbox` table when no set or map in it holds an element (no bridge is
 * registered, no port published): nothing nsbox made outlives its last user. Caller holds
 * the lock. Returns true when the table was deleted.
 */
function dropTableIfUnusedLocked(): boolean {
  let out: string | undefined;
  try { out = nftRun('list table ip nsbox', { json: true }); } catch { /* no table */ }
  let deleted = false;
  if (out !== undefined) {
    const doc = JSON.parse(out) as { nftables: Array<Record<string, any>> };
    const used = doc.nftables.some((i) => (i.set?.elem?.length ?? 0) > 0 || (i.map?.elem?.length ?? 0) > 0);
    if (used) return false;
    try { nftRun('delete table ip nsbox'); } catch { return false; }
    deleted = true;
  }
  // no table: retire the lock file while holding it (waiters see the inode change and take a new one)
  try { unlinkSync(nftLockPath()); } catch { /* gone */ }
  removeEmptyStateDirs();
  return deleted;
}

/** Deletes the `nsbox` table if nothing uses it (see dropTableIfUnusedLocked). */
export function nftDropTableIfUnused(): boolean {
  return withNftLock(dropTableIfUnusedLocked);
}

const q = (s: string) => JSON.stringify(s);

/** Registers a bridge: masquerade for its subnet, isolation from other nsbox bridges. */
export function nftAddBridge(bridge: string, subnet: string): void {
  runWithBase(
    `add element ip nsbox bridges { ${q(bridge)} }\n` +
      `add element ip nsbox same { ${q(bridge)} . ${q(bridge)} }\n` +
      `add element ip nsbox masq { ${subnet} comment ${q(`bridge:${bridge}`)} }\n`,
  );
}

/** Removes a bridge's elements (missing ones are fine). */
export function nftRemoveBridge(bridge: string, subnet?: string): void {
  withNftLock(() => {
    subnet ??= nftListBridges().find((b) => b.bridge === bridge)?.subnet;
    for (const c of [
      ...(subnet ? [`delete element ip nsbox masq { ${subnet} }`] : []),
      `delete element ip nsbox same { ${q(bridge)} . ${q(bridge)} }`,
      `delete element ip nsbox bridges { ${q(bridge)} }`,
    ]) {
      try { nftRun(c); } catch { /* already gone */ }
    }
    dropTableIfUnusedLocked();
  });
}

/** One published port, resolved. */
export interface NftPublish {
  protocol: 'tcp' | 'udp';
  hostIp?: string; // undefined or 0.0.0.0: every local address
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

function elem(p: NftPublish, comment?: string): string {
  const c = comment ? ` comment ${q(comment)}` : '';
  if (!p.hostIp || p.hostIp === '0.0.0.0') return `puball { ${p.protocol} . ${p.hostPort}${c} : ${p.containerIp} . ${p.containerPort} }`;
  return `pub { ${p.hostIp} . ${p.protocol} . ${p.hostPort}${c} : ${p.containerIp} . ${p.containerPort} }`;
}
function key(p: NftPublish): string {
  if (!p.hostIp || p.hostIp === '0.0.0.0') return `puball { ${p.protocol} . ${p.hostPort} }`;
  return `pub { ${p.hostIp} . ${p.protocol} . ${p.hostPort} }`;
}

/**
 * Adds DNAT entries for published ports in one atomic batch. A host port already published
 * by another nsbox sandbox is an EADDRINUSE NsboxError, and nothing is added.
 */
export function nftPublish(ports: NftPublish[], owner: string): void {
  if (ports.length === 0) return;
  const cmds = ports.map((p) => `create element ip nsbox ${elem(p, owner)}`).join('\n');
  try {
    runWithBase(cmds);
  } catch (e) {
    if ((e as NsboxError).code === 'EEXIST') {
      const list = ports.map((p) => `${p.hostIp ?? '0.0.0.0'}:${p.hostPort}/${p.protocol}`).join(', ');
      throw netError(98, 'publish', 'nft_run_cmd_from_buffer', undefined, `a host port of ${list} is already published by another nsbox sandbox`);
    }
    throw e;
  }
}

/**
 * Gives this process's DNAT entries `ports` the owner comment `owner` (a sandbox that outlives
 * its creator: the sweep then looks at the sandbox's pid), in one atomic batch: each entry is
 * deleted and added again, so no packet meets a missing entry. Entries gone meanwhile are
 * not made again.
 */
export function nftRecomment(ports: NftPublish[], owner: string): void {
  if (ports.length === 0) return;
  withNftLock(() => {
    const have = new Set(nftListPublished().map((p) => key(p)));
    const cmds = ports.filter((p) => have.has(key(p))).map((p) => `delete element ip nsbox ${key(p)}\nadd element ip nsbox ${elem(p, owner)}`);
    if (cmds.length) nftRun(cmds.join('\n'));
  });
}

/** Removes DNAT entries (missing ones are fine). */
export function nftUnpublish(ports: NftPublish[]): void {
  if (ports.length === 0) return;
  withNftLock(() => {
    for (const p of ports) {
      try { nftRun(`delete element ip nsbox ${key(p)}`); } catch { /* already gone */ }
    }
    dropTableIfUnusedLocked();
  });
}

/** A DNAT entry as listed, with its owner comment. */
export interface NftPublishEntry extends NftPublish {
  comment?: string;
}

/** Lists the published-port entries of the `nsbox` table (empty when it does not exist). */
export function nftListPublished(): NftPublishEntry[] {
  let out: string;
  try {
    out = nftRun('list table ip nsbox', { json: true });
  } catch {
    return [];
  }
  const res: NftPublishEntry[] = [];
  const doc = JSON.parse(out) as { nftables: Array<Record<string, any>> };
  for (const item of doc.nftables) {
    const m = item.map;
    if (!m || (m.name !== 'pub' && m.name !== 'puball') || !m.elem) continue;
    for (const [k, v] of m.elem as Array<[any, any]>) {
      const comment: string | undefined = k.elem?.comment;
      const keyParts: any[] = (k.elem ? k.elem.val : k).concat;
      const [cip, cport] = v.concat as [string, number];
      if (m.name === 'pub') res.push({ hostIp: keyParts[0], protocol: keyParts[1], hostPort: keyParts[2], containerIp: cip, containerPort: cport, comment });
      else res.push({ protocol: keyParts[0], hostPort: keyParts[1], containerIp: cip, containerPort: cport, comment });
    }
  }
  return res;
}

/** Bridges and subnets registered in the table (for the sweep). */
export function nftListBridges(): Array<{ bridge: string; subnet?: string }> {
  let out: string;
  try { out = nftRun('list table ip nsbox', { json: true }); } catch { return []; }
  const doc = JSON.parse(out) as { nftables: Array<Record<string, any>> };
  const names: string[] = [];
  const subnets = new Map<string, string>();
  for (const item of doc.nftables) {
    const s = item.set;
    if (!s?.elem) continue;
    if (s.name === 'bridges') for (const e of s.elem) names.push(typeof e === 'string' ? e : e.elem?.val);
    if (s.name === 'masq') {
      for (const e of s.elem) {
        const val = e.elem ? e.elem.val : e;
        const c: string | undefined = e.elem?.comment;
        if (c?.startsWith('bridge:') && val?.prefix) subnets.set(c.slice(7), `${val.prefix.addr}/${val.prefix.len}`);
      }
    }
  }
  return names.map((bridge) => ({ bridge, subnet: subnets.get(bridge) }));
}

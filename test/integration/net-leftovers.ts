// Test helper: what nsbox's network layer leaves on the host, checked with the system's own
// tools (`ip`, `nft`) rather than nsbox's code, so a bug in both cannot hide itself.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { expect } from 'vitest';
import { listIpam, ipamDir } from '../../lib/net/ipam.js';

export interface NetState {
  /** nftables tables named nsbox (`family name`) */
  tables: string[];
  /** links whose name starts with nsbox */
  links: string[];
  /** named network namespaces (`ip netns`) */
  netns: string[];
  /** IPAM entries as bridge:address */
  ipam: string[];
  /** files under the state directory */
  state: string[];
}

function tables(): string[] {
  try {
    const out = JSON.parse(execFileSync('nft', ['-j', 'list', 'tables'], { encoding: 'utf8' })) as { nftables: Array<{ table?: { family: string; name: string } }> };
    return out.nftables.flatMap((i) => (i.table && i.table.name === 'nsbox' ? [`${i.table.family} ${i.table.name}`] : []));
  } catch {
    return []; // no nft tool: nothing to compare (the helper is for checking only)
  }
}

/** The host's nsbox network state now. */
export function netState(): NetState {
  const links = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>)
    .map((l) => l.ifname).filter((n) => n.startsWith('nsbox'));
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
  const ipam = listIpam().map((e) => `${e.key}:${e.address}`);
  const dir = ipamDir().replace(/\/ipam$/, '');
  const walk = (d: string): string[] => (existsSync(d) ? readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(`${d}/${e.name}`) : [`${d}/${e.name}`])) : []);
  // an id block this process keeps for its next sandbox (lib/ns/idblocks.ts: given back after
  // 2 s unused) is not a leftover; one of a process that is gone is
  const kept = (p: string) => p.includes('/idblocks/') && (() => { try { return readlinkSync(p).startsWith(`nsbox-${process.pid}-`); } catch { return false; } })();
  return { tables: tables(), links: links.sort(), netns: netns.sort(), ipam: ipam.sort(), state: walk(dir).filter((p) => !kept(p)).sort() };
}

/**
 * Asserts nothing was added since `before`: no nsbox table (when there was none), no link, netns,
 * IPAM entry or state file. A table that existed before (another nsbox user on this host) is
 * reported, not failed.
 */
export function expectNoNetLeftovers(before: NetState): void {
  const now = netState();
  const added = (k: keyof NetState) => now[k].filter((x) => !before[k].includes(x));
  expect({ links: added('links'), netns: added('netns'), ipam: added('ipam'), state: added('state') }).toEqual({ links: [], netns: [], ipam: [], state: [] });
  if (before.tables.length) console.warn(`SKIPPED (part): table ${before.tables.join(', ')} existed before these tests (another nsbox user); not checking that it goes`);
  else expect(now.tables).toEqual([]);
}

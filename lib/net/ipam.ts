// IP address management for bridge networks: one JSON state file per bridge under a state
// directory, changed under an flock(2) on a sibling lock file, so allocations are unique
// across concurrent processes. Entries name their owner (pid + process start time): an entry
// whose owner is gone is reclaimed by the next allocation or by the sweep.
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, readdirSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { netError, contains, formatIp, ipToBigInt, network, type Cidr } from './addr.js';
import { netNative } from './native.js';
import { ownerGone, ownerTag, processStart } from '../owner.js';

export { processStart };

/** Default state directory (NSBOX_STATE_DIR overrides its parent /run/nsbox). */
export function ipamDir(): string {
  return join(process.env.NSBOX_STATE_DIR ?? '/run/nsbox', 'ipam');
}

/** Who holds an address. */
export interface IpamOwner {
  pid: number;
  /** start time of the pid (clock ticks since boot, /proc/<pid>/stat field 22) */
  start: number;
  /** caller's id for the sandbox */
  id: string;
  /** host end of the sandbox's veth, for the sweep */
  link?: string;
}

interface State {
  subnet: string;
  next?: string;
  entries: Record<string, IpamOwner>;
}

/** Whether the owner of an entry still runs. */
export function ownerAlive(o: { pid: number; start: number }): boolean {
  return processStart(o.pid) === o.start;
}

let myStart: number | undefined;
/** This process as an owner. */
export function selfOwner(id: string, link?: string): IpamOwner {
  myStart ??= processStart(process.pid) ?? 0;
  return { pid: process.pid, start: myStart, id, ...(link ? { link } : {}) };
}

function checkKey(key: string): string {
  if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(key) || key.startsWith('.')) throw new RangeError(`ipam key must be a plain name (got '${key}')`);
  return key;
}

/** Runs `fn` holding the exclusive lock of `key` (a bridge name). Keep `fn` short and sync. */
export function withIpamLock<T>(key: string, fn: () => T): T {
  return withFileLock(join(ipamDir(), `${checkKey(key)}.lock`), fn);
}

/**
 * Runs `fn` holding an flock(2) on the file `path` (made, with its directory, if missing).
 * A holder may unlink the file to retire it (dropIpamKey does): waiters notice the inode
 * changed and lock the new file; a directory removed meanwhile is made again.
 */
export function withFileLock<T>(path: string, fn: () => T): T {
  for (;;) {
    let fd: number;
    try {
      fd = openSync(path, 'a', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      continue;
    }
    try {
      netNative().fileLock(fd, true, true);
      let same = false;
      try { same = statSync(path).ino === fstatSync(fd).ino; } catch { same = false; }
      if (!same) continue;
      return fn();
    } finally {
      closeSync(fd); // releases the lock
    }
  }
}

/**
 * Forgets a bridge's state (its JSON and lock file) when no live owner holds an address in
 * it. Returns true when removed.
 */
export function dropIpamKey(key: string): boolean {
  checkKey(key);
  try { statSync(join(ipamDir(), `${key}.lock`)); } catch { return false; }
  return withIpamLock(key, () => {
    const s = readState(key);
    if (s) {
      sweepState(s);
      if (Object.keys(s.entries).length) return false;
    }
    try { unlinkSync(join(ipamDir(), `${key}.json`)); } catch { /* none */ }
    unlinkSync(join(ipamDir(), `${key}.lock`)); // while holding it: waiters re-check the inode
    removeEmptyStateDirs();
    return true;
  });
}

/** Removes the IPAM directory and the state directory when nothing is left in them. */
export function removeEmptyStateDirs(): void {
  for (const d of [ipamDir(), dirname(ipamDir())]) {
    try { rmdirSync(d); } catch { return; /* not empty (or in use): a lock taker makes it again if needed */ }
  }
}

/**
 * Removes state files half-written by owners that are gone (`<bridge>.json.nsbox-<pid>-<start>.tmp`,
 * and the older `<bridge>.json.<pid>.tmp`) of owners `mine` accepts; returns their paths.
 */
export function sweepIpamTmp(mine: (pid: number) => boolean): string[] {
  const out: string[] = [];
  let names: string[];
  try { names = readdirSync(ipamDir()); } catch { return out; }
  for (const n of names) {
    const m = /\.json\.(?:nsbox-(\d+)-(\d+)|(\d+))\.tmp$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1] ?? m[3]);
    if (!mine(pid) || !ownerGone(pid, m[2] === undefined ? undefined : Number(m[2]))) continue;
    try { unlinkSync(join(ipamDir(), n)); out.push(join(ipamDir(), n)); } catch { /* gone meanwhile */ }
  }
  return out;
}

/** Bridge names that have IPAM state. */
export function ipamKeys(): string[] {
  try { return readdirSync(ipamDir()).filter((n) => n.endsWith('.lock')).map((n) => n.slice(0, -5)); } catch { return []; }
}

function readState(key: string): State | undefined {
  try {
    return JSON.parse(readFileSync(join(ipamDir(), `${key}.json`), 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function writeState(key: string, s: State): void {
  const p = join(ipamDir(), `${key}.json`);
  // named with its owner: a process killed between the write and the rename leaves it to gc
  const tmp = `${p}.nsbox-${ownerTag()}.tmp`;
  writeFileSync(tmp, JSON.stringify(s), { mode: 0o600 });
  renameSync(tmp, p);
}

function sweepState(s: State, owners?: ReadonlySet<number>): IpamOwner[] {
  const gone: IpamOwner[] = [];
  for (const [ip, o] of Object.entries(s.entries)) {
    if (!ownerAlive(o) && (!owners || owners.has(o.pid))) { gone.push(o); delete s.entries[ip]; }
  }
  return gone;
}

/**
 * Allocates an address of `subnet` (the bridge's gateway CIDR, e.g. `10.66.0.1/16`) for
 * `owner`. `want` asks for a given address: outside the subnet is a RangeError, taken is an
 * EADDRINUSE NsboxError. Must be called inside {@link withIpamLock} for `key`.
 * Returns the address and the dead owners whose entries were reclaimed.
 */
export function allocateLocked(key: string, gateway: Cidr, owner: IpamOwner, want?: string): { address: string; reclaimed: IpamOwner[] } {
  const { base, size } = network(gateway);
  const subnet = `${formatIp(base, gateway.family)}/${gateway.prefix}`;
  const s = readState(key) ?? { subnet, entries: {} };
  if (s.subnet !== subnet) { s.subnet = subnet; }
  const reclaimed = sweepState(s);
  const gw = ipToBigInt(gateway.address, gateway.family);
  const last = gateway.family === 4 ? base + size - 1n : base + size;
  const usable = (v: bigint) => v > base && v < last && v !== gw;
  let address: string | undefined;
  if (want !== undefined) {
    if (!contains(gateway, want, gateway.family)) throw new RangeError(`network.address ${want} is outside the bridge subnet ${subnet}`);
    const v = ipToBigInt(want, gateway.family);
    if (!usable(v)) throw new RangeError(`network.address ${want} is the network, broadcast or gateway address of ${subnet}`);
    const w = formatIp(v, gateway.family);
    if (s.entries[w]) throw netError(98, 'ipam', 'allocate', join(ipamDir(), `${key}.json`), `${w} is taken by pid ${s.entries[w]!.pid} (${s.entries[w]!.id})`);
    address = w;
  } else {
    // round robin from after the last allocation, so a freed address is not reused at once
    let v = s.next && contains(gateway, s.next, gateway.family) ? ipToBigInt(s.next, gateway.family) : gw + 1n;
    const limit = size < 1_000_000n ? size : 1_000_000n;
    for (let i = 0n; i < limit; i++, v++) {
      if (v >= last) v = base + 1n;
      if (!usable(v)) continue;
      const c = formatIp(v, gateway.family);
      if (!s.entries[c]) { address = c; s.next = formatIp(v + 1n, gateway.family); break; }
    }
    if (!address) throw netError(28, 'ipam', 'allocate', join(ipamDir(), `${key}.json`), `no free address left in ${subnet}`);
  }
  s.entries[address] = owner;
  writeState(key, s);
  return { address, reclaimed };
}

/**
 * Frees `address` of `key` if `id` holds it for this process (or for a sandbox it was handed
 * over to that has ended since). Missing is fine.
 */
export function releaseAddress(key: string, address: string, id: string): void {
  withIpamLock(key, () => {
    const s = readState(key);
    if (!s) return;
    const o = s.entries[address];
    if (o && o.id === id && (o.pid === process.pid || !ownerAlive(o))) {
      delete s.entries[address];
      writeState(key, s);
    }
  });
}

/**
 * For a sandbox that may outlive this process: the entry of `address` that `id` holds for
 * this process names `owner` (the sandbox's pid 1 and its start time) from now on, so that
 * allocations and the sweep keep it while that process runs. Returns false when the entry is
 * not this process's (nothing changed).
 */
export function handOverAddress(key: string, address: string, id: string, owner: { pid: number; start: number }): boolean {
  return withIpamLock(key, () => {
    const s = readState(key);
    const o = s?.entries[address];
    if (!s || !o || o.id !== id || o.pid !== process.pid) return false;
    s.entries[address] = { ...o, pid: owner.pid, start: owner.start };
    writeState(key, s);
    return true;
  });
}

/** Every entry of every bridge (for tests and `nsbox gc`). */
export function listIpam(): Array<{ key: string; address: string; owner: IpamOwner }> {
  const out: Array<{ key: string; address: string; owner: IpamOwner }> = [];
  let names: string[] = [];
  try { names = readdirSync(ipamDir()); } catch { return out; }
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    const key = n.slice(0, -5);
    const s = readState(key);
    if (s) for (const [address, owner] of Object.entries(s.entries)) out.push({ key, address, owner });
  }
  return out;
}

/** Removes entries whose owner is gone; returns them. */
export function sweepIpam(owners?: ReadonlySet<number>): Array<{ key: string; address: string; owner: IpamOwner }> {
  const out: Array<{ key: string; address: string; owner: IpamOwner }> = [];
  const keys = new Set(listIpam().filter((e) => !ownerAlive(e.owner) && (!owners || owners.has(e.owner.pid))).map((e) => e.key));
  for (const key of keys) {
    withIpamLock(key, () => {
      const s = readState(key);
      if (!s) return;
      const before = { ...s.entries };
      const gone = sweepState(s, owners);
      if (gone.length) writeState(key, s);
      for (const [address, owner] of Object.entries(before)) if (!s.entries[address]) out.push({ key, address, owner });
    });
  }
  return out;
}

// Address, name and number checks done in TypeScript before anything reaches the kernel.
import { errnoError } from '../errors.js';
import { isIPv4, isIPv6 } from 'node:net';

/** A parsed CIDR: `10.66.0.2/16` or `fd00::2/64`. */
export interface Cidr {
  /** 4 or 6. */
  family: 4 | 6;
  /** The address as written (normalised). */
  address: string;
  /** Prefix length. */
  prefix: number;
}

/** Longest link name the kernel takes (IFNAMSIZ - 1). */
export const MAX_LINK_NAME = 15;

/** Throws a TypeError/RangeError naming `what` unless `name` is a valid link name. */
export function checkLinkName(name: unknown, what: string): string {
  if (typeof name !== 'string') throw new TypeError(`${what} must be a string (got ${typeof name})`);
  if (name.length === 0) throw new RangeError(`${what} must not be empty`);
  if (Buffer.byteLength(name) > MAX_LINK_NAME) {
    throw new RangeError(`${what} must be at most ${MAX_LINK_NAME} bytes (got '${name}', ${Buffer.byteLength(name)} bytes)`);
  }
  if (name === '.' || name === '..' || /[\s/:\0]/.test(name)) {
    throw new RangeError(`${what} must not be '.' or '..' nor contain '/', ':' or whitespace (got '${name}')`);
  }
  return name;
}

/** Throws unless `mtu` is an integer in 68..65535. */
export function checkMtu(mtu: unknown, what: string): number {
  if (typeof mtu !== 'number' || !Number.isInteger(mtu)) throw new TypeError(`${what} must be an integer (got ${String(mtu)})`);
  if (mtu < 68 || mtu > 65535) throw new RangeError(`${what} must be in 68..65535 (got ${mtu})`);
  return mtu;
}

/** Throws unless `mac` reads like `02:42:ac:11:00:02`. */
export function checkMac(mac: unknown, what: string): string {
  if (typeof mac !== 'string') throw new TypeError(`${what} must be a string (got ${typeof mac})`);
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new RangeError(`${what} must look like 02:42:ac:11:00:02 (got '${mac}')`);
  return mac.toLowerCase();
}

/** Parses a bare IP address; throws naming `what`. */
export function checkIp(ip: unknown, what: string, family?: 4 | 6): { family: 4 | 6; address: string } {
  if (typeof ip !== 'string') throw new TypeError(`${what} must be a string (got ${typeof ip})`);
  const f = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : 0;
  if (!f) throw new RangeError(`${what} must be an IPv4 or IPv6 address (got '${ip}')`);
  if (family && f !== family) throw new RangeError(`${what} must be an IPv${family} address (got '${ip}')`);
  return { family: f, address: f === 4 ? ip : formatIp(ipToBigInt(ip, 6), 6) };
}

/** Parses `addr/prefix` (prefix required unless `bare` is true). */
export function parseCidr(s: unknown, what: string, bare = false): Cidr {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string in CIDR form (got ${typeof s})`);
  const i = s.indexOf('/');
  if (i < 0 && !bare) throw new RangeError(`${what} must be in CIDR form like 10.66.0.2/16 (got '${s}')`);
  const ip = i < 0 ? s : s.slice(0, i);
  const { family, address } = checkIp(ip, what);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (i >= 0) {
    const p = s.slice(i + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw new RangeError(`${what} has a bad prefix length '/${p}' (0..${max})`);
    prefix = Number(p);
  }
  return { family, address, prefix };
}

/** The address as a bigint. */
export function ipToBigInt(ip: string, family: 4 | 6): bigint {
  if (family === 4) return ip.split('.').reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n);
  let [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const parse = (x: string | undefined): string[] => (x ? x.split(':') : []);
  let h = parse(head);
  let t = parse(tail);
  // embedded IPv4 tail (::ffff:1.2.3.4)
  const fix = (arr: string[]): string[] => {
    const last = arr[arr.length - 1];
    if (last && last.includes('.')) {
      const v = ipToBigInt(last, 4);
      return [...arr.slice(0, -1), ((v >> 16n) & 0xffffn).toString(16), (v & 0xffffn).toString(16)];
    }
    return arr;
  };
  h = fix(h);
  t = fix(t);
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}

/** Formats a bigint address (IPv6 in RFC 5952 short form). */
export function formatIp(v: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => Number((v >> s) & 0xffn)).join('.');
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** First address of the network, and the number of addresses in it. */
export function network(c: Cidr): { base: bigint; size: bigint; bits: number } {
  const bits = c.family === 4 ? 32 : 128;
  const size = 1n << BigInt(bits - c.prefix);
  const base = (ipToBigInt(c.address, c.family) / size) * size;
  return { base, size, bits };
}

/** True when `ip` lies inside the network of `c`. */
export function contains(c: Cidr, ip: string, family: 4 | 6): boolean {
  if (family !== c.family) return false;
  const { base, size } = network(c);
  const v = ipToBigInt(ip, family);
  return v >= base && v < base + size;
}

/** `10.66.0.0/16` for `10.66.0.1/16`. */
export function networkCidr(c: Cidr): string {
  return `${formatIp(network(c).base, c.family)}/${c.prefix}`;
}

/** An NsboxError for a failure nsbox detects itself in the network layer (errnoError's). */
export function netError(errno: number, step: string, syscall: string, path?: string, detail?: string): import('../errors.js').NsboxError {
  return errnoError(errno, step, syscall, path, detail);
}

// Links, addresses and routes in the host's or any network namespace, over rtnetlink.
import { checkLinkName, checkMac, checkMtu, parseCidr, checkIp } from './addr.js';
import { netNative, type RawAddr, type RawLink, type RawNetns, type RawRoute } from './native.js';
import { processSeq } from '../owner.js';

/**
 * A network namespace to act in: a process id (its current namespace), an open namespace
 * (anything with an `fd`, such as `Namespace`), `{ path }` (e.g. `/run/netns/x`) or `{ pid }`.
 * Omitted: the host's (the caller's) namespace.
 */
export type NetnsRef = number | { readonly fd: number } | { readonly path: string } | { readonly pid: number };

/** A link as the kernel reports it. */
export type LinkInfo = RawLink;
/** An address as the kernel reports it. */
export type AddressInfo = RawAddr;
/** A route as the kernel reports it. */
export type RouteInfo = RawRoute;

/** Turns a {@link NetnsRef} into what the addon takes; throws TypeError naming `what`. */
export function toRawNetns(ns: NetnsRef | undefined, what = 'netns'): RawNetns {
  if (ns === undefined || ns === null) return undefined;
  if (typeof ns === 'number') {
    if (!Number.isInteger(ns) || ns <= 0) throw new RangeError(`${what} must be a positive pid (got ${ns})`);
    return { pid: ns };
  }
  if (typeof ns === 'object') {
    if ('fd' in ns && typeof ns.fd === 'number') return { fd: ns.fd };
    if ('path' in ns && typeof ns.path === 'string') {
      if (!ns.path.startsWith('/')) throw new TypeError(`${what}.path must be absolute (got '${ns.path}')`);
      return { path: ns.path };
    }
    if ('pid' in ns && typeof ns.pid === 'number') return toRawNetns(ns.pid, `${what}.pid`);
  }
  throw new TypeError(`${what} must be a pid, a Namespace, { path } or { pid }`);
}

function checkLinkRef(link: unknown, what: string): number | string {
  if (typeof link === 'number') {
    if (!Number.isInteger(link) || link <= 0) throw new RangeError(`${what} must be a positive ifindex (got ${link})`);
    return link;
  }
  return checkLinkName(link, what);
}

/** Every link of a namespace. */
export function listLinks(netns?: NetnsRef): LinkInfo[] {
  return netNative().netlinkLinks(toRawNetns(netns));
}

/** The link called `name`, or undefined. */
export function getLink(name: string, netns?: NetnsRef): LinkInfo | undefined {
  checkLinkName(name, 'name');
  const raw = toRawNetns(netns);
  const idx = netNative().netlinkLinkIndex(name, raw);
  if (!idx) return undefined;
  return netNative().netlinkLinks(raw).find((l) => l.ifindex === idx);
}

/** What {@link setLink} changes; absent fields stay as they are. */
export interface LinkChanges {
  /** New name (<= 15 bytes). */
  name?: string;
  /** MTU, 68..65535. */
  mtu?: number;
  /** MAC address `02:..`. */
  mac?: string;
  /** Bring up (true) or down (false). */
  up?: boolean;
  /** Enslave to this bridge (ifindex or name); `null` releases it. */
  master?: number | string | null;
  /** Move into another namespace. */
  netns?: NetnsRef;
  /** Free-text alias (IFLA_IFALIAS). */
  alias?: string;
}

/** Changes a link in one rtnetlink message. */
export function setLink(link: number | string, changes: LinkChanges, netns?: NetnsRef): void {
  const l = checkLinkRef(link, 'link');
  const spec: Parameters<ReturnType<typeof netNative>['netlinkLinkSet']>[1] = {};
  if (changes.name !== undefined) spec.name = checkLinkName(changes.name, 'name');
  if (changes.mtu !== undefined) spec.mtu = checkMtu(changes.mtu, 'mtu');
  if (changes.mac !== undefined) spec.mac = checkMac(changes.mac, 'mac');
  if (changes.up !== undefined) {
    if (typeof changes.up !== 'boolean') throw new TypeError('up must be a boolean');
    spec.up = changes.up;
  }
  if (changes.alias !== undefined) {
    if (typeof changes.alias !== 'string' || Buffer.byteLength(changes.alias) > 255) throw new RangeError('alias must be a string of at most 255 bytes');
    spec.alias = changes.alias;
  }
  const raw = toRawNetns(netns);
  if (changes.master !== undefined) {
    if (changes.master === null) spec.master = 0;
    else {
      const m = checkLinkRef(changes.master, 'master');
      spec.master = typeof m === 'number' ? m : netNative().netlinkLinkIndex(m, raw);
      if (!spec.master) throw new RangeError(`master: no link called '${m}'`);
    }
  }
  if (changes.netns !== undefined) spec.netns = toRawNetns(changes.netns, 'netns');
  netNative().netlinkLinkSet(l, spec, raw);
}

/**
 * Deletes a link (for a veth, its peer goes too). Waits for the kernel on a worker thread
 * (tens of ms), not on the event loop. Resolves false when it was already gone.
 */
export function deleteLink(link: number | string, netns?: NetnsRef): Promise<boolean> {
  const l = checkLinkRef(link, 'link');
  return netNative().netlinkLinkDelAsync(l, toRawNetns(netns), true);
}

/** Every address of a namespace. */
export function listAddresses(netns?: NetnsRef): AddressInfo[] {
  return netNative().netlinkAddrs(toRawNetns(netns));
}

/** Adds `cidr` (v4 or v6, e.g. `10.66.0.2/16`) to a link. IPv6 addresses skip DAD. */
export function addAddress(link: number | string, cidr: string, netns?: NetnsRef): void {
  const l = checkLinkRef(link, 'link');
  const c = parseCidr(cidr, 'address');
  netNative().netlinkAddr(true, l, `${c.address}/${c.prefix}`, toRawNetns(netns));
}

/** Removes `cidr` from a link. */
export function removeAddress(link: number | string, cidr: string, netns?: NetnsRef): void {
  const l = checkLinkRef(link, 'link');
  const c = parseCidr(cidr, 'address');
  netNative().netlinkAddr(false, l, `${c.address}/${c.prefix}`, toRawNetns(netns));
}

/** A route to add or delete: `dst` omitted or `'default'` means the default route. */
export interface RouteSpec {
  dst?: string;
  gateway?: string;
  link?: number | string;
  table?: number;
  metric?: number;
}

function routeSpec(r: RouteSpec): RouteSpec {
  const out: RouteSpec = {};
  let fam: 4 | 6 | undefined;
  if (r.dst !== undefined && r.dst !== 'default') {
    const c = parseCidr(r.dst, 'dst');
    out.dst = `${c.address}/${c.prefix}`;
    fam = c.family;
  }
  if (r.gateway !== undefined) out.gateway = checkIp(r.gateway, 'gateway', fam).address;
  if (r.link !== undefined) out.link = checkLinkRef(r.link, 'link');
  if (!out.gateway && out.link === undefined) throw new TypeError('a route needs a gateway or a link');
  if (!out.dst && !out.gateway) throw new TypeError('a default route needs a gateway');
  if (r.table !== undefined) out.table = r.table;
  if (r.metric !== undefined) out.metric = r.metric;
  return out;
}

/** Adds a route (e.g. `{ gateway: '10.66.0.1' }` for the default route). */
export function addRoute(route: RouteSpec, netns?: NetnsRef): void {
  netNative().netlinkRoute(true, routeSpec(route), toRawNetns(netns));
}

/** Deletes a route. */
export function deleteRoute(route: RouteSpec, netns?: NetnsRef): void {
  netNative().netlinkRoute(false, routeSpec(route), toRawNetns(netns));
}

/** Every IPv4/IPv6 route of a namespace (all tables). */
export function listRoutes(netns?: NetnsRef): RouteInfo[] {
  return netNative().netlinkRoutes(toRawNetns(netns));
}

/**
 * A fresh link name carrying `nsbox`, the creating pid and a number of the process's sequence
 * (unique across its worker threads and library copies):
 * `nsbox` + pid (5 base-36 digits) + sequence (4) + `suffix` (1 char) = 15 bytes.
 * {@link parseOwnedName} reads the pid back (for the sweep).
 */
export function ownedLinkName(suffix: string): string {
  const n = processSeq() % 36 ** 4;
  return `nsbox${process.pid.toString(36).padStart(5, '0')}${n.toString(36).padStart(4, '0')}${suffix}`;
}

/** The owner pid encoded by {@link ownedLinkName}, or undefined for other names. */
export function parseOwnedName(name: string): number | undefined {
  const m = /^nsbox([0-9a-z]{5})[0-9a-z]{4}[a-z]$/.exec(name);
  return m ? parseInt(m[1]!, 36) : undefined;
}

// The `network` option of spawnIsolated: validation (pure) and, for bridge mode, everything
// made on the host before spawn (veth, address, NAT/publish entries) and removed after exit.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { NsboxError } from '../errors.js';
import { ownsNetworkNamespace } from '../ns/namespace.js';
import { netError, checkIp, checkLinkName, checkMtu, networkCidr, parseCidr, contains, formatIp, ipToBigInt, network as cidrRange, type Cidr } from './addr.js';
import { Bridge } from './bridge.js';
import { netNative, type RawAddr, type RawRoute } from './native.js';
import { allocateLocked, dropIpamKey, handOverAddress, releaseAddress, selfOwner, withIpamLock } from './ipam.js';
import { nftAddBridge, nftPublish, nftRecomment, nftUnavailableReason, nftUnpublish, type NftPublish } from './nft.js';
import { TcpProxy } from './proxy.js';
import { VethPair } from './veth.js';
import { ownedLinkName } from './link.js';
import { USER_NET_KEYS, validateUserNetwork, type UserNetworkOption } from './usernet.js';
import type { PublishSpec } from './publish.js';
import { validateEgress, type EgressNetworkOption } from './egress/policy.js';

export type { PublishSpec };

/** Bridge networking: a veth into the sandbox, its host end on a bridge, NAT to the outside. */
export interface BridgeNetworkOption {
  /** Optional, says what the object means; bridge mode is the default for an object. */
  mode?: 'bridge';
  /** Bridge name (created if missing, as `nsbox0` is by default) or a {@link Bridge}. */
  bridge?: string | Bridge;
  /**
   * Subnet for a bridge nsbox has to create, default `10.66.0.0/16` (gateway: first address).
   * A subnet that overlaps an address or route of the host is refused (EADDRINUSE, naming the
   * interface) rather than made.
   */
  subnet?: string;
  /** Fixed sandbox address inside the bridge subnet (`10.66.0.5`, or `10.66.0.5/16` with the bridge's prefix); default: allocated by IPAM. */
  address?: string;
  /** Default gateway; default: the bridge's address. */
  gateway?: string;
  /** Name servers for /etc/resolv.conf; default: the host's non-loopback ones. */
  dns?: string[];
  /** Published ports. */
  publish?: PublishSpec[];
  /** MTU of the veth. */
  mtu?: number;
  /** Name of the link inside the sandbox, default `eth0`. */
  interfaceName?: string;
  /** Host name written to /etc/hosts with the sandbox address. */
  hostname?: string;
}

/**
 * `'none'` (default): own network namespace with only `lo`. `'loopback'`: the same, said
 * explicitly. `'host'`: the host's network. A {@link BridgeNetworkOption} object: bridge
 * networking (root). `'user'` or a {@link UserNetworkOption} (`{ mode: 'user' }`): user-mode
 * networking through pasta or slirp4netns (no privilege needed). `{ join }`: an existing
 * network namespace (anything with an `fd`). An {@link EgressNetworkOption} (`{ mode: 'egress',
 * allow }`): only `lo`, and a proxy and name server of nsbox's that let the sandbox reach the
 * hosts its policy allows (docs/egress.md).
 */
export type NetworkOption = 'none' | 'host' | 'loopback' | 'user' | BridgeNetworkOption | UserNetworkOption | EgressNetworkOption | { join: { readonly fd: number } };

/**
 * The default bridge and subnet. 10.66.0.0/16 is the default of no tool we know of, and not in
 * 10.77-10.99, which nsbox's own docs and tests give the bridges they make: podman uses
 * 10.88.0.0/16 (and 10.89.x.0/24 for networks it creates), docker 172.17.0.0/16 and then
 * 172.18-31 and 192.168.x, Kubernetes 10.96.0.0/12 for services with flannel's 10.244.0.0/16
 * (k3s 10.42/10.43, weave 10.32.0.0/12, calico 192.168.0.0/16), libvirt 192.168.122.0/24,
 * slirp4netns 10.0.2.0/24, GCP's auto-mode VPCs 10.128.0.0/9; home and office LANs mostly use
 * 192.168.x, 10.0.x and 10.1.x. A collision with the host is still detected (bridgeSubnetCollision).
 */
export const DEFAULT_BRIDGE = 'nsbox0';
export const DEFAULT_SUBNET = '10.66.0.0/16';

/**
 * What of the host a new bridge's IPv4 subnet would overlap: an address of an interface, or a
 * route other than a default one (any table); undefined when nothing does. Pure: the caller
 * passes the host's addresses, routes and links (rtnetlink's lists).
 */
export function bridgeSubnetCollision(
  subnet: Cidr, addrs: readonly RawAddr[], routes: readonly RawRoute[], links: readonly { ifindex: number; name: string }[],
): { what: string; link?: string } | undefined {
  const net = cidrRange(subnet);
  const overlaps = (c: Cidr) => {
    const o = cidrRange(c);
    return o.base < net.base + net.size && net.base < o.base + o.size;
  };
  const name = (i?: number) => (i === undefined ? undefined : links.find((l) => l.ifindex === i)?.name ?? `ifindex ${i}`);
  for (const a of addrs) {
    if (a.family !== 4) continue;
    const c: Cidr = { family: 4, address: a.address, prefix: a.prefixlen };
    if (overlaps(c)) return { what: `address ${a.address}/${a.prefixlen}`, link: name(a.ifindex) };
  }
  for (const r of routes) {
    if (r.family !== 4 || !r.dst || r.dst === 'default') continue;
    const c = parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`, 'route');
    if (c.prefix === 0) continue;
    if (overlaps(c)) return { what: `route ${networkCidr(c)}${r.gateway ? ` via ${r.gateway}` : ''}`, link: name(r.ifindex) };
  }
  return undefined;
}

/** Refuses to make a bridge whose subnet the host already uses (an NsboxError EADDRINUSE). */
function checkBridgeSubnet(bridgeName: string, sub: Cidr, given: boolean): void {
  const n = netNative();
  const hit = bridgeSubnetCollision(sub, n.netlinkAddrs(), n.netlinkRoutes(), n.netlinkLinks());
  if (!hit) return;
  throw netError(98, 'network', 'bridge', bridgeName,
    `the ${given ? '' : 'default '}subnet ${networkCidr(sub)} of the new bridge '${bridgeName}' overlaps ${hit.what}${hit.link ? ` on ${hit.link}` : ''} of the host: choose another with options.network.subnet (or give an existing bridge with options.network.bridge)`);
}

/**
 * A sandbox address: `10.66.0.5`, or `10.66.0.5/16` in CIDR form (as `ip addr` shows it), whose
 * prefix must then be the bridge's (the sandbox's interface takes the bridge's prefix).
 */
function sandboxAddress(v: unknown, what: string): { address: string; prefix?: number } {
  if (typeof v === 'string' && v.includes('/')) {
    const c = parseCidr(v, what);
    if (c.family !== 4) throw new RangeError(`${what} must be an IPv4 address (got '${v}')`);
    return { address: c.address, prefix: c.prefix };
  }
  return { address: checkIp(v, what, 4).address };
}

function checkPrefix(a: { address: string; prefix?: number }, net: Cidr, what: string, whose: string): void {
  if (a.prefix !== undefined && a.prefix !== net.prefix) {
    throw new RangeError(`${what} ${a.address}/${a.prefix} has another prefix length than ${whose} (${networkCidr(net)}): give /${net.prefix} or the bare address`);
  }
}

function checkPort(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${what} must be an integer (got ${String(v)})`);
  if (v < 1 || v > 65535) throw new RangeError(`${what} must be in 1..65535 (got ${v})`);
  return v;
}

/**
 * Checks a network option without touching the system. Throws TypeError/RangeError naming
 * the option (`options.network.publish[0].host`, ...).
 */
export function validateNetworkOption(opt: unknown, what = 'options.network'): NetworkOption {
  if (opt === undefined) return 'none';
  if (opt === 'none' || opt === 'host' || opt === 'loopback') return opt;
  if (opt === 'user') return { mode: 'user' };
  if (typeof opt === 'string') throw new RangeError(`${what} must be 'none', 'host', 'loopback', 'user', { join }, { mode: 'user', ... } or a bridge network object (got '${opt}')`);
  if (opt === null || typeof opt !== 'object') throw new TypeError(`${what} must be a string or an object (got ${opt === null ? 'null' : typeof opt})`);
  const o = opt as Record<string, unknown>;
  if ('join' in o) {
    const j = o.join as { fd?: unknown } | undefined;
    if (!j || typeof j !== 'object' || typeof j.fd !== 'number') throw new TypeError(`${what}.join must be a Namespace (an object with an fd)`);
    const extra = Object.keys(o).filter((k) => k !== 'join');
    if (extra.length) throw new TypeError(`${what}.join cannot be combined with ${extra.join(', ')}`);
    if ('type' in j && (j as { type?: unknown }).type !== 'net') throw new RangeError(`${what}.join must be a network namespace (got a ${String((j as { type?: unknown }).type)} namespace)`);
    return o as { join: { fd: number } };
  }
  if (o.mode !== undefined && o.mode !== 'bridge' && o.mode !== 'user' && o.mode !== 'egress') throw new RangeError(`${what}.mode must be 'bridge', 'user' or 'egress' (got ${String(o.mode)})`);
  if (o.mode === 'egress') {
    validateEgress(o, what);
    return o as unknown as EgressNetworkOption;
  }
  const user = o.mode === 'user';
  const known = new Set(user ? USER_NET_KEYS : ['mode', 'bridge', 'subnet', 'address', 'gateway', 'dns', 'publish', 'mtu', 'interfaceName', 'hostname']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new TypeError(`${what}.${k} is not a${user ? " user-mode ('user')" : ' bridge'} network option (known: ${[...known].join(', ')}${user ? '' : ', join'})`);
  if (user) validateUserNetwork(o, what);
  if (o.bridge !== undefined && !(o.bridge instanceof Bridge)) checkLinkName(o.bridge, `${what}.bridge`);
  let subnet: Cidr | undefined;
  if (o.subnet !== undefined) {
    subnet = parseCidr(o.subnet, `${what}.subnet`);
    if (subnet.family !== 4) throw new RangeError(`${what}.subnet must be IPv4`);
    if (subnet.prefix > 30) throw new RangeError(`${what}.subnet must have room for a gateway and a sandbox (prefix <= 30, got /${subnet.prefix})`);
  }
  if (o.address !== undefined) {
    const a = sandboxAddress(o.address, `${what}.address`);
    if (subnet && !contains(subnet, a.address, 4)) throw new RangeError(`${what}.address ${a.address} is outside ${what}.subnet ${networkCidr(subnet)}`);
    if (subnet) checkPrefix(a, subnet, `${what}.address`, `${what}.subnet`);
    if (o.bridge instanceof Bridge && o.bridge.ipv4) {
      if (!contains(o.bridge.ipv4, a.address, 4)) throw new RangeError(`${what}.address ${a.address} is outside the bridge subnet ${networkCidr(o.bridge.ipv4)}`);
      checkPrefix(a, o.bridge.ipv4, `${what}.address`, 'the bridge');
    }
  }
  if (o.gateway !== undefined) checkIp(o.gateway, `${what}.gateway`, 4);
  if (o.dns !== undefined) {
    if (!Array.isArray(o.dns)) throw new TypeError(`${what}.dns must be an array of addresses`);
    o.dns.forEach((d, i) => checkIp(d, `${what}.dns[${i}]`));
  }
  if (o.mtu !== undefined) checkMtu(o.mtu, `${what}.mtu`);
  if (o.interfaceName !== undefined) checkLinkName(o.interfaceName, `${what}.interfaceName`);
  if (o.hostname !== undefined && (typeof o.hostname !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(o.hostname))) {
    throw new RangeError(`${what}.hostname must be a host name (got ${String(o.hostname)})`);
  }
  if (o.publish !== undefined) {
    if (!Array.isArray(o.publish)) throw new TypeError(`${what}.publish must be an array`);
    const seen = new Set<string>();
    o.publish.forEach((p: unknown, i) => {
      const w = `${what}.publish[${i}]`;
      if (!p || typeof p !== 'object') throw new TypeError(`${w} must be an object { host, container, protocol?, hostIp? }`);
      const q = p as Record<string, unknown>;
      for (const k of Object.keys(q)) if (!['host', 'container', 'protocol', 'hostIp'].includes(k)) throw new TypeError(`${w}.${k} is not a publish option`);
      checkPort(q.host, `${w}.host`);
      checkPort(q.container, `${w}.container`);
      if (q.protocol !== undefined && q.protocol !== 'tcp' && q.protocol !== 'udp') throw new RangeError(`${w}.protocol must be 'tcp' or 'udp'`);
      if (q.hostIp !== undefined) checkIp(q.hostIp, `${w}.hostIp`, user ? undefined : 4);
      const k = `${q.hostIp ?? '0.0.0.0'}:${q.host}/${q.protocol ?? 'tcp'}`;
      if (seen.has(k)) throw new RangeError(`${w} publishes ${k} twice`);
      seen.add(k);
    });
  }
  return o as BridgeNetworkOption | UserNetworkOption;
}

/** /etc/hosts and /etc/resolv.conf for a user-mode sandbox. */
export function userNetworkFiles(o: UserNetworkOption, helper: { address?: string; dns: string[] }): { hosts: string; resolvConf: string } {
  const name = o.hostname ?? 'sandbox';
  return {
    hosts: BASE_HOSTS + (helper.address ? `${helper.address}\t${name}\n` : `127.0.1.1\t${name}\n`),
    resolvConf: (o.dns ?? helper.dns).map((d) => `nameserver ${d}\n`).join(''),
  };
}

/** What the spawn planner puts into plan.net for one link. */
export interface NetHandoff {
  /** ifindex of the link in the host namespace. */
  ifindex: number;
  /** Its name inside the sandbox. */
  name: string;
  mtu?: number;
  addresses: string[];
  gateway4?: string;
  gateway6?: string;
  /**
   * Set in `'create'` hand-off mode (ifindex is then 0): the veth is made during the hand-off,
   * host end `hostName` on bridge ifindex `master`, peer born inside the child's namespace.
   */
  hostName?: string;
  master?: number;
}

/** Context of {@link prepareSandboxNetwork}. */
export interface PrepareContext {
  /** The sandbox's id (recorded with its IPAM entry and nftables elements). */
  id: string;
  /**
   * `'move'` (default, the current plan.h contract): the veth is made here and the hand-off
   * moves its peer into the child's namespace; the kernel waits an RCU grace period for that
   * (15-50 ms measured). `'create'`: the hand-off makes the pair with the peer born inside
   * the child's namespace (~0.5 ms); needs NetHandoffSpec to carry hostName/master.
   */
  handoff?: 'move' | 'create';
}

/** Result of {@link prepareSandboxNetwork}. */
export interface PreparedNetwork {
  /** Links to hand to the child before "go" (plan.net). */
  handoff: NetHandoff[];
  /** Contents for /etc/hosts and /etc/resolv.conf inside the sandbox. */
  files: { hosts: string; resolvConf: string };
  /** The sandbox's address, in bridge mode. */
  address?: string;
  /** Its IPv6 address, when the bridge has an IPv6 address (dual stack). */
  address6?: string;
  /** The host end of the veth, in bridge mode. */
  hostLink?: string;
  /** How ports are published: 'nftables', 'proxy', or undefined when none are. */
  publishMode?: 'nftables' | 'proxy';
  /**
   * Removes everything prepared here. Idempotent; never throws. With `waitForLinks: false`
   * (what spawnIsolated uses) it does not wait for the kernel to finish deleting the veth
   * (~20 ms); {@link networkSettled} waits for such deletions.
   */
  release(opts?: { waitForLinks?: boolean }): Promise<void>;
  /**
   * For a sandbox that may outlive this process (a keepAlive Sandbox, `parentDeathSignal:
   * false`), once it runs: its address lease and DNAT entries name the sandbox's first
   * process (`pid`, started at `start`) instead of this process, so that other processes'
   * allocations and `nsbox gc` keep them, and its host veth, while that process runs, and
   * remove them once it is gone. The veth keeps its name (a link cannot be renamed while up):
   * its lease records it, and the sweep leaves a link a live owner's lease names.
   * {@link release} still removes everything once the sandbox has ended.
   */
  handOver(pid: number, start: number): void;
}

const pendingDeletions = new Set<Promise<void>>();
/** @internal Registers a teardown (link deletion, helper exit) {@link networkSettled} waits for. */
export function trackDeletion(p: Promise<void>): Promise<void> {
  const q = p.catch(() => {}).finally(() => pendingDeletions.delete(q));
  pendingDeletions.add(q);
  return q;
}

/**
 * Resolves once every teardown a sandbox's exit started without waiting has finished: veth
 * deletions (bridge mode) and user-mode helpers' exits.
 */
export async function networkSettled(): Promise<void> {
  while (pendingDeletions.size) await Promise.all([...pendingDeletions]);
}

/** Bridges this process registered in nftables (name@ifindex: a re-made bridge registers again). */
const nftBridgesDone = new Set<string>();

const BASE_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';

function hostNameservers(): string[] {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8').split('\n').map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((x): x is string => !!x);
  } catch {
    return [];
  }
}

function enableSysctl(path: string): void {
  try {
    if (readFileSync(path, 'utf8').trim() !== '1') writeFileSync(path, '1');
  } catch (e) {
    throw netError((e as NodeJS.ErrnoException).errno ? Math.abs((e as NodeJS.ErrnoException).errno!) : 5, 'network', 'write', path);
  }
}

/** Fails with EADDRINUSE when something on the host already listens on / binds the port. */
async function checkHostPortFree(p: PublishSpec): Promise<void> {
  const host = p.hostIp ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) =>
      reject(e.code === "EADDRINUSE" ? netError(98, 'publish', 'bind', undefined, `host port ${host}:${p.host}/${p.protocol ?? 'tcp'} is already in use`) : e);
    if ((p.protocol ?? 'tcp') === 'udp') {
      const s = createSocket('udp4');
      s.once('error', fail);
      s.bind({ address: host, port: p.host, exclusive: true }, () => s.close(() => resolve()));
    } else {
      const s = createTcpServer();
      s.once('error', fail);
      s.listen({ host, port: p.host, exclusive: true }, () => s.close(() => resolve()));
    }
  });
}

/**
 * Makes what a sandbox needs for its `network` option, before spawn. For bridge mode: the
 * bridge (made if missing), an address from IPAM, a veth pair (host end `nsbox…h` on the
 * bridge and up, peer handed to the child as `eth0`), masquerade and DNAT entries (or a
 * userland proxy when nftables cannot be used). Any failure removes what was made and
 * rethrows. Call `release()` after the sandbox exits (or failed to start).
 *
 * Host-wide effects, as docker's bridge driver has: with nftables, `net.ipv4.ip_forward` is
 * set to 1 (outbound NAT needs it) and `route_localnet` on the bridge when ports are published
 * (for 127.0.0.1 DNAT); the bridge (default `nsbox0`) stays until `sweepNetwork({
 * idleDefaultBridge: true })` or its owner's `Bridge.destroy()`.
 */
export async function prepareSandboxNetwork(network: NetworkOption | undefined, ctx: PrepareContext): Promise<PreparedNetwork> {
  if (!ctx || typeof ctx.id !== 'string' || !ctx.id) throw new TypeError('ctx.id must be a non-empty string');
  if (ctx.handoff !== undefined && ctx.handoff !== 'move' && ctx.handoff !== 'create') throw new RangeError(`ctx.handoff must be 'move' or 'create'`);
  const create = ctx.handoff === 'create';
  const opt = validateNetworkOption(network);
  if (typeof opt === 'object' && 'mode' in opt && (opt.mode === 'user' || opt.mode === 'egress')) {
    throw new TypeError(`prepareSandboxNetwork: { mode: '${opt.mode}' } networking is set up by spawnIsolated (it needs the sandbox's namespaces)`);
  }
  if (typeof opt === 'string' || 'join' in opt) {
    const resolvConf = opt === 'host' || typeof opt === 'object' ? readHostResolv() : '';
    return { handoff: [], files: { hosts: BASE_HOSTS, resolvConf }, release: async () => {}, handOver: () => {} };
  }
  const o = opt as BridgeNetworkOption;
  if (process.geteuid?.() !== 0) {
    throw netError(1, 'network', 'RTM_NEWLINK', undefined, "bridge networking needs root (veths, a bridge and NAT in the host's network namespace); without privileges use network: 'user' (pasta or slirp4netns)");
  }
  if (!ownsNetworkNamespace()) {
    throw netError(1, 'network', 'RTM_NEWLINK', undefined, "bridge networking needs root of this network namespace (CAP_NET_ADMIN for veths, a bridge and NAT): this process is root in a user namespace that does not own its network namespace (a container without the host's privileges); use network: 'user' (pasta or slirp4netns), or give the container a network namespace of its own");
  }
  const undo: Array<() => Promise<void> | void> = [];
  let waitForLinks = true;
  const release = async () => {
    while (undo.length) {
      try { await undo.pop()!(); } catch { /* release never throws */ }
    }
  };
  try {
    const publish: PublishSpec[] = (o.publish ?? []).map((p) => ({ ...p, protocol: p.protocol ?? 'tcp' }));
    for (const p of publish) await checkHostPortFree(p);
    const nftReason = nftUnavailableReason();
    if (nftReason && publish.some((p) => p.protocol === 'udp')) {
      throw netError(95, 'publish', 'dlopen', 'libnftables.so.1', `publishing UDP ports needs nftables (${nftReason}); the userland fallback proxies TCP only`);
    }
    const id = ctx.id;
    const owner = `nsbox:${process.pid}:${selfOwner(id).start}:${id}`;
    const hostName = ownedLinkName('h');
    // in 'create' mode the pair appears during the hand-off; release removes it if it exists
    const veth = create ? undefined : VethPair.create({ mtu: o.mtu, host: hostName });
    undo.push(() => {
      // deleting a link waits on the kernel (an RCU grace period, ~20 ms); a sandbox's exit
      // need not wait for it, the veth goes with the sandbox's netns anyway
      const del = trackDeletion(veth ? veth.destroy() : netNative().netlinkLinkDelAsync(hostName, undefined, true).then(() => {}));
      return waitForLinks ? del : undefined;
    });
    const bridgeName = o.bridge instanceof Bridge ? o.bridge.name : o.bridge ?? DEFAULT_BRIDGE;
    let bridge: Bridge;
    let address: string;
    // bridge lookup/creation and the allocation happen under one lock: two processes never
    // create the same bridge nor take the same address
    const locked = <T>(fn: () => T): T => {
      try {
        return withIpamLock(bridgeName, fn);
      } catch (e) {
        dropIpamKey(bridgeName); // no bridge or no address came of it: no state file either (kept while entries live)
        throw e;
      }
    };
    ({ bridge, address } = locked(() => {
      let br: Bridge;
      if (o.bridge instanceof Bridge) br = o.bridge;
      else if (netNative().netlinkLinkIndex(bridgeName)) br = Bridge.open(bridgeName);
      else {
        const sub = parseCidr(o.subnet ?? DEFAULT_SUBNET, 'options.network.subnet');
        checkBridgeSubnet(bridgeName, sub, o.subnet !== undefined);
        const base = networkCidr(sub).split('/')[0]!;
        const gw = base.replace(/\d+$/, (x) => String(Number(x) + 1));
        br = Bridge.create(bridgeName, { address: `${gw}/${sub.prefix}` });
      }
      const gw4 = br.ipv4;
      if (!gw4) throw new RangeError(`options.network.bridge '${bridgeName}' has no IPv4 address to take a subnet from`);
      const want = o.address === undefined ? undefined : sandboxAddress(o.address, 'options.network.address');
      if (want && !contains(gw4, want.address, 4)) throw new RangeError(`options.network.address ${want.address} is outside the bridge subnet ${networkCidr(gw4)}`);
      if (want) checkPrefix(want, gw4, 'options.network.address', `the bridge '${bridgeName}'`);
      const a = allocateLocked(bridgeName, gw4, selfOwner(id, hostName), want?.address);
      return { bridge: br, address: a.address };
    }));
    undo.push(() => releaseAddress(bridgeName, address, id));
    const gw4 = bridge.ipv4!;
    if (veth) netNative().netlinkLinkSet(veth.hostIndex, { master: bridge.ifindex, up: true });
    const gateway = o.gateway ?? gw4.address;
    // dual stack: a bridge with an IPv6 address gives each sandbox the address with the same
    // host part as its IPv4 one (unique because the IPv4 one is), and a v6 default route
    const gw6 = bridge.ipv6;
    let address6: string | undefined;
    if (gw6 && gw6.prefix <= 112) {
      const v4 = cidrRange(gw4), v6 = cidrRange(gw6);
      const a6 = formatIp(v6.base + (ipToBigInt(address, 4) - v4.base), 6);
      if (ipToBigInt(a6, 6) === ipToBigInt(gw6.address, 6)) {
        throw new RangeError(`options.network: the sandbox's IPv6 address ${a6} (the host part of ${address} in ${networkCidr(gw6)}) is the bridge's own; give the bridge the same host part in both families (e.g. .1 and ::1)`);
      }
      address6 = a6;
    }
    // NAT and isolation for the bridge, 127.0.0.1 publishing needs route_localnet on it
    let publishMode: 'nftables' | 'proxy' | undefined;
    let published: NftPublish[] = [];
    if (!nftReason) {
      const key = `${bridge.name}@${bridge.ifindex}`;
      if (!nftBridgesDone.has(key)) {
        nftAddBridge(bridge.name, networkCidr(gw4));
        nftBridgesDone.add(key);
      }
      enableSysctl('/proc/sys/net/ipv4/ip_forward');
      if (publish.length) enableSysctl(`/proc/sys/net/ipv4/conf/${bridge.name}/route_localnet`);
    }
    if (publish.length) {
      if (!nftReason) {
        const entries: NftPublish[] = publish.map((p) => ({ protocol: p.protocol!, hostIp: p.hostIp, hostPort: p.host, containerIp: address, containerPort: p.container }));
        nftPublish(entries, owner);
        undo.push(() => nftUnpublish(entries));
        published = entries;
        publishMode = 'nftables';
      } else {
        for (const p of publish) {
          const px = await TcpProxy.listen(p.hostIp ?? '0.0.0.0', p.host, address, p.container);
          undo.push(() => px.close());
        }
        publishMode = 'proxy';
      }
    }
    const dns = o.dns ?? hostNameservers().filter((d) => !d.startsWith('127.') && d !== '::1');
    const files = {
      hosts: BASE_HOSTS + `${address}\t${o.hostname ?? 'sandbox'}\n` + (address6 ? `${address6}\t${o.hostname ?? 'sandbox'}\n` : ''),
      resolvConf: dns.map((d) => `nameserver ${d}\n`).join(''),
    };
    let released = false;
    let handed = false;
    return {
      handoff: [{
        ifindex: veth ? veth.peerIndex : 0, name: o.interfaceName ?? 'eth0', ...(o.mtu ? { mtu: o.mtu } : {}),
        addresses: [`${address}/${gw4.prefix}`, ...(address6 ? [`${address6}/${gw6!.prefix}`] : [])], gateway4: gateway,
        ...(address6 ? { gateway6: gw6!.address } : {}),
        ...(veth ? {} : { hostName, master: bridge.ifindex }),
      }],
      files,
      address,
      ...(address6 ? { address6 } : {}),
      hostLink: hostName,
      publishMode,
      async release(opts?: { waitForLinks?: boolean }) {
        if (released) return;
        released = true;
        waitForLinks = opts?.waitForLinks !== false;
        await release();
      },
      handOver(pid: number, start: number) {
        if (released || handed) return;
        handed = true;
        // never throws (the sandbox runs already): what could not be handed over stays the
        // creator's, as before
        try {
          if (handOverAddress(bridgeName, address, id, { pid, start }) && published.length) nftRecomment(published, `nsbox:${pid}:${start}:${id}`);
        } catch { /* stays the creator's */ }
      },
    };
  } catch (e) {
    await release();
    throw e;
  }
}

function readHostResolv(): string {
  try { return readFileSync('/etc/resolv.conf', 'utf8'); } catch { return ''; }
}

export { NsboxError };

// A Linux bridge: the host side of a sandbox network (like docker0).
import { randomBytes } from '../util/builtins.js';
import { checkLinkName, checkMac, checkMtu, parseCidr, type Cidr } from './addr.js';
import { netNative } from './native.js';
import { VethPair } from './veth.js';
import { dropIpamKey } from './ipam.js';
import { nftRemoveBridge, nftUnavailableReason } from './nft.js';
import { networkCidr } from './addr.js';

/** Removes what nsbox keeps about a bridge: nftables elements and IPAM state. Never throws. */
export function forgetBridge(name: string, ipv4?: Cidr): void {
  try {
    if (!nftUnavailableReason()) nftRemoveBridge(name, ipv4 ? networkCidr(ipv4) : undefined);
  } catch { /* best effort */ }
  try { dropIpamKey(name); } catch { /* best effort */ }
}

/**
 * A random unicast, locally administered MAC. A bridge given no MAC takes the lowest MAC of
 * its ports and changes it as ports come and go, so sandboxes that cached the gateway's old
 * MAC lose their traffic (seen with 100 sandboxes joining at once); a set MAC never changes.
 */
function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Options of {@link Bridge.create}. */
export interface BridgeOptions {
  /** Gateway address(es) with the subnet, e.g. `10.66.0.1/16` (also v6). */
  address?: string | string[];
  /** MTU. */
  mtu?: number;
  /** MAC address; default a random locally administered one (see {@link Bridge.create}). */
  mac?: string;
}

/** A bridge link. The creator owns it and removes it with {@link Bridge.destroy}. */
export class Bridge implements Disposable, AsyncDisposable {
  /** Link name. */
  readonly name: string;
  /** ifindex in the host namespace. */
  readonly ifindex: number;
  /** Addresses given at creation or found on an opened bridge. */
  readonly addresses: Cidr[];
  #owned: boolean;
  #destroyed = false;

  private constructor(name: string, ifindex: number, addresses: Cidr[], owned: boolean) {
    this.name = name;
    this.ifindex = ifindex;
    this.addresses = addresses;
    this.#owned = owned;
  }

  /**
   * Creates a bridge, up, with `address` as its gateway address. A name already taken is
   * an `EEXIST` NsboxError; on a failure after creation the bridge is removed again.
   */
  static create(name: string, opts: BridgeOptions = {}): Bridge {
    checkLinkName(name, 'name');
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    const list = opts.address === undefined ? [] : Array.isArray(opts.address) ? opts.address : [opts.address];
    const addrs = list.map((a, i) => parseCidr(a, list.length > 1 ? `address[${i}]` : 'address'));
    const mtu = opts.mtu === undefined ? undefined : checkMtu(opts.mtu, 'mtu');
    const mac = opts.mac === undefined ? randomMac() : checkMac(opts.mac, 'mac');
    const n = netNative();
    const { ifindex } = n.netlinkLinkAdd({ kind: 'bridge', name, mtu, mac, up: true });
    try {
      for (const a of addrs) n.netlinkAddr(true, ifindex, `${a.address}/${a.prefix}`);
    } catch (e) {
      try { n.netlinkLinkDel(ifindex); } catch { /* already reported */ }
      throw e;
    }
    return new Bridge(name, ifindex, addrs, true);
  }

  /** Opens an existing bridge (not owned: {@link destroy} on it is refused). */
  static open(name: string): Bridge {
    checkLinkName(name, 'name');
    const n = netNative();
    const ifindex = n.netlinkLinkIndex(name);
    if (!ifindex) throw new RangeError(`bridge: no link called '${name}'`);
    const link = n.netlinkLinks().find((l) => l.ifindex === ifindex);
    if (link?.kind !== 'bridge') throw new RangeError(`bridge: '${name}' is a ${link?.kind ?? 'plain'} link, not a bridge`);
    const addresses = n.netlinkAddrs().filter((a) => a.ifindex === ifindex && a.scope === 0)
      .map((a): Cidr => ({ family: a.family, address: a.address, prefix: a.prefixlen }));
    return new Bridge(name, ifindex, addresses, false);
  }

  /** The first IPv4 address (gateway and subnet), if any. */
  get ipv4(): Cidr | undefined { return this.addresses.find((a) => a.family === 4); }
  /** The first IPv6 address, if any. */
  get ipv6(): Cidr | undefined { return this.addresses.find((a) => a.family === 6); }

  /** Enslaves a link (a VethPair's host end, an ifindex or a name) and brings it up. */
  attach(link: VethPair | number | string): void {
    const n = netNative();
    const ref = link instanceof VethPair ? link.hostIndex : typeof link === 'number' ? link : checkLinkName(link, 'link');
    if (typeof ref === 'number' && (!Number.isInteger(ref) || ref <= 0)) throw new RangeError(`link must be a positive ifindex (got ${ref})`);
    n.netlinkLinkSet(ref, { master: this.ifindex, up: true });
  }

  /** Releases a link from the bridge. */
  detach(link: VethPair | number | string): void {
    const ref = link instanceof VethPair ? link.hostIndex : typeof link === 'number' ? link : checkLinkName(link, 'link');
    netNative().netlinkLinkSet(ref, { master: 0 });
  }

  /** Deletes the bridge (on a worker thread). Idempotent; refused for opened bridges. */
  async destroy(): Promise<void> {
    if (!this.#owned) throw new TypeError(`bridge '${this.name}' was opened, not created, by this object: not deleting it`);
    if (this.#destroyed) return;
    this.#destroyed = true;
    await netNative().netlinkLinkDelAsync(this.ifindex, undefined, true);
    forgetBridge(this.name, this.ipv4);
  }

  /** Synchronous delete (blocks; prefer {@link destroy}). */
  [Symbol.dispose](): void {
    if (!this.#owned || this.#destroyed) return;
    this.#destroyed = true;
    try { netNative().netlinkLinkDel(this.ifindex); } catch (e) { if ((e as { code?: string }).code !== 'ENODEV') throw e; }
    forgetBridge(this.name, this.ipv4);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#owned) await this.destroy();
  }
}

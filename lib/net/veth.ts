// A veth pair: one end stays on the host, the other goes into a sandbox's namespace.
import { checkLinkName, checkMtu, parseCidr } from './addr.js';
import { netNative, type RawNetns } from './native.js';
import { ownedLinkName, toRawNetns, type NetnsRef } from './link.js';

/** Options of {@link VethPair.create}. */
export interface VethOptions {
  /** Host end name (<= 15 bytes); default `nsbox<pid><n>h`. */
  host?: string;
  /** Peer end name; default `nsbox<pid><n>c`. */
  peer?: string;
  /** MTU of both ends. */
  mtu?: number;
  /** Bring the host end up at once (default false). */
  up?: boolean;
  /** Enslave the host end to this bridge ifindex at creation. */
  master?: number;
}

/**
 * Two connected virtual Ethernet links. Deleting either end deletes both; when the peer's
 * namespace goes away (the sandbox exits), the pair goes too.
 */
export class VethPair implements Disposable, AsyncDisposable {
  /** Host end name. */
  readonly host: string;
  /** Host end ifindex. */
  readonly hostIndex: number;
  #peer: string;
  #peerIndex: number;
  #peerNs: RawNetns;
  #destroyed = false;

  private constructor(host: string, hostIndex: number, peer: string, peerIndex: number) {
    this.host = host;
    this.hostIndex = hostIndex;
    this.#peer = peer;
    this.#peerIndex = peerIndex;
  }

  /** Creates the pair in the host namespace in one rtnetlink message. */
  static create(opts: VethOptions = {}): VethPair {
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    const host = opts.host === undefined ? ownedLinkName('h') : checkLinkName(opts.host, 'host');
    const peer = opts.peer === undefined ? host.replace(/h$/, 'c') : checkLinkName(opts.peer, 'peer');
    if (opts.host !== undefined && opts.peer === undefined && host === peer) throw new TypeError('peer is required when host does not end in "h"');
    if (host === peer) throw new RangeError(`host and peer must differ (both '${host}')`);
    const mtu = opts.mtu === undefined ? undefined : checkMtu(opts.mtu, 'mtu');
    const r = netNative().netlinkLinkAdd({ kind: 'veth', name: host, mtu, up: opts.up ?? false, master: opts.master, peer: { name: peer, mtu } });
    return new VethPair(host, r.ifindex, peer, r.peerIfindex ?? 0);
  }

  /** Peer end name (its new name after {@link moveToNamespace}). */
  get peer(): string { return this.#peer; }
  /** Peer ifindex in its current namespace. */
  get peerIndex(): number { return this.#peerIndex; }
  /** The namespace holding the peer (undefined: the host's). */
  get peerNetns(): RawNetns { return this.#peerNs; }

  /**
   * Moves the peer into `ns` (a pid or a namespace), renamed to `name` (default: keeps its
   * name), in one message. Later calls on the peer act inside that namespace.
   */
  moveToNamespace(ns: NetnsRef, opts: { name?: string; mtu?: number } = {}): this {
    const raw = toRawNetns(ns, 'ns');
    const name = opts.name === undefined ? this.#peer : checkLinkName(opts.name, 'name');
    const mtu = opts.mtu === undefined ? undefined : checkMtu(opts.mtu, 'mtu');
    netNative().netlinkLinkSet(this.#peerIndex || this.#peer, { netns: raw, name, mtu }, this.#peerNs);
    this.#peerNs = raw;
    this.#peer = name;
    this.#peerIndex = netNative().netlinkLinkIndex(name, raw);
    return this;
  }

  /** Adds `cidr` (e.g. `10.66.0.2/16`) to one end (default: the peer). */
  setAddress(cidr: string, end: 'peer' | 'host' = 'peer'): this {
    const c = parseCidr(cidr, 'cidr');
    const s = `${c.address}/${c.prefix}`;
    if (end === 'host') netNative().netlinkAddr(true, this.hostIndex, s, undefined);
    else if (end === 'peer') netNative().netlinkAddr(true, this.#peerIndex, s, this.#peerNs);
    else throw new TypeError(`end must be 'peer' or 'host' (got ${String(end)})`);
    return this;
  }

  /** Brings the given ends up (default both). */
  up(end: 'peer' | 'host' | 'both' = 'both'): this {
    if (end !== 'peer' && end !== 'host' && end !== 'both') throw new TypeError(`end must be 'peer', 'host' or 'both'`);
    if (end !== 'peer') netNative().netlinkLinkSet(this.hostIndex, { up: true });
    if (end !== 'host') netNative().netlinkLinkSet(this.#peerIndex, { up: true }, this.#peerNs);
    return this;
  }

  /**
   * Deletes the pair (through the host end, on a worker thread). Already gone (the peer's
   * namespace died) is fine. Idempotent.
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await netNative().netlinkLinkDelAsync(this.hostIndex, undefined, true);
  }

  /** Synchronous delete (blocks for the kernel's grace period; prefer {@link destroy}). */
  [Symbol.dispose](): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      netNative().netlinkLinkDel(this.hostIndex);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENODEV') throw e;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

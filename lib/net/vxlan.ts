// A VXLAN link: an L2 overlay over UDP, so sandboxes on different hosts share one subnet
// (attach it to each host's bridge). Made over rtnetlink like every other link.
import { checkIp, checkLinkName, checkMtu } from './addr.js';
import { netNative, type RawNetns } from './native.js';
import { toRawNetns, type NetnsRef } from './link.js';

/** Options of {@link Vxlan.create}. */
export interface VxlanOptions {
  /** VXLAN network identifier, 0..16777215. */
  id: number;
  /** Underlay address of this host (source of the UDP packets). */
  local?: string;
  /** Underlay address of the one peer host (point to point). Exclusive with `group`. */
  remote?: string;
  /** Multicast group of the overlay (many hosts). Exclusive with `remote`. */
  group?: string;
  /** Underlay link (name or ifindex); required with `group`. */
  dev?: string | number;
  /** UDP port, default 4789 (IANA). */
  port?: number;
  /** Learn remote MACs from traffic (default true). */
  learning?: boolean;
  /** MTU (the underlay's minus 50 bytes of encapsulation is the usual choice). */
  mtu?: number;
  /** Namespace to make it in (default the host's). */
  netns?: NetnsRef;
}

/** A VXLAN link; the creator removes it with {@link Vxlan.destroy}. */
export class Vxlan implements AsyncDisposable {
  /** Link name. */
  readonly name: string;
  /** ifindex in its namespace. */
  readonly ifindex: number;
  readonly #ns: RawNetns;
  #destroyed = false;

  private constructor(name: string, ifindex: number, ns: RawNetns) {
    this.name = name;
    this.ifindex = ifindex;
    this.#ns = ns;
  }

  /** Creates the link (down; bring it up with `setLink(name, { up: true })` or attach it to a bridge). */
  static create(name: string, opts: VxlanOptions): Vxlan {
    checkLinkName(name, 'name');
    if (!opts || typeof opts !== 'object') throw new TypeError('options must be an object');
    if (!Number.isInteger(opts.id) || opts.id < 0 || opts.id > 0xffffff) throw new RangeError(`id must be an integer in 0..16777215 (got ${String(opts.id)})`);
    if (opts.remote !== undefined && opts.group !== undefined) throw new TypeError('remote and group cannot both be given');
    const local = opts.local === undefined ? undefined : checkIp(opts.local, 'local').address;
    const remote = opts.remote === undefined ? undefined : checkIp(opts.remote, 'remote').address;
    const group = opts.group === undefined ? undefined : checkIp(opts.group, 'group').address;
    if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)) throw new RangeError(`port must be in 1..65535 (got ${opts.port})`);
    const mtu = opts.mtu === undefined ? undefined : checkMtu(opts.mtu, 'mtu');
    const ns = toRawNetns(opts.netns, 'netns');
    const n = netNative();
    let link: number | undefined;
    if (opts.dev !== undefined) {
      link = typeof opts.dev === 'number' ? opts.dev : n.netlinkLinkIndex(checkLinkName(opts.dev, 'dev'), ns);
      if (!link) throw new RangeError(`dev: no link called '${String(opts.dev)}'`);
    }
    if (group && !link) throw new TypeError('dev is required with group');
    const r = n.netlinkLinkAdd({ kind: 'vxlan', name, mtu, vxlan: { id: opts.id, local, remote, group, link, port: opts.port ?? 4789, learning: opts.learning ?? true } }, ns);
    return new Vxlan(name, r.ifindex, ns);
  }

  /** Deletes the link (worker thread). Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await netNative().netlinkLinkDelAsync(this.ifindex, this.#ns, true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

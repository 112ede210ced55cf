// Typed view of the raw functions netlink_bindings.cc and nft.cc add to the addon (internal).
import { native } from '../native.js';

/** A network namespace as the addon takes it: an open fd, a file path, or a process id. */
export type RawNetns = { fd: number } | { path: string } | { pid: number } | undefined;

/** A link as rtnetlink reports it. */
export interface RawLink {
  ifindex: number;
  name: string;
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  running: boolean;
  flags: number;
  master?: number;
  link?: number;
  linkNetnsid?: number;
  alias?: string;
}

/** An address as rtnetlink reports it. */
export interface RawAddr {
  ifindex: number;
  family: 4 | 6;
  address: string;
  prefixlen: number;
  scope: number;
}

/** A route as rtnetlink reports it. */
export interface RawRoute {
  family: 4 | 6;
  dst: string;
  gateway?: string;
  ifindex?: number;
  table: number;
  scope: number;
  protocol: number;
  type: number;
}

export interface NetNative {
  netlinkLinks(ns?: RawNetns): RawLink[];
  netlinkLinkIndex(name: string, ns?: RawNetns): number;
  netlinkLinkAdd(
    spec: {
      kind: string; name: string; mtu?: number; mac?: string; master?: number; up?: boolean;
      peer?: { name?: string; mtu?: number; netns?: RawNetns };
      vxlan?: { id: number; link?: number; local?: string; remote?: string; group?: string; port?: number; learning?: boolean };
    },
    ns?: RawNetns,
  ): { ifindex: number; peerIfindex?: number };
  netlinkLinkSet(
    link: number | string,
    spec: { name?: string; mtu?: number; mac?: string; up?: boolean; master?: number; netns?: RawNetns; alias?: string },
    ns?: RawNetns,
  ): void;
  netlinkLinkDel(link: number | string, ns?: RawNetns): void;
  netlinkLinkDelAsync(link: number | string, ns?: RawNetns, ignoreMissing?: boolean): Promise<boolean>;
  netlinkAddr(add: boolean, link: number | string, cidr: string, ns?: RawNetns): void;
  netlinkAddrs(ns?: RawNetns): RawAddr[];
  netlinkRoute(add: boolean, spec: { dst?: string; gateway?: string; link?: number | string; table?: number; metric?: number; /** preferred source address */ src?: string }, ns?: RawNetns): void;
  netlinkRoutes(ns?: RawNetns): RawRoute[];
  netlinkHandoff(spec: { ifindex: number; name: string; mtu?: number; addresses: string[]; gateway4?: string; gateway6?: string; hostName?: string; master?: number }, pid: number): void;
  fileLock(fd: number, exclusive: boolean, wait: boolean): boolean;
  nftAvailable(): string | null;
  /** `netnsFd`: run the batch in that network namespace (on a thread of the addon's that enters it). */
  nftRun(commands: string, opts?: { json?: boolean; handles?: boolean; echo?: boolean }, netnsFd?: number): string;
}

/** The addon's network functions. */
export function netNative(): NetNative {
  return native() as unknown as NetNative;
}

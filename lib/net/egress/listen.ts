// Listening sockets made inside a sandbox's network namespace, for this process to serve: the
// addon's helper (MakeNetnsSockets in addon/src/helpers.cc) enters the namespace (from its
// owning user namespace, for an unprivileged caller) and binds them to 127.0.0.1 there.
import { native } from '../../native.js';
import { netNative } from '../native.js';

interface NetnsSocketsAddon {
  netnsSockets(userFd: number, netFd: number, specs: Array<{ tcp: boolean; port: number }>): number[];
}

/**
 * Sockets bound to 127.0.0.1:<port> inside the network namespace `net` (TCP ones listening),
 * in the order asked. `user`: the namespace's owning user namespace, entered first (needed
 * without privilege over it). Throws NsboxError (step 'egress') and leaves no fd open.
 */
export function socketsInNetns(ns: { user?: { readonly fd: number }; net: { readonly fd: number } }, specs: Array<{ tcp: boolean; port: number }>): number[] {
  return (native() as unknown as NetnsSocketsAddon).netnsSockets(ns.user ? ns.user.fd : -1, ns.net.fd, specs);
}

let shared: ReadonlySet<string> | undefined;

/**
 * The addresses of this (the caller's) network namespace's interfaces: protected like
 * loopback. Read (a netlink dump, synchronous) once per turn of the event loop: sandboxes asked
 * for in one go (a caller starting 50 at once) share one read instead of blocking the loop
 * for one each; the next turn reads them afresh.
 */
export function hostAddresses(): ReadonlySet<string> {
  if (shared) return shared;
  let s: ReadonlySet<string>;
  try {
    s = new Set(netNative().netlinkAddrs().map((a) => a.address.toLowerCase()));
  } catch {
    s = new Set();
  }
  shared = s;
  setImmediate(() => { shared = undefined; }).unref();
  return s;
}

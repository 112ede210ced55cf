// The egress policy (`network: { mode: 'egress', ... }`, lib/net/egress/): the sandbox gets a
// network namespace with only `lo`, made first by a holder (./usernet.ts, holderRun); nsbox
// makes the proxy's and the name server's listening sockets inside it, serves them from this
// process, and points the sandbox's proxy variables and /etc/resolv.conf at them. A program
// that ignores the variables has no route out.
import type { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { EgressService, EGRESS_PORTS, type EgressHostStats, type EgressUpdate } from '../../net/egress/service.js';
import { hostAddresses, socketsInNetns } from '../../net/egress/listen.js';
import { validateEgress, type EgressNetworkOption } from '../../net/egress/policy.js';
import { nftUnavailableReason } from '../../net/nft.js';
import { netNative } from '../../net/native.js';
import { errnoError, type NsboxError } from '../../errors.js';
import type { SpawnIsolatedOptions } from '../../plan/options.js';
import type { LayerContext, LayerRun } from '../layer.js';
import { holderRun } from './usernet.js';

/** `p.network` of a sandbox with an egress policy. */
export interface EgressControl {
  /** Replaces the lists given; new connections and lookups follow them. Throws TypeError/RangeError naming the rule. */
  update(u: EgressUpdate): void;
  /** Per host: allowed and denied attempts, bytes in and out (so far). */
  readonly egress: Record<string, EgressHostStats>;
}

const BASE_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tsandbox\n';

/** The variables that point programs at the proxy (both cases: tools read either). */
export function proxyEnv(socks: boolean): Record<string, string> {
  const http = `http://127.0.0.1:${EGRESS_PORTS.http}`;
  const all = socks ? `socks5h://127.0.0.1:${EGRESS_PORTS.socks}` : http;
  const no = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: http, HTTPS_PROXY: http, ALL_PROXY: all, NO_PROXY: no,
    http_proxy: http, https_proxy: http, all_proxy: all, no_proxy: no,
  };
}

/** The system CA bundle path (Debian's, which OpenSSL, curl, Python and Node builds commonly read): the sandbox's view of it carries its interception CA. */
export const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The sandbox's view of the trust store with interception: the host's bundle and the
 * sandbox's CA, over {@link CA_BUNDLE} (a read-only bind in the sandbox's mount namespace
 * alone; the host's file is read, never written), and the variables that point TLS libraries
 * at it.
 */
function caFiles(caPem: string): { etc: Record<string, string>; env: Record<string, string> } {
  let host = '';
  try { host = readFileSync(CA_BUNDLE, 'utf8'); } catch { /* checked at the call for the host's view; a rootfs gets the CA alone */ }
  const bundle = `${host}${host && !host.endsWith('\n') ? '\n' : ''}# nsbox: this sandbox's TLS interception CA\n${caPem}`;
  return {
    etc: { [CA_BUNDLE.slice('/etc/'.length)]: bundle },
    env: CA_ENV,
  };
}

/** The variables that point TLS libraries at the sandbox's bundle (with interception). */
const CA_ENV: Readonly<Record<string, string>> = { SSL_CERT_FILE: CA_BUNDLE, CURL_CA_BUNDLE: CA_BUNDLE, REQUESTS_CA_BUNDLE: CA_BUNDLE, NODE_EXTRA_CA_CERTS: CA_BUNDLE };

/** Every variable an egress policy sets over the program's env (what explain() shows): the proxy ones, and the CA ones with `intercept`. */
export function egressEnv(opt: EgressNetworkOption): Record<string, string> {
  return { ...proxyEnv(opt.socks !== false), ...(opt.intercept === true ? CA_ENV : {}) };
}

/** What an egress policy adds to result.isolation (and explain()): the hosts whose TLS it intercepts, the transparent redirect. */
export function egressExplain(opt: EgressNetworkOption): { tlsInterception?: string[]; egressTransparent?: boolean } {
  return {
    ...(opt.intercept === true ? { tlsInterception: (opt.inject ?? []).map((i) => i.host) } : {}),
    ...(opt.transparent === true ? { egressTransparent: true } : {}),
  };
}

/**
 * The transparent redirect, in the sandbox's network namespace alone (it goes with it): a
 * default route over `lo` from 127.0.0.1 (so that a connect to any IPv4 address leaves at all), nat rules
 * that send TCP to ports 80 and 443 of other addresses than loopback to nsbox's listeners, and
 * a reset for every other outbound TCP connection. UDP and ICMP still reach nothing.
 */
const TRANSPARENT_RULES = `
add table ip nsbox_egress
add chain ip nsbox_egress nat_out { type nat hook output priority -100; policy accept; }
add rule ip nsbox_egress nat_out ip daddr != 127.0.0.0/8 tcp dport 80 redirect to :${EGRESS_PORTS.transparentHttp}
add rule ip nsbox_egress nat_out ip daddr != 127.0.0.0/8 tcp dport 443 redirect to :${EGRESS_PORTS.transparentTls}
add chain ip nsbox_egress refuse_out { type filter hook output priority 0; policy accept; }
add rule ip nsbox_egress refuse_out ip daddr != 127.0.0.0/8 meta l4proto tcp reject with tcp reset
`;

/** Why `transparent` cannot be had here (it needs root and nftables), or undefined. */
function transparentRefusal(): NsboxError | undefined {
  if (process.geteuid?.() !== 0) {
    return errnoError(1, 'egress', 'transparent', undefined, 'options.network.transparent needs root: the redirect is nft rules in the sandbox\'s network namespace, made by the caller. Run as root, or leave it out: programs that use the proxy variables (curl, wget, npm, pip, git) need no redirect');
  }
  const why = nftUnavailableReason();
  return why ? errnoError(38, 'egress', 'transparent', undefined, `options.network.transparent needs nftables (${why}): install libnftables1`) : undefined;
}

/** Sets up the redirect in the holder's network namespace (root: entered directly). */
function setUpTransparent(net: { readonly fd: number }): void {
  netNative().netlinkRoute(true, { dst: '0.0.0.0/0', link: 'lo', src: '127.0.0.1' }, { fd: net.fd });
  netNative().nftRun(TRANSPARENT_RULES, {}, net.fd);
}

export function egressRun(opt: EgressNetworkOption, o: SpawnIsolatedOptions, ctx: LayerContext): LayerRun {
  const hostAddrs = hostAddresses();
  const parsed = validateEgress(opt as unknown as Record<string, unknown>, 'options.network', hostAddrs);
  if (parsed.intercept && o.rootfs === undefined && o.image === undefined && !existsSync(CA_BUNDLE)) {
    throw new Error(`options.network.intercept: this host has no ${CA_BUNDLE} for the sandbox's view to add its CA to (install the ca-certificates package, or give a rootfs)`);
  }
  if (parsed.transparent) {
    const refused = transparentRefusal();
    if (refused) throw refused;
  }
  const service = new EgressService(opt as unknown as Record<string, unknown>, parsed, hostAddrs);
  let served = false;
  const run = holderRun('egress', o, ctx, async (_pid, ns) => {
    const specs = [
      { tcp: true, port: EGRESS_PORTS.http }, { tcp: false, port: EGRESS_PORTS.dns }, { tcp: true, port: EGRESS_PORTS.dns },
      ...(parsed.socks ? [{ tcp: true, port: EGRESS_PORTS.socks }] : []),
      ...(parsed.transparent ? [{ tcp: true, port: EGRESS_PORTS.transparentHttp }, { tcp: true, port: EGRESS_PORTS.transparentTls }] : []),
    ];
    // as root the network namespace is entered directly; without privilege from its owner
    const fds = socketsInNetns({ ...(process.geteuid?.() === 0 ? {} : { user: ns.user }), net: ns.net }, specs);
    served = true;
    const t = parsed.socks ? 4 : 3;
    await service.serve({
      http: fds[0]!, dnsUdp: fds[1]!, dnsTcp: fds[2]!, ...(parsed.socks ? { socks: fds[3]! } : {}),
      ...(parsed.transparent ? { transparentHttp: fds[t]!, transparentTls: fds[t + 1]! } : {}),
    });
    if (parsed.transparent) {
      try { setUpTransparent(ns.net); } catch (e) { await service.close(); throw e; }
    }
    const trust = service.ca ? caFiles(service.ca.certPem) : undefined;
    return {
      files: { hosts: BASE_HOSTS, resolvConf: 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n' },
      ...(trust ? { etc: trust.etc } : {}),
      env: { ...proxyEnv(parsed.socks), ...trust?.env },
      // its counts are in before the result is made
      release: () => service.close(),
    };
  });
  const control: EgressControl = {
    update: (u) => service.update(u),
    get egress() { return service.stats(); },
  };
  return {
    ...run,
    attach(proc: EventEmitter) {
      Object.defineProperty(proc, 'network', { value: control, enumerable: true, configurable: true });
      service.on('egress-denied', (e) => proc.emit('egress-denied', e));
    },
    result: () => ({ network: { egress: service.stats() } }),
    report: () => egressExplain(opt),
    release() {
      const r = run.release?.();
      if (!served) void service.close();
      return r;
    },
  };
}

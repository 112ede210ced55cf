// The egress policy (`network: { mode: 'egress', ... }`): the option's validation (pure) and
// the decisions the proxy and the DNS server ask for: may the sandbox reach this host and
// port, and this address. Default deny; deny rules win over allow rules; the protected ranges
// (loopback, private, link-local with the cloud metadata address, multicast, the host's own
// addresses) are reached only when an address rule lists them with `allowPrivate: true`.
import { BlockList, isIP } from 'node:net';
import { fail, isObject } from '../../util/validate.js';
import { crypto } from '../../util/builtins.js';

/** A host an egress rule names. */
export interface EgressRule {
  /**
   * A host name (`registry.npmjs.org`), a wildcard for its subdomains (`*.pypi.org`: any
   * name ending in `.pypi.org`, not `pypi.org` itself), `*` (any name, not an address), an IP
   * address or a CIDR block (`203.0.113.0/24`).
   */
  host: string;
  /** The ports it may be reached on; default any. */
  ports?: number[];
  /**
   * For an address or CIDR rule inside the protected ranges (loopback, private, link-local,
   * the cloud metadata address, the host's own addresses): reaching it is meant. Required for
   * such a rule, refused on a name rule (a name never opens a protected address by itself).
   */
  allowPrivate?: boolean;
}

/** What {@link EgressNetworkOption.onRequest} is asked. */
export interface EgressRequest {
  /** The host as the sandbox asked for it (lower case, no trailing dot): a name or an address. */
  host: string;
  port: number;
  /**
   * `'http'`: a plain HTTP request to the proxy (or, with `transparent`, a redirected one, named
   * by its Host header); `'connect'`: a CONNECT tunnel (TLS, untouched); `'socks'`: a SOCKS5
   * connection; `'tls'`: with `transparent`, a redirected TLS connection, named by its SNI.
   */
  protocol: 'http' | 'connect' | 'socks' | 'tls';
  /** Plain HTTP only. */
  method?: string;
  path?: string;
  /** What the allow and deny lists decided alone. */
  listed: boolean;
}

/** Headers added to a plain HTTP request to a host on its way out; the sandbox never sees them. */
export interface EgressInjection {
  /** A host name or wildcard pattern (as in {@link EgressRule.host}), which an allow rule must cover. */
  host: string;
  headers: Record<string, string>;
}

/** An address-to-be for a name: what {@link EgressNetworkOption.lookup} returns. */
export type EgressLookup = (hostname: string) => Promise<Array<string | { address: string; family?: number }>>;

/** The egress policy of a sandbox: its network namespace has only `lo`, and nsbox's proxy is the way out. */
export interface EgressNetworkOption {
  mode: 'egress';
  /** Hosts the sandbox may reach (strings are {@link EgressRule.host} patterns). Default: none. */
  allow?: Array<string | EgressRule>;
  /** Hosts it may not reach; wins over `allow` and `onRequest`. */
  deny?: Array<string | EgressRule>;
  /**
   * Asked for every connection (and plain HTTP request) that `deny` and the protected ranges
   * let through, with what the lists decided (`listed`); its answer decides. Throwing,
   * rejecting, or not answering within 30 s denies. Without it, the lists decide.
   */
  onRequest?: (req: EgressRequest) => boolean | Promise<boolean>;
  /**
   * Headers added to plain HTTP requests to these hosts. HTTPS passes through untouched
   * unless `intercept` is true.
   */
  inject?: EgressInjection[];
  /**
   * TLS interception (a relaxation, shown in `result.isolation.tlsInterception`): HTTPS
   * through the proxy (CONNECT) to a host an `inject` rule names is terminated by nsbox with a
   * certificate from a CA made for this sandbox alone, the request's headers get the injected
   * ones, and nsbox makes the connection to the real server, verifying it as usual. The
   * sandbox's view of the system CA bundle (/etc/ssl/certs/ca-certificates.crt) and
   * `SSL_CERT_FILE`, `CURL_CA_BUNDLE`, `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS` carry that
   * CA's certificate; its key stays in this process; the host's trust store is not touched.
   * HTTPS to other hosts still passes untouched. Needs `inject`. Default false.
   */
  intercept?: boolean;
  /**
   * With `intercept`: the certificates (PEM) the real servers are verified against, instead
   * of Node's root store (a private registry's CA; tests).
   */
  upstreamCa?: string;
  /**
   * Root only: also programs that ignore the proxy variables reach the allowed hosts. nft rules
   * in the sandbox's network namespace (and a default route over `lo`) redirect its outbound
   * IPv4 TCP to ports 80 and 443 to nsbox, which reads the host from the Host header (HTTP) or
   * the TLS server name (SNI) and applies the same policy; other outbound TCP is refused. Shown
   * in `result.isolation.egressTransparent`. Default false.
   */
  transparent?: boolean;
  /** Also a SOCKS5 proxy (127.0.0.1:1080 inside; `ALL_PROXY` then points at it). Default true. */
  socks?: boolean;
  /**
   * How nsbox resolves names (on the host, outside the sandbox). Default: the host's resolver
   * (`dns.lookup`). Whatever it returns is checked against the protected ranges again.
   */
  lookup?: EgressLookup;
}

export const EGRESS_KEYS = ['mode', 'allow', 'deny', 'onRequest', 'inject', 'intercept', 'upstreamCa', 'socks', 'lookup', 'transparent'];

/** A rule once parsed. */
export type ParsedRule =
  | { kind: 'name'; name: string; ports: Set<number> | null }
  | { kind: 'suffix'; suffix: string; ports: Set<number> | null } // '.pypi.org'
  | { kind: 'anyName'; ports: Set<number> | null }
  | { kind: 'addr'; list: BlockList; text: string; family: 4 | 6; ports: Set<number> | null; allowPrivate: boolean };

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Lower case, one trailing dot dropped; undefined when not a host name. */
export function normalName(s: string): string | undefined {
  let n = s.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (n.length === 0 || n.length > 253) return undefined;
  for (const l of n.split('.')) if (!LABEL.test(l)) return undefined;
  return n;
}

// --- the protected ranges --------------------------------------------------------------------

const PROTECTED_V4: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'this network'], ['10.0.0.0', 8, 'private'], ['100.64.0.0', 10, 'shared (CGNAT)'],
  ['127.0.0.0', 8, 'loopback'], ['169.254.0.0', 16, 'link-local (cloud metadata)'], ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol'], ['192.168.0.0', 16, 'private'], ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'], ['240.0.0.0', 4, 'reserved'],
];
const PROTECTED_V6: Array<[string, number, string]> = [
  ['::', 128, 'unspecified'], ['::1', 128, 'loopback'], ['fc00::', 7, 'unique local (fd00:ec2::254: cloud metadata)'],
  ['fe80::', 10, 'link-local'], ['ff00::', 8, 'multicast'], ['100::', 64, 'discard'],
];

function ipv4Of(addr: string): string | undefined {
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses carry an IPv4 one
  const m = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (m) return m[1];
  const h = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(addr);
  if (h) {
    const a = parseInt(h[1]!, 16), b = parseInt(h[2]!, 16);
    return `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  return undefined;
}

/** An address in the form BlockList checks it: IPv4-mapped and NAT64 ones as their IPv4 address. */
export function canonicalAddress(addr: string): { address: string; family: 4 | 6 } | undefined {
  let a = addr;
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const f = isIP(a);
  if (f === 0) return undefined;
  if (f === 6) {
    const v4 = ipv4Of(a);
    if (v4) return { address: v4, family: 4 };
    return { address: a.toLowerCase(), family: 6 };
  }
  return { address: a, family: 4 };
}

/** The protected range an address is in ('loopback', 'private', ...), or undefined. */
export function protectedRange(addr: string, hostAddrs: ReadonlySet<string> = new Set()): string | undefined {
  const c = canonicalAddress(addr);
  if (!c) return undefined;
  if (hostAddrs.has(c.address)) return "the host's own";
  const table = c.family === 4 ? PROTECTED_V4 : PROTECTED_V6;
  for (const [base, prefix, what] of table) {
    const b = new BlockList();
    b.addSubnet(base, prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    if (b.check(c.address, c.family === 4 ? 'ipv4' : 'ipv6')) return what;
  }
  return undefined;
}

const PROTECTED_LIST = (() => {
  const b = new BlockList();
  for (const [base, p] of PROTECTED_V4) b.addSubnet(base, p, 'ipv4');
  for (const [base, p] of PROTECTED_V6) b.addSubnet(base, p, 'ipv6');
  return b;
})();

// --- validation -----------------------------------------------------------------------------

function parsePorts(v: unknown, what: string): Set<number> | null {
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.length === 0) fail(what, 'must be a non-empty array of ports');
  const s = new Set<number>();
  v.forEach((p, i) => {
    if (typeof p !== 'number' || !Number.isInteger(p)) fail(`${what}[${i}]`, `must be an integer port (got ${String(p)})`);
    if (p < 1 || p > 65535) fail(`${what}[${i}]`, `must be a port in 1..65535 (got ${p})`, RangeError);
    s.add(p);
  });
  return s;
}

/** Parses one rule; throws TypeError/RangeError naming it (`options.network.allow[2]`). */
export function parseRule(v: unknown, what: string, hostAddrs: ReadonlySet<string> = new Set(), forDeny = false): ParsedRule {
  let host: unknown, ports: Set<number> | null = null, allowPrivate = false;
  if (typeof v === 'string') host = v;
  else if (isObject(v)) {
    for (const k of Object.keys(v)) if (k !== 'host' && k !== 'ports' && k !== 'allowPrivate') fail(what, `has an unknown key '${k}' (allowed: host, ports, allowPrivate)`);
    host = v.host;
    ports = parsePorts(v.ports, `${what}.ports`);
    if (v.allowPrivate !== undefined && typeof v.allowPrivate !== 'boolean') fail(`${what}.allowPrivate`, 'must be a boolean');
    allowPrivate = v.allowPrivate === true;
  } else fail(what, `must be a host pattern (a string) or { host, ports?, allowPrivate? } (got ${v === null ? 'null' : typeof v})`);
  if (typeof host !== 'string') fail(`${what}.host`, `must be a string (got ${typeof host})`);
  if (host.length === 0) fail(what, 'must not be an empty host', RangeError);
  // an address or a CIDR block
  const slash = host.indexOf('/');
  const addrPart = slash < 0 ? host : host.slice(0, slash);
  const c = canonicalAddress(addrPart);
  if (c) {
    let prefix = c.family === 4 ? 32 : 128;
    if (slash >= 0) {
      const ps = host.slice(slash + 1);
      if (!/^\d{1,3}$/.test(ps) || Number(ps) > prefix) fail(what, `'${host}' has a bad prefix length (0..${prefix})`, RangeError);
      prefix = Number(ps);
    }
    const list = new BlockList();
    list.addSubnet(c.address, prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    // inside (or overlapping) a protected range: only with allowPrivate
    const hits = protectedRange(c.address, hostAddrs) ?? (prefix < (c.family === 4 ? 32 : 128) ? overlapsProtected(c.address, prefix, c.family) : undefined);
    if (hits && !allowPrivate && !forDeny) {
      fail(what, `'${host}' is in a protected range (${hits}): give { host: '${host}', allowPrivate: true } to mean it`);
    }
    return { kind: 'addr', list, text: host, family: c.family, ports, allowPrivate };
  }
  if (allowPrivate) fail(`${what}.allowPrivate`, `is for address rules only ('${host}' is a name: list the addresses it may reach with allowPrivate instead)`);
  if (host === '*') return { kind: 'anyName', ports };
  if (host.startsWith('*.')) {
    const rest = normalName(host.slice(2));
    if (!rest || host.endsWith('.')) fail(what, `'${host}' is not a valid wildcard pattern ('*.' and a host name, e.g. '*.pypi.org')`, RangeError);
    return { kind: 'suffix', suffix: `.${rest}`, ports };
  }
  if (host.includes('*')) fail(what, `'${host}' is not a valid host pattern ('*' only as a whole first label: '*.example.com')`, RangeError);
  const n = normalName(host);
  if (!n) fail(what, `'${host}' is not a valid host name`, RangeError);
  if (/^[0-9.]+$/.test(n)) fail(what, `'${host}' is neither a host name nor an IP address`, RangeError);
  return { kind: 'name', name: n, ports };
}

function overlapsProtected(base: string, prefix: number, family: 4 | 6): string | undefined {
  // a block wider than one address: protected when a protected range starts inside it or it
  // starts inside one (the second is protectedRange of its base, checked by the caller)
  const me = new BlockList();
  me.addSubnet(base, prefix, family === 4 ? 'ipv4' : 'ipv6');
  for (const [b, , what] of family === 4 ? PROTECTED_V4 : PROTECTED_V6) if (me.check(b, family === 4 ? 'ipv4' : 'ipv6')) return what;
  return undefined;
}

function parseRules(v: unknown, what: string, hostAddrs: ReadonlySet<string>, forDeny = false): ParsedRule[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(what, `must be an array of host patterns or rules (got ${typeof v})`);
  return v.map((r, i) => parseRule(r, `${what}[${i}]`, hostAddrs, forDeny));
}

/** A host name or an address requested by the sandbox, as the rules are matched against it. */
export interface Target {
  /** lower case name, or canonical address */
  host: string;
  isAddress: boolean;
  family?: 4 | 6;
  port: number;
}

export function ruleMatches(r: ParsedRule, t: Target): boolean {
  if (r.ports && !r.ports.has(t.port)) return false;
  switch (r.kind) {
    case 'name': return !t.isAddress && t.host === r.name;
    case 'suffix': return !t.isAddress && t.host.endsWith(r.suffix);
    case 'anyName': return !t.isAddress;
    case 'addr': return t.isAddress && t.family === r.family && r.list.check(t.host, r.family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** Whether rule `r`'s hosts are all covered by `by` (for inject: its host must be allowed). */
function covers(by: ParsedRule, r: ParsedRule): boolean {
  if (by.kind === 'anyName') return r.kind !== 'addr';
  if (r.kind === 'name') return (by.kind === 'name' && by.name === r.name) || (by.kind === 'suffix' && r.name.endsWith(by.suffix));
  if (r.kind === 'suffix') return by.kind === 'suffix' && (r.suffix === by.suffix || r.suffix.endsWith(by.suffix));
  return false;
}

/** A parsed injection. */
export interface ParsedInjection {
  rule: ParsedRule;
  headers: Array<[string, string]>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length']);

function parseInject(v: unknown, what: string, allow: ParsedRule[]): ParsedInjection[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(what, 'must be an array of { host, headers }');
  return v.map((x, i) => {
    const w = `${what}[${i}]`;
    if (!isObject(x)) fail(w, 'must be an object { host, headers }');
    for (const k of Object.keys(x)) if (k !== 'host' && k !== 'headers') fail(w, `has an unknown key '${k}' (allowed: host, headers)`);
    if (typeof x.host !== 'string') fail(`${w}.host`, 'must be a host name or pattern (a string)');
    const rule = parseRule(x.host, `${w}.host`);
    if (rule.kind === 'addr') fail(`${w}.host`, `must be a host name or pattern: headers go to names (got '${x.host}')`);
    if (!allow.some((a) => covers(a, rule))) fail(w, `injects headers for '${x.host}', which no rule of options.network.allow allows`);
    if (!isObject(x.headers) || Object.keys(x.headers).length === 0) fail(`${w}.headers`, 'must be a non-empty object of header names and strings');
    const headers: Array<[string, string]> = [];
    for (const [k, val] of Object.entries(x.headers)) {
      if (!TOKEN.test(k)) fail(`${w}.headers`, `has an invalid header name '${k}'`);
      if (HOP.has(k.toLowerCase())) fail(`${w}.headers.${k}`, 'is a header the proxy sets itself');
      if (typeof val !== 'string') fail(`${w}.headers.${k}`, `must be a string (got ${typeof val})`);
      if (/[\r\n\0]/.test(val)) fail(`${w}.headers.${k}`, 'must not contain CR, LF or NUL');
      headers.push([k, val]);
    }
    return { rule, headers };
  });
}

/** The option once checked. */
export interface ParsedEgress {
  allow: ParsedRule[];
  deny: ParsedRule[];
  inject: ParsedInjection[];
  onRequest?: EgressNetworkOption['onRequest'];
  lookup?: EgressLookup;
  socks: boolean;
  intercept: boolean;
  transparent: boolean;
  upstreamCa?: string;
}

/**
 * Checks an egress option without touching the system; throws TypeError/RangeError naming the
 * option or the rule (`options.network.allow[1]`).
 */
export function validateEgress(o: Record<string, unknown>, what = 'options.network', hostAddrs: ReadonlySet<string> = new Set()): ParsedEgress {
  for (const k of Object.keys(o)) if (!EGRESS_KEYS.includes(k)) fail(`${what}.${k}`, `is not an egress network option (known: ${EGRESS_KEYS.join(', ')})`);
  const allow = parseRules(o.allow, `${what}.allow`, hostAddrs);
  // denying a protected address needs no allowPrivate (and allowPrivate opens nothing there)
  const deny = parseRules(o.deny, `${what}.deny`, hostAddrs, true);
  for (const r of deny) if (r.kind === 'addr') r.allowPrivate = false;
  if (o.onRequest !== undefined && typeof o.onRequest !== 'function') fail(`${what}.onRequest`, 'must be a function');
  if (o.lookup !== undefined && typeof o.lookup !== 'function') fail(`${what}.lookup`, 'must be a function (hostname) => Promise<addresses>');
  if (o.socks !== undefined && typeof o.socks !== 'boolean') fail(`${what}.socks`, 'must be a boolean');
  const inject = parseInject(o.inject, `${what}.inject`, allow);
  if (o.intercept !== undefined && typeof o.intercept !== 'boolean') fail(`${what}.intercept`, `must be a boolean (got ${typeof o.intercept})`);
  const intercept = o.intercept === true;
  if (o.transparent !== undefined && typeof o.transparent !== 'boolean') fail(`${what}.transparent`, `must be a boolean (got ${typeof o.transparent})`);
  if (intercept && inject.length === 0) fail(`${what}.intercept`, `intercepts HTTPS only to hosts an inject rule names: give ${what}.inject`);
  if (o.upstreamCa !== undefined) {
    if (!intercept) fail(`${what}.upstreamCa`, `is for TLS interception only (give ${what}.intercept: true)`);
    if (typeof o.upstreamCa !== 'string' || !/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(o.upstreamCa)) fail(`${what}.upstreamCa`, 'must be PEM certificates (a string with -----BEGIN CERTIFICATE-----)');
    if (/PRIVATE KEY/.test(o.upstreamCa)) fail(`${what}.upstreamCa`, 'must hold certificates only, not a private key');
    try { new (crypto().X509Certificate)(o.upstreamCa); } catch { fail(`${what}.upstreamCa`, 'is not a valid PEM certificate', RangeError); }
  }
  return {
    allow, deny, inject, socks: o.socks !== false, intercept, transparent: o.transparent === true,
    ...(o.upstreamCa !== undefined ? { upstreamCa: o.upstreamCa as string } : {}),
    ...(o.onRequest ? { onRequest: o.onRequest as EgressNetworkOption['onRequest'] } : {}),
    ...(o.lookup ? { lookup: o.lookup as EgressLookup } : {}),
  };
}

// --- the decisions --------------------------------------------------------------------------

/** Why a connection was denied (the 'egress-denied' event's `reason`). */
export type DenyReason = 'deny-rule' | 'not-allowed' | 'protected-address' | 'on-request' | 'no-address' | 'bad-request' | 'too-many-connections';

/** A host as the sandbox named it: a name or an address; undefined when neither. */
export function parseTarget(host: string, port: number): Target | undefined {
  const c = canonicalAddress(host);
  if (c) return { host: c.address, isAddress: true, family: c.family, port };
  const n = normalName(host);
  if (!n) return undefined;
  return { host: n, isAddress: false, port };
}

/** The lists' verdict on a target: 'deny' (a deny rule), true (allowed), false (not listed). */
export function listVerdict(p: Pick<ParsedEgress, 'allow' | 'deny'>, t: Target): 'deny' | boolean {
  if (p.deny.some((r) => ruleMatches(r, t))) return 'deny';
  return p.allow.some((r) => ruleMatches(r, t));
}

/**
 * Whether an address (a name's resolved one, or one the sandbox gave) may be connected to:
 * undefined when it may, else the protected range's name or 'deny-rule'. A protected address
 * passes only when an allow rule lists it with allowPrivate.
 */
export function addressVerdict(p: Pick<ParsedEgress, 'allow' | 'deny'>, address: string, port: number, hostAddrs: ReadonlySet<string>): string | undefined {
  const c = canonicalAddress(address);
  if (!c) return 'not an address';
  const t: Target = { host: c.address, isAddress: true, family: c.family, port };
  if (p.deny.some((r) => ruleMatches(r, t))) return 'deny-rule';
  const prot = hostAddrs.has(c.address) || PROTECTED_LIST.check(c.address, c.family === 4 ? 'ipv4' : 'ipv6');
  if (!prot) return undefined;
  if (p.allow.some((r) => r.kind === 'addr' && r.allowPrivate && ruleMatches(r, t))) return undefined;
  return protectedRange(c.address, hostAddrs) ?? 'protected';
}

/** The headers injected into a plain HTTP request to `host` (later injections win). */
export function injectionsFor(p: Pick<ParsedEgress, 'inject'>, t: Target): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const i of p.inject) if (ruleMatches({ ...i.rule, ports: null } as ParsedRule, t)) out.push(...i.headers);
  return out;
}

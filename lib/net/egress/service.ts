// One sandbox's way out: an HTTP proxy (CONNECT tunnels, plain HTTP requests), a SOCKS5 proxy
// and a name server, served from this Node process on sockets made inside the sandbox's
// network namespace (./listen.ts). Every connection is decided by the policy (./policy.ts) on
// the name the sandbox asked for, and again on each address nsbox's own resolver gives for it
// (no DNS rebinding into a protected range). TLS passes through untouched, unless the policy
// opts into interception (`intercept: true`): then CONNECT tunnels to a host with injected
// headers are terminated here with a leaf of the sandbox's own CA (./ca.ts), each HTTP/1.1
// request inside gets the headers, and goes out over a TLS connection of this process that
// verifies the real server.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, OutgoingHttpHeaders, Server as HttpServer, ServerResponse } from 'node:http';
import type { RequestOptions } from 'node:https';
import { createHttpServer, createSecureContext, dnsLookup, httpsRequest, tls as tlsModule } from '../../util/builtins.js';
import { SandboxCa } from './ca.js';
import { connect as netConnect, createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { cancelRelay, relay } from './relay.js';
import { buildAnswer, formErr, parseQuery, RCODE, type DnsQuestion } from './dns.js';
import {
  addressVerdict, injectionsFor, listVerdict, parseTarget, validateEgress,
  type DenyReason, type EgressInjection, type EgressLookup, type EgressRule, type ParsedEgress, type Target,
} from './policy.js';

/** Ports of the listeners inside the sandbox (on 127.0.0.1). */
export const EGRESS_PORTS = { http: 3128, socks: 1080, dns: 53, transparentHttp: 3180, transparentTls: 3443 } as const;

/** Per host: what the sandbox's attempts came to. */
export interface EgressHostStats {
  allowed: number;
  denied: number;
  /** bytes from the host into the sandbox */
  bytesIn: number;
  /** bytes from the sandbox to the host */
  bytesOut: number;
}

/** The 'egress-denied' event's argument. */
export interface EgressDeniedEvent {
  host: string;
  port: number;
  protocol: 'http' | 'connect' | 'socks' | 'dns' | 'tls';
  method?: string;
  path?: string;
  reason: DenyReason;
  /** the protected range, the resolver's error, ... */
  detail?: string;
}

/** What `p.network.update()` takes: the lists given replace the current ones. */
export interface EgressUpdate {
  allow?: Array<string | EgressRule>;
  deny?: Array<string | EgressRule>;
  inject?: EgressInjection[];
}

/** Hosts tracked one by one; attempts at more fall under '(other)' (a sandbox cannot grow our memory without bound). */
const MAX_HOSTS = 1024;
const ON_REQUEST_TIMEOUT_MS = 30_000;
/** Connections out at once per sandbox (each holds two fds of the caller's process): more are denied. */
export const MAX_EGRESS_CONNECTIONS = 1024;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade']);

type Decision = { ok: true; addresses: string[]; target: Target } | { ok: false; reason: DenyReason; detail?: string };

const defaultLookup: EgressLookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** The listening fds a service serves (made inside the sandbox's namespace). */
export interface EgressFds {
  http: number;
  dnsUdp: number;
  dnsTcp: number;
  socks?: number;
  /** with `transparent`: where the nft rules redirect outbound TCP to port 80 and to port 443 */
  transparentHttp?: number;
  transparentTls?: number;
}

/**
 * One sandbox's egress service. Emits 'egress-denied' ({@link EgressDeniedEvent}) for every
 * denied attempt.
 */
export class EgressService extends EventEmitter {
  #p: ParsedEgress;
  /** the lists as given (an update replaces some and checks them all again) */
  #raw: Record<'allow' | 'deny' | 'inject', unknown>;
  readonly #hostAddrs: ReadonlySet<string>;
  readonly #lookup: EgressLookup;
  readonly #stats = new Map<string, EgressHostStats>();
  readonly #servers: Array<HttpServer | NetServer> = [];
  readonly #sockets = new Set<Socket>();
  readonly #relays = new Set<number>();
  /** tunnels and responses in the kernel's relay, until their counts are in */
  readonly #pending = new Set<Promise<void>>();
  #udp: UdpSocket | undefined;
  #closed = false;
  /** with `intercept`: the sandbox's CA, and the HTTP server the terminated tunnels are handed to */
  readonly ca: SandboxCa | undefined;
  #inner: HttpServer | undefined;
  readonly #intercepted = new WeakMap<object, { target: Target; addresses: string[]; port: number; key: string }>();

  constructor(option: Record<string, unknown>, parsed: ParsedEgress, hostAddrs: ReadonlySet<string>) {
    super();
    const copy = (x: unknown) => (Array.isArray(x) ? [...x] : x);
    this.#raw = { allow: copy(option.allow), deny: copy(option.deny), inject: copy(option.inject) };
    this.#p = parsed;
    this.#hostAddrs = hostAddrs;
    this.#lookup = parsed.lookup ?? defaultLookup;
    if (parsed.intercept) this.ca = new SandboxCa();
  }

  /**
   * Replaces the lists given (checked as the option is: a mistake throws and changes nothing;
   * `inject` must stay covered by `allow`). New connections and name lookups follow them;
   * connections already made stay.
   */
  update(u: EgressUpdate): void {
    if (u === null || typeof u !== 'object' || Array.isArray(u)) throw new TypeError('network.update() takes an object { allow?, deny?, inject? }');
    for (const k of Object.keys(u)) if (k !== 'allow' && k !== 'deny' && k !== 'inject') throw new TypeError(`network.update().${k} is not an egress list (allow, deny, inject)`);
    // copies: a caller's later change to its arrays changes nothing here
    const copy = (x: unknown) => (Array.isArray(x) ? [...x] : x);
    const raw = {
      allow: 'allow' in u ? copy(u.allow) : this.#raw.allow,
      deny: 'deny' in u ? copy(u.deny) : this.#raw.deny,
      inject: 'inject' in u ? copy(u.inject) : this.#raw.inject,
    };
    const next = validateEgress(raw, 'network.update()', this.#hostAddrs);
    this.#raw = raw;
    this.#p = { ...this.#p, allow: next.allow, deny: next.deny, inject: next.inject };
  }

  /** Per host (as the sandbox named it): allowed and denied attempts, bytes in and out. */
  stats(): Record<string, EgressHostStats> {
    const o: Record<string, EgressHostStats> = {};
    for (const [k, v] of this.#stats) o[k] = { ...v };
    return o;
  }

  #entry(host: string): EgressHostStats {
    let e = this.#stats.get(host);
    if (!e) {
      if (this.#stats.size >= MAX_HOSTS) host = '(other)';
      e = this.#stats.get(host);
      if (!e) this.#stats.set(host, (e = { allowed: 0, denied: 0, bytesIn: 0, bytesOut: 0 }));
    }
    return e;
  }

  #denied(ev: EgressDeniedEvent): void {
    this.#entry(ev.host).denied++;
    this.emit('egress-denied', ev);
  }

  /** The policy's verdict on one attempt, and the addresses it may go to. */
  async #decide(rawHost: string, port: number, protocol: 'http' | 'connect' | 'socks' | 'tls', method?: string, path?: string): Promise<Decision> {
    const p = this.#p;
    if (this.#relays.size + this.#sockets.size / 2 >= MAX_EGRESS_CONNECTIONS) return { ok: false, reason: 'too-many-connections', detail: `${MAX_EGRESS_CONNECTIONS} at once` };
    const target = parseTarget(rawHost, port);
    if (!target || !Number.isInteger(port) || port < 1 || port > 65535) return { ok: false, reason: 'bad-request', detail: 'not a host name or address' };
    const lv = listVerdict(p, target);
    if (lv === 'deny') return { ok: false, reason: 'deny-rule' };
    if (target.isAddress) {
      const av = addressVerdict(p, target.host, port, this.#hostAddrs);
      if (av) return { ok: false, reason: av === 'deny-rule' ? 'deny-rule' : 'protected-address', detail: av };
    }
    let allowed = lv === true;
    if (p.onRequest) {
      try {
        const ask = Promise.resolve(p.onRequest({ host: target.host, port, protocol, ...(method ? { method } : {}), ...(path !== undefined ? { path } : {}), listed: allowed }));
        let timer: NodeJS.Timeout | undefined;
        const answer = await Promise.race([ask, new Promise<false>((r) => { timer = setTimeout(() => r(false), ON_REQUEST_TIMEOUT_MS); timer.unref(); })]);
        clearTimeout(timer);
        if (answer !== true) return { ok: false, reason: 'on-request' };
        allowed = true;
      } catch {
        return { ok: false, reason: 'on-request', detail: 'onRequest threw' };
      }
    }
    if (!allowed) return { ok: false, reason: 'not-allowed' };
    if (target.isAddress) return { ok: true, addresses: [target.host], target };
    let found: string[];
    try {
      found = (await this.#lookup(target.host)).map((a) => (typeof a === 'string' ? a : a.address));
    } catch (e) {
      return { ok: false, reason: 'no-address', detail: (e as NodeJS.ErrnoException).code ?? String(e) };
    }
    // the rules may have changed while we asked; the address check uses the current ones
    const addresses: string[] = [];
    let why: string | undefined;
    for (const a of found) {
      const v = addressVerdict(this.#p, a, port, this.#hostAddrs);
      if (v) why ??= `${a}: ${v}`;
      else addresses.push(a);
    }
    if (addresses.length === 0) return why ? { ok: false, reason: 'protected-address', detail: why } : { ok: false, reason: 'no-address', detail: 'no address' };
    return { ok: true, addresses, target };
  }

  /** Connects to the first address that answers. */
  #connect(addresses: string[], port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      let i = 0;
      const next = (err?: Error) => {
        if (i >= addresses.length) { reject(err ?? new Error('no address')); return; }
        const s = netConnect({ host: addresses[i++]!, port });
        const onErr = (e: Error) => { s.destroy(); next(e); };
        s.once('error', onErr);
        s.once('connect', () => { s.off('error', onErr); resolve(s); });
      };
      next();
    });
  }

  #settle(p: Promise<void>): void {
    const q = p.catch(() => {}).finally(() => this.#pending.delete(q));
    this.#pending.add(q);
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  // --- the HTTP proxy ---------------------------------------------------------------------

  async #onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const hostHeader = req.headers.host;
    let host: string, port: number, path: string;
    try {
      if (/^http:\/\//i.test(req.url ?? '')) {
        const u = new URL(req.url!);
        host = u.hostname; port = u.port ? Number(u.port) : 80; path = `${u.pathname}${u.search}`;
        // the Host header names the same host: no fronting another site behind an allowed one
        if (hostHeader !== undefined && new URL(`http://${hostHeader}`).hostname.toLowerCase() !== host.toLowerCase()) {
          this.#denied({ host: host.toLowerCase(), port, protocol: 'http', method, path, reason: 'bad-request', detail: `Host header '${hostHeader}' names another host` });
          return void reply(res, 400, 'nsbox egress: the Host header names another host than the request\n');
        }
      } else if ((req.url ?? '').startsWith('/') && hostHeader) {
        const u = new URL(`http://${hostHeader}`);
        host = u.hostname; port = u.port ? Number(u.port) : 80; path = req.url!;
      } else {
        return void reply(res, 400, 'nsbox egress: give an absolute http:// URL, or use CONNECT for https\n');
      }
    } catch {
      return void reply(res, 400, 'nsbox egress: bad request target\n');
    }
    if (host.startsWith('[')) host = host.slice(1, -1);
    const d = await this.#decide(host, port, 'http', method, path);
    const key = d.ok ? d.target.host : parseTarget(host, port)?.host ?? host.toLowerCase().slice(0, 255);
    if (!d.ok) {
      this.#denied({ host: key, port, protocol: 'http', method, path, reason: d.reason, ...(d.detail ? { detail: d.detail } : {}) });
      return void reply(res, 403, `nsbox egress: ${key}:${port} is not allowed (${d.reason})\n`);
    }
    this.#entry(key).allowed++;
    // the request goes out as the sandbox sent it, less the hop-by-hop headers, plus the
    // injected ones (which replace the sandbox's own of the same name), with Connection: close
    const inject = injectionsFor(this.#p, d.target);
    const injected = new Set(inject.map(([k]) => k.toLowerCase()));
    const chunked = /chunked/i.test(String(req.headers['transfer-encoding'] ?? ''));
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!, lk = k.toLowerCase();
      if (HOP_BY_HOP.has(lk) || injected.has(lk) || lk === 'transfer-encoding') continue;
      head += `${k}: ${req.rawHeaders[i + 1]}\r\n`;
    }
    if (req.headers.host === undefined) head += `Host: ${hostHeaderOf(host, port)}\r\n`;
    for (const [k, v] of inject) head += `${k}: ${v}\r\n`;
    head += `${chunked ? 'Transfer-Encoding: chunked\r\n' : ''}Connection: close\r\n\r\n`;
    let up: Socket;
    try {
      up = await this.#connect(d.addresses, port);
    } catch (e) {
      return void reply(res, 502, `nsbox egress: ${key}:${port} could not be reached (${(e as NodeJS.ErrnoException).code ?? 'error'})\n`);
    }
    this.#track(up);
    up.on('error', () => {});
    let sent = 0;
    try {
      sent += await sendAll(up, head);
      for await (const chunk of req as AsyncIterable<Buffer>) {
        sent += await sendAll(up, chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk);
      }
      if (chunked) sent += await sendAll(up, '0\r\n\r\n');
    } catch {
      up.destroy();
      return void reply(res, 502, `nsbox egress: ${key}:${port} failed\n`);
    }
    // the response goes back untouched, in the kernel; the client's connection ends with it
    // (anything it sends after its request is never passed on: each request is decided)
    const client = req.socket;
    let rid = 0;
    this.#settle(relay(client, up, (id) => { rid = id; this.#relays.add(id); }, true).then((r) => {
      this.#relays.delete(rid);
      const e = this.#entry(key);
      e.bytesOut += sent;
      e.bytesIn += r.bToA;
    }));
  }

  async #onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    this.#track(client);
    client.on('error', () => {});
    const target = req.url ?? '';
    const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(target);
    if (!m) { client.end('HTTP/1.1 400 Bad Request\r\n\r\n'); return; }
    const host = m[1]!, port = Number(m[2]);
    const d = await this.#decide(host, port, 'connect');
    const key = d.ok ? d.target.host : parseTarget(host, port)?.host ?? host.toLowerCase().slice(0, 255);
    if (!d.ok) {
      this.#denied({ host: key, port, protocol: 'connect', reason: d.reason, ...(d.detail ? { detail: d.detail } : {}) });
      client.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nnsbox egress: ${key}:${port} is not allowed (${d.reason})\n`);
      return;
    }
    this.#entry(key).allowed++;
    if (this.ca && !d.target.isAddress && injectionsFor(this.#p, d.target).length > 0) return this.#intercept(client, head, d.target, d.addresses, port, key);
    let up: Socket;
    try {
      up = await this.#connect(d.addresses, port);
    } catch (e) {
      client.end(`HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\nnsbox egress: ${key}:${port} could not be reached (${(e as NodeJS.ErrnoException).code ?? 'error'})\n`);
      return;
    }
    this.#track(up);
    if (client.destroyed) { up.destroy(); return; }
    try {
      await Promise.all([write(client, 'HTTP/1.1 200 Connection Established\r\n\r\n'), head.length ? write(up, head) : undefined]);
    } catch {
      client.destroy(); up.destroy();
      return;
    }
    this.#tunnel(client, up, key, head.length);
  }

  /** The tunnel's bytes go through the addon's relay (in the kernel); its host's counts grow when it ends. */
  #tunnel(client: Socket, up: Socket, key: string, sentBefore: number): void {
    let rid = 0;
    this.#settle(relay(client, up, (id) => { rid = id; this.#relays.add(id); }).then((r) => {
      this.#relays.delete(rid);
      const e = this.#entry(key);
      e.bytesOut += r.aToB + sentBefore;
      e.bytesIn += r.bToA;
    }));
  }

  // --- TLS interception (opted into) ----------------------------------------------------------

  /** Terminates the tunnel's TLS with a leaf of the sandbox's CA; its requests go to {@link #onIntercepted}. */
  async #intercept(client: Socket, head: Buffer, target: Target, addresses: string[], port: number, key: string): Promise<void> {
    if (client.destroyed) return;
    try {
      await write(client, 'HTTP/1.1 200 Connection Established\r\n\r\n');
    } catch {
      client.destroy();
      return;
    }
    if (head.length) client.unshift(head);
    const from = { read: client.bytesRead, written: client.bytesWritten };
    client.once('close', () => {
      const e = this.#entry(key);
      e.bytesOut += client.bytesRead - from.read;
      e.bytesIn += client.bytesWritten - from.written;
    });
    const tls = new (tlsModule().TLSSocket)(client, { isServer: true, secureContext: createSecureContext(this.ca!.leaf(target.host)), ALPNProtocols: ['http/1.1'] });
    tls.on('error', () => client.destroy());
    this.#intercepted.set(tls, { target, addresses, port, key });
    if (!this.#inner) {
      this.#inner = createHttpServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => this.#onIntercepted(req, res));
      this.#inner.on('clientError', (_e, s) => s.destroy());
    }
    this.#inner.emit('connection', tls);
  }

  /** One HTTP/1.1 request inside an intercepted tunnel: the injected headers added, sent over a verified TLS connection of our own. */
  #onIntercepted(req: IncomingMessage, res: ServerResponse): void {
    const c = this.#intercepted.get(req.socket);
    if (!c) return void reply(res, 500, 'nsbox egress: unknown tunnel\n');
    const { target, port, key } = c;
    const method = req.method ?? 'GET';
    const path = req.url ?? '';
    // the request is for the tunnel's host: no fronting another site behind an allowed one
    let named: string | undefined;
    try { named = req.headers.host === undefined ? target.host : new URL(`https://${req.headers.host}`).hostname.toLowerCase(); } catch { /* bad Host */ }
    if (named !== target.host || !path.startsWith('/')) {
      this.#denied({ host: key, port, protocol: 'connect', method, path, reason: 'bad-request', detail: named !== target.host ? `Host header '${req.headers.host}' names another host` : 'not an origin-form request' });
      return void reply(res, 400, 'nsbox egress: the request does not name the tunnel\'s host\n');
    }
    const inject = injectionsFor(this.#p, target);
    const injected = new Set(inject.map(([k]) => k.toLowerCase()));
    const headers: OutgoingHttpHeaders = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!.toLowerCase();
      if (HOP_BY_HOP.has(k) || injected.has(k) || k === 'transfer-encoding') continue;
      const prev = headers[k];
      headers[k] = prev === undefined ? req.rawHeaders[i + 1]! : `${String(prev)}, ${req.rawHeaders[i + 1]}`;
    }
    headers.host ??= port === 443 ? target.host : `${target.host}:${port}`;
    for (const [k, v] of inject) headers[k.toLowerCase()] = v;
    // the addresses the policy passed, tried in turn (never another lookup)
    const addrs = c.addresses.map((a) => ({ address: a, family: isIP(a) }));
    const lookup = (_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) => (o.all ? cb(null, addrs) : cb(null, addrs[0]!.address, addrs[0]!.family));
    const up = httpsRequest({
      host: target.host, port, servername: target.host, method, path, headers, agent: false,
      lookup: lookup as never, ...(this.#p.upstreamCa ? { ca: this.#p.upstreamCa } : {}),
      autoSelectFamily: addrs.length > 1,
    } as RequestOptions);
    up.on('socket', (s) => this.#track(s as Socket));
    up.on('response', (ur) => {
      const raw: string[] = [];
      for (let i = 0; i < ur.rawHeaders.length; i += 2) {
        const k = ur.rawHeaders[i]!.toLowerCase();
        if (!HOP_BY_HOP.has(k) && k !== 'transfer-encoding') raw.push(ur.rawHeaders[i]!, ur.rawHeaders[i + 1]!);
      }
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, raw);
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    });
    // the real server's certificate is verified as any client of this host would (or against upstreamCa)
    up.on('error', (e) => reply(res, 502, `nsbox egress: ${key}:${port} failed (${(e as NodeJS.ErrnoException).code ?? 'error'})\n`));
    req.pipe(up);
  }

  // --- SOCKS5 -------------------------------------------------------------------------------

  #onSocks(client: Socket): void {
    this.#track(client);
    client.on('error', () => {});
    let buf = Buffer.alloc(0);
    let stage: 'greeting' | 'request' | 'busy' = 'greeting';
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 1024) return void client.destroy();
      if (stage === 'greeting') {
        if (buf.length < 2) return;
        const n = buf[1]!;
        if (buf[0] !== 5) return void client.destroy();
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (!methods.includes(0)) return void client.end(Buffer.from([5, 0xff]));
        client.write(Buffer.from([5, 0]));
        stage = 'request';
      }
      if (stage === 'request') {
        if (buf.length < 5) return;
        const atyp = buf[3]!;
        const alen = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + buf[4]! : -1;
        if (alen < 0) return void client.end(socksReply(8));
        if (buf.length < 4 + alen + 2) return;
        const cmd = buf[1]!;
        const a = buf.subarray(4, 4 + alen);
        const host = atyp === 1 ? [...a].join('.') : atyp === 3 ? a.subarray(1).toString('latin1') : ipv6Text(a);
        const port = buf.readUInt16BE(4 + alen);
        const rest = buf.subarray(4 + alen + 2);
        stage = 'busy';
        client.off('data', onData);
        client.pause();
        if (cmd !== 1) return void client.end(socksReply(7));
        void this.#socksConnect(client, host, port, rest);
      }
    };
    client.on('data', onData);
  }

  async #socksConnect(client: Socket, host: string, port: number, rest: Buffer): Promise<void> {
    const d = await this.#decide(host, port, 'socks');
    const key = d.ok ? d.target.host : parseTarget(host, port)?.host ?? host.toLowerCase().slice(0, 255);
    if (!d.ok) {
      this.#denied({ host: key, port, protocol: 'socks', reason: d.reason, ...(d.detail ? { detail: d.detail } : {}) });
      return void client.end(socksReply(d.reason === 'no-address' ? 4 : 2));
    }
    this.#entry(key).allowed++;
    let up: Socket;
    try {
      up = await this.#connect(d.addresses, port);
    } catch {
      return void client.end(socksReply(5));
    }
    this.#track(up);
    if (client.destroyed) { up.destroy(); return; }
    try {
      await Promise.all([write(client, socksReply(0)), rest.length ? write(up, rest) : undefined]);
    } catch {
      client.destroy(); up.destroy();
      return;
    }
    this.#tunnel(client, up, key, rest.length);
  }

  // --- transparent (root, nft redirect) ------------------------------------------------------

  /** A redirected connection to port 443: the host is the TLS ClientHello's server name (SNI). */
  #onTransparentTls(client: Socket): void {
    this.#track(client);
    client.on('error', () => {});
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), 10_000);
    timer.unref();
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const sni = serverName(buf);
      if (sni === undefined) return;
      client.off('data', onData);
      client.pause();
      clearTimeout(timer);
      void this.#transparentTls(client, sni, buf);
    };
    client.on('data', onData);
  }

  async #transparentTls(client: Socket, sni: string | null, hello: Buffer): Promise<void> {
    const port = 443;
    if (sni === null) {
      this.#denied({ host: '(no server name)', port, protocol: 'tls', reason: 'bad-request', detail: 'not a TLS ClientHello with a server name (SNI)' });
      return void client.resetAndDestroy();
    }
    const d = await this.#decide(sni, port, 'tls');
    const key = d.ok ? d.target.host : parseTarget(sni, port)?.host ?? sni.toLowerCase().slice(0, 255);
    if (!d.ok) {
      this.#denied({ host: key, port, protocol: 'tls', reason: d.reason, ...(d.detail ? { detail: d.detail } : {}) });
      // a TLS client sees its connection reset (no response of ours could pass its checks)
      return void client.resetAndDestroy();
    }
    this.#entry(key).allowed++;
    let up: Socket;
    try {
      up = await this.#connect(d.addresses, port);
    } catch {
      return void client.resetAndDestroy();
    }
    this.#track(up);
    if (client.destroyed) { up.destroy(); return; }
    try {
      await write(up, hello);
    } catch {
      client.destroy(); up.destroy();
      return;
    }
    this.#tunnel(client, up, key, hello.length);
  }

  // --- DNS -----------------------------------------------------------------------------------

  async #answer(msg: Buffer): Promise<Buffer | undefined> {
    const q = parseQuery(msg);
    if (!q) return formErr(msg);
    return buildAnswer(q, ...(await this.#resolveFor(q)));
  }

  async #resolveFor(q: DnsQuestion): Promise<[number, string[]]> {
    const p = this.#p;
    const t = parseTarget(q.name, 53);
    // names only: an address as a name, or no name at all, is not one of the policy's
    if (!t || t.isAddress) return [RCODE.NXDOMAIN, []];
    const denyAll = p.deny.some((r) => r.kind !== 'addr' && !r.ports && matchesName(r, t.host));
    const listed = !denyAll && p.allow.some((r) => r.kind !== 'addr' && matchesName(r, t.host));
    if (!listed) {
      // glibc asks A and AAAA for each lookup: one event per name and type is what the sandbox tried
      this.#denied({ host: t.host, port: 53, protocol: 'dns', reason: denyAll ? 'deny-rule' : 'not-allowed', detail: `qtype ${q.qtype}` });
      return [RCODE.NXDOMAIN, []];
    }
    if (q.qtype !== 1 && q.qtype !== 28) return [RCODE.NOERROR, []];
    let found: string[];
    try {
      found = (await this.#lookup(t.host)).map((a) => (typeof a === 'string' ? a : a.address));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return [code === 'ENOTFOUND' || code === 'ENODATA' ? RCODE.NXDOMAIN : RCODE.SERVFAIL, []];
    }
    return [RCODE.NOERROR, found.filter((a) => !addressVerdict(this.#p, a, 0, this.#hostAddrs))];
  }

  // --- serving ---------------------------------------------------------------------------------

  /** Serves the listening fds (made inside the sandbox's network namespace); they are its to close from now on. */
  async serve(fds: EgressFds): Promise<void> {
    const http = createHttpServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => { void this.#onHttp(req, res); });
    http.on('connect', (req, sock: Socket, head: Buffer) => { void this.#onConnect(req, sock, head); });
    http.on('clientError', (_e, s) => s.destroy());
    http.on('connection', (s: Socket) => this.#track(s));
    http.maxConnections = MAX_EGRESS_CONNECTIONS;
    this.#servers.push(http);
    const dnsTcp = createNetServer((s) => this.#onDnsTcp(s));
    dnsTcp.maxConnections = 64;
    this.#servers.push(dnsTcp);
    const waits: Promise<void>[] = [listenFd(http, fds.http), listenFd(dnsTcp, fds.dnsTcp)];
    if (fds.socks !== undefined) {
      const socks = createNetServer((s) => this.#onSocks(s));
      socks.maxConnections = MAX_EGRESS_CONNECTIONS;
      this.#servers.push(socks);
      waits.push(listenFd(socks, fds.socks));
    }
    // transparent: redirected HTTP goes to the HTTP proxy (named by its Host header), TLS by its SNI
    if (fds.transparentHttp !== undefined) {
      const th = createNetServer((c) => http.emit('connection', c));
      th.maxConnections = MAX_EGRESS_CONNECTIONS;
      this.#servers.push(th);
      waits.push(listenFd(th, fds.transparentHttp));
    }
    if (fds.transparentTls !== undefined) {
      const tt = createNetServer((c) => this.#onTransparentTls(c));
      tt.maxConnections = MAX_EGRESS_CONNECTIONS;
      this.#servers.push(tt);
      waits.push(listenFd(tt, fds.transparentTls));
    }
    const udp = createSocket('udp4');
    this.#udp = udp;
    udp.on('message', (msg, rinfo) => {
      void this.#answer(msg).then((a) => { if (a && !this.#closed) udp.send(a, rinfo.port, rinfo.address); }, () => {});
    });
    udp.on('error', () => {});
    waits.push(new Promise((resolve, reject) => { udp.once('error', reject); udp.bind({ fd: fds.dnsUdp } as never, () => { udp.off('error', reject); resolve(); }); }));
    await Promise.all(waits);
  }

  #onDnsTcp(s: Socket): void {
    this.#track(s);
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        const msg = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        void this.#answer(msg).then((a) => {
          if (!a || s.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(a.length);
          s.write(Buffer.concat([len, a]));
        }, () => {});
      }
      if (buf.length > 65537) s.destroy();
    });
  }

  /**
   * Stops serving: the listeners close and every connection through them ends (relays the
   * sandbox's exit has not ended within `graceMs` are cut), their counts in. Idempotent.
   */
  async close(graceMs = 250): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sockets) s.destroy();
    if (this.#pending.size) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...this.#pending]), new Promise((r) => { t = setTimeout(r, graceMs); })]);
      clearTimeout(t);
    }
    for (const id of this.#relays) cancelRelay(id);
    await Promise.all([...this.#pending]);
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (this.#udp) await new Promise<void>((r) => { try { this.#udp!.close(() => r()); } catch { r(); } });
  }
}

function matchesName(r: ParsedEgress['allow'][number], name: string): boolean {
  return r.kind === 'name' ? r.name === name : r.kind === 'suffix' ? name.endsWith(r.suffix) : r.kind === 'anyName';
}

function listenFd(s: HttpServer | NetServer, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen({ fd }, () => { s.off('error', reject); resolve(); });
  });
}

function reply(res: ServerResponse, code: number, text: string): void {
  if (res.headersSent) { res.destroy(); return; }
  res.writeHead(code, { 'content-type': 'text/plain', connection: 'close' });
  res.end(text);
}

function hostHeaderOf(host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === 80 ? h : `${h}:${port}`;
}

/** Writes and resolves with the byte count once written. */
function sendAll(s: Socket, b: Buffer | string): Promise<number> {
  const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return write(s, buf).then(() => buf.length);
}

function write(s: Socket, b: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => { s.write(b, (e) => (e ? reject(e) : resolve())); });
}

function socksReply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/**
 * The server name (SNI) of the TLS ClientHello at the start of `b`: undefined while more bytes
 * are needed, null when it is no ClientHello or names no host. Only the first record is read
 * (a ClientHello fits one: at most 16 KiB).
 */
export function serverName(b: Buffer): string | null | undefined {
  if (b.length < 5) return b.length > 0 && b[0] !== 0x16 ? null : undefined;
  if (b[0] !== 0x16 || b[1] !== 3) return null;
  const recLen = b.readUInt16BE(3);
  if (recLen > 16384 + 2048) return null;
  if (b.length < 5 + recLen) return undefined;
  const r = b.subarray(5, 5 + recLen);
  try {
    if (r[0] !== 1) return null;
    let i = 4 + 2 + 32; // handshake header, client_version, random
    i += 1 + r[i]!; // session id
    i += 2 + r.readUInt16BE(i); // cipher suites
    i += 1 + r[i]!; // compression methods
    if (i + 2 > r.length) return null;
    const end = Math.min(r.length, i + 2 + r.readUInt16BE(i));
    i += 2;
    while (i + 4 <= end) {
      const type = r.readUInt16BE(i), len = r.readUInt16BE(i + 2);
      i += 4;
      if (type === 0) {
        // server_name: a list of (type, name); type 0 is a host name
        let j = i + 2;
        while (j + 3 <= i + len) {
          const nt = r[j]!, nl = r.readUInt16BE(j + 1);
          if (nt === 0) return r.subarray(j + 3, j + 3 + nl).toString('latin1');
          j += 3 + nl;
        }
        return null;
      }
      i += len;
    }
    return null;
  } catch {
    return null;
  }
}

function ipv6Text(b: Buffer): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i).toString(16));
  return g.join(':');
}

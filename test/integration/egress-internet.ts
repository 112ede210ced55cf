// Test helper: a fake internet on this machine for the egress policy's tests and bench. A Node
// process in a network namespace of its own (made with the `unshare` CLI, test setup only)
// serves HTTP on port 80 and 8080 of every address it has (and HTTPS on 443 when given a key); a veth made with nsbox's netlink
// API joins it to the host: the host end 203.0.113.1/24, the far end 203.0.113.10-12 (TEST-NET-3,
// a documentation range: not one of the policy's protected ones). Every request is logged as
// a JSON line on the server's stdout, which the test reads (the response never echoes headers).
import { spawn, type ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { netNative } from '../../lib/net/native.js';
import { ownedLinkName } from '../../lib/net/link.js';

export const INET = {
  'allowed.test': '203.0.113.10',
  'denied.test': '203.0.113.11',
  'other.test': '203.0.113.12',
  'api.test': '203.0.113.12',
  'registry.test': '203.0.113.12',
  // names that resolve into protected ranges (DNS rebinding)
  'rebind.test': '127.0.0.1',
  'meta.test': '169.254.169.254',
} as const;

/** A lookup for the policy: the fake internet's names (as the `lookup` option takes it). */
export const LOOKUP_SOURCE = `async (h) => { const m = ${JSON.stringify(INET)}; if (m[h]) return [m[h]]; throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' }); }`;
// eslint-disable-next-line no-new-func
export const lookup = new Function(`return ${LOOKUP_SOURCE}`)() as (h: string) => Promise<string[]>;

export interface LoggedRequest {
  local: string;
  port: number;
  method: string;
  url: string;
  headers: Record<string, string>;
}

export interface FakeInternet {
  requests: LoggedRequest[];
  /** the server process (the bench reads its CPU time) */
  pid: number;
  /** waits until a request matching `f` is logged (or 5 s pass) */
  waitFor(f: (r: LoggedRequest) => boolean): Promise<LoggedRequest | undefined>;
  close(): Promise<void>;
}

const SERVER = `
const http = require('node:http');
const big = Buffer.alloc(1 << 20, 97);
const registry = process.env.REGISTRY ? JSON.parse(process.env.REGISTRY) : {};
const handler = (req, res) => {
  const rec = { local: req.socket.localAddress, port: req.socket.localPort, method: req.method, url: req.url, headers: req.headers };
  process.stdout.write(JSON.stringify(rec) + '\\n');
  const file = registry[req.url];
  if (file && req.headers.host === 'registry.test') {
    res.writeHead(200, { 'content-type': file.type });
    return res.end(Buffer.from(file.base64, 'base64'));
  }
  if (req.url.startsWith('/big/')) {
    const n = Number(req.url.slice(5));
    res.writeHead(200, { 'content-length': n * big.length });
    let i = 0;
    const more = () => { while (i < n) { i++; if (!res.write(big)) return res.once('drain', more); } res.end(); };
    return more();
  }
  req.resume();
  req.on('end', () => res.end('hello from ' + req.socket.localAddress + ' for ' + req.headers.host + '\\n'));
};
let up = 0;
const servers = [[80, http.createServer(handler)], [8080, http.createServer(handler)]];
if (process.env.TLS_KEY) servers.push([443, require('node:https').createServer({ key: process.env.TLS_KEY, cert: process.env.TLS_CERT }, handler)]);
for (const [port, s] of servers) s.listen(port, '0.0.0.0', () => { if (++up === servers.length) process.stdout.write('listening\\n'); });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/** Files the server gives for Host registry.test, by path (a package registry's). */
export type RegistryFiles = Record<string, { type: string; base64: string }>;

/** `tls`: also HTTPS on port 443 with this key and certificate (PEM); `registry`: files for Host registry.test. */
export async function startFakeInternet(tls?: { key: string; cert: string }, registry?: RegistryFiles): Promise<FakeInternet> {
  const c: ChildProcess = spawn('unshare', ['-n', process.execPath, '-e', SERVER], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...(tls ? { TLS_KEY: tls.key, TLS_CERT: tls.cert } : {}), ...(registry ? { REGISTRY: JSON.stringify(registry) } : {}) },
  });
  const requests: LoggedRequest[] = [];
  let buf = '';
  let listening: () => void;
  const ready = new Promise<void>((r) => { listening = r; });
  c.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'listening') listening();
      else if (line) requests.push(JSON.parse(line));
    }
  });
  const me = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 400; i++) {
    try { if (readlinkSync(`/proc/${c.pid}/ns/net`) !== me) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 5));
  }
  const n = netNative();
  const host = ownedLinkName('i');
  const far = { pid: c.pid! };
  try {
    n.netlinkLinkAdd({ kind: 'veth', name: host, up: true, peer: { name: 'inet0', netns: far } });
    n.netlinkAddr(true, host, '203.0.113.1/24');
    for (const a of ['203.0.113.10', '203.0.113.11', '203.0.113.12']) n.netlinkAddr(true, 'inet0', `${a}/24`, far);
    n.netlinkLinkSet('inet0', { up: true }, far);
    n.netlinkLinkSet('lo', { up: true }, far);
    await ready;
  } catch (e) {
    c.kill('SIGKILL');
    try { n.netlinkLinkDel(host); } catch { /* gone with the namespace */ }
    throw e;
  }
  return {
    requests,
    pid: c.pid!,
    async waitFor(f) {
      for (let i = 0; i < 100; i++) {
        const r = requests.find(f);
        if (r) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
      return undefined;
    },
    async close() {
      c.stdin!.end();
      await new Promise((r) => { if (c.exitCode !== null) r(null); else c.once('exit', r); });
      try { await n.netlinkLinkDelAsync(host, undefined, true); } catch { /* gone with the namespace */ }
    },
  };
}

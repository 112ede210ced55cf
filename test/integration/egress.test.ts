// The egress policy (issue 18) against a fake internet on this machine (./egress-internet.ts):
// inside a sandbox, busybox wget and curl (and npm ci, pip install from mirrors) reach an allowed name through the proxy variables;
// a denied name, a raw address, the metadata address, a name resolving into a protected range
// fail; a program ignoring the variables (TCP, UDP, ICMP) reaches nothing; DNS for a denied
// name is NXDOMAIN; rules changed mid-run take effect; injected headers arrive and are not
// visible inside. As root and as an unprivileged caller (uid 65534, a Node process of its own).
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, nftUnavailableReason, spawnIsolated, type IsolatedProcess } from '../../lib/index.js';
import type { EgressDeniedEvent } from '../../lib/net/egress/service.js';
import { fdCount, isRoot, skipReason, sleep } from '../helpers/host.js';
import { expectNoNetLeftovers, netState } from './net-leftovers.js';
import { INET, LOOKUP_SOURCE, lookup, startFakeInternet, type FakeInternet, type RegistryFiles } from './egress-internet.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const BB = '/bin/busybox';
const CURL = ['/usr/bin/curl', '/bin/curl'].find((p) => existsSync(p));
const NPM = ['/usr/bin/npm', '/usr/local/bin/npm'].find((p) => existsSync(p));
const SS = ['/usr/bin/ss', '/bin/ss', '/usr/sbin/ss', '/sbin/ss'].find((p) => existsSync(p));
const skip = skipReason(!isRoot, 'makes a fake internet (a network namespace and a veth) as root')
  || skipReason(!existsSync(BB), 'busybox (static) is not at /bin/busybox');

let inet: FakeInternet;
/** a self-signed certificate for allowed.test (HTTPS through a CONNECT tunnel), when openssl is here */
let tls: { key: string; cert: string } | undefined;
beforeAll(async () => {
  if (skip) return;
  const dir = mkdtempSync('/tmp/nsbox-egress-tls-');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${dir}/k`, '-out', `${dir}/c`, '-days', '1', '-subj', '/CN=allowed.test', '-addext', 'subjectAltName=DNS:allowed.test'], { stdio: 'ignore' });
    tls = { key: readFileSync(`${dir}/k`, 'utf8'), cert: readFileSync(`${dir}/c`, 'utf8') };
  } catch { /* no openssl: the HTTPS test says so */ }
  rmSync(dir, { recursive: true, force: true });
  registry = npmRegistry();
  pipIndex = pipMirror();
  inet = await startFakeInternet(tls, registry || pipIndex ? { ...registry?.files, ...pipIndex } : undefined);
}, 240_000); // npm pack and a Node server under TCG (test/vm) take their time
afterAll(() => { if (registry) rmSync(registry.project, { recursive: true, force: true }); });

/** The system Python with pip (not a per-user one: the sandbox's /root is its own). */
const PY = existsSync('/usr/bin/python3') && execFileSyncOk('/usr/bin/python3', ['-m', 'pip', '--version']) ? '/usr/bin/python3' : undefined;
function execFileSyncOk(file: string, args: string[]): boolean {
  try { execFileSync(file, args, { stdio: 'ignore' }); return true; } catch { return false; }
}

/**
 * A PEP 503 package index for Host registry.test with one wheel (`tiny-pkg`, a py3-none-any
 * wheel put together here with Python's zipfile), when the system Python has pip.
 */
let pipIndex: RegistryFiles | undefined;
function pipMirror(): RegistryFiles | undefined {
  if (!PY) return undefined;
  const dir = mkdtempSync('/tmp/nsbox-egress-whl-');
  try {
    const whl = `${dir}/tiny_pkg-1.0.0-py3-none-any.whl`;
    execFileSync(PY, ['-c', `
import base64, hashlib, sys, zipfile
files = {
  'tiny_pkg/__init__.py': "VALUE = 'tiny-pkg from the mirror'\\n",
  'tiny_pkg-1.0.0.dist-info/METADATA': 'Metadata-Version: 2.1\\nName: tiny-pkg\\nVersion: 1.0.0\\n',
  'tiny_pkg-1.0.0.dist-info/WHEEL': 'Wheel-Version: 1.0\\nGenerator: nsbox-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
}
rec = ''.join('%s,sha256=%s,%d\\n' % (k, base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b'=').decode(), len(v.encode())) for k, v in files.items())
files['tiny_pkg-1.0.0.dist-info/RECORD'] = rec + 'tiny_pkg-1.0.0.dist-info/RECORD,,\\n'
with zipfile.ZipFile(sys.argv[1], 'w') as z:
  for k, v in files.items(): z.writestr(k, v)
`, whl], { stdio: 'ignore' });
    const bytes = readFileSync(whl);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const page = `<!DOCTYPE html><html><body><a href="/files/tiny_pkg-1.0.0-py3-none-any.whl#sha256=${sha}">tiny_pkg-1.0.0-py3-none-any.whl</a></body></html>\n`;
    return {
      '/simple/tiny-pkg/': { type: 'text/html', base64: Buffer.from(page).toString('base64') },
      '/files/tiny_pkg-1.0.0-py3-none-any.whl': { type: 'application/octet-stream', base64: bytes.toString('base64') },
    };
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A package registry with one package (`tiny-pkg`, made with `npm pack`) and a project locked to it, when npm is here. */
let registry: { files: RegistryFiles; project: string } | undefined;
function npmRegistry(): typeof registry {
  if (!NPM) return undefined;
  const src = mkdtempSync('/tmp/nsbox-egress-pkg-');
  try {
    mkdirSync(`${src}/pkg`);
    writeFileSync(`${src}/pkg/package.json`, JSON.stringify({ name: 'tiny-pkg', version: '1.0.0', main: 'index.js' }));
    writeFileSync(`${src}/pkg/index.js`, "module.exports = 'tiny-pkg from the mirror';\n");
    execFileSync(NPM, ['pack', '--silent', '--pack-destination', src], { cwd: `${src}/pkg`, stdio: 'ignore' });
    const tgz = readFileSync(`${src}/tiny-pkg-1.0.0.tgz`);
    const integrity = `sha512-${createHash('sha512').update(tgz).digest('base64')}`;
    const tarball = 'http://registry.test/tiny-pkg/-/tiny-pkg-1.0.0.tgz';
    const meta = { name: 'tiny-pkg', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { name: 'tiny-pkg', version: '1.0.0', main: 'index.js', dist: { tarball, integrity } } } };
    const project = mkdtempSync('/tmp/nsbox-egress-app-');
    chmodSync(project, 0o777); // the sandbox's root is another uid of the host
    writeFileSync(`${project}/package.json`, JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { 'tiny-pkg': '1.0.0' } }));
    writeFileSync(`${project}/package-lock.json`, JSON.stringify({
      name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
      packages: { '': { name: 'app', version: '1.0.0', dependencies: { 'tiny-pkg': '1.0.0' } }, 'node_modules/tiny-pkg': { version: '1.0.0', resolved: tarball, integrity } },
    }));
    return {
      project,
      files: {
        '/tiny-pkg': { type: 'application/json', base64: Buffer.from(JSON.stringify(meta)).toString('base64') },
        '/tiny-pkg/-/tiny-pkg-1.0.0.tgz': { type: 'application/octet-stream', base64: tgz.toString('base64') },
      },
    };
  } catch {
    return undefined;
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
}
afterAll(async () => { await inet?.close(); });

type Run = { code: number | null; stdout: string; stderr: string; denied: EgressDeniedEvent[]; egress?: Record<string, { allowed: number; denied: number; bytesIn: number; bytesOut: number }> };

async function run(script: string, network: object): Promise<Run> {
  const p = spawnIsolated('/bin/sh', ['-c', script], { network: { mode: 'egress', lookup, ...network } as never });
  const denied: EgressDeniedEvent[] = [];
  p.on('egress-denied', (e: EgressDeniedEvent) => denied.push(e));
  const r = await p;
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, denied, egress: r.network?.egress };
}

/** This process's children that are `sleep` (a holder). */
function sleepers(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === process.pid && st.includes('(sleep)') ? [Number(d)] : [];
    } catch { return []; }
  });
}

const wget = (url: string, extra = '') => `${BB} wget -q ${extra} -O- ${url} 2>&1; echo "rc=$?"`;

describe.skipIf(skip)('egress policy (root caller)', () => {
  it('an allowed name is reached through the proxy variables (busybox wget, plain HTTP); its stats count the bytes', async () => {
    const r = await run(wget('http://allowed.test/a'), { allow: ['allowed.test'] });
    expect(r.stdout).toBe('hello from 203.0.113.10 for allowed.test\nrc=0\n');
    expect(await inet.waitFor((q) => q.url === '/a' && q.headers.host === 'allowed.test')).toBeDefined();
    expect(r.egress!['allowed.test']).toMatchObject({ allowed: 1, denied: 0 });
    expect(r.egress!['allowed.test']!.bytesIn).toBeGreaterThan(40);
    expect(r.egress!['allowed.test']!.bytesOut).toBeGreaterThan(20);
  });

  it.skipIf(!CURL)('curl: through CONNECT (-p), through SOCKS5 (ALL_PROXY socks5h), and a wildcard rule', async () => {
    const r = await run([
      `${CURL} -sS -m 5 -p http://allowed.test:8080/tunnel; echo "rc=$?"`,
      `${CURL} -sS -m 5 --proxy "$ALL_PROXY" http://api.test/socks; echo "rc=$?"`,
      `${CURL} -sS -m 5 -p http://denied.test/x 2>&1; echo "rc=$?"`,
      `${CURL} -sS -m 5 --proxy "$ALL_PROXY" http://denied.test/x 2>&1; echo "rc=$?"`,
    ].join('; '), { allow: ['*.test'], deny: ['denied.test'] });
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('hello from 203.0.113.10 for allowed.test:8080');
    expect(lines[1]).toBe('rc=0');
    expect(lines[2]).toBe('hello from 203.0.113.12 for api.test');
    expect(lines[3]).toBe('rc=0');
    expect(r.stdout).toMatch(/CONNECT tunnel failed, response 403[\s\S]*rc=56/);
    expect(r.stdout).toMatch(/rc=97/); // curl: SOCKS connection refused by the proxy
    expect(r.denied.map((d) => [d.host, d.protocol, d.reason])).toEqual([['denied.test', 'connect', 'deny-rule'], ['denied.test', 'socks', 'deny-rule']]);
    expect(await inet.waitFor((q) => q.url === '/tunnel')).toBeDefined();
    expect(inet.requests.some((q) => q.url === '/x')).toBe(false);
  });

  // The proxy's end of the sandbox's loopback connections: a host default that paces (bbr)
  // made each burst the relay sent wait on a timer (the bench's proxied throughput fell to ~55%
  // of direct); the listeners set reno, whatever the host's default (the upstream connections
  // keep it). Checked with ss inside the sandbox, on a tunnel kept slow (curl --limit-rate).
  it.skipIf(!CURL || !SS)('the proxy\'s end of a sandbox\'s connection uses reno (no pacing on loopback), whatever the host\'s default', async () => {
    const r = await run([
      `${CURL} -s -o /dev/null --limit-rate 1M -p http://allowed.test/big/8 & c=$!`,
      `for i in $(seq 50); do o=$(${SS} -tinH state established '( sport = :3128 )'); case "$o" in *wscale*) break;; esac; sleep 0.1; done`,
      'echo "$o"; kill $c',
    ].join('; '), { allow: ['allowed.test'] });
    expect(r.stdout).toMatch(/:3128\s/);
    expect(r.stdout).toMatch(/^\s*reno\s/m);
  });

  it('HTTPS through a CONNECT tunnel reaches the server untouched: the sandbox sees the server\'s own certificate (no interception)', async (ctx) => {
    if (skipReason(!CURL, 'curl is not installed')) return ctx.skip();
    if (skipReason(!tls, 'openssl is not installed (the fake internet has no HTTPS server)')) return ctx.skip();
    const fp = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: tls!.cert, encoding: 'utf8' }).trim().split('=')[1]!.replace(/:/g, '').toLowerCase();
    const r = await run(`${CURL} -sS -m 5 -k https://allowed.test/tls 2>&1; echo "rc=$?"; ${CURL} -sS -m 5 -k https://denied.test/ 2>&1; echo "rc=$?"`, { allow: ['allowed.test'], inject: [{ host: 'allowed.test', headers: { 'x-secret': 'never-in-tls' } }] });
    expect(r.stdout).toMatch(/^hello from 203\.0\.113\.10 for allowed\.test\n/);
    expect(r.stdout).toMatch(/rc=0\n.*CONNECT tunnel failed, response 403\nrc=56\n$/s);
    const got = await inet.waitFor((q) => q.url === '/tls');
    expect(got!.headers['x-secret']).toBeUndefined(); // HTTPS is not intercepted: nothing is injected
    // the certificate curl saw is the server's
    const certs = await run(`${CURL} -sS -m 5 -k -o /dev/null -w '%{certs}' https://allowed.test/cert | openssl x509 -noout -fingerprint -sha256`, { allow: ['allowed.test'] });
    expect(certs.stdout.split('=')[1]?.trim().replace(/:/g, '').toLowerCase()).toBe(fp);
  });

  it('npm ci installs from a registry mirror allowed by name, with its token injected outside the sandbox (docs/egress.md\'s worked example)', async (ctx) => {
    if (skipReason(!registry, 'npm is not installed (or npm pack failed): no registry mirror to install from')) return ctx.skip();
    const p = spawnIsolated('/bin/sh', ['-c', 'npm ci --registry http://registry.test/ --no-audit --no-fund --no-update-notifier --loglevel=error 2>&1; echo "rc=$?"; node -p "require(\'tiny-pkg\')"; grep -rl mirror-token /root /app/node_modules 2>/dev/null; echo done'], {
      cwd: '/app', mounts: [{ type: 'bind', source: registry!.project, target: '/app', readonly: false }],
      network: { mode: 'egress', allow: ['registry.test'], inject: [{ host: 'registry.test', headers: { authorization: 'Bearer mirror-token' } }], lookup } as never,
    });
    const r = await p;
    expect(r.stdout).toMatch(/added 1 package.*\nrc=0\ntiny-pkg from the mirror\ndone\n$/s);
    const got = await inet.waitFor((q) => q.url === '/tiny-pkg/-/tiny-pkg-1.0.0.tgz');
    expect(got!.headers.authorization).toBe('Bearer mirror-token');
    expect(r.network!.egress['registry.test']).toMatchObject({ denied: 0 });
    expect(r.network!.egress['registry.test']!.allowed).toBeGreaterThan(0);
  }, 180_000);

  it('pip install from a package index mirror allowed by name, with its token injected outside the sandbox (docs/egress.md\'s worked example)', async (ctx) => {
    if (skipReason(!pipIndex, 'the system Python (/usr/bin/python3) has no pip: no index to install from')) return ctx.skip();
    const r = await run(`${PY} -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore --index-url http://registry.test/simple/ --trusted-host registry.test --target /tmp/site tiny-pkg 2>&1 | tail -1; `
      + `PYTHONPATH=/tmp/site ${PY} -c 'import tiny_pkg; print(tiny_pkg.VALUE)'; grep -rl pip-token /root /tmp/site 2>/dev/null; env | grep -c pip-token`,
    { allow: ['registry.test'], inject: [{ host: 'registry.test', headers: { authorization: 'Bearer pip-token' } }] });
    expect(r.stdout).toBe('Successfully installed tiny-pkg-1.0.0\ntiny-pkg from the mirror\n0\n');
    const got = await inet.waitFor((q) => q.url === '/files/tiny_pkg-1.0.0-py3-none-any.whl');
    expect(got!.headers.authorization).toBe('Bearer pip-token');
    expect(r.egress!['registry.test']).toMatchObject({ allowed: 2, denied: 0 });
  }, 180_000);

  it('a denied name, a raw address (even the allowed host\'s), the metadata address and a name resolving into loopback fail, each with an egress-denied event', async () => {
    const r = await run([
      wget('http://denied.test/d'), wget('http://203.0.113.10/raw'), wget('http://169.254.169.254/latest/meta-data/'),
      wget('http://rebind.test/r'), wget('http://meta.test/m'), wget('http://allowed.test:8080/port'),
    ].join('; '), { allow: ['allowed.test', 'rebind.test', 'meta.test', { host: 'allowed.test', ports: [80] }] });
    expect(r.stdout.match(/rc=1/g)).toHaveLength(5);
    expect(r.stdout).toMatch(/rc=0\n$/); // port 8080: the first rule has no port list
    expect(r.stdout).toMatch(/403 Forbidden/);
    expect(r.denied.map((d) => [d.host, d.reason])).toEqual([
      ['denied.test', 'not-allowed'],
      ['203.0.113.10', 'not-allowed'],
      ['169.254.169.254', 'protected-address'],
      ['rebind.test', 'protected-address'],
      ['meta.test', 'protected-address'],
    ]);
    expect(r.denied[2]!.detail).toMatch(/link-local/);
    expect(inet.requests.some((q) => ['/d', '/raw', '/r', '/m'].includes(q.url))).toBe(false);
  });

  it('ports: a rule with ports allows only those', async () => {
    const r = await run(`${wget('http://allowed.test:8080/p8080')}; ${wget('http://allowed.test/p80')}`, { allow: [{ host: 'allowed.test', ports: [80] }] });
    expect(r.stdout).toMatch(/^wget: server returned error: HTTP\/1.1 403 Forbidden\nrc=1\nhello from 203.0.113.10 for allowed.test\nrc=0\n$/);
  });

  it('a program that ignores the proxy variables reaches nothing (TCP, UDP, ICMP), and DNS for a denied name is NXDOMAIN', async () => {
    const r = await run([
      wget('http://203.0.113.10/direct', '-Y off'),
      `${BB} ping -c 1 -W 1 203.0.113.10 >/dev/null 2>&1; echo "ping=$?"`,
      `${BB} nslookup allowed.test 203.0.113.10 >/dev/null 2>&1; echo "udp=$?"`,
      `${BB} nslookup denied.test 2>&1 | grep -c NXDOMAIN`,
      `${BB} nslookup allowed.test 2>&1 | grep -A1 'Name:' | tail -1`,
      `cat /etc/resolv.conf | head -1`,
    ].join('; '), { allow: ['allowed.test'] });
    expect(r.stdout).toMatch(/Network is unreachable\nrc=1\n/);
    expect(r.stdout).toMatch(/\nping=1\n/);
    expect(r.stdout).toMatch(/\nudp=1\n/);
    expect(r.stdout).toMatch(/\n[12]\nAddress: 203\.0\.113\.10\nnameserver 127\.0\.0\.1\n$/);
    expect(inet.requests.some((q) => q.url === '/direct')).toBe(false);
    expect(r.denied.filter((d) => d.protocol === 'dns').map((d) => [d.host, d.reason])).toContainEqual(['denied.test', 'not-allowed']);
  });

  it('rules changed while the sandbox runs take effect for the next connection', async () => {
    const p: IsolatedProcess = spawnIsolated('/bin/sh', ['-c', `${wget('http://other.test/before')}; read x; ${wget('http://other.test/after')}; read y; ${wget('http://allowed.test/gone')}`], {
      network: { mode: 'egress', allow: ['allowed.test'], lookup } as never, stdio: 'pipe',
    });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    while (!out.includes('rc=')) await sleep(20);
    expect(out).toMatch(/403 Forbidden\nrc=1\n$/);
    expect(() => p.network!.update({ allow: ['allowed.test', 'other..test'] })).toThrow(/network\.update\(\)\.allow\[1\] 'other\.\.test' is not a valid host name/);
    p.network!.update({ allow: ['allowed.test', 'other.test'] });
    p.stdin!.write('\n');
    while (!out.includes('rc=0')) await sleep(20);
    expect(out).toMatch(/hello from 203\.0\.113\.12 for other\.test\nrc=0\n$/);
    expect(p.network!.egress['other.test']).toMatchObject({ allowed: 1, denied: 1 });
    p.network!.update({ deny: ['allowed.test'] });
    p.stdin!.end('\n');
    const r = await p;
    expect(r.stdout).toMatch(/403 Forbidden\nrc=1\n$/);
    expect(r.network!.egress['allowed.test']).toMatchObject({ allowed: 0, denied: 1 });
  });

  it('onRequest decides what the lists do not deny, and a rejection denies', async () => {
    const asked: unknown[] = [];
    const r = await run(`${wget('http://other.test/ask-yes')}; ${wget('http://api.test/ask-no')}; ${wget('http://denied.test/ask-never')}`, {
      allow: ['allowed.test'], deny: ['denied.test'],
      onRequest: async (q: { host: string }) => { asked.push(q); if (q.host === 'api.test') throw new Error('no'); return q.host === 'other.test'; },
    });
    expect(r.stdout.match(/rc=\d/g)).toEqual(['rc=0', 'rc=1', 'rc=1']);
    expect(asked).toEqual([
      { host: 'other.test', port: 80, protocol: 'http', method: 'GET', path: '/ask-yes', listed: false },
      { host: 'api.test', port: 80, protocol: 'http', method: 'GET', path: '/ask-no', listed: false },
    ]);
    expect(r.denied.map((d) => [d.host, d.reason])).toEqual([['api.test', 'on-request'], ['denied.test', 'deny-rule']]);
  });

  it('injected headers arrive at the server and are nowhere in the sandbox (environment, files, /proc, the response)', async () => {
    const token = `Bearer secret-${process.pid}-${Date.now()}`;
    const r = await run([
      wget('http://api.test/inject', '--header "Authorization: Bearer mine"'),
      wget('http://allowed.test/plain'),
      // the pattern is put together in the shell: the script's own text (in /proc/1/cmdline) never holds it
      `P="secr""et-${process.pid}"; grep -rl "$P" /proc/self/environ /proc/1/environ /proc/1/cmdline /etc /tmp 2>/dev/null; env | grep -c "$P"; echo done`,
    ].join('; '), { allow: ['allowed.test', 'api.test'], inject: [{ host: 'api.test', headers: { authorization: token, 'x-extra': 'yes' } }] });
    expect(r.stdout).toBe('hello from 203.0.113.12 for api.test\nrc=0\nhello from 203.0.113.10 for allowed.test\nrc=0\n0\ndone\n');
    const got = await inet.waitFor((q) => q.url === '/inject');
    expect(got!.headers.authorization).toBe(token); // the sandbox's own one is replaced
    expect(got!.headers['x-extra']).toBe('yes');
    const plain = await inet.waitFor((q) => q.url === '/plain');
    expect(plain!.headers.authorization).toBeUndefined();
    expect(plain!.headers['x-extra']).toBeUndefined();
  });

  it('leaves nothing behind: no holder process, no fd of its listeners, no link or state file', async () => {
    // once per process: the addon's relay (an epoll set and an eventfd, kept for the next)
    await run(wget('http://allowed.test/warm'), { allow: ['allowed.test'] });
    const before = netState();
    const fds = fdCount();
    const r = await run(wget('http://allowed.test/z'), { allow: ['allowed.test'] });
    expect(r.stdout).toMatch(/rc=0/);
    await sleep(100);
    expect(fdCount()).toBeLessThanOrEqual(fds);
    expect(sleepers()).toEqual([]);
    expectNoNetLeftovers(before);
  });

  it('bad input: TypeError/RangeError naming the rule, thrown at the call', () => {
    const s = (network: object) => () => spawnIsolated('/bin/true', [], { network: { mode: 'egress', ...network } as never });
    expect(s({ allow: ['*.'] })).toThrow(/options\.network\.allow\[0\] '\*\.' is not a valid wildcard pattern/);
    expect(s({ allow: ['ok.test', 'a..b'] })).toThrow(/options\.network\.allow\[1\] 'a\.\.b' is not a valid host name/);
    expect(s({ allow: [{ host: 'a.test', ports: [70000] }] })).toThrow(RangeError);
    expect(s({ allow: ['10.1.2.3'] })).toThrow(/options\.network\.allow\[0\] '10\.1\.2\.3' is in a protected range \(private\): give \{ host: '10\.1\.2\.3', allowPrivate: true \}/);
    expect(s({ allow: ['a.test'], inject: [{ host: 'b.test', headers: { x: 'y' } }] })).toThrow(/options\.network\.inject\[0\] injects headers for 'b\.test', which no rule of options\.network\.allow allows/);
    expect(s({ allow: 'a.test' })).toThrow(TypeError);
    expect(s({ allow: [], bogus: 1 })).toThrow(/options\.network\.bogus is not an egress network option/);
  });
});

describe.skipIf(skip)('egress policy: transparent (root, an nft redirect in the sandbox\'s namespace)', () => {
  it('a program that ignores the proxy variables reaches an allowed name over HTTP (Host) and HTTPS (SNI); a denied name, a raw address, another port fail', async (ctx) => {
    const noNft = nftUnavailableReason();
    if (noNft) return ctx.skip(`nftables: ${noNft}`);
    const direct = (cmd: string) => `${cmd} 2>&1; echo "rc=$?"`;
    const script = [
      'unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY',
      direct(`${BB} wget -q -O- http://allowed.test/tr1`),
      // the Host header names a denied host (the address is the allowed one's): denied
      direct(`${BB} wget -q -O- --header 'Host: denied.test' http://203.0.113.10/tr2`),
      // a raw address names no host: denied
      direct(`${BB} wget -q -O- http://203.0.113.10/tr3`),
      // another port than 80 and 443: refused at once
      direct(`${BB} wget -q -O- http://203.0.113.10:8080/tr4`),
      ...(CURL && tls ? [
        direct(`${CURL} -sS -m 5 -k https://allowed.test/tr5`),
        // the server name (SNI) is denied, whatever address it is sent to
        direct(`${CURL} -sS -m 5 -k --resolve denied.test:443:203.0.113.10 https://denied.test/tr6`),
      ] : []),
    ].join('; ');
    const r = await run(script, { allow: ['allowed.test'], transparent: true });
    const out = r.stdout.split('\n');
    expect(out.slice(0, 2)).toEqual(['hello from 203.0.113.10 for allowed.test', 'rc=0']);
    expect(out.slice(2, 4)).toEqual([expect.stringMatching(/403 Forbidden/), 'rc=1']);
    expect(out.slice(4, 6)).toEqual([expect.stringMatching(/403 Forbidden/), 'rc=1']);
    expect(out.slice(6, 8)).toEqual([expect.stringMatching(/Connection refused/), 'rc=1']);
    if (CURL && tls) {
      expect(out.slice(8, 10)).toEqual(['hello from 203.0.113.10 for allowed.test', 'rc=0']);
      expect(out[10]).toMatch(/Connection reset by peer|SSL_ERROR_SYSCALL/);
      expect(out[11]).toBe('rc=35');
      expect(r.denied).toContainEqual(expect.objectContaining({ host: 'denied.test', port: 443, protocol: 'tls', reason: 'not-allowed' }));
      expect((await inet.waitFor((q) => q.url === '/tr5'))!.port).toBe(443);
    }
    expect(r.denied).toContainEqual(expect.objectContaining({ host: 'denied.test', port: 80, protocol: 'http', path: '/tr2', reason: 'not-allowed' }));
    expect(r.denied).toContainEqual(expect.objectContaining({ host: '203.0.113.10', port: 80, protocol: 'http', path: '/tr3', reason: 'not-allowed' }));
    expect(await inet.waitFor((q) => q.url === '/tr1')).toBeDefined();
    expect(inet.requests.some((q) => ['/tr2', '/tr3', '/tr4', '/tr6'].includes(q.url))).toBe(false);
    expect(r.egress!['allowed.test']!.allowed).toBe(CURL && tls ? 2 : 1);
  });

  it('is reported in result.isolation and explain(); without it the same program reaches nothing', async (ctx) => {
    const noNft = nftUnavailableReason();
    if (noNft) return ctx.skip(`nftables: ${noNft}`);
    const net = { mode: 'egress', lookup, allow: ['allowed.test'], transparent: true } as never;
    const r = await spawnIsolated('/bin/sh', ['-c', `unset http_proxy HTTP_PROXY; ${BB} wget -q -O- http://allowed.test/tr7 2>&1; echo "rc=$?"`], { network: net });
    expect(r.stdout).toBe('hello from 203.0.113.10 for allowed.test\nrc=0\n');
    expect(r.isolation.egressTransparent).toBe(true);
    expect(explain('/bin/true', [], { network: net }).isolation.egressTransparent).toBe(true);
    const plain = await spawnIsolated('/bin/sh', ['-c', `unset http_proxy HTTP_PROXY; ${BB} wget -q -O- http://allowed.test/tr8 2>&1; echo "rc=$?"`], { network: { mode: 'egress', lookup, allow: ['allowed.test'] } as never });
    expect(plain.stdout).toMatch(/Network is unreachable\nrc=1\n$/);
    expect(plain.isolation.egressTransparent).toBeUndefined();
    expect(() => spawnIsolated('/bin/true', [], { network: { mode: 'egress', transparent: 'yes' } as never })).toThrow(/options\.network\.transparent must be a boolean/);
  });
});

describe.skipIf(skip)('egress policy: programs that join the sandbox later get the proxy variables', () => {
  const VARS = ['ALL_PROXY=socks5h://127.0.0.1:1080', 'HTTPS_PROXY=http://127.0.0.1:3128', 'HTTP_PROXY=http://127.0.0.1:3128', 'NO_PROXY=localhost,127.0.0.1,::1',
    'all_proxy=socks5h://127.0.0.1:1080', 'http_proxy=http://127.0.0.1:3128', 'https_proxy=http://127.0.0.1:3128', 'no_proxy=localhost,127.0.0.1,::1'];
  // the proxy variables (sorted), a variable of the caller's env, then a fetch through them
  const probe = (url: string) => `env | grep -iE '^(https?|all|no)_proxy=' | sort; echo "mine=$MINE"; ${wget(url)}`;
  const expectRun = (out: string, mine: string, url: string) => {
    expect(out).toBe([...VARS, `mine=${mine}`, `hello from 203.0.113.10 for allowed.test`, 'rc=0', ''].join('\n'));
    return inet.waitFor((q) => q.url === url);
  };
  const policy = { mode: 'egress', lookup, allow: ['allowed.test'] } as never;

  it('Sandbox.exec: the proxy variables over the template\'s env and over its own env, and its requests go through the sandbox\'s proxy', async () => {
    const { Sandbox } = await import('../../lib/index.js');
    const box = await Sandbox.create({ network: policy, env: { PATH: '/usr/bin:/bin', MINE: 'template', HTTP_PROXY: 'http://elsewhere:1' } });
    try {
      const a = await box.exec('/bin/sh', ['-c', probe('http://allowed.test/exec1')]);
      expect(await expectRun(a.stdout, 'template', '/exec1')).toBeDefined();
      // exec's own env replaces the template's; nsbox's variables are still set over it
      const b = await box.exec('/bin/sh', ['-c', probe('http://allowed.test/exec2')], { env: { PATH: '/bin', MINE: 'own', https_proxy: 'http://x:2' } });
      expect(await expectRun(b.stdout, 'own', '/exec2')).toBeDefined();
      // seen from another Sandbox object (attach reads the state file)
      const again = await Sandbox.attach(box.id);
      const c = await again.exec('/bin/sh', ['-c', probe('http://allowed.test/exec3')]);
      expect(await expectRun(c.stdout, 'template', '/exec3')).toBeDefined();
    } finally {
      await box.destroy();
    }
  });

  it('a prepared sandbox\'s run, and a pool\'s runs (prepared and Sandbox-made)', async () => {
    const { prepareIsolated, createPool } = await import('../../lib/index.js');
    const prepared = await prepareIsolated({ network: policy, env: { PATH: '/bin', MINE: 'prepared' } });
    const r = await prepared.run('/bin/sh', ['-c', probe('http://allowed.test/prep1')]);
    expect(await expectRun(r.stdout, 'prepared', '/prep1')).toBeDefined();
    const pool = createPool({ size: 1, template: { network: policy, env: { PATH: '/bin', MINE: 'pool' } } });
    try {
      const a = await pool.run('/bin/sh', ['-c', probe('http://allowed.test/pool1')]);
      expect(await expectRun(a.stdout, 'pool', '/pool1')).toBeDefined();
      // an option a prepared sandbox cannot take: a Sandbox made for the run, exec'd
      const b = await pool.run('/bin/sh', ['-c', probe('http://allowed.test/pool2')], { stdio: 'pipe' });
      expect(await expectRun(b.stdout, 'pool', '/pool2')).toBeDefined();
    } finally {
      await pool.close();
    }
  });

  it('a created sandbox\'s program (Sandbox.create with program, then start)', async () => {
    const { Sandbox } = await import('../../lib/index.js');
    const dir = mkdtempSync('/tmp/nsbox-egress-created-');
    chmodSync(dir, 0o777);
    const box = await Sandbox.create({
      network: policy, env: { PATH: '/bin', MINE: 'created' }, mounts: [{ type: 'bind', source: dir, target: '/out', readonly: false }],
      program: { file: '/bin/sh', args: ['-c', `(${probe('http://allowed.test/created1')}) > /out/o`] },
    });
    try {
      await box.start();
      await box.wait();
      expect(await expectRun(readFileSync(`${dir}/o`, 'utf8'), 'created', '/created1')).toBeDefined();
    } finally {
      await box.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!CURL)('with TLS interception, an exec gets the CA variables and trusts the sandbox\'s CA', async (ctx) => {
    if (!tls) return ctx.skip('openssl is not installed (the fake internet has no HTTPS server)');
    const { Sandbox } = await import('../../lib/index.js');
    const box = await Sandbox.create({ network: { mode: 'egress', lookup, allow: ['allowed.test'], intercept: true, upstreamCa: tls.cert, inject: [{ host: 'allowed.test', headers: { 'x-exec': 'yes' } }] } as never });
    try {
      const r = await box.exec('/bin/sh', ['-c', `echo "$SSL_CERT_FILE $CURL_CA_BUNDLE $REQUESTS_CA_BUNDLE $NODE_EXTRA_CA_CERTS"; ${CURL} -sS -m 5 https://allowed.test/exec-tls 2>&1`]);
      const b = '/etc/ssl/certs/ca-certificates.crt';
      expect(r.stdout).toBe(`${b} ${b} ${b} ${b}\nhello from 203.0.113.10 for allowed.test\n`);
      expect((await inet.waitFor((q) => q.url === '/exec-tls'))!.headers['x-exec']).toBe('yes');
    } finally {
      await box.destroy();
    }
  });
});

describe.skipIf(skip)('egress policy: TLS interception (intercept: true)', () => {
  const HOST_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
  const hostBundle = () => (existsSync(HOST_BUNDLE) ? createHash('sha256').update(readFileSync(HOST_BUNDLE)).digest('hex') : 'none');
  const needs = () => skipReason(!CURL, 'curl is not installed') || skipReason(!tls, 'openssl is not installed (the fake internet has no HTTPS server)');

  it('HTTPS to an inject host is terminated with the sandbox\'s CA: curl trusts it through its variables and the system bundle path, the server gets the header, the sandbox sees neither it nor the CA key; other hosts stay untouched', async (ctx) => {
    const why = needs();
    if (why) return ctx.skip(why);
    const before = hostBundle();
    const token = `Bearer tls-secret-${process.pid}-${Date.now()}`;
    const fp = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: tls!.cert, encoding: 'utf8' }).trim().split('=')[1]!.replace(/:/g, '').toLowerCase();
    const p = spawnIsolated('/bin/sh', ['-c', [
      // through CURL_CA_BUNDLE (no -k: the certificate is verified)
      `${CURL} -sS -m 5 -H "Authorization: Bearer mine" https://allowed.test/mitm1 2>&1; echo "rc=$?"`,
      // through the system bundle path alone (the variables unset)
      `env -u CURL_CA_BUNDLE -u SSL_CERT_FILE ${CURL} -sS -m 5 --cacert ${HOST_BUNDLE} -v https://allowed.test/mitm2 2>&1 | grep -E '^hello|issuer:'; echo "rc=$?"`,
      // a host without inject rules: its own certificate (not intercepted)
      `${CURL} -sS -m 5 -k -o /dev/null -w '%{certs}' https://other.test/pass | openssl x509 -noout -fingerprint -sha256`,
      'echo "vars=$SSL_CERT_FILE $CURL_CA_BUNDLE $REQUESTS_CA_BUNDLE $NODE_EXTRA_CA_CERTS"',
      `openssl crl2pkcs7 -nocrl -certfile ${HOST_BUNDLE} | openssl pkcs7 -print_certs -noout | grep -c '^subject=.*CN *= *nsbox sandbox CA'`,
      // neither the injected header nor a private key anywhere the sandbox can read
      // (the patterns are put together in the shell: the script's own text in /proc/1/cmdline never holds them)
      `P="tls-secr""et-${process.pid}"; K="PRIVATE"" KEY"; grep -rl "$P" /proc/self/environ /proc/1/environ /proc/1/cmdline /etc /tmp /run 2>/dev/null; grep -rl "$K" /proc/self/environ /proc/1/environ /proc/1/cmdline /etc/ssl/certs /tmp /run 2>/dev/null; env | grep -c "$P"; echo done`,
    ].join('; ')], {
      network: { mode: 'egress', lookup, allow: ['allowed.test', 'other.test'], intercept: true, upstreamCa: tls!.cert, inject: [{ host: 'allowed.test', headers: { authorization: token, 'x-extra': 'tls' } }] } as never,
    });
    const r = await p;
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['hello from 203.0.113.10 for allowed.test', 'rc=0']);
    expect(lines[2]).toMatch(/issuer: O=nsbox; CN=nsbox sandbox CA/);
    expect(lines.slice(3, 5)).toEqual(['hello from 203.0.113.10 for allowed.test', 'rc=0']);
    expect(lines[5]!.split('=')[1]?.replace(/:/g, '').toLowerCase()).toBe(fp);
    expect(lines[6]).toBe(`vars=${HOST_BUNDLE} ${HOST_BUNDLE} ${HOST_BUNDLE} ${HOST_BUNDLE}`);
    expect(lines.slice(7)).toEqual(['1', '0', 'done', '']); // the bundle has the CA once; no secret, no key
    expect(readFileSync(HOST_BUNDLE, 'utf8')).not.toMatch(/nsbox/);
    for (const u of ['/mitm1', '/mitm2']) {
      const got = await inet.waitFor((q) => q.url === u);
      expect(got!.headers.authorization).toBe(token); // the sandbox's own one is replaced
      expect(got!.headers['x-extra']).toBe('tls');
      expect(got!.port).toBe(443);
    }
    expect((await inet.waitFor((q) => q.url === '/pass'))!.headers['x-extra']).toBeUndefined();
    expect(r.isolation.tlsInterception).toEqual(['allowed.test']);
    expect(r.network!.egress['allowed.test']!.allowed).toBe(2);
    expect(r.network!.egress['allowed.test']!.bytesIn).toBeGreaterThan(500);
    // the host's trust store: the same bytes, and nothing mounted over it here
    expect(hostBundle()).toBe(before);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/ca-certificates\.crt/);
  });

  it('the real server is verified: without its CA (upstreamCa) nsbox refuses it and the sandbox gets a 502; without intercept, isolation says nothing of TLS', async (ctx) => {
    const why = needs();
    if (why) return ctx.skip(why);
    const r = await run(`${CURL} -sS -m 5 https://allowed.test/unverified 2>&1; echo "rc=$?"`, { allow: ['allowed.test'], intercept: true, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] });
    expect(r.stdout).toMatch(/^nsbox egress: allowed\.test:443 failed \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)\nrc=0\n$/);
    expect(inet.requests.some((q) => q.url === '/unverified')).toBe(false);
    const plain = await spawnIsolated('/bin/true', [], { network: { mode: 'egress', lookup, allow: ['allowed.test'] } as never });
    expect(plain.isolation.tlsInterception).toBeUndefined();
    // explain() names the relaxation as the result does
    const net = { mode: 'egress', allow: ['allowed.test'], intercept: true, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] };
    expect(explain('/bin/true', [], { network: net as never }).isolation.tlsInterception).toEqual(['allowed.test']);
    expect(explain('/bin/true', [], { network: { mode: 'egress', allow: ['allowed.test'] } as never }).isolation.tlsInterception).toBeUndefined();
    // and lists the variables nsbox sets over env: the proxy ones, the CA ones with intercept
    const env = (o: object) => explain('/bin/true', [], { env: { PATH: '/bin', HTTPS_PROXY: 'http://mine:1' }, network: { mode: 'egress', allow: ['allowed.test'], ...o } as never }).env;
    const b = '/etc/ssl/certs/ca-certificates.crt';
    expect(env({})).toEqual(['PATH=/bin', 'HTTP_PROXY=http://127.0.0.1:3128', 'HTTPS_PROXY=http://127.0.0.1:3128', 'ALL_PROXY=socks5h://127.0.0.1:1080', 'NO_PROXY=localhost,127.0.0.1,::1',
      'http_proxy=http://127.0.0.1:3128', 'https_proxy=http://127.0.0.1:3128', 'all_proxy=socks5h://127.0.0.1:1080', 'no_proxy=localhost,127.0.0.1,::1']);
    expect(env({ socks: false })).toContain('ALL_PROXY=http://127.0.0.1:3128');
    expect(env({ intercept: true, inject: [{ host: 'allowed.test', headers: { a: 'b' } }] })).toEqual(expect.arrayContaining([`SSL_CERT_FILE=${b}`, `CURL_CA_BUNDLE=${b}`, `REQUESTS_CA_BUNDLE=${b}`, `NODE_EXTRA_CA_CERTS=${b}`]));
  });

  it('the upstream connection tries each address the policy passed (the first one never answers)', async (ctx) => {
    const why = needs();
    if (why) return ctx.skip(why);
    const two = async (h: string) => (h === 'allowed.test' ? ['203.0.113.99', '203.0.113.10'] : lookup(h));
    const r = await run(`${CURL} -sS -m 10 https://allowed.test/second 2>&1; echo "rc=$?"`, { lookup: two, allow: ['allowed.test'], intercept: true, upstreamCa: tls!.cert, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] });
    expect(r.stdout).toBe('hello from 203.0.113.10 for allowed.test\nrc=0\n');
    expect((await inet.waitFor((q) => q.url === '/second'))!.headers['x-a']).toBe('b');
  });

  it('a request inside an intercepted tunnel for another host is refused (no fronting)', async (ctx) => {
    const why = needs();
    if (why) return ctx.skip(why);
    const r = await run(`${CURL} -sS -m 5 -H 'Host: other.test' https://allowed.test/front 2>&1; echo "rc=$?"`, { allow: ['allowed.test', 'other.test'], intercept: true, upstreamCa: tls!.cert, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] });
    expect(r.stdout).toMatch(/does not name the tunnel's host\nrc=0\n$/);
    expect(r.denied.map((d) => [d.host, d.protocol, d.reason])).toEqual([['allowed.test', 'connect', 'bad-request']]);
    expect(inet.requests.some((q) => q.url === '/front')).toBe(false);
  });

  it('leaves nothing behind: no fd of the intercepted tunnels or the upstream connections', async (ctx) => {
    const why = needs();
    if (why) return ctx.skip(why);
    const net = { allow: ['allowed.test'], intercept: true, upstreamCa: tls!.cert, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] };
    const script = `${CURL} -sS -m 5 https://allowed.test/leak https://allowed.test/leak2 2>&1; echo "rc=$?"`;
    await run(script, net); // warm (the addon's relay and TLS contexts, once per process)
    const fds = fdCount();
    const r = await run(script, net);
    expect(r.stdout).toBe('hello from 203.0.113.10 for allowed.test\nhello from 203.0.113.10 for allowed.test\nrc=0\n');
    await sleep(100);
    expect(fdCount()).toBeLessThanOrEqual(fds);
    expect(sleepers()).toEqual([]);
  });

  it('a rootfs without /etc gets the bundle (the host\'s and the CA) at the system path, made on a mirror: the rootfs is not written', async () => {
    const root = mkdtempSync('/tmp/nsbox-egress-root-');
    try {
      mkdirSync(`${root}/bin`);
      writeFileSync(`${root}/bin/busybox`, readFileSync(BB), { mode: 0o755 });
      chmodSync(root, 0o755);
      const r = await spawnIsolated('/bin/busybox', ['sh', '-c', '/bin/busybox grep -c "nsbox: this sandbox" /etc/ssl/certs/ca-certificates.crt; echo "$SSL_CERT_FILE"'], {
        rootfs: root, network: { mode: 'egress', lookup, allow: ['allowed.test'], intercept: true, inject: [{ host: 'allowed.test', headers: { 'x-a': 'b' } }] } as never,
      });
      expect(r.stdout).toBe('1\n/etc/ssl/certs/ca-certificates.crt\n');
      expect(r.isolation.tlsInterception).toEqual(['allowed.test']);
      expect(readdirSync(root)).toEqual(['bin']);
    } finally { rmSync(root, { recursive: true, force: true }); }
  });

  it('bad input: TypeError/RangeError naming the option', () => {
    const s = (network: object) => () => spawnIsolated('/bin/true', [], { network: { mode: 'egress', allow: ['a.test'], ...network } as never });
    const inject = [{ host: 'a.test', headers: { x: 'y' } }];
    expect(s({ intercept: 'yes', inject })).toThrow(/^options\.network\.intercept must be a boolean \(got string\)$/);
    expect(s({ intercept: true })).toThrow(/^options\.network\.intercept intercepts HTTPS only to hosts an inject rule names: give options\.network\.inject$/);
    expect(s({ inject, upstreamCa: tls?.cert ?? '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----' })).toThrow(/^options\.network\.upstreamCa is for TLS interception only/);
    expect(s({ intercept: true, inject, upstreamCa: 42 })).toThrow(/^options\.network\.upstreamCa must be PEM certificates/);
    expect(s({ intercept: true, inject, upstreamCa: '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----' })).toThrow(RangeError);
    expect(s({ intercept: true, inject, upstreamCa: `${tls?.cert ?? ''}-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n` })).toThrow(/must hold certificates only, not a private key/);
  });
});

/** Runs `body` (a module with `nsbox` imported) in a fresh Node process as uid 65534; its last stdout line, parsed. */
async function asNobody(body: string): Promise<any> {
  const child = execFile(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    uid: 65534, gid: 65534, cwd: '/', encoding: 'utf8', timeout: 150_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  await once(child, 'close');
  return JSON.parse(stdout.trim().split('\n').pop() || `{"fail": ${JSON.stringify(stderr)}}`);
}

describe.skipIf(skip)('egress policy (an unprivileged caller, uid 65534)', () => {
  it('allowed works, denied and DNS fail, rules change mid-run, injected headers arrive: the same as root', async () => {
    const body = `
      const lookup = ${LOOKUP_SOURCE};
      const W = (u, x = '') => '${BB} wget -q ' + x + ' -O- ' + u + ' 2>&1; echo "rc=$?"';
      const p = nsbox.spawnIsolated('/bin/sh', ['-c', [W('http://allowed.test/u1'), W('http://denied.test/u2'), W('http://203.0.113.10/u3', '-Y off'),
        '${BB} nslookup denied.test 2>&1 | grep -c NXDOMAIN', 'read x', W('http://other.test/u4')].join('; ')],
        { stdio: 'pipe', network: { mode: 'egress', allow: ['allowed.test'], lookup, inject: [{ host: 'allowed.test', headers: { 'x-token': 'unpriv-secret' } }] } });
      const denied = [];
      p.on('egress-denied', (e) => denied.push([e.host, e.protocol, e.reason]));
      let out = '';
      p.stdout.on('data', (d) => { out += d; if (/\\n[0-9]+\\n$/.test(out) && !p.updated) { p.updated = true; p.network.update({ allow: ['allowed.test', 'other.test'] }); p.stdin.end('\\n'); } });
      const r = await p.catch((e) => ({ error: e.message }));
      console.log(JSON.stringify({ stdout: r.stdout, error: r.error, egress: r.network?.egress, denied, uid: process.getuid() }));`;
    const out = await asNobody(body);
    expect(out.uid).toBe(65534);
    expect(out.error).toBeUndefined();
    const lines = out.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['hello from 203.0.113.10 for allowed.test', 'rc=0']);
    expect(out.stdout).toMatch(/403 Forbidden\nrc=1\n.*Network is unreachable\nrc=1\n[12]\nhello from 203\.0\.113\.12 for other\.test\nrc=0\n$/s);
    expect(out.denied).toContainEqual(['denied.test', 'http', 'not-allowed']);
    expect(out.denied).toContainEqual(['denied.test', 'dns', 'not-allowed']);
    expect(out.egress['allowed.test']).toMatchObject({ allowed: 1, denied: 0 });
    expect(out.egress['other.test']).toMatchObject({ allowed: 1 });
    expect((await inet.waitFor((q) => q.url === '/u1'))!.headers['x-token']).toBe('unpriv-secret');
    expect(inet.requests.some((q) => q.url === '/u2' || q.url === '/u3')).toBe(false);
    expect(INET['other.test']).toBe('203.0.113.12');
  }, 180_000);

  it('transparent is refused without root, at the call, saying why (nothing is made)', async () => {
    const out = await asNobody(`
      try { nsbox.spawnIsolated('/bin/true', [], { network: { mode: 'egress', allow: ['allowed.test'], transparent: true } }); console.log(JSON.stringify({ made: true })); }
      catch (e) { console.log(JSON.stringify({ name: e.constructor.name, code: e.code, message: e.message })); }`);
    expect(out).toMatchObject({ name: 'NsboxError', code: 'EPERM' });
    expect(out.message).toMatch(/options\.network\.transparent needs root: the redirect is nft rules in the sandbox's network namespace.*leave it out: programs that use the proxy variables/);
  }, 60_000);

  it('TLS interception as uid 65534: curl trusts the sandbox\'s CA through the system bundle path, the header arrives, the host\'s bundle is unchanged', async (ctx) => {
    if (skipReason(!CURL, 'curl is not installed')) return ctx.skip();
    if (skipReason(!tls, 'openssl is not installed (the fake internet has no HTTPS server)')) return ctx.skip();
    const bundle = '/etc/ssl/certs/ca-certificates.crt';
    const before = existsSync(bundle) ? readFileSync(bundle, 'utf8') : '';
    const body = `
      const lookup = ${LOOKUP_SOURCE};
      const r = await nsbox.spawnIsolated('/bin/sh', ['-c', 'env -u CURL_CA_BUNDLE -u SSL_CERT_FILE ${CURL} -sS -m 5 https://allowed.test/unpriv-tls 2>&1; echo "rc=$?"'],
        { network: { mode: 'egress', allow: ['allowed.test'], lookup, intercept: true, upstreamCa: ${JSON.stringify(tls!.cert)}, inject: [{ host: 'allowed.test', headers: { 'x-token': 'unpriv-tls-secret' } }] } }).catch((e) => ({ error: e.message }));
      console.log(JSON.stringify({ stdout: r.stdout, error: r.error, tlsInterception: r.isolation?.tlsInterception, uid: process.getuid() }));`;
    const out = await asNobody(body);
    expect(out.uid).toBe(65534);
    expect(out.error).toBeUndefined();
    expect(out.stdout).toBe('hello from 203.0.113.10 for allowed.test\nrc=0\n');
    expect(out.tlsInterception).toEqual(['allowed.test']);
    expect((await inet.waitFor((q) => q.url === '/unpriv-tls'))!.headers['x-token']).toBe('unpriv-tls-secret');
    expect(existsSync(bundle) ? readFileSync(bundle, 'utf8') : '').toBe(before);
  }, 180_000);
});

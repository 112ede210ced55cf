// The per-sandbox CA of TLS interception (lib/net/egress/ca.ts): its DER certificates parse,
// the leaf verifies against the CA (Node's X509Certificate, and openssl's strict check when
// openssl is here), and a TLS client trusting only the CA accepts the leaf for its host and
// no other.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { checkServerIdentity, connect, createSecureContext, createServer, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SandboxCa } from '../../lib/net/egress/ca.js';

const hasOpenssl = (() => { try { execFileSync('openssl', ['version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

describe('SandboxCa', () => {
  const ca = new SandboxCa();
  it('makes a CA certificate and leaves that verify against it', () => {
    const c = new X509Certificate(ca.certPem);
    expect(c.ca).toBe(true);
    expect(c.checkIssued(c)).toBe(true);
    const l = new X509Certificate(ca.leaf('allowed.test').cert);
    expect(l.ca).toBe(false);
    expect(l.verify(c.publicKey)).toBe(true);
    expect(l.checkIssued(c)).toBe(true);
    expect(l.subjectAltName).toBe('DNS:allowed.test');
    expect(l.checkHost('allowed.test')).toBe('allowed.test');
    expect(new X509Certificate(ca.leaf('203.0.113.10').cert).checkIP('203.0.113.10')).toBe('203.0.113.10');
    expect(new X509Certificate(ca.leaf('2001:db8::1').cert).checkIP('2001:db8::1')).toBe('2001:db8::1');
    expect(ca.leaf('allowed.test').cert).toBe(ca.leaf('allowed.test').cert); // made once per host
    expect(ca.certPem).not.toMatch(/PRIVATE/);
    expect(new SandboxCa().certPem).not.toBe(ca.certPem); // one per sandbox
  });

  it.skipIf(!hasOpenssl)('openssl verify -x509_strict accepts the leaf with the CA (openssl is installed)', () => {
    const d = mkdtempSync('/tmp/nsbox-ca-test-');
    try {
      writeFileSync(`${d}/ca`, ca.certPem);
      writeFileSync(`${d}/leaf`, ca.leaf('a.example').cert);
      expect(execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', `${d}/ca`, `${d}/leaf`], { encoding: 'utf8' })).toMatch(/: OK/);
    } finally { rmSync(d, { recursive: true, force: true }); }
  });

  it('a TLS client trusting only the CA accepts the leaf for its host, and refuses it for another', async () => {
    const srv = createServer({ SNICallback: (h, cb) => cb(null, createSecureContext(ca.leaf(h))) }, (s) => s.end('ok'));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    const go = (servername: string, checkAs: string) => new Promise<string>((resolve, reject) => {
      const s: TLSSocket = connect({ host: '127.0.0.1', port, servername, ca: ca.certPem, checkServerIdentity: (_h, cert) => checkServerIdentity(checkAs, cert) });
      let got = '';
      s.on('data', (d) => (got += d)); s.on('end', () => resolve(got)); s.on('error', reject);
    });
    expect(await go('allowed.test', 'allowed.test')).toBe('ok');
    await expect(go('allowed.test', 'other.test')).rejects.toThrow(/altnames/);
    srv.close();
  });
});

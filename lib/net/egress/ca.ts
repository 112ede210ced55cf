// The per-sandbox certificate authority of an egress policy's TLS interception (`intercept:
// true`): made in memory when the sandbox starts (an EC P-256 key, a self-signed X.509 v3 CA
// certificate), and leaf certificates it signs for the hosts whose HTTPS nsbox terminates.
// Node has no X.509 builder, so the certificates are put together here in DER (RFC 5280,
// only what a CA and a TLS server certificate need) and signed with node:crypto. The private
// keys never leave this process; the sandbox gets the CA's certificate only.
import type { KeyObject } from 'node:crypto';
import { createHash, generateKeyPairSync, randomBytes, sign } from '../../util/builtins.js';
import { isIP } from 'node:net';

// --- DER ------------------------------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let x = n; x > 0; x >>= 8) b.unshift(x & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), len(body.length), body]);
const seq = (...xs: Buffer[]) => tlv(0x30, Buffer.concat(xs));
const set = (...xs: Buffer[]) => tlv(0x31, Buffer.concat(xs));
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer, unused = 0) => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const explicit = (n: number, b: Buffer) => tlv(0xa0 | n, b);

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const p = dotted.split('.').map(Number);
  const out: number[] = [40 * p[0]! + p[1]!];
  for (const n of p.slice(2)) {
    const b: number[] = [n & 0x7f];
    for (let x = Math.floor(n / 128); x > 0; x = Math.floor(x / 128)) b.unshift((x & 0x7f) | 0x80);
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  // UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5)
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(s.slice(2), 'latin1')) : tlv(0x18, Buffer.from(s, 'latin1'));
}

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
};

const name = (cn: string) => seq(set(seq(oid(OID.organization), utf8('nsbox'))), set(seq(oid(OID.commonName), utf8(cn))));
const ext = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

function keyId(spki: Buffer): Buffer {
  // RFC 5280 4.2.1.2 (1): the SHA-1 of the subjectPublicKey's bits; for P-256 they are the last 65 bytes of the SPKI
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

function certificate(o: { subject: string; issuer: string; spki: Buffer; signer: KeyObject; days: number; extensions: Buffer[] }): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive, non-zero, 16 bytes
  const now = Date.now();
  const alg = seq(oid(OID.ecdsaSha256));
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    alg,
    name(o.issuer),
    seq(time(new Date(now - 3600_000)), time(new Date(now + o.days * 86400_000))),
    name(o.subject),
    o.spki,
    explicit(3, seq(...o.extensions)),
  );
  return seq(tbs, alg, bits(sign('sha256', tbs, o.signer)));
}

const pem = (der: Buffer, label: string) => `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;

/** A certificate authority of one sandbox: its certificate (PEM) is what the sandbox trusts. */
export class SandboxCa {
  /** the CA's certificate, PEM */
  readonly certPem: string;
  readonly #key: KeyObject;
  readonly #keyId: Buffer;
  /** one key for every leaf of this sandbox; its certificates per host */
  readonly #leafKeyPem: string;
  readonly #leafSpki: Buffer;
  readonly #leaves = new Map<string, string>();

  constructor() {
    const ca = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    this.#key = ca.privateKey;
    const spki = ca.publicKey.export({ type: 'spki', format: 'der' });
    this.#keyId = keyId(spki);
    const cn = `nsbox sandbox CA ${process.pid} ${randomBytes(4).toString('hex')}`;
    this.certPem = pem(certificate({
      subject: cn, issuer: cn, spki, signer: this.#key, days: 825,
      extensions: [
        ext(OID.basicConstraints, true, seq(bool(true), integer(Buffer.from([0])))), // CA, pathLen 0
        ext(OID.keyUsage, true, bits(Buffer.from([0x06]), 1)), // keyCertSign, cRLSign
        ext(OID.subjectKeyId, false, octets(this.#keyId)),
      ],
    }), 'CERTIFICATE');
    this.#issuer = cn;
    const leaf = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    this.#leafKeyPem = leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    this.#leafSpki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  }

  readonly #issuer: string;

  /** A server certificate for `host` (a name or an address) signed by this CA, and its key (PEM). */
  leaf(host: string): { key: string; cert: string } {
    let cert = this.#leaves.get(host);
    if (!cert) {
      const ip = isIP(host);
      const san = ip === 4 ? tlv(0x87, Buffer.from(host.split('.').map(Number)))
        : ip === 6 ? tlv(0x87, ipv6Bytes(host))
          : tlv(0x82, Buffer.from(host, 'latin1')); // dNSName [2] IA5String
      cert = pem(certificate({
        subject: host.slice(0, 64), issuer: this.#issuer, spki: this.#leafSpki, signer: this.#key, days: 30,
        extensions: [
          ext(OID.basicConstraints, true, seq()),
          ext(OID.keyUsage, true, bits(Buffer.from([0x80]), 7)), // digitalSignature
          ext(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
          ext(OID.subjectAltName, false, seq(san)),
          ext(OID.authorityKeyId, false, seq(tlv(0x80, this.#keyId))),
        ],
      }), 'CERTIFICATE');
      if (this.#leaves.size >= 4096) this.#leaves.clear();
      this.#leaves.set(host, cert);
    }
    return { key: this.#leafKeyPem, cert };
  }
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

// The sandbox's name server (127.0.0.1:53 inside it, UDP and TCP): answers A and AAAA
// questions for names the policy's lists allow, with the addresses nsbox's own resolver gives
// that pass the address check; NXDOMAIN for every other name. The wire format (RFC 1035) as
// far as a stub resolver uses it: one question, no EDNS in the answer.

/** One question of a query. */
export interface DnsQuestion {
  id: number;
  name: string;
  qtype: number;
  /** the question section as it came (echoed in the answer) */
  raw: Buffer;
  /** the header's RD bit */
  rd: boolean;
}

/** Parses a query; undefined for anything else (an answer, more or fewer than one question, a bad name). */
export function parseQuery(b: Buffer): DnsQuestion | undefined {
  if (b.length < 12) return undefined;
  const flags = b.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response
  if ((flags >> 11) & 0xf) return undefined; // not a standard query
  if (b.readUInt16BE(4) !== 1) return undefined;
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    if (off >= b.length) return undefined;
    const len = b[off]!;
    if (len === 0) { off++; break; }
    if (len > 63 || off + 1 + len > b.length) return undefined; // no compression in a question
    labels.push(b.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  if (off + 4 > b.length) return undefined;
  const qtype = b.readUInt16BE(off);
  const raw = b.subarray(12, off + 4);
  return { id: b.readUInt16BE(0), name: labels.join('.').toLowerCase(), qtype, raw, rd: !!(flags & 0x0100) };
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.includes('::') ? a.split('::') as [string, string] : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const expand = (parts: string[]) => parts.flatMap((p) => (p.includes('.') ? (() => { const q = p.split('.').map(Number); return [((q[0]! << 8) | q[1]!).toString(16), ((q[2]! << 8) | q[3]!).toString(16)]; })() : [p]));
  const hh = expand(h), tt = expand(t);
  const groups = tail === undefined ? hh : [...hh, ...Array(8 - hh.length - tt.length).fill('0'), ...tt];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16) || 0, i * 2));
  return out;
}

/** An answer to `q`: the addresses (A for qtype 1, AAAA for 28; others are left out) or an rcode. */
export function buildAnswer(q: DnsQuestion, rcode: number, addresses: string[] = [], ttl = 30): Buffer {
  const want = q.qtype === 1 ? 4 : q.qtype === 28 ? 6 : 0;
  const rrs = rcode === 0 ? addresses.filter((a) => (want === 4 ? !a.includes(':') : want === 6 ? a.includes(':') : false)) : [];
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  head.writeUInt16BE(0x8000 | 0x0400 | (q.rd ? 0x0100 : 0) | 0x0080 | (rcode & 0xf), 2); // QR AA RD? RA rcode
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(rrs.length, 6);
  parts.push(head, q.raw);
  for (const a of rrs) {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // the question's name
    rr.writeUInt16BE(want === 4 ? 1 : 28, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(ttl, 6);
    const data = want === 4 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a);
    rr.writeUInt16BE(data.length, 10);
    parts.push(rr, data);
  }
  return Buffer.concat(parts);
}

/** A failure answer for a message that could not be parsed (its id kept when there is one). */
export function formErr(b: Buffer): Buffer | undefined {
  if (b.length < 12 || b.readUInt16BE(2) & 0x8000) return undefined;
  const head = Buffer.alloc(12);
  head.writeUInt16BE(b.readUInt16BE(0), 0);
  head.writeUInt16BE(0x8000 | RCODE.FORMERR, 2);
  return head;
}

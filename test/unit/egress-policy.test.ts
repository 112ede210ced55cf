// The egress policy's pure parts: the option's validation, rule matching, the protected
// ranges (with IPv4-mapped and NAT64 forms), and the name server's wire format.
import { describe, expect, it } from 'vitest';
import { addressVerdict, injectionsFor, listVerdict, parseTarget, protectedRange, validateEgress } from '../../lib/net/egress/policy.js';
import { buildAnswer, parseQuery } from '../../lib/net/egress/dns.js';

const v = (o: object, host: Set<string> = new Set()) => validateEgress({ mode: 'egress', ...o }, 'options.network', host);
const t = (h: string, port = 443) => parseTarget(h, port)!;

describe('validateEgress', () => {
  it.each([
    [{ allow: ['*.'] }, RangeError, /allow\[0\] '\*\.' is not a valid wildcard pattern/],
    [{ allow: ['a..b'] }, RangeError, /allow\[0\] 'a\.\.b' is not a valid host name/],
    [{ allow: ['foo.*.com'] }, RangeError, /allow\[0\] 'foo\.\*\.com' is not a valid host pattern/],
    [{ allow: ['-a.com'] }, RangeError, /not a valid host name/],
    [{ allow: ['999.1.1.1'] }, RangeError, /neither a host name nor an IP address/],
    [{ allow: [{ host: 'a.com', ports: [0] }] }, RangeError, /allow\[0\]\.ports\[0\] must be a port in 1\.\.65535/],
    [{ allow: [{ host: 'a.com', ports: [65536] }] }, RangeError, /ports\[0\] must be a port in 1\.\.65535 \(got 65536\)/],
    [{ allow: [{ host: 'a.com', ports: ['443'] }] }, TypeError, /ports\[0\] must be an integer port/],
    [{ allow: [{ host: 'a.com', ports: [] }] }, TypeError, /ports must be a non-empty array/],
    [{ allow: [{ host: 'a.com', port: 1 }] }, TypeError, /allow\[0\] has an unknown key 'port'/],
    [{ allow: [42] }, TypeError, /allow\[0\] must be a host pattern/],
    [{ allow: 'a.com' }, TypeError, /options\.network\.allow must be an array/],
    [{ deny: [{ host: 5 }] }, TypeError, /deny\[0\]\.host must be a string/],
    [{ allow: ['127.0.0.1'] }, TypeError, /allow\[0\] '127\.0\.0\.1' is in a protected range \(loopback\)/],
    [{ allow: ['169.254.169.254'] }, TypeError, /protected range \(link-local \(cloud metadata\)\)/],
    [{ allow: ['fd00:ec2::254'] }, TypeError, /protected range \(unique local/],
    [{ allow: ['10.0.0.0/8'] }, TypeError, /'10\.0\.0\.0\/8' is in a protected range \(private\)/],
    [{ allow: ['0.0.0.0/0'] }, TypeError, /'0\.0\.0\.0\/0' is in a protected range/],
    [{ allow: ['::ffff:127.0.0.1'] }, TypeError, /protected range \(loopback\)/],
    [{ allow: ['1.2.3.4/33'] }, RangeError, /bad prefix length/],
    [{ allow: [{ host: 'a.com', allowPrivate: true }] }, TypeError, /allow\[0\]\.allowPrivate is for address rules only/],
    [{ allow: ['a.com'], inject: [{ host: 'b.com', headers: { x: 'y' } }] }, TypeError, /inject\[0\] injects headers for 'b\.com', which no rule of options\.network\.allow allows/],
    [{ allow: ['a.com'], inject: [{ host: '*.a.com', headers: { x: 'y' } }] }, TypeError, /injects headers for '\*\.a\.com'/],
    [{ allow: ['a.com'], inject: [{ host: 'a.com', headers: { 'bad header': 'y' } }] }, TypeError, /invalid header name 'bad header'/],
    [{ allow: ['a.com'], inject: [{ host: 'a.com', headers: { host: 'y' } }] }, TypeError, /headers\.host is a header the proxy sets itself/],
    [{ allow: ['a.com'], inject: [{ host: 'a.com', headers: { x: 'a\r\nb: c' } }] }, TypeError, /must not contain CR, LF or NUL/],
    [{ allow: ['a.com'], inject: [{ host: '1.2.3.4', headers: { x: 'y' } }] }, TypeError, /must be a host name or pattern/],
    [{ onRequest: true }, TypeError, /onRequest must be a function/],
    [{ lookup: 'x' }, TypeError, /lookup must be a function/],
    [{ socks: 1 }, TypeError, /socks must be a boolean/],
    [{ nope: 1 }, TypeError, /options\.network\.nope is not an egress network option/],
  ])('%j → %s', (o, cls, msg) => {
    expect(() => v(o)).toThrow(cls);
    expect(() => v(o)).toThrow(msg);
  });

  it('a host address is protected (given the host\'s addresses); allowPrivate opens it', () => {
    expect(() => v({ allow: ['198.51.100.7'] }, new Set(['198.51.100.7']))).toThrow(/the host's own/);
    expect(() => v({ allow: [{ host: '198.51.100.7', allowPrivate: true }] }, new Set(['198.51.100.7']))).not.toThrow();
  });

  it('accepts what it should: names, wildcards, *, addresses, CIDR, trailing dots, mixed case, covered injections', () => {
    const p = v({
      allow: ['Registry.NPMjs.org.', '*.pypi.org', '*', '203.0.113.5', '2001:db8::/32', { host: '10.1.2.3', allowPrivate: true, ports: [8080] }],
      deny: ['evil.pypi.org', '127.0.0.1'],
      inject: [{ host: 'files.pypi.org', headers: { Authorization: 'Bearer x' } }],
    });
    expect(p.allow).toHaveLength(6);
    expect(p.socks).toBe(true);
  });
});

describe('decisions', () => {
  const p = v({
    allow: ['registry.npmjs.org', '*.pypi.org', { host: 'api.example.com', ports: [443] }, '203.0.113.0/24', { host: '10.1.2.3', allowPrivate: true }],
    deny: ['evil.pypi.org', '203.0.113.66'],
    inject: [{ host: 'api.example.com', headers: { authorization: 'Bearer t' } }],
  });
  it('lists: deny wins, wildcard is for subdomains only, ports, names never match addresses', () => {
    expect(listVerdict(p, t('registry.npmjs.org'))).toBe(true);
    expect(listVerdict(p, t('REGISTRY.npmjs.org.'))).toBe(true);
    expect(listVerdict(p, t('npmjs.org'))).toBe(false);
    expect(listVerdict(p, t('files.pypi.org'))).toBe(true);
    expect(listVerdict(p, t('a.b.pypi.org'))).toBe(true);
    expect(listVerdict(p, t('pypi.org'))).toBe(false);
    expect(listVerdict(p, t('xpypi.org'))).toBe(false);
    expect(listVerdict(p, t('evil.pypi.org'))).toBe('deny');
    expect(listVerdict(p, t('api.example.com', 443))).toBe(true);
    expect(listVerdict(p, t('api.example.com', 80))).toBe(false);
    expect(listVerdict(p, t('203.0.113.9'))).toBe(true);
    expect(listVerdict(p, t('203.0.113.66'))).toBe('deny');
    expect(listVerdict(p, t('198.51.100.1'))).toBe(false);
  });
  it('addresses: protected ranges (also as IPv4-mapped and NAT64 forms) unless listed with allowPrivate', () => {
    const none = new Set<string>();
    expect(addressVerdict(p, '93.184.216.34', 443, none)).toBeUndefined();
    for (const a of ['127.0.0.1', '::1', '169.254.169.254', 'fd00:ec2::254', '10.9.9.9', '192.168.1.1', '172.16.0.1', '100.64.0.1', '0.0.0.0', '::', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe', 'fe80::1', '224.0.0.1', '255.255.255.255']) {
      expect(addressVerdict(p, a, 443, none), a).toBeDefined();
    }
    expect(addressVerdict(p, '10.1.2.3', 443, none)).toBeUndefined();
    expect(addressVerdict(p, '::ffff:10.1.2.3', 443, none)).toBeUndefined();
    expect(addressVerdict(p, '203.0.113.66', 443, none)).toBe('deny-rule');
    expect(addressVerdict(p, '93.184.216.34', 443, new Set(['93.184.216.34']))).toBe("the host's own");
    expect(protectedRange('169.254.169.254')).toMatch(/metadata/);
  });
  it('injections go to their host only', () => {
    expect(injectionsFor(p, t('api.example.com'))).toEqual([['authorization', 'Bearer t']]);
    expect(injectionsFor(p, t('registry.npmjs.org'))).toEqual([]);
  });
});

describe('the name server wire format', () => {
  const query = (name: string, qtype: number) => {
    const labels = Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
    const q = Buffer.alloc(4);
    q.writeUInt16BE(qtype, 0);
    q.writeUInt16BE(1, 2);
    return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), labels, q]);
  };
  it('parses a query and answers A and AAAA; NXDOMAIN has no records', () => {
    const q = parseQuery(query('Allowed.Test', 1))!;
    expect(q).toMatchObject({ id: 0x1234, name: 'allowed.test', qtype: 1, rd: true });
    const a = buildAnswer(q, 0, ['203.0.113.10', '2001:db8::1']);
    expect(a.readUInt16BE(2) & 0xf).toBe(0);
    expect(a.readUInt16BE(6)).toBe(1); // one A record (the v6 one is not for an A question)
    expect([...a.subarray(a.length - 4)]).toEqual([203, 0, 113, 10]);
    const q6 = parseQuery(query('x.test', 28))!;
    const a6 = buildAnswer(q6, 0, ['203.0.113.10', '2001:db8::1']);
    expect(a6.subarray(a6.length - 16).toString('hex')).toBe('20010db8000000000000000000000001');
    const nx = buildAnswer(q, 3, ['203.0.113.10']);
    expect(nx.readUInt16BE(2) & 0xf).toBe(3);
    expect(nx.readUInt16BE(6)).toBe(0);
  });
  it('refuses what is not one plain question', () => {
    expect(parseQuery(Buffer.alloc(5))).toBeUndefined();
    const resp = query('a.test', 1);
    resp[2] = 0x81;
    expect(parseQuery(resp)).toBeUndefined();
    const bad = query('a.test', 1);
    bad[12] = 0xc0; // a compression pointer in the question
    expect(parseQuery(bad)).toBeUndefined();
  });
});

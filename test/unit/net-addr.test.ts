// Pure checks of lib/net: CIDR parsing, subnet maths, link names, network option validation.
import { describe, it, expect } from 'vitest';
import { parseCidr, contains, networkCidr, formatIp, ipToBigInt, checkLinkName, checkMtu } from '../../lib/net/addr.js';
import { ownedLinkName, parseOwnedName } from '../../lib/net/link.js';

describe('lib/net address helpers', () => {
  it('parses v4 and v6 CIDRs and rejects bad ones by name', () => {
    expect(parseCidr('10.88.0.2/16', 'address')).toEqual({ family: 4, address: '10.88.0.2', prefix: 16 });
    expect(parseCidr('fd00:0:0::2/64', 'address')).toEqual({ family: 6, address: 'fd00::2', prefix: 64 });
    expect(() => parseCidr('10.88.0.2', 'address')).toThrow(/address must be in CIDR form/);
    expect(() => parseCidr('10.88.0.2/33', 'address')).toThrow(RangeError);
    expect(() => parseCidr('10.88.0.256/24', 'gw')).toThrow(/gw must be an IPv4 or IPv6/);
    expect(() => parseCidr(5 as unknown as string, 'x')).toThrow(TypeError);
    expect(parseCidr('10.0.0.1', 'a', true).prefix).toBe(32);
  });
  it('does subnet maths', () => {
    const c = parseCidr('10.88.3.1/16', 'a');
    expect(networkCidr(c)).toBe('10.88.0.0/16');
    expect(contains(c, '10.88.255.254', 4)).toBe(true);
    expect(contains(c, '10.89.0.1', 4)).toBe(false);
    expect(formatIp(ipToBigInt('fd00::1:0:0:2', 6) + 1n, 6)).toBe('fd00::1:0:0:3');
    expect(formatIp(ipToBigInt('::ffff:1.2.3.4', 6), 6)).toBe('::ffff:102:304');
    expect(networkCidr(parseCidr('fd00:1:2:3::9/48', 'a'))).toBe('fd00:1:2::/48');
  });
  it('checks link names (<= 15 bytes) and MTUs', () => {
    expect(checkLinkName('nsbox0', 'bridge')).toBe('nsbox0');
    expect(() => checkLinkName('nsbox-0123456789', 'bridge')).toThrow(/bridge must be at most 15 bytes/);
    expect(() => checkLinkName('a/b', 'name')).toThrow(RangeError);
    expect(() => checkLinkName('', 'name')).toThrow(RangeError);
    expect(() => checkMtu(10, 'mtu')).toThrow(/mtu must be in 68..65535/);
  });
  it('makes owned link names that carry the pid and are 15 bytes', () => {
    const a = ownedLinkName('h');
    const b = ownedLinkName('h');
    expect(a).not.toBe(b);
    expect(a).toHaveLength(15);
    expect(a.startsWith('nsbox')).toBe(true);
    expect(parseOwnedName(a)).toBe(process.pid);
    expect(parseOwnedName('eth0')).toBeUndefined();
  });
});

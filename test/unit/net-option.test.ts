// The `network` option is checked without touching the system: shapes, names in the errors.
import { describe, it, expect } from 'vitest';
import { validateNetworkOption } from '../../lib/net/network.js';
import { chooseHelper, findExecutable } from '../../lib/net/usernet.js';

describe('validateNetworkOption', () => {
  it('accepts the modes', () => {
    expect(validateNetworkOption(undefined)).toBe('none');
    for (const m of ['none', 'host', 'loopback'] as const) expect(validateNetworkOption(m)).toBe(m);
    expect(validateNetworkOption('user')).toEqual({ mode: 'user' });
    const u = { mode: 'user', helper: 'slirp4netns', publish: [{ host: 8080, container: 80, protocol: 'udp', hostIp: '::1' }], dns: ['1.1.1.1'], mtu: 1500, interfaceName: 'tap0', hostLoopback: true, hostname: 'box' };
    expect(validateNetworkOption(u)).toBe(u);
    const b = { mode: 'bridge', bridge: 'br0', subnet: '10.9.0.0/24', address: '10.9.0.5', publish: [{ host: 1, container: 2 }] };
    expect(validateNetworkOption(b)).toBe(b);
  });

  it('names the option in TypeError/RangeError', () => {
    const bad: Array<[unknown, RegExp, ErrorConstructor]> = [
      ['users', /options\.network must be 'none', 'host', 'loopback', 'user'/, RangeError],
      [42, /options\.network must be a string or an object/, TypeError],
      [{ mode: 'tap' }, /options\.network\.mode must be 'bridge', 'user' or 'egress'/, RangeError],
      [{ mode: 'user', helper: 'vde' }, /options\.network\.helper/, RangeError],
      [{ mode: 'user', mtu: 576 }, /options\.network\.mtu must be at least 1280/, RangeError],
      [{ mode: 'user', bridge: 'br0' }, /options\.network\.bridge is not a user-mode/, TypeError],
      [{ mode: 'user', hostLoopback: 1 }, /options\.network\.hostLoopback must be a boolean/, TypeError],
      [{ mode: 'user', interfaceName: 'a-very-long-ifname' }, /options\.network\.interfaceName/, RangeError],
      [{ mode: 'user', publish: [{ host: 70000, container: 1 }] }, /options\.network\.publish\[0\]\.host must be in 1\.\.65535/, RangeError],
      [{ mode: 'user', publish: [{ host: 1, container: 1, hostIp: 'localhost' }] }, /options\.network\.publish\[0\]\.hostIp/, RangeError],
      [{ mode: 'user', dns: ['x'] }, /options\.network\.dns\[0\]/, RangeError],
      [{ hostLoopback: true }, /options\.network\.hostLoopback is not a bridge network option/, TypeError],
      [{ subnet: '10.0.0.0/31' }, /prefix <= 30/, RangeError],
      [{ subnet: '10.1.0.0/24', address: '10.2.0.1' }, /outside options\.network\.subnet/, RangeError],
      [{ publish: [{ host: 1, container: 1, hostIp: '::1' }] }, /options\.network\.publish\[0\]\.hostIp/, RangeError],
    ];
    for (const [v, msg, cls] of bad) {
      let err: unknown;
      try { validateNetworkOption(v); } catch (e) { err = e; }
      expect(err, JSON.stringify(v)).toBeInstanceOf(cls);
      expect((err as Error).message, JSON.stringify(v)).toMatch(msg);
    }
  });
});

describe('user-mode helper lookup', () => {
  it('searches PATH only, and says which package to install', () => {
    expect(findExecutable('sh', '/nonexistent:/bin')).toBe('/bin/sh');
    expect(findExecutable('sh', '/nonexistent')).toBeUndefined();
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(() => chooseHelper()).toThrow(/needs pasta \(Debian\/Ubuntu package 'passt'\) or slirp4netns/);
      expect(() => chooseHelper('slirp4netns')).toThrow(/slirp4netns \(package 'slirp4netns'\)/);
      let err: unknown;
      try { chooseHelper('pasta'); } catch (e) { err = e; }
      expect(err).toMatchObject({ name: 'NsboxError', code: 'ENOENT', step: 'network', syscall: 'execve', path: 'pasta' });
    } finally {
      process.env.PATH = saved;
    }
  });
});

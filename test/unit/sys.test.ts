// lib/util/sys.ts: the one errno and signal source (Node's os.constants), and its users.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { errnoName, signalName, SIGNALS, ERRNOS } from '../../lib/util/sys.js';
import { errnoError, fromNodeError } from '../../lib/errors.js';
import { netError } from '../../lib/net/addr.js';
import { ERRNO_NUMBERS } from '../../lib/security/seccomp/profile.js';

describe('errno and signal names', () => {
  it('names each errno number by its first name, the kernel’s (EOPNOTSUPP, EAGAIN), and each name maps back', () => {
    expect([2, 11, 95, 98, 10, 116, 122].map(errnoName)).toEqual(['ENOENT', 'EAGAIN', 'EOPNOTSUPP', 'EADDRINUSE', 'ECHILD', 'ESTALE', 'EDQUOT']);
    expect([0, -2, 1.5, 9999].map(errnoName)).toEqual([undefined, undefined, undefined, undefined]);
    for (const [name, n] of Object.entries(constants.errno)) {
      const back = errnoName(n);
      expect(ERRNOS[back!]).toBe(n);
      if (back !== name) expect(['EWOULDBLOCK', 'ENOTSUP']).toContain(name);
    }
  });

  it('names signals as child_process does (SIGABRT, not SIGIOT; SIGIO, not SIGPOLL)', () => {
    for (const sig of [SIGNALS.SIGABRT!, SIGNALS.SIGIO!, SIGNALS.SIGTERM!, SIGNALS.SIGSYS!]) {
      const r = spawnSync('/bin/sh', ['-c', `kill -${sig} $$`]);
      expect(signalName(sig)).toBe(r.signal);
    }
    expect(signalName(SIGNALS.SIGRTMIN ?? 34)).toBeUndefined();
    for (const n of Object.values(constants.signals)) expect(SIGNALS[signalName(n)!]).toBe(n);
  });

  it('errnoError and netError name any errno Node knows; fromNodeError keeps Node’s code', () => {
    expect(errnoError(98, 'publish', 'bind', undefined, 'in use')).toMatchObject({ code: 'EADDRINUSE', errno: -98, message: "bind failed at step 'publish': EADDRINUSE: in use" });
    expect(netError(95, 'publish', 'dlopen', 'libnftables.so.1')).toMatchObject({ code: 'EOPNOTSUPP', message: "dlopen failed at step 'publish' (libnftables.so.1): EOPNOTSUPP" });
    expect(errnoError(10, 's', 'waitid').code).toBe('ECHILD');
    expect(errnoError(9999, 's', 'x').code).toBe('E9999');
    const e = Object.assign(new Error('gone'), { errno: -2, code: 'ENOENT', syscall: 'open', path: '/x' });
    expect(fromNodeError(e, 'store')).toMatchObject({ code: 'ENOENT', errno: -2, step: 'store' });
    expect(fromNodeError(Object.assign(new Error('?'), { errno: -13 }), 'store').code).toBe('EACCES');
  });

  it('the seccomp profile’s errno names carry the host’s numbers', () => {
    expect(ERRNO_NUMBERS).toMatchObject({ EPERM: 1, ENOENT: 2, EAGAIN: 11, ENOSYS: 38, ENOTSUP: 95, EOPNOTSUPP: 95, EAFNOSUPPORT: 97 });
    for (const [name, n] of Object.entries(ERRNO_NUMBERS)) expect(n).toBe((constants.errno as Record<string, number>)[name]);
    expect(Object.isFrozen(ERRNO_NUMBERS)).toBe(true);
  });
});

// Issue 13, item 2: with allowNewPrivileges the filter is installed before the spawn child drops
// its privileges; the default profile must allow everything the child does after that.
import { describe, expect, it } from 'vitest';
import { compileSeccomp, defaultProfile, Seccomp } from '../../lib/security/seccomp/index.js';
import { checkSeccompEarly, seccompEarlyCalls } from '../../lib/security/seccomp/early.js';

describe('seccomp installed before privileges are dropped', () => {
  it('the default profile allows every call the child makes after it, for any ids', () => {
    const prog = compileSeccomp(defaultProfile);
    for (const [u, g] of [[0, 0], [1000, 1000], [65534, 100]] as const) expect(() => checkSeccompEarly(prog, u, g)).not.toThrow();
    expect(seccompEarlyCalls(0, 0).map((c) => c.syscall)).toEqual(expect.arrayContaining(['setresuid', 'capset', 'prctl', 'execve', 'execveat', 'close_range']));
  });

  it('a profile refusing one of them is a TypeError naming the option, the call and the verdict', () => {
    const prog = compileSeccomp(Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['close_range'], action: 'trap' }] }));
    expect(() => checkSeccompEarly(prog, 0, 0, 'opts.seccomp')).toThrow(TypeError);
    expect(() => checkSeccompEarly(prog, 0, 0, 'opts.seccomp')).toThrow(/^opts\.seccomp: .*close_range .*trap/);
    const prctl = compileSeccomp(Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['prctl'], action: { errno: 'EPERM' }, args: [{ index: 0, op: 'eq', value: 47 }] }] }));
    expect(() => checkSeccompEarly(prctl, 0, 0)).toThrow(/prctl \(clearing ambient capabilities\).*errno\(1\)/);
    const logged = compileSeccomp(Seccomp.profile({ defaultAction: 'log', rules: [] }));
    expect(() => checkSeccompEarly(logged, 0, 0)).not.toThrow();
  });

  it('a call refused with an errno is fine where the child has a way around it (close_range → fcntl one by one)', () => {
    // regression: the OCI validation suite's Docker-like profile has no close_range, and was refused
    const noRange = compileSeccomp(Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['close_range'], action: { errno: 'EPERM' } }] }));
    expect(() => checkSeccompEarly(noRange, 0, 0)).not.toThrow();
    const neither = compileSeccomp(Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['close_range', 'fcntl'], action: { errno: 'EPERM' } }] }));
    expect(() => checkSeccompEarly(neither, 0, 0)).toThrow(/close_range/);
  });
});

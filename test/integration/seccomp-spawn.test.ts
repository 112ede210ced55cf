// The seccomp option of spawnIsolated, end to end: the filter is installed inside a real
// sandbox (Seccomp: 2 in its /proc/self/status), hostile programs run inside are denied, and a
// bad option throws before anything is created.
import { dirname } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnIsolated } from '../../lib/spawn/spawn.js';
import { Seccomp } from '../../lib/security/seccomp/index.js';
import { isRoot, mountTable, skipReason } from '../helpers/host.js';
import { hostI386Syscalls } from '../../lib/security/doctor.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';

afterAll(() => cleanupBuilds());

const why = !isRoot ? 'spawnIsolated integration tests need root' : process.arch !== 'x64' ? `the battery is x86_64 (this is ${process.arch})` : cannotBuild();

describe.skipIf(skipReason(!!why, `seccomp in spawnIsolated: ${why}`))('seccomp in spawnIsolated', () => {
  const run = (attack: string, seccomp?: unknown, extra: object = {}) => {
    const bin = buildC('hostile', { static: true });
    return spawnIsolated('/opt/nsbox-hostile/hostile.static', [attack], {
      mounts: [{ type: 'bind', source: dirname(bin), target: '/opt/nsbox-hostile', readonly: true }],
      ...(seccomp === undefined ? {} : { seccomp }),
      ...extra,
    } as Parameters<typeof spawnIsolated>[2]);
  };

  it('installs the default profile unless told otherwise', async () => {
    const on = await spawnIsolated('/bin/grep', ['Seccomp:', '/proc/self/status']);
    expect(on.stdout).toMatch(/Seccomp:\s+2/);
    const off = await spawnIsolated('/bin/grep', ['Seccomp:', '/proc/self/status'], { seccomp: 'none' } as Parameters<typeof spawnIsolated>[2]);
    expect(off.stdout).toMatch(/Seccomp:\s+0/);
  });

  for (const attack of ['unshare', 'clone', 'mount', 'kernel', 'socket', 'tty']) {
    it(`denies ${attack} attempts inside the sandbox`, async () => {
      const r = await run(attack);
      expect(r.stdout, r.stdout + r.stderr).not.toMatch(/ALLOWED/);
      expect(r.stdout).toMatch(/^DENIED /m);
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    });
  }

  it('shows the attacks are real inside a sandbox without the filter', async () => {
    // (nestedUserNamespaces: the sandbox's own max_user_namespaces = 0 would refuse it too)
    const r = await run('unshare', 'none', { nestedUserNamespaces: true });
    expect(r.stdout).toMatch(/^ALLOWED unshare\(CLONE_NEWUSER\) ret=0/m);
  });

  it('kills a sandboxed process that uses the x32 ABI', async () => {
    const r = await run('x32');
    expect(r.signal, r.stdout).toBe('SIGSYS');
    expect(r.stdout).not.toMatch(/ALLOWED/);
  });

  // some hosts cannot make i386 calls at all (int 0x80 faults before any filter sees it)
  const i386 = process.arch === 'x64' ? hostI386Syscalls() : { ok: false, reason: 'not x86_64' };
  it.skipIf(skipReason(!i386.ok, `int 0x80 in a sandbox: ${i386.reason}`))('kills a sandboxed process that uses int 0x80', async () => {
    const r = await run('i386');
    expect(r.signal, r.stdout).toBe('SIGSYS');
    expect(r.stdout).not.toMatch(/ALLOWED/);
  });

  it('takes a profile of the caller\'s own', async () => {
    const p = Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: 'uname', action: 'kill-process' }] });
    const r = await spawnIsolated('/bin/uname', ['-a'], { seccomp: p } as Parameters<typeof spawnIsolated>[2]);
    expect(r.signal).toBe('SIGSYS');
  });

  it('rejects a bad option synchronously, creating nothing', () => {
    const before = mountTable();
    expect(() => spawnIsolated('/bin/true', [], { seccomp: 'strict' } as unknown as Parameters<typeof spawnIsolated>[2])).toThrow(/options.seccomp/);
    expect(() => spawnIsolated('/bin/true', [], { seccomp: { defaultAction: 'allow', rules: [{ syscalls: 'nope', action: 'allow' }] } } as unknown as Parameters<typeof spawnIsolated>[2])).toThrow(RangeError);
    expect(mountTable()).toEqual(before);
  });
});

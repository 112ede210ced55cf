// The hostile-program battery against nsbox's default seccomp profile. Each program is run twice
// in a forked child: without a filter (to show the attempt is real on this host: at least one of
// its calls gets through or fails for another reason) and under the compiled default profile,
// where every attempt must be denied, and other ABIs (int 0x80, x32) must kill the process.
// Arguments are chosen so that nothing changes on the host even without the filter.
import { afterAll, describe, expect, it } from 'vitest';
import { compileSeccomp, defaultProfile, seccompTestRun } from '../../lib/security/seccomp/index.js';
import { hostI386Syscalls } from '../../lib/security/doctor.js';
import { buildC, cannotBuild, cleanupBuilds } from './build.js';
import { skipReason } from '../helpers/host.js';

const why = process.arch !== 'x64' ? `the battery is written for x86_64 (this is ${process.arch})` : cannotBuild();
if (why) console.warn(`SKIPPED hostile battery: ${why}`);
afterAll(() => cleanupBuilds());

const SIGSYS = 31;

describe.skipIf(!!why)('hostile programs under the default seccomp profile', () => {
  const filter = () => compileSeccomp(defaultProfile);
  const hostile = () => buildC('hostile', { static: true });

  for (const attack of ['unshare', 'clone', 'mount', 'kernel', 'socket', 'tty']) {
    it(`denies every ${attack} attempt`, () => {
      const bare = seccompTestRun(null, [hostile(), attack]);
      // without the filter at least one attempt is not refused with the filter's errno
      expect(bare.output, bare.output).toMatch(/^ALLOWED /m);
      expect(bare.exitCode).toBe(1);
      const r = seccompTestRun(filter(), [hostile(), attack]);
      expect(r.output, r.output).not.toMatch(/ALLOWED/);
      expect(r.output).toMatch(/^DENIED /m);
      expect(r.exitCode, r.output).toBe(0);
    });
  }

  it('TIOCSTI with high bits set in the request is denied too (and works without the filter)', () => {
    const bare = seccompTestRun(null, [hostile(), 'tty']);
    expect(bare.output).toMatch(/^ALLOWED ioctl\(TIOCSTI \| 1<<32\) ret=0/m);
    const r = seccompTestRun(filter(), [hostile(), 'tty']);
    expect(r.output).toMatch(/^DENIED ioctl\(TIOCSTI \| 1<<32\) errno=1$/m);
    expect(r.output).toMatch(/^DENIED ioctl\(TIOCSTI \| 0xffffffff00000000\) errno=1$/m);
  });

  // some hosts cannot make i386 calls at all (int 0x80 faults before any filter sees it)
  const i386 = process.arch === 'x64' ? hostI386Syscalls() : { ok: false, reason: 'not x86_64' };
  it.skipIf(skipReason(!i386.ok, `int 0x80 under the filter: ${i386.reason}`))('kills a process that makes i386 syscalls through int 0x80', () => {
    const bare = seccompTestRun(null, [hostile(), 'i386']);
    expect(bare.output).toMatch(/ALLOWED i386 getpid via int 0x80 ret=[1-9]/);
    const r = seccompTestRun(filter(), [hostile(), 'i386']);
    expect(r.signal, r.output).toBe(SIGSYS);
    expect(r.output).not.toMatch(/ALLOWED/);
  });

  it('the host probe for i386 calls agrees with a real int 0x80 without a filter', () => {
    const bare = seccompTestRun(null, [hostile(), 'i386']);
    if (i386.ok) expect(bare.output).toMatch(/ALLOWED i386 getpid via int 0x80 ret=[1-9]/);
    else {
      expect(bare.signal, bare.output).toBe((i386 as { signal?: number }).signal);
      expect(bare.output).not.toMatch(/ALLOWED/);
    }
  });

  it('kills a process that makes x32 syscalls (bit 30 in the number)', () => {
    const r = seccompTestRun(filter(), [hostile(), 'x32']);
    expect(r.signal, r.output).toBe(SIGSYS);
    expect(r.output).not.toMatch(/ALLOWED/);
  });

  it('leaves ordinary programs working (fork, threads, sockets, pty ioctl, exec) with Seccomp: 2', () => {
    const r = seccompTestRun(filter(), [hostile(), 'benign']);
    expect(r.output, r.output).not.toMatch(/BROKEN/);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toMatch(/STATUS Seccomp:\s+2/);
  });

  it('runs a dynamically linked shell pipeline from the host under the profile', () => {
    const r = seccompTestRun(filter(), ['/bin/sh', '-c', 'ls / | grep -c . && echo hello > /dev/null && cat /proc/self/status | grep Seccomp:']);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toMatch(/Seccomp:\s+2/);
  });
});

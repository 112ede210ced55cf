// Compiled filters in a real kernel: the kernel accepts every program the compiler makes
// (it verifies jumps and loads), and its verdicts match nsbox's BPF interpreter, which the unit
// tests compare with libseccomp. Runs as root or not (no_new_privs is enough to install a filter).
import { afterAll, describe, expect, it } from 'vitest';
import {
  AUDIT_ARCH, SYSCALL_TABLES, compileSeccomp, describeVerdict, evaluate, seccompTestRun,
  type SeccompArgOp, type SeccompProfile, type SeccompRule,
} from '../../lib/security/seccomp/index.js';
import { NsboxError } from '../../lib/errors.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';

const why = process.arch !== 'x64' ? `these probes are written for x86_64 (this is ${process.arch})` : cannotBuild();
if (why) console.warn(`SKIPPED seccomp integration: ${why}`);
afterAll(() => cleanupBuilds());

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

// calls that are harmless whatever their arguments (ioctl gets a bad fd in a0)
const SAFE = ['getpid', 'getppid', 'getuid', 'umask', 'dup', 'getpriority', 'socket', 'ioctl'];
const OPS: SeccompArgOp[] = ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'masked-eq'];
const ACTIONS: SeccompRule['action'][] = ['allow', 'log', { errno: 1001 }, { errno: 1002 }, 'trap', 'kill-process', 'kill-thread', { trace: 3 }];

/** What the kernel did, in the words of describeVerdict, folded where a process cannot tell apart. */
function outcome(r: ReturnType<typeof seccompTestRun>): string {
  if (r.signal === 31) return 'kill';
  const t = /TRAP (\d+)/.exec(r.output);
  if (t) return 'trap';
  const m = /RET (-?\d+) ERRNO (\d+)/.exec(r.output);
  if (!m) return `unexpected: ${JSON.stringify(r)}`;
  const e = Number(m[2]);
  if (m[1] === '-1' && e >= 1000) return `errno(${e})`;
  if (m[1] === '-1' && e === 38) return 'trace';
  return 'allow';
}
function fold(v: string): string {
  if (v === 'kill-process' || v === 'kill-thread') return 'kill';
  if (v === 'log') return 'allow';
  if (v.startsWith('trap')) return 'trap';
  if (v.startsWith('trace')) return 'trace';
  return v;
}

describe.skipIf(!!why)('seccomp filters in the kernel', () => {
  it('the kernel gives the verdicts the interpreter predicts (random profiles, x86_64)', () => {
    const probe = buildC('probe', { static: true });
    const r = rng(2026);
    const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
    let runs = 0;
    const seen = new Set<string>();
    for (let round = 0; round < 12; round++) {
      const rules: SeccompRule[] = [];
      for (const name of SAFE) {
        if (r() < 0.3) continue;
        const nrules = 1 + Math.floor(r() * 2);
        for (let k = 0; k < nrules; k++) {
          const index = name === 'ioctl' ? 1 + Math.floor(r() * 2) : Math.floor(r() * 3);
          const op = pick(OPS);
          const value = pick([0n, 1n, 5n, 0x5412n, 0x1_0000_0005n, (1n << 64n) - 1n, BigInt(Math.floor(r() * 2 ** 32))]);
          rules.push({
            syscalls: name, action: pick(ACTIONS),
            args: [op === 'masked-eq' ? { index, op, value, mask: pick([0xffn, 0xffff_ffffn, 0xffff_0000_0000_00ffn]) } : { index, op, value, low32: r() < 0.3 }],
          });
        }
        if (r() < 0.5) rules.push({ syscalls: name, action: pick(ACTIONS) });
      }
      const profile: SeccompProfile = { defaultAction: 'allow', rules, architectures: ['x86_64'] };
      const prog = compileSeccomp(profile);
      for (let i = 0; i < 25; i++) {
        const name = pick(SAFE);
        const nr = SYSCALL_TABLES.x86_64[name]!;
        const vals = [0n, 1n, 4n, 5n, 6n, 0x5412n, 0x1_0000_5412n, 0x1_0000_0005n, 0xffff_ffffn, (1n << 64n) - 1n];
        const args = [0, 1, 2, 3, 4, 5].map(() => pick(vals));
        if (name === 'ioctl') args[0] = 0x7fff_fff0n;
        if (name === 'dup') args[0] = args[0]! | 0x1000n;
        const want = fold(describeVerdict(evaluate(prog, { nr, arch: AUDIT_ARCH.x86_64, args })));
        const res = seccompTestRun(prog, [probe, String(nr), ...args.map((a) => `0x${a.toString(16)}`)]);
        const got = outcome(res);
        expect(got, `${name}(${args.map((a) => a.toString(16)).join(', ')}) under ${JSON.stringify(profile, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`).toBe(want);
        seen.add(got);
        runs++;
      }
    }
    expect(runs).toBe(300);
    // the battery must have exercised every kind of verdict
    expect([...new Set([...seen].map((s) => s.replace(/\(\d+\)/, '')))].sort()).toEqual(['allow', 'errno', 'kill', 'trace', 'trap']);
  });

  it('the kernel accepts a long program with jump trampolines and agrees with the interpreter', () => {
    const probe = buildC('probe', { static: true });
    const names = Object.keys(SYSCALL_TABLES.x86_64).filter((n) => !SAFE.includes(n) && !['execve', 'exit_group', 'exit'].includes(n));
    const rules: SeccompRule[] = names.slice(0, 250).map((s, i) => ({ syscalls: s, action: 'allow', args: [{ index: i % 6, op: 'ne', value: BigInt(i) << 33n }] }));
    rules.push({ syscalls: 'getppid', action: { errno: 1003 }, args: [{ index: 0, op: 'ge', value: 7 }] });
    const prog = compileSeccomp({ defaultAction: 'allow', rules, architectures: ['x86_64'] });
    expect(prog.length / 8).toBeGreaterThan(1000);
    const nr = SYSCALL_TABLES.x86_64.getppid!;
    expect(outcome(seccompTestRun(prog, [probe, String(nr), '7']))).toBe('errno(1003)');
    expect(outcome(seccompTestRun(prog, [probe, String(nr), '6']))).toBe('allow');
  });

  it('a filter the kernel refuses is an NsboxError at step seccomp; a missing program at step exec', () => {
    const probe = buildC('probe', { static: true });
    // one instruction that is not a return: the kernel's checker refuses it
    const bad = Buffer.alloc(8);
    bad.writeUInt16LE(0x20, 0); // ld [k]
    let err: unknown;
    try { seccompTestRun(bad, [probe, '39']); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'EINVAL', step: 'seccomp', syscall: 'seccomp' });
    err = undefined;
    try { seccompTestRun(null, ['/nonexistent-nsbox-program']); } catch (e) { err = e; }
    expect(err).toMatchObject({ code: 'ENOENT', step: 'exec', path: '/nonexistent-nsbox-program' });
    expect(() => seccompTestRun(Buffer.alloc(7), [probe])).toThrow(RangeError);
    expect(() => seccompTestRun(null, ['relative'])).toThrow(/argv\[0\]/);
  });

  it('stops a program that outlives its timeout', () => {
    const r = seccompTestRun(null, ['/bin/sleep', '10'], { timeoutMs: 200 });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe(9);
  });
});

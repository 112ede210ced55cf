// The seccomp compiler, checked without a kernel: (1) argument validation, (2) the compiled
// program, run by the BPF interpreter, against a direct reading of the profile's meaning on many
// inputs, (3) against libseccomp's program for the same rules (both run by the interpreter).
// The interpreter itself is checked against the kernel in test/integration/seccomp.test.ts.
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AUDIT_ARCH, SYSCALL_TABLES, X32_SYSCALL_BIT, compileSeccomp, decode, describeVerdict, evaluate,
  normalizeProfile, type NormalizedProfile, type SeccompArch, type SeccompArgOp, type SeccompProfile,
  type SeccompRule,
} from '../../lib/security/seccomp/index.js';
import { buildC, cannotBuildLibseccomp, cleanupBuilds } from '../security/build.js';

afterAll(() => cleanupBuilds());

// ---- a direct reading of a profile: first matching rule wins ------------------------------
const M32 = 0xffffffffn;
function passes(op: SeccompArgOp, a: bigint, v: bigint, m: bigint): boolean {
  switch (op) {
    case 'eq': return a === v;
    case 'ne': return a !== v;
    case 'lt': return a < v;
    case 'le': return a <= v;
    case 'gt': return a > v;
    case 'ge': return a >= v;
    case 'masked-eq': return (a & m) === v;
  }
}
function archOf(p: NormalizedProfile, arch: number, nr: number): SeccompArch | undefined {
  for (const a of p.architectures) {
    if (AUDIT_ARCH[a] !== arch) continue;
    if (a === 'x86_64' && nr >>> 0 >= X32_SYSCALL_BIT && nr !== -1) continue;
    if (a === 'x32' && nr >>> 0 < X32_SYSCALL_BIT) continue;
    return a;
  }
  return undefined;
}
function model(p: NormalizedProfile, d: { nr: number; arch: number; args: bigint[] }): number {
  const a = archOf(p, d.arch, d.nr);
  if (!a) return p.badArchAction;
  const table = SYSCALL_TABLES[a];
  const wide = a !== 'i386';
  for (const r of p.rules) {
    if (!r.syscalls.some((n) => table[n] === d.nr)) continue;
    const ok = r.args.every((c) => {
      const short = !wide || c.low32;
      const x = short ? d.args[c.index]! & M32 : d.args[c.index]!;
      const v = short ? c.value & M32 : c.value;
      const m = short ? c.mask & M32 : c.mask;
      return passes(c.op, x, v, m);
    });
    if (ok) return r.action;
  }
  return p.defaultAction;
}

// ---- deterministic random profiles and inputs ----------------------------------------------
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
const NAMES = ['read', 'write', 'close', 'ioctl', 'personality', 'kill', 'getpid', 'mount', 'unshare', 'setns',
  'prctl', 'fcntl', 'dup3', 'clone', 'openat', 'mmap', 'futex', 'exit_group', 'getuid', 'umask'];
const OPS: SeccompArgOp[] = ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'masked-eq'];
const ACTIONS: SeccompRule['action'][] = ['allow', { errno: 1 }, { errno: 13 }, 'trap', 'log', 'kill-thread', { trace: 7 }];

function randValue(r: () => number, wide: boolean): bigint {
  const pick = Math.floor(r() * 5);
  const lo = BigInt(Math.floor(r() * 2 ** 32));
  const hi = wide ? BigInt(Math.floor(r() * 4)) : 0n;
  return [0n, 1n, lo, (hi << 32n) | lo, (1n << 64n) - 1n][pick]!;
}

/** A profile libseccomp reads the same way: at most one rule per syscall, distinct arg indices. */
function randomProfile(r: () => number, arches: SeccompArch[], wide: boolean, withArgs: boolean): SeccompProfile {
  const names = NAMES.filter(() => r() < 0.6);
  const defaultAction = ACTIONS[Math.floor(r() * 2)]!;
  const rules: SeccompRule[] = names.map((name) => {
    const action = ACTIONS[Math.floor(r() * ACTIONS.length)]!;
    if (!withArgs || r() < 0.4) return { syscalls: name, action };
    const idx = [0, 1, 2, 3, 4, 5].filter(() => r() < 0.35).slice(0, 3);
    if (idx.length === 0) idx.push(Math.floor(r() * 6));
    return {
      syscalls: name, action,
      args: idx.map((index) => {
        const op = OPS[Math.floor(r() * OPS.length)]!;
        return op === 'masked-eq'
          ? { index, op, mask: randValue(r, wide), value: randValue(r, wide) & randValue(r, wide) }
          : { index, op, value: randValue(r, wide) };
      }),
    };
  });
  return { defaultAction, rules, architectures: arches };
}

function inputs(r: () => number, p: NormalizedProfile, n: number) {
  const out: { nr: number; arch: number; args: bigint[] }[] = [];
  const values = p.rules.flatMap((x) => x.args.map((c) => c.value));
  const near = (): bigint => {
    if (values.length === 0 || r() < 0.3) return randValue(r, true);
    const v = values[Math.floor(r() * values.length)]!;
    const d = [0n, 1n, -1n, 1n << 32n, -(1n << 32n)][Math.floor(r() * 5)]!;
    return BigInt.asUintN(64, v + d);
  };
  const arches: SeccompArch[] = ['x86_64', 'x32', 'i386', 'aarch64'];
  for (let i = 0; i < n; i++) {
    const a = r() < 0.85 ? p.architectures[Math.floor(r() * p.architectures.length)]! : arches[Math.floor(r() * 4)]!;
    const table = SYSCALL_TABLES[a];
    const name = NAMES[Math.floor(r() * NAMES.length)]!;
    let nr = table[name] ?? 9999;
    if (r() < 0.1) nr = Math.floor(r() * 600) | (a === 'x32' ? X32_SYSCALL_BIT : 0);
    if (r() < 0.03) nr = -1;
    out.push({ nr, arch: AUDIT_ARCH[a], args: [near(), near(), near(), near(), near(), near()] });
  }
  return out;
}

describe('seccomp profile validation', () => {
  it('rejects bad input by option name', () => {
    const base = { defaultAction: 'allow' as const, rules: [] };
    expect(() => compileSeccomp({ ...base, defaultAction: 'nope' as 'allow' })).toThrow(/seccomp.defaultAction/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'no_such_call', action: 'allow' }] })).toThrow(RangeError);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'no_such_call', action: 'allow' }] })).toThrow(/rules\[0\].syscalls.*no_such_call/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: '@nope', action: 'allow' }] })).toThrow(/unknown syscall group/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: { errno: 5000 } }] })).toThrow(/rules\[0\].action.errno/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: { errno: 'EWHAT' as 'EPERM' } }] })).toThrow(RangeError);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: 'allow', args: [{ index: 6, op: 'eq', value: 0 }] }] })).toThrow(/args\[0\].index/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: 'allow', args: [{ index: 0, op: 'masked-eq', value: 0 }] }] })).toThrow(/args\[0\].mask/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: 'allow', args: [{ index: 0, op: 'eq', value: 1n << 64n }] }] })).toThrow(/64 bits/);
    expect(() => compileSeccomp({ ...base, rules: [{ syscalls: 'read', action: 'allow', args: [{ index: 0, op: 'eq', value: 0.5 }] }] })).toThrow(/value/);
    expect(() => compileSeccomp({ ...base, architectures: ['mips' as 'i386'] })).toThrow(/seccomp.architectures/);
    expect(() => compileSeccomp({ ...base, rules: 'x' as unknown as SeccompRule[] })).toThrow(TypeError);
  });

  it('expands groups, skipping members an architecture lacks', () => {
    const p = normalizeProfile({ defaultAction: 'allow', rules: [{ syscalls: ['@privileged'], action: { errno: 1 } }] });
    expect(p.rules[0]!.syscalls).toEqual(expect.arrayContaining(['mount', 'init_module', 'settimeofday', 'reboot', 'setuid', 'vm86old'.replace('vm86old', 'swapon')]));
    const prog = compileSeccomp({ defaultAction: 'allow', rules: [{ syscalls: ['@cpu-emulation', '@obsolete'], action: { errno: 1 } }], architectures: ['x86_64', 'i386'] });
    expect(describeVerdict(evaluate(prog, { nr: SYSCALL_TABLES.i386.vm86!, arch: AUDIT_ARCH.i386 }))).toBe('errno(1)');
    expect(describeVerdict(evaluate(prog, { nr: SYSCALL_TABLES.x86_64.modify_ldt!, arch: AUDIT_ARCH.x86_64 }))).toBe('errno(1)');
    expect(describeVerdict(evaluate(prog, { nr: SYSCALL_TABLES.x86_64.read!, arch: AUDIT_ARCH.x86_64 }))).toBe('allow');
  });

  it('kills other architectures and the x32 ABI unless listed', () => {
    const prog = compileSeccomp({ defaultAction: 'allow', rules: [], architectures: ['x86_64'] });
    expect(describeVerdict(evaluate(prog, { nr: 0, arch: AUDIT_ARCH.x86_64 }))).toBe('allow');
    expect(describeVerdict(evaluate(prog, { nr: X32_SYSCALL_BIT, arch: AUDIT_ARCH.x86_64 }))).toBe('kill-process');
    expect(describeVerdict(evaluate(prog, { nr: 20, arch: AUDIT_ARCH.i386 }))).toBe('kill-process');
    expect(describeVerdict(evaluate(prog, { nr: 20, arch: AUDIT_ARCH.aarch64 }))).toBe('kill-process');
    const trap = compileSeccomp({ defaultAction: 'allow', rules: [], badArchAction: 'trap' });
    expect(describeVerdict(evaluate(trap, { nr: 1, arch: 0x1234 }))).toBe('trap(0)');
  });

  it('compares only the low 32 bits when asked, all 64 otherwise', () => {
    const p = (low32: boolean) => compileSeccomp({ defaultAction: 'allow', rules: [{ syscalls: 'ioctl', action: { errno: 1 }, args: [{ index: 1, op: 'eq', value: 0x5412, low32 }] }], architectures: ['x86_64'] });
    const tricky = { nr: SYSCALL_TABLES.x86_64.ioctl!, arch: AUDIT_ARCH.x86_64, args: [0n, 0x1_0000_5412n] };
    expect(describeVerdict(evaluate(p(true), tricky))).toBe('errno(1)');
    expect(describeVerdict(evaluate(p(false), tricky))).toBe('allow');
  });
});

describe('seccomp compiler against the meaning of the profile', () => {
  const cases: [string, SeccompArch[], boolean][] = [
    ['x86_64', ['x86_64'], true], ['x86_64+x32', ['x86_64', 'x32'], true], ['x32 only', ['x32'], true],
    ['i386', ['i386'], false], ['x86_64+i386', ['x86_64', 'i386'], true], ['aarch64', ['aarch64'], true],
  ];
  for (const [label, arches, wide] of cases) {
    it(`agrees on random profiles and inputs (${label})`, () => {
      const r = rng(label.length * 7919);
      for (let round = 0; round < 60; round++) {
        const prof = randomProfile(r, arches, wide, true);
        // sometimes several rules per syscall, with low32, to test ordering
        if (round % 3 === 0) prof.rules = [
          { syscalls: 'ioctl', action: { errno: 1 }, args: [{ index: 1, op: 'eq', value: 0x5412, low32: true }] },
          { syscalls: 'ioctl', action: 'trap', args: [{ index: 1, op: 'gt', value: 0x1_0000_0000n + BigInt(round) }] },
          ...prof.rules,
        ];
        const n = normalizeProfile(prof);
        const prog = compileSeccomp(prof);
        for (const d of inputs(r, n, 200)) {
          const got = evaluate(prog, d);
          const want = model(n, d);
          if (got !== want) throw new Error(`mismatch ${describeVerdict(got)} != ${describeVerdict(want)} for ${JSON.stringify(d, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))} in ${JSON.stringify(prof, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`);
        }
      }
    });
  }

  it('lays out long programs with jump trampolines (far targets) correctly', () => {
    // every syscall of the table with its own argument test: thousands of instructions
    const names = Object.keys(SYSCALL_TABLES.x86_64).slice(0, 300);
    const prof: SeccompProfile = {
      defaultAction: { errno: 1 },
      rules: names.map((s, i) => ({ syscalls: s, action: 'allow', args: [{ index: i % 6, op: 'le' as const, value: BigInt(i) << 20n }] })),
      architectures: ['x86_64'],
    };
    const prog = compileSeccomp(prof);
    expect(prog.length / 8).toBeGreaterThan(1000);
    const n = normalizeProfile(prof);
    const r = rng(42);
    for (const d of inputs(r, n, 3000)) {
      const nr = names[Math.floor(r() * names.length)]!;
      d.nr = SYSCALL_TABLES.x86_64[nr]!; d.arch = AUDIT_ARCH.x86_64;
      expect(evaluate(prog, d)).toBe(model(n, d));
    }
    // far targets went through `ja` trampolines
    expect(decode(prog).some((ins) => ins.code === 0x05)).toBe(true);
    // every jump lands inside the program
    decode(prog).forEach((ins, pc) => {
      if ((ins.code & 7) === 5) expect(pc + 1 + Math.max(ins.jt, ins.jf, (ins.code & 0xf0) === 0 ? ins.k : 0)).toBeLessThan(prog.length / 8);
    });
  });

  it('refuses a profile over the kernel limit of 4096 instructions', () => {
    const names = Object.keys(SYSCALL_TABLES.x86_64);
    const args = [0, 1, 2, 3, 4, 5].map((index) => ({ index, op: 'ne' as const, value: 1n << 40n }));
    expect(() => compileSeccomp({ defaultAction: 'allow', rules: names.map((s) => ({ syscalls: s, action: 'trap', args })), architectures: ['x86_64'] })).toThrow(/4096/);
  });
});

const noLibseccomp = cannotBuildLibseccomp();
if (noLibseccomp) console.warn(`SKIPPED libseccomp comparison: ${noLibseccomp}`);

describe.skipIf(!!noLibseccomp)('seccomp compiler against libseccomp', () => {
  function libseccomp(p: SeccompProfile): Buffer {
    const n = normalizeProfile(p);
    const lines = [`default ${n.defaultAction}`, `badarch ${n.badArchAction}`, ...n.architectures.map((a) => `arch ${a}`)];
    for (const r of n.rules) {
      for (const s of r.syscalls) {
        lines.push(`rule ${r.action} ${s} ${r.args.length} ${r.args.map((c) => {
          // libseccomp has no low-32 mode: an eq on the low 32 bits is a masked-eq on them
          if (c.low32) return `${c.index} masked-eq ${c.value & M32} ${M32}`;
          return `${c.index} ${c.op} ${c.value} ${c.mask}`;
        }).join(' ')}`);
      }
    }
    return execFileSync(buildC('libseccomp-ref', { libs: ['-lseccomp'] }), { input: lines.join('\n') + '\n', maxBuffer: 1 << 24 });
  }

  const cases: [string, SeccompArch[], boolean, boolean][] = [
    ['x86_64 with args', ['x86_64'], true, true], ['i386 with args', ['i386'], false, true],
    ['x86_64+i386 with args', ['x86_64', 'i386'], false, true], ['x86_64+x32', ['x86_64', 'x32'], true, false],
    ['aarch64 with args', ['aarch64'], true, true],
  ];
  for (const [label, arches, wide, withArgs] of cases) {
    it(`gives the same verdicts as libseccomp (${label})`, () => {
      const r = rng(label.length * 104729);
      let compared = 0;
      for (let round = 0; round < 40; round++) {
        const prof = randomProfile(r, arches, wide, withArgs);
        const ours = compileSeccomp(prof);
        const theirs = libseccomp(prof);
        expect(theirs.length).toBeGreaterThan(0);
        for (const d of inputs(r, normalizeProfile(prof), 150)) {
          const a = evaluate(ours, d), b = evaluate(theirs, d);
          if (a !== b) throw new Error(`nsbox ${describeVerdict(a)} vs libseccomp ${describeVerdict(b)} for ${JSON.stringify(d, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))} in ${JSON.stringify(prof, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`);
          compared++;
        }
      }
      expect(compared).toBe(40 * 150);
    });
  }

  it('has the same syscall numbers as libseccomp\'s tables, for every name both know', () => {
    const arches = ['x86_64', 'x32', 'i386', 'aarch64'] as const;
    const input = arches.flatMap((a) => Object.keys(SYSCALL_TABLES[a]).map((n) => `${a} ${n}`)).join('\n') + '\n';
    const out = execFileSync(buildC('libseccomp-names', { libs: ['-lseccomp'] }), { input, encoding: 'utf8', maxBuffer: 1 << 24 });
    let compared = 0;
    const wrong: string[] = [];
    for (const line of out.trim().split('\n')) {
      const [a, n, v] = line.split(' ') as [keyof typeof SYSCALL_TABLES, string, string];
      const theirs = Number(v);
      if (theirs < 0) continue; // libseccomp 2.5 predates it, or a pseudo-number
      compared++;
      if (SYSCALL_TABLES[a][n] !== theirs) wrong.push(`${a} ${n}: nsbox ${SYSCALL_TABLES[a][n]} libseccomp ${theirs}`);
    }
    expect(wrong).toEqual([]);
    expect(compared).toBeGreaterThan(1200);
  });

  it('matches libseccomp on a low-32 TIOCSTI deny including the high-bits trick', () => {
    const prof: SeccompProfile = { defaultAction: 'allow', architectures: ['x86_64'], rules: [{ syscalls: 'ioctl', action: { errno: 1 }, args: [{ index: 1, op: 'eq', value: 0x5412, low32: true }] }] };
    const ours = compileSeccomp(prof), theirs = libseccomp(prof);
    for (const req of [0x5412n, 0x1_0000_5412n, 0x5413n, 0xffff_ffff_0000_5412n]) {
      const d = { nr: SYSCALL_TABLES.x86_64.ioctl!, arch: AUDIT_ARCH.x86_64, args: [3n, req] };
      expect(evaluate(ours, d)).toBe(evaluate(theirs, d));
      expect(describeVerdict(evaluate(ours, d))).toBe(req & M32 ? (req & M32) === 0x5412n ? 'errno(1)' : 'allow' : 'allow');
    }
  });
});

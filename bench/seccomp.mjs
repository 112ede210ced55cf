#!/usr/bin/env node
// bench/seccomp: what a seccomp filter costs per system call, nsbox's compiled default profile
// beside libseccomp's programs for the same allowlist, all measured in the same run
// (interleaved rounds, median of rounds). Needs gcc and libseccomp-dev. Run from the repo root:
//   node bench/seccomp.mjs [--n 2000000] [--rounds 7]
//
//   none               no filter (the floor)
//   nsbox              compileSeccomp(defaultProfile): arch check, then a binary search over
//                      syscall-number intervals
//   libseccomp         the same allowed syscalls (unconditionally) through libseccomp 2.5,
//                      default layout
//   libseccomp-tree    the same, with SCMP_FLTATR_CTL_OPTIMIZE=2 (libseccomp's binary tree)
//
// Note: since Linux 5.11 the kernel caches, per syscall number, "this filter always allows it"
// and then skips the program, so for plain allowed calls the layout of the program hardly
// matters; calls with argument tests (ioctl here) run the program every time.
//
// Each filter is installed in a forked child by the addon's seccompTestRun helper, which runs
// bench/seccomp-loop (a tight loop of one raw syscall). Reported: ns per call, and each
// filter's overhead over "none" as a ratio to nsbox's overhead.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 2_000_000);
const ROUNDS = arg('rounds', 7);

const dir = mkdtempSync(join(tmpdir(), 'nsbox-bench-seccomp-'));
try {
  // the TypeScript sources, bundled for this run (no dist/ needed)
  await build({
    stdin: {
      contents: ['compile', 'default-profile', 'profile', 'test-run'].map((m) => `export * from './lib/security/seccomp/${m}.ts';`).join('\n'),
      resolveDir: process.cwd(), loader: 'ts' },
    bundle: true, platform: 'node', format: 'esm', outfile: join(dir, 'seccomp.mjs'), logLevel: 'warning',
  });
  const S = await import(join(dir, 'seccomp.mjs'));
  execFileSync('gcc', ['-O2', '-static', '-o', join(dir, 'loop'), 'bench/seccomp-loop.c']);
  execFileSync('gcc', ['-O1', '-o', join(dir, 'ref'), 'test/security/libseccomp-ref.c', '-lseccomp']);

  const n = S.normalizeProfile(S.defaultProfile);
  const allowed = [...new Set(n.rules.filter((r) => r.action === 0x7fff0000).flatMap((r) => r.syscalls))]
    .filter((s) => S.SYSCALL_TABLES[n.architectures[0]][s] !== undefined);
  const spec = (opt) => [`default ${n.defaultAction}`, `badarch ${n.badArchAction}`, ...(opt ? [`optimize ${opt}`] : []),
    ...allowed.map((s) => `rule ${0x7fff0000} ${S.SYSCALL_TABLES[n.architectures[0]][s]} 0`)].join('\n') + '\n';
  const filters = {
    none: null,
    nsbox: S.compileSeccomp(S.defaultProfile),
    libseccomp: execFileSync(join(dir, 'ref'), { input: spec(0) }),
    'libseccomp-tree': execFileSync(join(dir, 'ref'), { input: spec(2) }),
  };
  const T = S.SYSCALL_TABLES[n.architectures[0]];
  const calls = { 'read(-1) (low nr)': [T.read, -1], 'getppid (middle)': [T.getppid], 'getrandom(0 bytes) (high nr)': [T.getrandom, 0, 0, 0],
    // argument tests make a call uncacheable: the kernel runs the BPF program every time
    'ioctl(-1, TCGETS) (arg-filtered)': [T.ioctl, -1, 0x5401, 0] };

  console.log(`seccomp filter cost, ${N} calls per run, median of ${ROUNDS} rounds; kernel ${execFileSync('uname', ['-r']).toString().trim()}`);
  console.log(`program sizes (instructions): ${Object.entries(filters).filter(([, f]) => f).map(([k, f]) => `${k} ${f.length / 8}`).join(', ')}\n`);
  for (const [label, [nr, ...args]] of Object.entries(calls)) {
    const samples = Object.fromEntries(Object.keys(filters).map((k) => [k, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [k, f] of Object.entries(filters)) {
        const r = S.seccompTestRun(f, [join(dir, 'loop'), String(N), String(nr), ...args.map(String)], { timeoutMs: 120_000 });
        if (r.exitCode !== 0) throw new Error(`${k}: ${JSON.stringify(r)}`);
        samples[k].push(Number(r.output));
      }
    }
    const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.sort((a, b) => a - b)[v.length >> 1]]));
    const over = (k) => med[k] - med.none;
    console.log(label);
    for (const k of Object.keys(filters)) {
      const extra = k === 'none' ? '' : `  overhead ${over(k).toFixed(1)} ns${k === 'nsbox' ? '' : `  (${(over(k) / over('nsbox')).toFixed(2)}x nsbox's)`}`;
      console.log(`  ${k.padEnd(16)} ${med[k].toFixed(1).padStart(7)} ns/call${extra}`);
    }
    if (nr === T.ioctl) {
      console.log('  (not like for like: the libseccomp programs here allow ioctl outright, so the kernel caches it;\n' +
        '   libseccomp has no low-32-bit test to refuse TIOCSTI/TIOCLINUX while allowing other requests)');
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

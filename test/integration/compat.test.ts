// Kernel compatibility (issue 15): what older kernels lack and how nsbox gets by without it.
// This file runs on this host and in the test:vm kernels (Debian 12's 6.1, Debian 11's 5.10),
// where the fallbacks run for real: overlay without `lowerdir+` (before 6.8: one `lowerdir=`
// string, or mount(2) with short links), caller binds without mount_setattr (before 5.12), time
// namespaces before 5.11, no pids.peak before 6.1. The clone(2) fallback for clone3 runs on
// every kernel here: a Node process whose seccomp filter answers clone3 with ENOSYS (as on
// kernels before 5.3, or under a container profile that hides clone3) spawns sandboxes.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CGroup, NsboxError, OverlayMount, spawnIsolated } from '../../lib/index.js';
import { encode, BPF_JMP, BPF_JEQ, BPF_K, BPF_LD, BPF_RET, BPF_W, BPF_ABS, OFF_ARCH, OFF_NR, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO } from '../../lib/security/seccomp/bpf.js';
import { seccompTestRun } from '../../lib/security/seccomp/test-run.js';
import { skipReason } from '../helpers/host.js';
import { ranError, runFresh, type RunOptions } from '../helpers/proc.js';
import { fsSkip, ourMounts, readTree, removeScratch, scratch, writeTree } from './fs-helpers.js';

const skip = fsSkip();
const [KMAJ, KMIN] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number) as [number, number];
const kernelAtLeast = (maj: number, min: number) => KMAJ > maj || (KMAJ === maj && KMIN >= min);
const DIST = resolve(__dirname, '../../dist/index.js');

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

/**
 * Runs `code` (an ES module body, `nsbox` imported from dist/) in a fresh Node process (`file`
 * with `pre` arguments in front, e.g. setpriv); resolves to its stdout parsed as JSON. Cannot
 * hang (test/helpers/proc.ts).
 */
async function freshNode(code: string, o: RunOptions = {}, file = process.execPath, pre: string[] = []): Promise<any> {
  const node = ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${code}`];
  const r = await runFresh(file, file === process.execPath ? node : [...pre, process.execPath, ...node], o);
  if (r.status !== 0) throw ranError(r, 'fresh Node process');
  return JSON.parse(r.stdout);
}

describe.skipIf(skip)(`overlay on kernel ${release()}`, () => {
  it('mounts two layers with the default driver (no lowerdir+ before 6.8, refused only at create before 6.5)', () => {
    const root = scratch('ovl');
    writeTree(join(root, 'low'), { a: 'low-a', b: 'low-b' });
    writeTree(join(root, 'top'), { a: 'top-a' });
    mkdirSync(join(root, 'm'));
    const m = OverlayMount.mount({ lower: [join(root, 'top'), join(root, 'low')], target: join(root, 'm') });
    try {
      expect(readFileSync(join(root, 'm/a'), 'utf8')).toBe('top-a');
      expect(readFileSync(join(root, 'm/b'), 'utf8')).toBe('low-b');
      expect(m.driver).toBe('fsopen'); // the new mount API, with lowerdir+ or one lowerdir= string
    } finally {
      m.unmount();
    }
  });

  it("takes layer paths with ':' and ',' (escaped in the one-string form; short links through mount(2))", () => {
    const root = scratch('esc');
    const colon = join(root, 'with:colon'), comma = join(root, 'with,comma'), back = join(root, 'back\\slash');
    writeTree(colon, { c: 'colon' });
    writeTree(comma, { k: 'comma' });
    writeTree(back, { s: 'slash', c: 'hidden' });
    const target = join(root, 'merged');
    mkdirSync(target);
    for (const lower of [[colon, back], [colon, comma, back]]) {
      const m = OverlayMount.mount({ lower, target });
      try {
        expect(readFileSync(join(target, 'c'), 'utf8')).toBe('colon');
        expect(readFileSync(join(target, 's'), 'utf8')).toBe('slash');
        if (lower.includes(comma)) expect(readFileSync(join(target, 'k'), 'utf8')).toBe('comma');
      } finally {
        m.unmount();
      }
    }
  });

  it('mounts 40 layers whose paths pass fsconfig\'s 255-byte string (lowerdir+, or mount(2) with short links)', () => {
    const root = scratch('forty');
    const lower: string[] = [];
    for (let i = 0; i < 40; i++) {
      const d = join(root, `layer-${i}-${'y'.repeat(30)}`);
      writeTree(d, { [`f${i}`]: String(i), shared: `from ${i}` });
      lower.unshift(d);
    }
    const target = join(root, 'merged');
    mkdirSync(target);
    const m = OverlayMount.mount({ lower, target });
    try {
      expect(Object.keys(readTree(target)).length).toBe(41);
      expect(readFileSync(join(target, 'shared'), 'utf8')).toBe('from 39');
      expect(m.driver).toBe(kernelAtLeast(6, 8) ? 'fsopen' : 'mount');
    } finally {
      m.unmount();
    }
    // driver 'fsopen' alone cannot take them without lowerdir+: refused, naming the kernel
    if (!kernelAtLeast(6, 8)) {
      let err: unknown;
      try { OverlayMount.mount({ lower, target, driver: 'fsopen' }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).message).toMatch(/lowerdir\+.*6\.8/);
    }
  });

  it('idmap: falls back to plain layers where the kernel cannot idmap them (before 6.13), with an upper dir', () => {
    const root = scratch('idfb');
    writeTree(join(root, 'base'), { f: 'base' });
    for (const d of ['u', 'w', 'm']) mkdirSync(join(root, d));
    const H = 0x6fff0000;
    const m = OverlayMount.mount({
      lower: [join(root, 'base')], upper: join(root, 'u'), work: join(root, 'w'), target: join(root, 'm'),
      idmap: { uidMap: [{ inside: 0, outside: H, count: 65536 }], gidMap: [{ inside: 0, outside: H, count: 65536 }] },
    });
    try {
      expect(readFileSync(join(root, 'm/f'), 'utf8')).toBe('base');
      writeFileSync(join(root, 'm/new'), 'x');
      expect(readFileSync(join(root, 'u/new'), 'utf8')).toBe('x');
      if (!kernelAtLeast(6, 13)) expect(m.idmapped).toBe(false);
    } finally {
      m.unmount();
    }
  });

  it('mounts an overlay as the first thing a fresh Node process does', async () => {
    const root = scratch('fresh');
    writeTree(join(root, 'l'), { x: 'fresh' });
    writeTree(join(root, 'l2'), { y: 'below' });
    mkdirSync(join(root, 'm'));
    const r = await freshNode(`
      const m = nsbox.OverlayMount.mount({ lower: [${JSON.stringify(join(root, 'l'))}, ${JSON.stringify(join(root, 'l2'))}], target: ${JSON.stringify(join(root, 'm'))} });
      const x = (await import('node:fs')).readFileSync(${JSON.stringify(join(root, 'm/x'))}, 'utf8');
      m.unmount();
      console.log(JSON.stringify({ x, driver: m.driver }));`);
    expect(r).toEqual({ x: 'fresh', driver: 'fsopen' });
  });
});

describe.skipIf(skip)(`caller bind mounts on kernel ${release()}`, () => {
  it('binds read-only, nosuid and nodev, also without mount_setattr (before 5.12)', async () => {
    const dir = scratch('bind');
    writeFileSync(join(dir, 'data'), 'hello\n');
    const r = await spawnIsolated('/bin/sh', ['-c', 'cat /d/data; { echo x > /d/new; } 2>/dev/null && echo wrote; grep " /d " /proc/self/mountinfo'], {
      mounts: [{ type: 'bind', source: dir, target: '/d', readonly: true }],
    });
    expect(r.stderr).toBe('');
    const [data, ...rest] = r.stdout.split('\n');
    expect(data).toBe('hello');
    expect(rest.join('\n')).not.toMatch(/wrote/);
    const opts = rest.find((l) => l.includes(' /d '))!.split(' ')[5]!.split(',');
    expect(opts).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    expect(existsSync(join(dir, 'new'))).toBe(false);
  });

  it('binds a writable directory and a single file, as the first spawn of a fresh Node process', async () => {
    const dir = scratch('bindw');
    writeFileSync(join(dir, 'file'), 'one\n');
    mkdirSync(join(dir, 'rw'), { mode: 0o777 });
    chmodSync(join(dir, 'rw'), 0o777); // the sandbox's root is an unprivileged host uid
    const r = await freshNode(`
      const r = await nsbox.spawnIsolated('/bin/sh', ['-c', 'cat /f; echo two > /w/out; grep -E " /(f|w) " /proc/self/mountinfo | cut -d" " -f5,6'], {
        mounts: [{ type: 'bind', source: ${JSON.stringify(join(dir, 'file'))}, target: '/f', readonly: true },
                 { type: 'bind', source: ${JSON.stringify(join(dir, 'rw'))}, target: '/w' }],
      });
      console.log(JSON.stringify({ code: r.exitCode, out: r.stdout, err: r.stderr }));`) as { code: number; out: string; err: string };
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const [file, ...mounts] = r.out.trim().split('\n');
    expect(file).toBe('one');
    expect(mounts.find((l) => l.startsWith('/f '))).toMatch(/^\/f ro,nosuid,nodev/);
    expect(mounts.find((l) => l.startsWith('/w '))).toMatch(/^\/w rw,nosuid,nodev/);
    expect(readFileSync(join(dir, 'rw/out'), 'utf8')).toBe('two\n');
  });
});

describe.skipIf(skipReason(process.geteuid?.() !== 0, 'time namespace tests need root'))(`time namespaces on kernel ${release()}`, () => {
  const DAY = 86_400;
  for (const init of [true, false]) {
    it(`shifts boottime for the program (init: ${init}; refused without init before 6.2)`, async () => {
      if (!init && !kernelAtLeast(6, 2)) {
        let e: unknown;
        try { await spawnIsolated('/bin/true', [], { timeOffsets: { boottime: DAY }, init }); } catch (x) { e = x; }
        expect(e).toBeInstanceOf(NsboxError);
        expect(e).toMatchObject({ code: 'EOPNOTSUPP', step: 'time' });
        expect((e as NsboxError).message).toMatch(/Linux 6\.2/);
        return;
      }
      const r = await spawnIsolated('/bin/cat', ['/proc/uptime'], { timeOffsets: { boottime: 10 * DAY, monotonic: DAY }, init });
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      const up = Number(r.stdout.split(' ')[0]);
      const hostUp = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      expect(up).toBeGreaterThan(hostUp + 10 * DAY - 60);
      expect(up).toBeLessThan(hostUp + 10 * DAY + 60);
    });
  }

  it('shifts boottime as the first spawn of a fresh Node process', async () => {
    const r = await freshNode(`
      const r = await nsbox.spawnIsolated('/bin/cat', ['/proc/uptime'], { timeOffsets: { boottime: 864000 } });
      console.log(JSON.stringify({ code: r.exitCode, up: Number(r.stdout.split(' ')[0]), err: r.stderr }));`) as { code: number; up: number; err: string };
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.up).toBeGreaterThan(864000);
  });
});

describe.skipIf(skipReason(process.geteuid?.() !== 0, 'the unprivileged time namespace test starts from root (setpriv to uid 65534)'))('time namespaces, unprivileged', () => {
  it('shifts boottime for a caller of uid 65534 (fresh Node process)', async () => {
    const code = `const r = await nsbox.spawnIsolated('/bin/cat', ['/proc/uptime'], { timeOffsets: { boottime: 864000 } });
      console.log(JSON.stringify({ code: r.exitCode, up: Number(r.stdout.split(' ')[0]), err: r.stderr }));`;
    const r = await freshNode(code, { cwd: '/' }, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups']) as { code: number; up: number; err: string };
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.up).toBeGreaterThan(864000);
  });
});

describe.skipIf(skipReason(process.geteuid?.() !== 0, 'cgroup tests need root'))(`usage figures on kernel ${release()}`, () => {
  it('reports pidsPeak as null where the kernel keeps no pids.peak (before 6.1), the kernel\'s figure where it does', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'sleep 0.2 & sleep 0.2 & wait'], { limits: { pids: 16 } });
    expect(r.exitCode).toBe(0);
    if (kernelAtLeast(6, 1)) {
      expect(r.usage.pidsPeak).toBeGreaterThanOrEqual(3);
      expect(r.usage.pidsPeak).toBeLessThanOrEqual(16);
    } else {
      expect(r.usage.pidsPeak).toBeNull();
    }
  });
});

// A filter for a fresh Node process: one system call -> ENOSYS (for clone3, glibc then makes
// its threads with clone), everything else allowed. x86-64 only.
function noClone3Filter(): Buffer {
  return enosysFilter(435);
}
function enosysFilter(NR_CLONE3: number): Buffer {
  const AUDIT_ARCH_X86_64 = 0xc000003e, ENOSYS = 38;
  return encode([
    { code: BPF_LD | BPF_W | BPF_ABS, jt: 0, jf: 0, k: OFF_ARCH },
    { code: BPF_JMP | BPF_JEQ | BPF_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
    { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    { code: BPF_LD | BPF_W | BPF_ABS, jt: 0, jf: 0, k: OFF_NR },
    { code: BPF_JMP | BPF_JEQ | BPF_K, jt: 0, jf: 1, k: NR_CLONE3 },
    { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | ENOSYS },
    { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
  ]);
}

describe.skipIf(skipReason(process.geteuid?.() !== 0 || process.arch !== 'x64', 'the clone(2) fallback test needs root on x86-64'))('clone(2) where clone3 answers ENOSYS', () => {
  it('spawns (default view, binds, a cgroup limit, a network namespace) from a process whose clone3 is ENOSYS', () => {
    const dir = scratch('noclone3');
    writeFileSync(join(dir, 'in'), 'bound');
    const script = join(dir, 'run.mjs');
    writeFileSync(script, `
      import * as nsbox from ${JSON.stringify(DIST)};
      const out = {};
      const a = await nsbox.spawnIsolated('/bin/sh', ['-c', 'cat /d/in'], { mounts: [{ type: 'bind', source: ${JSON.stringify(dir)}, target: '/d', readonly: true }] });
      out.plain = [a.exitCode, a.stdout, a.stderr];
      const b = await nsbox.spawnIsolated('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; wait'], { limits: { pids: 4, memory: '64M', wallTimeMs: 20000 } });
      out.limited = b.verdict;
      const c = await nsbox.spawnIsolated('/bin/true', [], { init: false });
      out.noInit = c.exitCode;
      console.log(JSON.stringify(out));
    `);
    const r = seccompTestRun(noClone3Filter(), [process.execPath, script], { timeoutMs: 120_000 });
    expect(r.timedOut).toBe(false);
    let out: { plain: [number, string, string]; limited: string; noInit: number };
    try { out = JSON.parse(r.output.trim().split('\n').pop()!); } catch { throw new Error(`no result: ${r.output}`); }
    expect(out.plain).toEqual([0, 'bound', '']);
    expect(out.limited).toBe('pids'); // the cgroup was joined (by pid, after clone(2))
    expect(out.noInit).toBe(0);
  });
});


// Kernels 5.3 to 5.6 have clone3 but not CLONE_INTO_CGROUP: the addon's test hook takes their
// path (clone(2), then the pid written to cgroup.procs) with the real system calls. Only where
// a spawn would use CLONE_INTO_CGROUP: cgroup v2 (test:vm).
describe.skipIf(skipReason(process.geteuid?.() !== 0 || CGroup.mode() !== 'v2', `the CLONE_INTO_CGROUP fallback test needs root and cgroup v2 (here ${CGroup.mode()}; npm run test:vm runs it)`))('clone(2) where clone3 has no CLONE_INTO_CGROUP', () => {
  it('places a limited sandbox by pid: the limit holds (verdict pids) and nothing is left', async () => {
    const code = `
      const r = await nsbox.spawnIsolated('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; wait'], { limits: { pids: 4, wallTimeMs: 20000 } });
      const p = await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo ok'], { limits: { memory: '64M' } });
      console.log(JSON.stringify({ verdict: r.verdict, out: p.stdout, code: p.exitCode }));`;
    const out = await freshNode(code, { env: { ...process.env, NSBOX_TEST_NO_CLONE_INTO_CGROUP: '1', NSBOX_VIEW_TEMPLATE: '0' } });
    expect(out).toEqual({ verdict: 'pids', out: 'ok\n', code: 0 });
  });
});

// mount_setattr (5.12) answered ENOSYS, as on 5.10: the binds take the remount fallback, here on
// any kernel; in the 5.10 VM they take it anyway.
describe.skipIf(skipReason(process.geteuid?.() !== 0 || process.arch !== 'x64', 'the mount_setattr fallback test needs root on x86-64'))('binds where mount_setattr answers ENOSYS', () => {
  it('restricts directory and file binds (default view and a rootfs whose /tmp -> /) through the placed mount', () => {
    const dir = scratch('nosetattr');
    const src = join(dir, 'src'), rootfs = join(dir, 'root');
    writeTree(src, { hello: 'hi\n' });
    writeFileSync(join(dir, 'file'), 'one\n');
    for (const d of ['bin', 'proc', 'dev', 'sys', 'etc', 'x']) mkdirSync(join(rootfs, d), { recursive: true });
    execFileSync('cp', ['/bin/busybox', join(rootfs, 'bin/busybox')]);
    execFileSync('ln', ['-s', '/', join(rootfs, 'tmp')]);
    const script = join(dir, 'run.mjs');
    writeFileSync(script, `
      import * as nsbox from ${JSON.stringify(DIST)};
      const a = await nsbox.spawnIsolated('/bin/sh', ['-c', 'cat /d/hello /f; { echo x > /d/new; } 2>/dev/null && echo wrote; grep -E " /(d|f) " /proc/self/mountinfo | cut -d" " -f5,6'], {
        mounts: [{ type: 'bind', source: ${JSON.stringify(src)}, target: '/d', readonly: true }, { type: 'bind', source: ${JSON.stringify(join(dir, 'file'))}, target: '/f', readonly: true }],
      });
      const b = await nsbox.spawnIsolated('/bin/busybox', ['cat', '/x/hello'], { rootfs: ${JSON.stringify(rootfs)}, mounts: [{ type: 'bind', source: ${JSON.stringify(src)}, target: '/tmp/x' }] });
      console.log(JSON.stringify({ a: [a.exitCode, a.stdout, a.stderr], b: [b.exitCode, b.stdout, b.stderr] }));
    `);
    const r = seccompTestRun(enosysFilter(442), [process.execPath, script], { timeoutMs: 120_000 });
    let out: { a: [number, string, string]; b: [number, string, string] };
    try { out = JSON.parse(r.output.trim().split('\n').pop()!); } catch { throw new Error(`no result: ${r.output}`); }
    expect(out.b).toEqual([0, 'hi\n', '']);
    expect(out.a[2]).toBe('');
    const [hello, file, ...mounts] = out.a[1].trim().split('\n');
    expect([hello, file]).toEqual(['hi', 'one']);
    expect(mounts.find((l) => l.startsWith('/d '))).toMatch(/^\/d ro,nosuid,nodev/);
    expect(mounts.find((l) => l.startsWith('/f '))).toMatch(/^\/f ro,nosuid,nodev/);
    expect(mounts.some((l) => l === 'wrote')).toBe(false);
    expect(existsSync(join(src, 'new'))).toBe(false);
  });
});

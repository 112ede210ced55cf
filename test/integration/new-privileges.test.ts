// Issue 13, item 2: `allowNewPrivileges: true` with seccomp on (the default profile, or a custom
// one). The filter must go on while the child still holds CAP_SYS_ADMIN in its user namespace
// (the kernel refuses a filter from a process without no_new_privs and without it); then a
// setuid program and a file-capability program gain what their file grants inside, under the
// filter. With the default (no_new_privs) nothing changes: they gain nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { Capabilities, Seccomp, defaultProfile, spawnIsolated } from '../../lib/index.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';
import { isRoot, skipReason } from '../helpers/host.js';

const why = !isRoot ? 'setuid and file-capability programs in a rootfs need root to set up' : cannotBuild();
const CAP_NET_RAW_BIT = 1n << 13n;
const field = (out: string, name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, 'm').exec(out)?.[1];

describe.skipIf(skipReason(!!why, `new privileges tests: ${why}`))('allowNewPrivileges with seccomp on', () => {
  let dir: string;
  let root: string;
  beforeAll(async () => {
    dir = mkdtempSync('/tmp/nsbox-test-nnp-');
    chmodSync(dir, 0o755);
    root = `${dir}/rootfs`;
    for (const d of ['bin', 'etc', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(`${root}/${d}`, { recursive: true });
    const privs = buildC('privs', { static: true });
    copyFileSync(privs, `${root}/bin/privs`);
    chmodSync(`${root}/bin/privs`, 0o755);
    // the host ids of the sandbox's root: a setuid-root file inside must belong to them, so the
    // sandboxes here use a range known ahead (remapUser), not an id block of their own
    const probe = await spawnIsolated('/bin/privs', [], { rootfs: root, remapUser: 'nsbox' });
    const outside = (m: Array<{ inside: number; outside: number }> | null) => m?.find((e) => e.inside === 0)?.outside ?? 0;
    const uid0 = outside(probe.isolation.uidMap), gid0 = outside(probe.isolation.gidMap);
    copyFileSync(privs, `${root}/bin/suid`);
    chownSync(`${root}/bin/suid`, uid0, gid0);
    chmodSync(`${root}/bin/suid`, 0o4755);
    copyFileSync(privs, `${root}/bin/fcap`);
    chmodSync(`${root}/bin/fcap`, 0o755);
    Capabilities.setFile(`${root}/bin/fcap`, 'cap_net_raw+ep');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    cleanupBuilds();
  });

  it('a setuid-root program runs as root inside, under the default filter, with no_new_privs off', async () => {
    const r = await spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', uid: 1000, allowNewPrivileges: true });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ruid=1000 euid=0$/m);
    expect(field(r.stdout, 'NoNewPrivs')).toBe('0');
    expect(field(r.stdout, 'Seccomp')).toBe('2');
    expect(r.isolation.noNewPrivs).toBe(false);
    expect(r.isolation.seccomp).toBe('default');
  });

  it('a file-capability program gains its capability inside (within the bounding set kept)', async () => {
    // the caller keeps CAP_NET_RAW (so it is in the bounding set); privs drops all it holds and
    // execs fcap: what fcap has, its file gave it
    const r = await spawnIsolated('/bin/privs', ['drop-exec', '/bin/fcap'], { rootfs: root, remapUser: 'nsbox', uid: 1000, capabilities: ['CAP_NET_RAW'], allowNewPrivileges: true });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(BigInt(`0x${field(r.stdout, 'CapEff')}`)).toBe(CAP_NET_RAW_BIT);
    expect(field(r.stdout, 'Seccomp')).toBe('2');
  });

  it('with a custom profile that allows what nsbox does after it, too', async () => {
    const profile = Seccomp.profile({ defaultAction: { errno: 'EPERM' }, rules: [...defaultProfile.rules, { syscalls: ['mknod'], action: { errno: 'EACCES' } }] });
    const r = await spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', uid: 1000, allowNewPrivileges: true, seccomp: profile });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ruid=1000 euid=0$/m);
    expect(field(r.stdout, 'Seccomp')).toBe('2');
    expect(r.isolation.seccomp).toBe('custom');
  });

  it('a profile without openat2 (Docker-like, as the OCI validation suite gives) still runs: the working directory is opened before the filter', async () => {
    // regression: the child opened the working directory with openat2 under the early filter,
    // so such a profile was refused ("must allow openat2")
    const profile = Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['openat2'], action: { errno: 'EPERM' } }] });
    const r = await spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', uid: 1000, cwd: '/tmp', allowNewPrivileges: true, seccomp: profile });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ruid=1000 euid=0$/m);
    expect(field(r.stdout, 'Seccomp')).toBe('2');
  });

  it('a custom profile that refuses a call nsbox makes after it is a TypeError naming the option and the call', () => {
    const profile = Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['capset'], action: { errno: 'EPERM' } }] });
    expect(() => spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', allowNewPrivileges: true, seccomp: profile })).toThrow(TypeError);
    expect(() => spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', allowNewPrivileges: true, seccomp: profile })).toThrow(/options\.seccomp.*capset/);
    const byUid = Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['setresuid'], action: 'kill-process', args: [{ index: 0, op: 'eq', value: 1000 }] }] });
    expect(() => spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', uid: 1000, allowNewPrivileges: true, seccomp: byUid })).toThrow(/setresuid.*kill-process/);
    // the same profiles with no_new_privs on: the filter goes on last, nothing to check
    const ok = spawnIsolated('/bin/privs', [], { rootfs: root, remapUser: 'nsbox', seccomp: profile });
    return ok.then((r) => expect(r.exitCode).toBe(0));
  });

  it('by default nothing changes: no_new_privs is set and neither program gains anything', async () => {
    const s = await spawnIsolated('/bin/suid', [], { rootfs: root, remapUser: 'nsbox', uid: 1000 });
    expect(s.stdout).toMatch(/^ruid=1000 euid=1000$/m);
    expect(field(s.stdout, 'NoNewPrivs')).toBe('1');
    expect(field(s.stdout, 'Seccomp')).toBe('2');
    const f = await spawnIsolated('/bin/privs', ['drop-exec', '/bin/fcap'], { rootfs: root, remapUser: 'nsbox', uid: 1000, capabilities: ['CAP_NET_RAW'] });
    expect(f.exitCode, f.stderr).toBe(0);
    expect(BigInt(`0x${field(f.stdout, 'CapEff')}`)).toBe(0n);
    expect(s.isolation.noNewPrivs).toBe(true);
  });

  it('works as the first spawn of a fresh Node process (dist)', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = `import('${new URL('../../dist/index.js', import.meta.url).href}').then(async (m) => {
      const r = await m.spawnIsolated('/bin/suid', [], { rootfs: ${JSON.stringify(root)}, remapUser: 'nsbox', uid: 1000, allowNewPrivileges: true });
      process.stdout.write(r.stdout);
    }).catch((e) => { console.error(e.message); process.exit(1); });`;
    const out = execFileSync(process.execPath, ['-e', script]).toString();
    expect(out).toMatch(/^ruid=1000 euid=0$/m);
    expect(field(out, 'Seccomp')).toBe('2');
  });
});

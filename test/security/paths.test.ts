// Issue 6 (and issue 4's safe paths): paths that try to lead nsbox's own mount steps, or the
// program's working directory, out of the sandbox. Each attack must fail or be neutralised,
// and the host must be unchanged afterwards (checked from here).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, constants } from 'node:fs';
import { spawnIsolated, NsboxError } from '../../lib/index.js';
import { isRoot, skipReason, mountTable } from '../helpers/host.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

/** A minimal busybox rootfs; `tweak` may plant traps in it. */
function makeRootfs(base: string, name: string, tweak: (root: string) => void = () => {}): string {
  const root = `${base}/${name}`;
  // sandbox root is an unprivileged host uid: the mount points must exist already
  for (const d of ['bin', 'etc', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(`${root}/${d}`, { recursive: true });
  copyFileSync(BUSYBOX!, `${root}/bin/busybox`);
  chmodSync(`${root}/bin/busybox`, 0o755);
  symlinkSync('busybox', `${root}/bin/sh`);
  tweak(root);
  return root;
}

async function rejection(p: PromiseLike<unknown>): Promise<NsboxError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NsboxError);
    return e as NsboxError;
  }
  throw new Error('expected the spawn to reject');
}

describe.skipIf(skipReason(!isRoot, 'path attack tests need root') || skipReason(!BUSYBOX, 'no static busybox (apt-get install busybox-static)'))('paths cannot lead out of the sandbox', () => {
  let dir: string;
  let hostMarkerDir: string;
  beforeAll(() => {
    dir = mkdtempSync('/tmp/nsbox-test-paths-');
    chmodSync(dir, 0o755);
    // a host directory an attacker would like nsbox to write into or mount over
    hostMarkerDir = `${dir}/host-side`;
    mkdirSync(hostMarkerDir);
    writeFileSync(`${hostMarkerDir}/marker`, 'host\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('cwd through /proc/self/fd/N (a host directory fd open in the spawner) is refused (CVE-2024-21626)', async () => {
    const fd = openSync(hostMarkerDir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      const e = await rejection(spawnIsolated('/bin/sh', ['-c', 'cat marker'], { cwd: `/proc/self/fd/${fd}`, namespaces: { mount: false }, user: false }));
      expect(e.step).toBe('cwd');
      expect(e.code).toBe('ELOOP');
      // with the default view too: no such fd exists past the sandbox's own proc either
      const e2 = await rejection(spawnIsolated('/bin/sh', ['-c', 'cat marker'], { cwd: `/proc/self/fd/${fd}` }));
      expect(e2.step).toBe('cwd');
    } finally {
      closeSync(fd);
    }
  });

  it('a plain cwd inside the sandbox still works', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'pwd'], { cwd: '/usr/bin' });
    expect(r.stdout).toBe('/usr/bin\n');
  });

  it("refuses a rootfs whose /proc is a symlink (nothing is mounted where it points)", async () => {
    const root = makeRootfs(dir, 'proc-link', (r) => { rmSync(`${r}/proc`, { recursive: true }); symlinkSync(hostMarkerDir, `${r}/proc`); });
    const before = mountTable();
    const e = await rejection(spawnIsolated('/bin/sh', ['-c', 'true'], { rootfs: root }));
    expect(e.step).toBe('mount');
    expect(e.code).toBe('ELOOP');
    expect(mountTable()).toEqual(before);
    expect(readdirSync(hostMarkerDir)).toEqual(['marker']);
  });

  it('refuses a rootfs whose /dev or /sys is a symlink', async () => {
    for (const d of ['dev', 'sys']) {
      const root = makeRootfs(dir, `${d}-link`, (r) => { rmSync(`${r}/${d}`, { recursive: true }); symlinkSync('/etc', `${r}/${d}`); });
      const e = await rejection(spawnIsolated('/bin/sh', ['-c', 'true'], { rootfs: root }));
      expect(e.code).toBe('ELOOP');
    }
  });

  it('a symlink in a rootfs leading to / or to a host path: mount targets through it land inside the rootfs or are refused', async () => {
    const src = `${dir}/bind-src`;
    mkdirSync(src, { recursive: true });
    writeFileSync(`${src}/f`, 'bound\n');
    // /data -> / : the bind at /data/inside resolves inside the rootfs, at its /inside
    const viaRoot = makeRootfs(dir, 'link-to-root', (r) => { symlinkSync('/', `${r}/data`); mkdirSync(`${r}/inside`); });
    const r = await spawnIsolated('/bin/sh', ['-c', 'cat /data/inside/f; cat /inside/f'], {
      rootfs: viaRoot, mounts: [{ type: 'bind', source: src, target: '/data/inside' }],
    });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('bound\nbound\n');
    expect(existsSync('/inside')).toBe(false);

    // /tmp -> / (the rootfs' own /tmp tmpfs follows it inside the root), and /tmp -> an
    // absolute path that exists on the host as nsbox sees it while setting up: the missing
    // mount point is made inside the rootfs (on a copy of its directory) or the spawn is
    // refused; either way nothing outside is touched
    for (const [name, target] of [['tmp-to-root', '/'], ['tmp-to-host', `/oldroot${hostMarkerDir}`]]) {
      const root = makeRootfs(dir, name, (x) => { rmSync(`${x}/tmp`, { recursive: true }); symlinkSync(target, `${x}/tmp`); });
      const before = mountTable();
      const r2 = await spawnIsolated('/bin/sh', ['-c', 'ls /tmp/inside'], {
        rootfs: root, mounts: [{ type: 'bind', source: src, target: '/tmp/inside/x' }],
      }).then((x) => x, (e: unknown) => e);
      if (!(r2 instanceof NsboxError)) expect((r2 as { exitCode: number }).exitCode, name).toBe(0);
      expect(readdirSync(hostMarkerDir)).toEqual(['marker']);
      expect(existsSync('/inside')).toBe(false);
      expect(mountTable()).toEqual(before);
    }
  });

  it('a rootfs whose /dev/null is a symlink to a host file: the sandbox gets the real device and the file is untouched (CVE-2025-31133)', async () => {
    const victim = `${hostMarkerDir}/marker`;
    const root = makeRootfs(dir, 'devnull-swap', (r) => {
      symlinkSync(`/oldroot${victim}`, `${r}/dev/null`);
    });
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo overwritten > /dev/null; [ -c /dev/null ] && echo chardev; cat /proc/keys | wc -c'], { rootfs: root });
    expect(r.stdout.split('\n')[0]).toBe('chardev');
    expect(r.stdout.split('\n')[1].trim()).toBe('0'); // masked with nsbox's own empty file, not the rootfs' /dev/null
    expect(readFileSync(victim, 'utf8')).toBe('host\n');
    expect(lstatSync(`${root}/dev/null`).isSymbolicLink()).toBe(true);
  });

  it('masks kernel state and makes /proc/sys read-only by default; maskedPaths: [] relaxes it', async () => {
    const script = 'wc -c < /proc/keys; grep -c nsbox-mask /proc/self/mountinfo; grep " /proc/sys " /proc/self/mountinfo | grep -c " ro,"; ls /sys/firmware | wc -l';
    const r = await spawnIsolated('/bin/sh', ['-c', script]);
    const [keys, masks, sysRo, fw] = r.stdout.trim().split('\n').map((x) => Number(x.trim()));
    expect(keys).toBe(0);
    expect(masks).toBeGreaterThan(0);
    expect(sysRo).toBe(1);
    expect(fw).toBe(0);
    expect(r.isolation.maskedPaths).toContain('/proc/keys');
    expect(r.isolation.readonlyPaths).toContain('/proc/sys');
    const open = await spawnIsolated('/bin/sh', ['-c', 'grep -c nsbox-mask /proc/self/mountinfo; grep -c " /proc/sys " /proc/self/mountinfo'], { maskedPaths: [], readonlyPaths: [] });
    expect(open.stdout.trim().split('\n')).toEqual(['0', '0']);
    expect(open.isolation.maskedPaths).toEqual([]);
  });

  it('devices adds a host device node explicitly', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'head -c 5 /dev/extra-zero | wc -c; [ -c /dev/extra-zero ] && echo chardev'], { devices: [{ path: '/dev/zero', target: '/dev/extra-zero' }] });
    expect(r.stdout.trim().split('\n')).toEqual(['5', 'chardev']);
    expect(r.isolation.devices).toEqual(['/dev/zero']);
    const none = await spawnIsolated('/bin/sh', ['-c', 'ls /dev']);
    expect(none.stdout.split('\n').filter(Boolean).sort()).toEqual(['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
  });

  it('rejects bad devices and path lists before anything is made', () => {
    expect(() => spawnIsolated('/bin/true', [], { devices: ['/etc/passwd'] })).toThrow(/options\.devices\[0\].*under \/dev/);
    expect(() => spawnIsolated('/bin/true', [], { devices: ['/dev/nonexistent-nsbox'] })).toThrow(/options\.devices\[0\].*missing/);
    expect(() => spawnIsolated('/bin/true', [], { devices: ['/dev/zero'], namespaces: { mount: false } })).toThrow(/options\.devices/);
    expect(() => spawnIsolated('/bin/true', [], { maskedPaths: ['proc/kcore'] })).toThrow(/options\.maskedPaths\[0\]/);
  });

  it('reports the isolation a sandbox got', async () => {
    const r = await spawnIsolated('/bin/true');
    expect(r.isolation).toMatchObject({
      namespaces: expect.arrayContaining(['pid', 'mount', 'net', 'user', 'ipc', 'uts', 'cgroup']),
      capabilities: [],
      noNewPrivs: true,
      seccomp: 'default',
      network: 'none',
      rootfs: null,
    });
    expect(r.isolation.uidMap?.[0].inside).toBe(0);
    expect(r.isolation.uidMap?.[0].outside).toBeGreaterThan(0);
    const weak = await spawnIsolated('/bin/true', [], { seccomp: 'none', user: false, network: 'host', capabilities: ['CAP_NET_RAW'] });
    expect(weak.isolation).toMatchObject({ seccomp: 'none', uidMap: null, network: 'host', capabilities: ['CAP_NET_RAW'] });
  });
});

describe.skipIf(skipReason(!isRoot, 'nested user namespace tests need root'))('nested user namespaces', () => {
  it("are refused by the sandbox's own max_user_namespaces = 0, even without seccomp; the host's limit is untouched", async () => {
    const host = readFileSync('/proc/sys/user/max_user_namespaces', 'utf8');
    const r = await spawnIsolated('/bin/sh', ['-c', 'cat /proc/sys/user/max_user_namespaces; unshare -U true && echo NESTED || echo refused'], { seccomp: 'none' });
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['0', 'refused']);
    expect(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')).toBe(host);
    const open = await spawnIsolated('/bin/sh', ['-c', 'unshare -U true && echo NESTED'], { seccomp: 'none', nestedUserNamespaces: true });
    expect(open.stdout).toBe('NESTED\n');
  });
});

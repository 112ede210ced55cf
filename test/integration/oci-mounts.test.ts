// Issue 16, item 6, on the real kernel: mounts exactly as the caller gives them. A caller's
// mount at one of the view's own points (/proc, /dev, /dev/shm, /tmp, ...) replaces nsbox's,
// with its flags and options; nosuid/nodev are the caller's to relax (reported in
// result.isolation.relaxedMounts; secure by default); a rootfs may keep its own /tmp; a tmpfs
// with copyUp starts with a copy of the directory under it (OCI tmpcopyup); rootPropagation
// 'shared' and 'unbindable'. And config.json's mounts reach these options as they are written.
import { afterAll, describe, expect, it } from 'vitest';
import { chownSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { spawnIsolated } from '../../lib/spawn/spawn.js';
import { explain, NsboxError } from '../../lib/index.js';
import { configToSandbox } from '../../lib/oci/config.js';
import { isRoot, skipReason } from '../helpers/host.js';

const APPLETS = ['sh', 'cat', 'ls', 'echo', 'touch', 'stat', 'mkdir', 'grep', 'awk', 'test', 'mknod', 'chmod', 'true'];
const top = mkdtempSync('/tmp/nsbox-ocimounts-');
afterAll(() => rmSync(top, { recursive: true, force: true }));

/** A busybox rootfs with /proc, /dev, /sys, /tmp (holding a file), and /data: files, a subdirectory, a symlink and a fifo with their owners, modes and times. */
function rootfs(name: string): string {
  const dir = join(top, name);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync('/bin/busybox', join(dir, 'bin/busybox'));
  for (const a of APPLETS) symlinkSync('busybox', join(dir, 'bin', a));
  for (const d of ['proc', 'dev', 'sys', 'etc']) mkdirSync(join(dir, d));
  mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
  chmodSync(join(dir, 'tmp'), 0o1777);
  writeFileSync(join(dir, 'tmp/from-rootfs'), 'rootfs tmp\n');
  const data = join(dir, 'data');
  mkdirSync(join(data, 'sub/deeper'), { recursive: true });
  writeFileSync(join(data, 'a.txt'), 'alpha\n');
  writeFileSync(join(data, 'sub/deeper/b.txt'), 'x'.repeat(300_000));
  chmodSync(join(data, 'a.txt'), 0o604);
  chownSync(join(data, 'a.txt'), 1000, 1001);
  chmodSync(join(data, 'sub'), 0o750);
  symlinkSync('a.txt', join(data, 'link'));
  execFileSync('mkfifo', ['-m', '0620', join(data, 'fifo')]);
  utimesSync(join(data, 'a.txt'), 1_000_000, 1_000_000);
  chmodSync(data, 0o751);
  return dir;
}

/** The sandbox's mountinfo lines for `target` (mount point field). */
const at = (mountinfo: string, target: string) => mountinfo.split('\n').filter((l) => l.split(' ')[4] === target);

describe.skipIf(skipReason(!isRoot, 'oci-mounts: spawnIsolated integration tests with a rootfs need root'))('issue 16 item 6: mounts as given', () => {
  for (const user of [false, true]) {
    it(`copyUp: a tmpfs starts with a copy of the directory it covers (${user ? 'in a user namespace' : 'no user namespace'}), writes stay in it`, async () => {
      const dir = rootfs(`copy-${user}`);
      const r = await spawnIsolated('/bin/sh', ['-c', [
        'cd /data', 'stat -c "%n %a %u:%g %s %F" . a.txt sub sub/deeper/b.txt fifo link', 'cat link', 'stat -c %Y a.txt',
        'echo new > new.txt && cat new.txt', 'grep " /data " /proc/self/mountinfo | awk \'{print $9}\'',
      ].join('; ')], {
        rootfs: { path: dir, readonly: true },
        mounts: [{ type: 'tmpfs', target: '/data', copyUp: true }],
        // in a user namespace: identity maps, so the rootfs's owners (host root, 1000) are mapped
        user: user ? { uidMap: [{ inside: 0, outside: 0, count: 65536 }], gidMap: [{ inside: 0, outside: 0, count: 65536 }] } : false,
      });
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n');
      const owner = (u: number, g: number) => `${u}:${g}`;
      expect(lines.slice(0, 6)).toEqual([
        `. 751 0:0 ${lines[0]!.split(' ')[3]} directory`,
        `a.txt 604 ${owner(1000, 1001)} 6 regular file`,
        'sub 750 0:0 ' + lines[2]!.split(' ')[3] + ' directory',
        'sub/deeper/b.txt 644 0:0 300000 regular file',
        'fifo 620 0:0 0 fifo',
        `link 777 0:0 5 symbolic link`,
      ]);
      expect(lines.slice(6)).toEqual(['alpha', '1000000', 'new', 'tmpfs']);
      // the rootfs is unchanged
      expect(readdirSync(join(dir, 'data')).sort()).toEqual(['a.txt', 'fifo', 'link', 'sub']);
    });
  }

  it('copyUp as uid 65534: files whose owner the sandbox cannot map are copied as its root\'s (no EINVAL from chown)', () => {
    const src = mkdtempSync('/tmp/nsbox-ocimounts-nobody-');
    try {
      writeFileSync(join(src, 'f'), 'hello\n');
      chmodSync(src, 0o755);
      const dist = new URL('../../dist/index.js', import.meta.url).pathname;
      const script = `import { spawnIsolated } from '${dist}';
        const r = await spawnIsolated('/bin/sh', ['-c', 'cat /data/f; echo new > /data/g && stat -c "%n %u" /data/f /data/g'], {
          mounts: [{ type: 'bind', source: '${src}', target: '/data', readonly: true }, { type: 'tmpfs', target: '/data', copyUp: true }] });
        process.stdout.write(r.stdout + r.stderr);`;
      const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60000 });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('hello\n/data/f 0\n/data/g 0\n');
      expect(readdirSync(src)).toEqual(['f']);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });

  it("a copy the sandbox may not read fails the spawn: NsboxError at step 'copy-up' naming the sandbox path", async () => {
    const dir = rootfs('unreadable');
    chmodSync(join(dir, 'data/sub'), 0o700); // host root's, not mapped in the sandbox's id block
    const e = await spawnIsolated('/bin/true', [], { rootfs: dir, mounts: [{ type: 'tmpfs', target: '/data', copyUp: true }] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ step: 'copy-up', code: 'EACCES', path: '/data' });
  });

  it('copyUp applies to tmpfs only (TypeError naming the option)', () => {
    expect(() => explain('/bin/true', [], { mounts: [{ type: 'proc', target: '/x', copyUp: true }] })).toThrow(/options\.mounts\[0\]\.copyUp applies to tmpfs mounts only/);
  });

  it('nosuid and nodev: set by default, relaxed only when asked, and reported', async () => {
    const dir = rootfs('flags');
    const r = await spawnIsolated('/bin/sh', ['-c', 'grep -E " /(a|b|c) " /proc/self/mountinfo | awk \'{print $5, $6}\''], {
      rootfs: { path: dir, readonly: true },
      mounts: [
        { type: 'tmpfs', target: '/a' },
        { type: 'tmpfs', target: '/b', nosuid: false, nodev: false, noexec: true },
        { type: 'bind', source: join(dir, 'etc'), target: '/c', nosuid: false },
      ],
    });
    const flags = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.split(' ')[0], l.split(' ')[1]!.split(',').sort()]));
    expect(flags['/a']).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    expect(flags['/a']).not.toContain('noexec');
    expect(flags['/b']).toContain('noexec');
    expect(flags['/b']).not.toContain('nosuid');
    expect(flags['/b']).not.toContain('nodev');
    expect(flags['/c']).not.toContain('nosuid');
    expect(flags['/c']).toContain('nodev');
    expect(r.isolation.relaxedMounts).toEqual([{ target: '/b', allows: ['suid', 'dev'] }, { target: '/c', allows: ['suid'] }]);
    expect((await spawnIsolated('/bin/true', [], { rootfs: dir })).isolation.relaxedMounts).toBeUndefined();
  });

  it("a caller's mount at the view's own points replaces nsbox's (one mount there, the caller's options); rootfs.tmp: false keeps the rootfs's /tmp", async () => {
    const dir = rootfs('own');
    const script = 'cat /proc/self/mountinfo; echo ---; cat /tmp/from-rootfs';
    const r = await spawnIsolated('/bin/sh', ['-c', script], {
      rootfs: { path: dir, readonly: false, tmp: false },
      mounts: [
        { type: 'tmpfs', target: '/dev/shm', options: 'size=1m,mode=1777', nosuid: true, nodev: true, noexec: true },
        { type: 'tmpfs', target: '/dev', options: 'size=128k,mode=755', nodev: false },
        { type: 'devpts', target: '/dev/pts', options: 'newinstance,ptmxmode=0666,mode=0620,gid=5', noexec: true },
        { type: 'proc', target: '/proc', noexec: true },
      ],
    });
    const [mi, tmp] = r.stdout.split('---\n');
    expect(at(mi!, '/dev/shm')).toHaveLength(1);
    expect(at(mi!, '/dev/shm')[0]).toMatch(/size=1024k/);
    expect(at(mi!, '/dev')).toHaveLength(1);
    expect(at(mi!, '/dev')[0]).toMatch(/size=128k/);
    expect(at(mi!, '/dev/pts')).toHaveLength(1);
    // gid=5 shows as the host gid it maps to
    expect(at(mi!, '/dev/pts')[0]).toMatch(/gid=\d+/);
    expect(at(mi!, '/proc')).toHaveLength(1);
    // no tmpfs on /tmp: the rootfs's own
    expect(at(mi!, '/tmp')).toEqual([]);
    expect(tmp).toBe('rootfs tmp\n');
    // nsbox's nodes and links are still in the caller's /dev
    const dev = await spawnIsolated('/bin/sh', ['-c', 'echo hi > /dev/null && ls /dev'], {
      rootfs: dir, mounts: [{ type: 'tmpfs', target: '/dev', options: 'mode=755' }],
    });
    expect(dev.stdout.split('\n')).toEqual(expect.arrayContaining(['null', 'zero', 'urandom', 'pts', 'shm', 'ptmx', 'fd']));
    // default: a fresh tmpfs on /tmp
    const dflt = await spawnIsolated('/bin/sh', ['-c', 'grep -c " /tmp " /proc/self/mountinfo; ls /tmp'], { rootfs: dir });
    expect(dflt.stdout).toBe('1\n');
    // and a caller's tmpfs at /tmp is the only one there
    const mine = await spawnIsolated('/bin/sh', ['-c', 'grep " /tmp " /proc/self/mountinfo'], { rootfs: dir, mounts: [{ type: 'tmpfs', target: '/tmp', options: 'size=2m' }] });
    expect(mine.stdout.trim().split('\n')).toHaveLength(1);
    expect(mine.stdout).toMatch(/size=2048k/);
  });

  it("the caller's mounts are in the mount table in the caller's order, also where they replace nsbox's own points (OCI: config order, as runtime-tools' runtimetest checks it)", async () => {
    const dir = rootfs('order');
    mkdirSync(join(dir, 'data2'));
    // runtime-tools' default config (mqueue, not one of nsbox's own points, between /dev/shm
    // and /sys), with a tmpfs of the caller's between /proc and /dev and one after /sys
    const mounts = [
      { type: 'proc', target: '/proc', source: 'proc', noexec: true },
      { type: 'tmpfs', target: '/data', source: 'tmpfs' },
      { type: 'tmpfs', target: '/dev', source: 'tmpfs', options: 'mode=755,size=65536k' },
      { type: 'devpts', target: '/dev/pts', source: 'devpts', options: 'newinstance,ptmxmode=0666,mode=0620', noexec: true },
      { type: 'tmpfs', target: '/dev/shm', source: 'shm', options: 'mode=1777,size=65536k', noexec: true },
      { type: 'mqueue', target: '/dev/mqueue', source: 'mqueue', noexec: true },
      { type: 'sysfs', target: '/sys', source: 'sysfs', readonly: true, noexec: true },
      // a bind (cloned by the parent before clone only with a user namespace: an older mount
      // id, which Linux 6.8+ lists first in mountinfo; user: false binds in order)
      { type: 'bind', target: '/data3', source: join(dir, 'etc') },
      { type: 'tmpfs', target: '/data2', source: 'tmpfs' },
    ];
    const order = async (user: boolean, ms: typeof mounts) => {
      const r = await spawnIsolated('/bin/cat', ['/proc/self/mountinfo'], {
        rootfs: { path: dir, readonly: true }, mounts: ms,
        user: user ? { uidMap: [{ inside: 0, outside: 0, count: 65536 }], gidMap: [{ inside: 0, outside: 0, count: 65536 }] } : false,
      });
      expect(r.exitCode).toBe(0);
      // runtimetest's check: each mount found after the one before it (mount point and type)
      const table = r.stdout.trim().split('\n').map((l) => ({ target: l.split(' ')[4], type: l.split(' - ')[1]!.split(' ')[0] }));
      let j = 0;
      return ms.map((m) => {
        const k = table.slice(j).findIndex((t) => t.target === m.target && (m.type === 'bind' || t.type === m.type));
        if (k < 0) return `${m.target} out of order`;
        j += k + 1;
        return m.target;
      });
    };
    expect(await order(false, mounts)).toEqual(mounts.map((m) => m.target));
    const noBind = mounts.filter((m) => m.type !== 'bind');
    expect(await order(true, noBind)).toEqual(noBind.map((m) => m.target));
    // with nsbox's own /dev (not given), the caller's /dev/mqueue still goes before its /sys
    const noDev = mounts.filter((m) => !m.target.startsWith('/dev') || m.target === '/dev/mqueue');
    expect(await order(false, noDev)).toEqual(noDev.map((m) => m.target));
  });

  it("maskedPaths and readonlyPaths apply to what the sandbox has: the rootfs's own files and directories and those of a caller's mount (not looked up on the host); a missing one is left out", async () => {
    const dir = rootfs('masks');
    mkdirSync(join(dir, 'secret-dir/sub'), { recursive: true });
    writeFileSync(join(dir, 'secret-dir/sub/f'), 'secret\n');
    writeFileSync(join(dir, 'secret-file'), 'secret\n');
    mkdirSync(join(dir, 'ro-dir'));
    writeFileSync(join(dir, 'ro-file'), 'ro\n');
    // a symlink inside the rootfs: followed there
    symlinkSync('/secret-file', join(dir, 'link-to-secret'));
    const script = [
      'cat /secret-file; echo "file:$?"', 'ls /secret-dir; echo "dir:$?"', 'cat /secret-dir/sub/f; echo "sub:$?"',
      'echo x > /ro-dir/new; echo "rodir:$?"', 'echo x >> /ro-file; echo "rofile:$?"', 'cat /ro-file',
      'echo x > /data/w 2>/dev/null; echo "data:$?"', 'ls /missing 2>/dev/null; echo "missing:$?"',
    ].join('; ');
    const r = await spawnIsolated('/bin/sh', ['-c', script], {
      rootfs: { path: dir, readonly: false },
      mounts: [{ type: 'tmpfs', target: '/data' }],
      maskedPaths: ['/secret-file', '/secret-dir', '/missing', '/proc/keys'],
      readonlyPaths: ['/ro-dir', '/ro-file', '/data'],
    });
    const out = r.stdout.split('\n');
    // masked: an empty file, an empty directory
    expect(out).toContain('file:0');
    expect(out).not.toContain('secret');
    expect(out).toContain('dir:0');
    expect(out).toContain('sub:1');
    // read-only: the rootfs's directory and file, and the caller's tmpfs
    expect(out).toEqual(expect.arrayContaining(['rodir:1', 'rofile:1', 'ro', 'data:1', 'missing:1']));
    // (paths outside /proc and /sys are listed as asked: masked wherever the sandbox has them)
    expect(r.isolation.maskedPaths).toEqual(['/secret-file', '/secret-dir', '/missing', '/proc/keys']);
    // the rootfs itself is unchanged, and nothing was made for the missing path
    expect(readFileSync(join(dir, 'secret-file'), 'utf8')).toBe('secret\n');
    expect(readdirSync(dir)).not.toContain('missing');
    // a masked symlink's target (inside the rootfs) is masked
    const viaLink = await spawnIsolated('/bin/cat', ['/secret-file'], { rootfs: dir, maskedPaths: ['/link-to-secret'] });
    expect(viaLink.stdout).toBe('');
  });

  it("devices: type 'p' makes a FIFO with its mode and owner, in a user namespace too (OCI linux.devices type p)", async () => {
    const dir = rootfs('fifo');
    for (const user of [false, true]) {
      const r = await spawnIsolated('/bin/sh', ['-c', 'stat -c "%F %a %u" /dev/ff'], {
        rootfs: dir, devices: [{ target: '/dev/ff', type: 'p', mode: 0o640, uid: 5 }],
        user: user ? { uidMap: [{ inside: 0, outside: 0, count: 65536 }], gidMap: [{ inside: 0, outside: 0, count: 65536 }] } : false,
      });
      expect(r.stdout).toBe('fifo 640 5\n');
    }
    expect(() => explain('/bin/true', [], { devices: [{ target: '/dev/x', type: 'q' as never, major: 1, minor: 1 }] })).toThrow(/options\.devices\[0\]\.type must be 'c', 'b' or 'p'/);
  });

  it("rootPropagation 'shared' and 'unbindable' are the root's once it is made; 'private' stays the default", async () => {
    const dir = rootfs('prop');
    const rootLine = async (rootPropagation?: 'shared' | 'unbindable') => {
      const r = await spawnIsolated('/bin/sh', ['-c', 'grep -E "^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / " /proc/self/mountinfo'], { rootfs: dir, ...(rootPropagation ? { rootPropagation } : {}) });
      return r.stdout;
    };
    expect(await rootLine('shared')).toMatch(/ shared:\d+/);
    expect(await rootLine('unbindable')).toMatch(/ unbindable /);
    expect(await rootLine()).not.toMatch(/shared:|master:|unbindable/);
    expect(() => explain('/bin/true', [], { rootPropagation: 'bogus' as never })).toThrow(/options\.rootPropagation/);
  });

  it('config.json mounts map onto these options as written (flags, tmpcopyup, no forced /tmp, rootfsPropagation)', () => {
    const bundle = join(top, 'bundle');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const c = configToSandbox({
      ociVersion: '1.0.2',
      root: { path: 'rootfs' },
      process: { args: ['/bin/true'] },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
        { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
        { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['rw', 'rprivate', 'nosuid', 'nodev', 'tmpcopyup'] },
        { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['bind', 'rprivate'] },
        { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] },
      ],
      linux: { namespaces: [{ type: 'mount' }, { type: 'pid' }], rootfsPropagation: 'rshared' },
    }, bundle);
    expect(c.options.rootfs).toEqual({ path: join(bundle, 'rootfs'), readonly: false, tmp: false });
    expect(c.options.rootPropagation).toBe('shared');
    expect(c.options.mounts).toEqual([
      { type: 'proc', target: '/proc', source: 'proc', nosuid: true, nodev: true, noexec: true },
      { type: 'tmpfs', target: '/dev/shm', source: 'shm', nosuid: true, nodev: true, noexec: true, options: 'mode=1777,size=65536k' },
      { type: 'tmpfs', target: '/run', source: 'tmpfs', nosuid: true, nodev: true, noexec: false, propagation: 'private', copyUp: true },
      { type: 'bind', target: '/etc/hosts', source: '/etc/hosts', nosuid: false, nodev: false, noexec: false, propagation: 'private' },
    ]);
    expect(() => configToSandbox({
      ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['/bin/true'] }, linux: { namespaces: [{ type: 'mount' }] },
      mounts: [{ destination: '/x', type: 'proc', source: 'proc', options: ['tmpcopyup'] }],
    }, bundle)).toThrow(/mounts\[0\]\.options: 'tmpcopyup' applies to tmpfs mounts only/);
  });
});

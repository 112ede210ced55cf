// Safe paths (issue 4). The host<->sandbox file API resolves every path inside the root
// (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). Test 6 checks the spawn core's mount
// steps against a rootfs whose /tmp is a symlink to / and against a rename race during 200
// spawns: a bind mount must always land inside the rootfs.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync, lstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { copyIn, copyOut, NsboxError, readFile, spawnIsolated, writeFile } from '../../lib/index.js';
import { fsSkip, ourMounts, readTree, removeScratch, scratch } from './fs-helpers.js';

const skip = fsSkip();

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

function hostileRoot(dir: string, outside: string): string {
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/hostname'), 'inside\n');
  symlinkSync(`${outside}/secret`, join(root, 'etc/abs'));    // absolute link to a host file
  symlinkSync('../../../../../../..' + outside + '/secret', join(root, 'etc/rel')); // climbing link
  symlinkSync('/', join(root, 'up'));                         // a link to "/" (the root itself)
  symlinkSync(outside, join(root, 'out'));                    // a directory link to the host
  symlinkSync('/proc/self/root/etc/hostname', join(root, 'magic')); // a magic link path
  return root;
}

describe.skipIf(skip)('safe file API', () => {
  it('reads only inside the root, whatever the links say', async () => {
    const dir = scratch('read');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'HOST SECRET');
    const root = hostileRoot(dir, outside);
    expect((await readFile(root, 'etc/hostname')).toString()).toBe('inside\n');
    expect((await readFile(root, '/up/up/etc/hostname')).toString()).toBe('inside\n');
    expect((await readFile(root, '../../../../etc/hostname')).toString()).toBe('inside\n');
    for (const p of ['etc/abs', 'etc/rel', 'out/secret', 'magic']) {
      const e = await readFile(root, p).then(() => null, (x) => x);
      expect(e, p).toBeInstanceOf(NsboxError);
      expect((e as NsboxError).code, p).toMatch(/ENOENT|EXDEV|ELOOP/);
    }
    // the cap
    writeFileSync(join(root, 'big'), Buffer.alloc(4096));
    await expect(readFile(root, 'big', { maxBytes: 1000 })).rejects.toMatchObject({ code: 'EFBIG' });
    await expect(readFile(root, 'big', { maxBytes: -1 })).rejects.toThrow(RangeError);
    await expect(readFile(root, 'etc')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('writes only inside the root and never through a final symlink', async () => {
    const dir = scratch('write');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'HOST SECRET');
    const root = hostileRoot(dir, outside);
    const before = readTree(outside, true);
    // a final symlink is refused, not followed
    for (const p of ['etc/abs', 'etc/rel', 'magic']) {
      const e = await writeFile(root, p, 'pwned').then(() => null, (x) => x);
      expect(e, p).toBeInstanceOf(NsboxError);
      expect((e as NsboxError).code, p).toBe('ELOOP');
    }
    // a directory link resolves inside the root: up/ is the root, out/ does not exist in it
    await writeFile(root, 'up/etc/new', 'n1');
    expect(readFileSync(join(root, 'etc/new'), 'utf8')).toBe('n1');
    await expect(writeFile(root, 'out/secret', 'pwned')).rejects.toMatchObject({ code: 'ENOENT' });
    // mkdirs does not create directories through a link (the link stays, pointing nowhere in the root)
    await expect(writeFile(root, 'out/secret', 'pwned', { mkdirs: true })).rejects.toMatchObject({ code: 'ENOENT' });
    expect(readTree(outside, true)).toEqual(before);
    // sizes and modes
    await expect(writeFile(root, 'x', Buffer.alloc(100), { maxBytes: 10 })).rejects.toThrow(RangeError);
    await writeFile(root, 'deep/er/file', 'd', { mkdirs: true, mode: 0o600, uid: 1234, gid: 5678 });
    const st = statSync(join(root, 'deep/er/file'));
    expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o600, 1234, 5678]);
    await expect(writeFile(root, '', 'x')).rejects.toThrow(TypeError);
    await expect(writeFile('rel', 'x', 'x')).rejects.toThrow(/root/);
    // copyIn / copyOut
    await copyIn(join(outside, 'secret'), root, 'up/copied');
    expect(readFileSync(join(root, 'copied'), 'utf8')).toBe('HOST SECRET');
    await copyOut(root, 'etc/hostname', join(dir, 'out.txt'));
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('inside\n');
    await expect(copyOut(root, 'etc/abs', join(dir, 'leak.txt'))).rejects.toBeInstanceOf(NsboxError);
    expect(existsSync(join(dir, 'leak.txt'))).toBe(false);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('HOST SECRET');
  });
});

/** A busybox rootfs with the mount points a sandbox needs. */
function bbRoot(dir: string): string {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'etc']) mkdirSync(join(root, d), { recursive: true });
  cpSync('/bin/busybox', join(root, 'bin/busybox'));
  symlinkSync('busybox', join(root, 'bin/sh'));
  return root;
}

// These check the spawn core (addon/src/child.cc RunOp Bind/Mount), not lib/fs. Before the
// core resolved targets inside the root, it mounted by path string under /newroot and followed
// the rootfs' symlinks: with /tmp -> / the bind for /tmp/x landed on the scratch root, and in
// the rename race 55 of 200 binds went through the symlink onto the host tree. Now every target
// is opened with openat2(RESOLVE_IN_ROOT) and mounted through the fd; a rootfs /tmp that is a
// symlink gets no tmpfs of nsbox's (it resolves inside the rootfs like any other path).
describe.skipIf(skip)('spawn core mount targets inside a rootfs (issue 4 test 6)', () => {
  it('a bind target through /tmp -> / lands inside the rootfs', async () => {
    const dir = scratch('tmplink');
    const root = bbRoot(dir);
    symlinkSync('/', join(root, 'tmp'));
    mkdirSync(join(root, 'x'));
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'hello'), 'hi');
    const r = await spawnIsolated('/bin/busybox', ['cat', '/x/hello'], {
      rootfs: root, mounts: [{ type: 'bind', source: src, target: '/tmp/x' }], timeout: 10_000,
    });
    expect(r.stdout).toBe('hi');
  });

  it('a directory renamed to a symlink during 200 spawns never places the bind outside the rootfs', async () => {
    const dir = scratch('race');
    const root = bbRoot(dir);
    mkdirSync(join(root, 'tmp'));
    mkdirSync(join(root, 'd/t/mnt'), { recursive: true });
    mkdirSync(join(root, 't/mnt'), { recursive: true }); // where d -> / resolves inside the root
    const outside = join(dir, 'outside');
    mkdirSync(join(outside, 't/mnt'), { recursive: true });
    const src = join(dir, 'src-marker');
    mkdirSync(src);
    writeFileSync(join(src, 'hello'), 'hi');
    // the racer flips rootfs/d between the real directory and a symlink to the host dir (as
    // the child sees it under /oldroot), as a hostile program in the rootfs could
    writeFileSync(join(dir, 'go'), '');
    const loop = [
      `cd '${root}' && ln -s '/oldroot${outside}' d.link &&`,
      `( while [ -e '${dir}/go' ]; do mv -T d d.real; mv -T d.link d; mv -T d d.link; mv -T d.real d; done ) >/dev/null 2>&1 &`,
      'echo $!',
    ].join(' ');
    const racer = execFileSync('sh', ['-c', loop], { encoding: 'utf8' }).trim();
    let inside = 0, refused = 0;
    const escaped: string[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        try {
          const r = await spawnIsolated('/bin/busybox', ['cat', '/proc/self/mountinfo'], {
            rootfs: root, mounts: [{ type: 'bind', source: src, target: '/d/t/mnt' }], timeout: 10_000,
          });
          // the bind of src is visible in the sandbox when it landed inside the rootfs
          if (r.stdout.includes(src)) inside++;
          else escaped.push(`spawn ${i}: bind of ${src} not in the sandbox's mount table`);
        } catch (e) {
          if (!(e instanceof NsboxError)) throw e;
          refused++;
        }
      }
    } finally {
      // the racer ends by itself at its next turn; a kill could leave one of its mv's running
      // past the scratch directory's removal (ENOTEMPTY)
      rmSync(join(dir, 'go'), { force: true });
      const alive = () => { try { process.kill(Number(racer), 0); return true; } catch { return false; } };
      for (let t = 0; t < 500 && alive(); t++) await new Promise((r) => setTimeout(r, 10));
      if (alive()) process.kill(Number(racer), 'SIGKILL');
    }
    // and nothing was mounted on the host side either
    expect(lstatSync(join(outside, 't/mnt')).isDirectory()).toBe(true);
    expect(escaped).toEqual([]);
    expect(inside + refused).toBe(200);
  });
});

// Issue 13, items 5, 5d and 6: mount points missing from a read-only rootfs (directories,
// files, nested, /etc files of bridge networking) are made without writing to the rootfs;
// a rootfs or image store in a 0700 directory runs; a bind source that is a symlink on the host
// follows the host's symlinks; errors name the sandbox path and the caller's host path, never
// nsbox's own. As root and, where meant to work unprivileged, as uid 65534 (a child Node on dist/).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LayerStore, NsboxError, spawnIsolated } from '../../lib/index.js';
import { Bridge } from '../../lib/net/bridge.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { fsSkip, makeTar, ourMounts, readTree, removeScratch, scratch } from './fs-helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const skip = fsSkip();
const INTERNAL = /\/newroot|\/oldroot|nsbox-mirror|nsbox-etc|nsbox-mask/;
const APPLETS = ['sh', 'cat', 'ls', 'echo', 'touch', 'stat', 'mkdir'];

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

/** A busybox rootfs with no /proc, /dev, /sys, /tmp, /data, and an /etc without hosts or resolv.conf. */
function busybox(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync('/bin/busybox', join(dir, 'bin/busybox'));
  for (const a of APPLETS) symlinkSync('busybox', join(dir, 'bin', a));
  mkdirSync(join(dir, 'etc'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
  symlinkSync('../run/nowhere', join(dir, 'etc/dangling'));
  return dir;
}

/** A host directory with one file, for bind sources. */
function source(dir: string, text = 'hello'): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'f'), text);
  return dir;
}

const hasBusybox = (() => { try { return lstatSync('/bin/busybox').isFile(); } catch { return false; } })();
const noBusybox = skipReason(!skip && !hasBusybox, 'rootfs mount point tests need /bin/busybox on the host');

describe.skipIf(skip || noBusybox)('missing mount points in a read-only rootfs (as root)', () => {
  it('makes directory, nested and file targets and /proc, /dev, /sys, /tmp; the rootfs directory is not written', async () => {
    const d = scratch('mp');
    const rootfs = busybox(join(d, 'rootfs'));
    const src = source(join(d, 'src'));
    chmodSync(src, 0o777); // the sandbox's root (an unprivileged host id) writes there
    const before = readTree(rootfs, true);
    const r = await spawnIsolated('/bin/sh', ['-c', [
      'cat /data/f /a/b/c/f /etc/x/y/file; echo',
      'ls / | tr "\\n" " "; echo',
      'ls /etc | tr "\\n" " "; echo',
      'cat /etc/passwd',
      'touch /new 2>/dev/null && echo wrote-root || echo ro-root',
      'touch /etc/new 2>/dev/null && echo wrote-etc || echo ro-etc',
      'echo x > /data/g && echo wrote-data',
    ].join('; ')], {
      rootfs,
      mounts: [
        { type: 'bind', source: src, target: '/data' },
        { type: 'bind', source: src, target: '/a/b/c', readonly: true },
        { type: 'bind', source: join(src, 'f'), target: '/etc/x/y/file', readonly: true },
      ],
      timeout: 10_000,
    });
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('hellohellohello');
    for (const n of ['a', 'bin', 'data', 'dev', 'etc', 'proc', 'sys', 'tmp']) expect(lines[1]!.split(' ')).toContain(n);
    expect(lines[2]!.split(' ').filter(Boolean).sort()).toEqual(['dangling', 'passwd', 'x']);
    expect(lines.slice(3)).toEqual(['root:x:0:0:root:/:/bin/sh', 'ro-root', 'ro-etc', 'wrote-data', '']);
    // nothing was made or changed in the rootfs directory; the writable bind was written
    expect(readTree(rootfs, true)).toEqual(before);
    expect(readFileSync(join(src, 'g'), 'utf8')).toBe('x\n');
  });

  it('a writable rootfs the sandbox cannot write gets a writable mirror; still nothing is written to the rootfs', async () => {
    const d = scratch('mpw');
    const rootfs = busybox(join(d, 'rootfs'));
    const before = readTree(rootfs, true);
    const r = await spawnIsolated('/bin/sh', ['-c', 'cat /data/f; touch /made && echo made; ls /'], {
      rootfs: { path: rootfs, readonly: false }, mounts: [{ type: 'bind', source: source(join(d, 'src')), target: '/data' }], timeout: 10_000,
    });
    expect(r.stdout.split('\n')).toEqual(['hellomade', 'bin', 'data', 'dev', 'etc', 'made', 'proc', 'sys', 'tmp', '']);
    expect(readTree(rootfs, true)).toEqual(before);
  });

  it('a symlinked target leads inside the rootfs: the mount point is made there, never on the host', async () => {
    const d = scratch('mpl');
    const rootfs = busybox(join(d, 'rootfs'));
    const hostDir = join(d, 'host-side');
    mkdirSync(hostDir);
    // absolute and climbing links: both resolve inside the rootfs
    symlinkSync(hostDir, join(rootfs, 'abs'));
    symlinkSync(`../../../../../..${hostDir}`, join(rootfs, 'up'));
    symlinkSync('etc', join(rootfs, 'rel'));
    const before = readTree(rootfs, true);
    const src = source(join(d, 'src'));
    const r = await spawnIsolated('/bin/sh', ['-c', `cat ${hostDir}/one/f ${hostDir}/two/f /etc/three/f`], {
      rootfs,
      mounts: [
        { type: 'bind', source: src, target: '/abs/one' },
        { type: 'bind', source: src, target: '/up/two' },
        { type: 'bind', source: src, target: '/rel/three' },
      ],
      timeout: 10_000,
    });
    expect(r.stdout).toBe('hellohellohello');
    expect(readdirSync(hostDir)).toEqual([]);
    expect(readTree(rootfs, true)).toEqual(before);
  });

  it('errors name the sandbox path and the host path the caller gave, never internal ones', async () => {
    const d = scratch('mpe');
    const rootfs = busybox(join(d, 'rootfs'));
    const src = source(join(d, 'src'));
    const err1 = await spawnIsolated('/bin/true', [], { rootfs, mounts: [{ type: 'bind', source: src, target: '/etc/passwd/x' }] }).then(() => null, (e: unknown) => e);
    expect(err1).toBeInstanceOf(NsboxError);
    expect((err1 as NsboxError).message).toContain(`(/etc/passwd/x, from ${src})`);
    expect((err1 as NsboxError).message).not.toMatch(INTERNAL);
    expect(err1).toMatchObject({ code: 'ENOTDIR', step: 'bind', path: '/etc/passwd/x' });
    const dangling = join(d, 'dangling');
    symlinkSync(join(d, 'nowhere'), dangling);
    const err2 = await spawnIsolated('/bin/true', [], { rootfs, mounts: [{ type: 'bind', source: dangling, target: '/data' }] }).then(() => null, (e: unknown) => e);
    expect((err2 as NsboxError).message).toContain(`(/data, from ${dangling})`);
    expect((err2 as NsboxError).message).not.toMatch(INTERNAL);
    expect(err2).toMatchObject({ code: 'ENOENT', path: dangling });
  });
});

describe.skipIf(skip || noBusybox)('the /etc files of bridge networking on a read-only rootfs (as root)', () => {
  const bridges: Bridge[] = [];
  afterAll(async () => { for (const b of bridges) await b.destroy().catch(() => {}); });
  it('/etc/hosts and /etc/resolv.conf appear in a rootfs without them (and in one without /etc)', async () => {
    const br = Bridge.create(`nsbox${process.pid.toString(36)}m`, { address: '10.97.0.1/24' });
    bridges.push(br);
    const d = scratch('mpn');
    const rootfs = busybox(join(d, 'rootfs'));
    const bare = join(d, 'bare');
    mkdirSync(join(bare, 'bin'), { recursive: true });
    cpSync('/bin/busybox', join(bare, 'bin/busybox'));
    for (const fs of [rootfs, bare]) {
      const before = readTree(fs, true);
      const r = await spawnIsolated('/bin/busybox', ['cat', '/etc/hosts', '/etc/resolv.conf'], {
        rootfs: fs, network: { bridge: br, address: '10.97.0.9', dns: ['192.0.2.53'], hostname: 'mp' }, timeout: 10_000,
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/10\.97\.0\.9\tmp\n/);
      expect(r.stdout).toMatch(/nameserver 192\.0\.2\.53/);
      expect(readTree(fs, true)).toEqual(before);
    }
  });
});

describe.skipIf(skip || noBusybox)('a rootfs or image store in a 0700 directory (as root)', () => {
  const made: string[] = [];
  afterAll(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
  const private0700 = () => {
    const d = mkdtempSync('/var/tmp/nsbox-fstest-0700-');
    made.push(d);
    expect(lstatSync(d).mode & 0o777).toBe(0o700);
    return d;
  };

  it('runs a rootfs below a 0700 directory, which keeps its mode', async () => {
    const d = private0700();
    const rootfs = busybox(join(d, 'rootfs'));
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo ok; ls /data'], { rootfs, mounts: [{ type: 'tmpfs', target: '/data' }], timeout: 10_000 });
    expect(r.stdout).toBe('ok\n');
    expect(lstatSync(d).mode & 0o777).toBe(0o700);
  });

  it('runs an image of a store in a 0700 directory, with a bind target missing from the image', async () => {
    const d = private0700();
    const store = LayerStore.open(join(d, 'store'));
    const layer = await makeTar([
      { name: 'bin/', type: 'directory' },
      { name: 'bin/busybox', mode: 0o755, body: readFileSync('/bin/busybox') },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'etc/', type: 'directory' },
      { name: 'etc/passwd', body: 'root:x:0:0:root:/root:/bin/sh\n' },
    ]);
    const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [diffId] } }));
    const cid = createHash('sha256').update(config).digest('hex');
    const archive = join(d, 'image.tar');
    writeFileSync(archive, await makeTar([
      { name: 'l/', type: 'directory' }, { name: 'l/layer.tar', body: layer },
      { name: `${cid}.json`, body: config },
      { name: 'manifest.json', body: JSON.stringify([{ Config: `${cid}.json`, RepoTags: ['mp:latest'], Layers: ['l/layer.tar'] }]) },
    ]));
    await store.importImage(archive);
    const src = source(join(d, 'src'), 'from-host');
    chmodSync(join(d, 'src'), 0o755);
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo ok; /bin/busybox cat /data/f /etc/passwd'], {
      image: { store, ref: 'mp:latest' }, mounts: [{ type: 'bind', source: src, target: '/data', readonly: true }], timeout: 10_000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\nfrom-hostroot:x:0:0:root:/root:/bin/sh\n');
    expect(lstatSync(d).mode & 0o777).toBe(0o700);
    expect(store.containers?.().length ?? 0).toBe(0);
  });
});

describe.skipIf(skip)('a bind source that is a symlink on the host (item 6)', () => {
  it('follows absolute and relative host symlinks, and one in a parent directory (root, default view)', async () => {
    const d = scratch('sl');
    source(join(d, 'real/dir'), 'via-link');
    symlinkSync(join(d, 'real/dir'), join(d, 'abs'));
    symlinkSync('real/dir', join(d, 'rel'));
    symlinkSync('real', join(d, 'parent'));
    const r = await spawnIsolated('/bin/cat', ['/m1/f', '/m2/f', '/m3/f', '/m4'], {
      mounts: [
        { type: 'bind', source: join(d, 'abs'), target: '/m1' },
        { type: 'bind', source: join(d, 'rel'), target: '/m2' },
        { type: 'bind', source: join(d, 'parent/dir'), target: '/m3' },
        { type: 'bind', source: join(d, 'abs/f'), target: '/m4' },
      ],
      timeout: 10_000,
    });
    expect(r.stdout).toBe('via-link'.repeat(4));
  });
});

describe.skipIf(skip || noBusybox || skipReason(!isRoot, 'needs root to start an unprivileged Node'))('as an unprivileged caller (uid 65534)', () => {
  it('missing mount points in a read-only rootfs, and host-symlinked bind sources', () => {
    const d = scratch('un');
    const rootfs = busybox(join(d, 'rootfs'));
    const src = source(join(d, 'src'), 'un');
    symlinkSync('src', join(d, 'link'));
    for (const p of [d, rootfs, src]) chmodSync(p, 0o755);
    const before = readTree(rootfs, true);
    const script = `
      const { spawnIsolated } = await import(${JSON.stringify(`${root}/dist/index.js`)});
      const out = [];
      const r = await spawnIsolated('/bin/sh', ['-c', 'cat /data/f /a/b/f; touch /x 2>/dev/null || echo ro'], {
        rootfs: ${JSON.stringify(rootfs)},
        mounts: [{ type: 'bind', source: ${JSON.stringify(join(d, 'link'))}, target: '/data' }, { type: 'bind', source: ${JSON.stringify(src)}, target: '/a/b' }],
      }).catch((e) => ({ stdout: 'ERR ' + e.message }));
      out.push(r.stdout);
      const e = await spawnIsolated('/bin/true', [], { rootfs: ${JSON.stringify(rootfs)}, mounts: [{ type: 'bind', source: ${JSON.stringify(src)}, target: '/etc/passwd/x' }] }).then(() => 'no error', (e) => e.message);
      out.push(e);
      process.stdout.write(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, cwd: '/', encoding: 'utf8' });
    const [run, err] = JSON.parse(r.stdout || '["", ""]') as [string, string];
    expect(run, r.stderr).toBe('ununro\n');
    expect(err).toContain(`(/etc/passwd/x, from ${src})`);
    expect(err).not.toMatch(INTERNAL);
    expect(readTree(rootfs, true)).toEqual(before);
  });
});

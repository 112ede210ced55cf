// Issue 17: a root caller's ephemeral image runs from a view template (view.ts,
// imageTemplateView): nothing is made on the host per spawn (no container in the store, no
// mount), the template holds the layers idmapped and their read-only overlay, each sandbox has
// its own writable layer on a tmpfs. Same semantics as the container path: the image config,
// the init layer's files, private writes, tmpfsSize, keep: true, result.isolation; a store that
// changed after the template was made is seen as it is now; a multi-layer image's whiteouts
// and opaque directories count as in the host's overlay. Real kernel, real mounts.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IMAGE_COMMAND, LayerStore, spawnIsolated } from '../../lib/index.js';
import { skipReason } from '../helpers/host.js';
import { fsSkip, makeTar, ourMounts, removeScratch, scratch, type TarEntry } from './fs-helpers.js';

const [maj, min] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number);
const APPLETS = ['sh', 'echo', 'cat', 'ls', 'id', 'pwd', 'touch', 'rm', 'mkdir', 'sleep', 'dd', 'mount', 'umount', 'nsenter', 'stat', 'grep', 'head'];
const applets = (() => { try { return execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n'); } catch { return []; } })();
const skip = fsSkip() || skipReason(!APPLETS.every((a) => applets.includes(a)), `these tests need /bin/busybox with the applets ${APPLETS.join(' ')}`) || skipReason(!(maj! > 6 || (maj === 6 && min! >= 6)), `an image's view template needs Linux 6.6 (user xattrs on tmpfs); this is ${release()}: images get containers (the other fs tests)`);
const dist = join(__dirname, '../../dist/index.js');

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

function busybox(extra: TarEntry[] = []): TarEntry[] {
  return [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', mode: 0o755, body: readFileSync('/bin/busybox') },
    ...APPLETS.map((a): TarEntry => ({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' })),
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', body: 'root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000::/home/worker:/bin/sh\n' },
    { name: 'etc/group', body: 'root:x:0:\nworker:x:1000:\n' },
    { name: 'home/', type: 'directory' },
    { name: 'home/worker/', type: 'directory', uid: 1000, gid: 1000, mode: 0o700 },
    ...extra,
  ];
}

/** A docker-save archive of these layers (bottom first) and config. */
async function saveTar(file: string, layers: TarEntry[][], tag: string, config: object = {}): Promise<void> {
  const tars = await Promise.all(layers.map((l) => makeTar(l)));
  const diffIds = tars.map((t) => `sha256:${createHash('sha256').update(t).digest('hex')}`);
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh', '-c', 'echo $X; pwd; id -u'], Env: ['X=from-image'], WorkingDir: '/etc', ...config }, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const cid = createHash('sha256').update(cfg).digest('hex');
  const entries: TarEntry[] = [];
  tars.forEach((t, i) => entries.push({ name: `l${i}/`, type: 'directory' }, { name: `l${i}/layer.tar`, body: t }));
  entries.push({ name: `${cid}.json`, body: cfg }, { name: 'manifest.json', body: JSON.stringify([{ Config: `${cid}.json`, RepoTags: [tag], Layers: tars.map((_, i) => `l${i}/layer.tar`) }]) });
  writeFileSync(file, await makeTar(entries));
}

const hostMounts = (root: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(root));

describe.skipIf(skip)("a root caller's ephemeral image as a view template", () => {
  it("a fresh process's first spawns: nothing in the store or the host's mount table while they run; the image config, init layer and writes as with a container; the same result.isolation", async () => {
    const dir = scratch('tmpl');
    await saveTar(join(dir, 'i.tar'), [busybox()], 'bb:t', { User: 'worker' });
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'i.tar'));
    // a Node process of its own: the first spawn of a process makes the template
    const script = `
      const m = await import(${JSON.stringify(dist)});
      const { readFileSync } = await import('node:fs');
      const store = m.LayerStore.open(${JSON.stringify(join(dir, 'store'))});
      const image = { store, ref: 'bb:t' };
      const mounts = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => l.includes(${JSON.stringify(dir)})).length;
      const first = await m.spawnIsolated(m.IMAGE_COMMAND, [], { image, hostname: 'box1', stdio: 'pipe' });
      const p = m.spawnIsolated('/bin/sh', ['-c', 'echo x > /etc/mine; cat /etc/mine; sleep 5'], { image, stdio: 'pipe', uid: 0 });
      await new Promise((r) => p.once('spawn', r));
      await new Promise((r) => setTimeout(r, 300));
      const during = { containers: store.containers(), mounts: mounts() };
      p.kill('SIGKILL');
      const killed = await p.catch((e) => e);
      const again = await m.spawnIsolated('/bin/sh', ['-c', 'cat /etc/mine 2>&1; cat /etc/hostname; grep box /etc/hosts; ls -ldn /etc / | head -2; stat -c %u /home/worker; id -u'], { image, stdio: 'pipe', hostname: 'box2', uid: 0 });
      process.env.NSBOX_IMAGE_TEMPLATE = '0';
      const old = await m.spawnIsolated('/bin/echo', [], { image });
      delete process.env.NSBOX_IMAGE_TEMPLATE;
      const fresh = await m.spawnIsolated('/bin/echo', [], { image });
      console.log(JSON.stringify({ first: first.stdout, during, killedOut: killed.stdout, again: again.stdout, againErr: again.stderr, isoFast: fresh.isolation, isoOld: old.isolation, after: { containers: store.containers(), mounts: mounts() } }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 }).trim().split('\n').at(-1)!);
    // the image's Cmd, Env, WorkingDir and User
    expect(out.first).toBe('from-image\n/etc\n1000\n');
    // nothing on the host while a sandbox runs, nothing after
    expect(out.during).toEqual({ containers: [], mounts: 0 });
    expect(out.after).toEqual({ containers: [], mounts: 0 });
    // writes are the sandbox's own: gone with it
    expect(out.againErr).toBe('');
    const lines = out.again.split('\n');
    expect(lines[0]).toMatch(/No such file/);
    expect(lines.slice(1, 3)).toEqual(['box2', '127.0.1.1\tbox2']);
    // the image's owners inside (idmapped): root's /etc and /, worker's home
    expect(lines[3]).toMatch(/^d\S+\s+\d+\s+0\s+0\s/);
    expect(lines[4]).toMatch(/^d\S+\s+\d+\s+0\s+0\s/);
    expect(lines.slice(5, 7)).toEqual(['1000', '0']);
    // the same isolation as a container's (its root directory aside: the image's top layer)
    const { rootfs: fr, uidMap: fu, gidMap: fg, ...fast } = out.isoFast;
    const { rootfs: or, uidMap: ou, gidMap: og, ...old } = out.isoOld;
    expect(fast).toEqual(old);
    expect(fu[0].count).toBe(ou[0].count);
    expect(fr).toMatch(/\/store\/[0-9a-f]{64}\/diff$/);
    expect(or).toMatch(/\/merged$/);
  }, 90_000);

  it('keeps writes private to each sandbox, bounds them by tmpfsSize, and keep: true still gives a kept container', async () => {
    const dir = scratch('priv');
    await saveTar(join(dir, 'i.tar'), [busybox()], 'bb:p');
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'i.tar'));
    const image = { store, ref: 'bb:p' };
    const a = spawnIsolated('/bin/sh', ['-c', 'echo a > /bin/a; sleep 1; ls /bin/a /bin/b 2>&1'], { image, timeout: 20_000 });
    const b = spawnIsolated('/bin/sh', ['-c', 'echo b > /bin/b; sleep 1; ls /bin/a /bin/b 2>&1'], { image, timeout: 20_000 });
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.stdout).toMatch(/\/bin\/b: No such file/);
    expect(ra.stdout).toMatch(/^\/bin\/a$/m);
    expect(rb.stdout).toMatch(/\/bin\/a: No such file/);
    // the image on disk is untouched
    expect(execFileSync('find', [join(dir, 'store'), '-name', 'a', '-path', '*/bin/*'], { encoding: 'utf8' })).toBe('');
    const small = await spawnIsolated('/bin/sh', ['-c', 'dd if=/dev/zero of=/big bs=1M count=3 2>&1; echo rc=$?'], { image: { ...image, tmpfsSize: '1M' }, timeout: 20_000 });
    expect(small.stdout).toMatch(/No space left on device/);
    expect(small.stdout).toMatch(/rc=1/);
    const big = await spawnIsolated('/bin/sh', ['-c', 'dd if=/dev/zero of=/big bs=1M count=3 2>&1; echo rc=$?'], { image: { ...image, tmpfsSize: '8M' }, timeout: 20_000 });
    expect(big.stdout).toMatch(/rc=0/);
    const kept = await spawnIsolated('/bin/sh', ['-c', 'echo k > /kept'], { image: { ...image, keep: true }, timeout: 20_000 });
    expect(kept.exitCode).toBe(0);
    expect(store.containers()).toHaveLength(1);
    const c = store.container(store.containers()[0]!);
    expect(c.changes().map((x) => x.path)).toContain('/kept');
    await c.remove();
  }, 60_000);

  it('sees the store as it is now: an image removed and imported again (new layer directories), another image under the same name', async () => {
    const dir = scratch('change');
    await saveTar(join(dir, 'one.tar'), [busybox([{ name: 'marker', body: 'one\n' }])], 'bb:c');
    await saveTar(join(dir, 'two.tar'), [busybox([{ name: 'marker', body: 'two\n' }])], 'bb:c');
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'one.tar'));
    const image = { store, ref: 'bb:c' };
    const cat = async () => (await spawnIsolated('/bin/cat', ['/marker'], { image, timeout: 10_000 })).stdout;
    expect(await cat()).toBe('one\n');
    expect(await cat()).toBe('one\n');
    await store.removeImage('bb:c');
    await store.importImage(join(dir, 'two.tar'));
    expect(await cat()).toBe('two\n');
    // the first again: the same layer id, a new directory
    await store.removeImage('bb:c');
    await store.importImage(join(dir, 'one.tar'));
    expect(await cat()).toBe('one\n');
    expect(await cat()).toBe('one\n');
    expect(store.containers()).toEqual([]);
  }, 60_000);

  it("a multi-layer image's whiteouts and opaque directories count as in a container's overlay", async () => {
    const dir = scratch('layers');
    const upper: TarEntry[] = [
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.group', body: '' },
      { name: 'opq/', type: 'directory' },
      { name: 'opq/.wh..wh..opq', body: '' },
      { name: 'opq/new', body: 'new\n' },
    ];
    await saveTar(join(dir, 'i.tar'), [busybox([{ name: 'opq/', type: 'directory' }, { name: 'opq/old', body: 'old\n' }]), upper], 'bb:l');
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'i.tar'));
    const script = 'ls /opq; ls /etc/group 2>&1; rm -r /opq; mkdir /opq; ls -a /opq; echo done';
    const run = (o: object) => spawnIsolated('/bin/sh', ['-c', script], { image: { store, ref: 'bb:l' }, timeout: 10_000, ...o });
    const fast = await run({});
    const old = await run({ viewTemplate: false });
    expect(fast.stdout).toBe(old.stdout);
    expect(fast.stdout).toBe('new\nls: /etc/group: No such file or directory\n.\n..\ndone\n');
  }, 60_000);

  it('with CAP_SYS_ADMIN kept (no seccomp): entering its mount namespace again keeps the image as the root; unmounting the root reveals nothing of the host or the template', async () => {
    const dir = scratch('esc');
    await saveTar(join(dir, 'i.tar'), [busybox()], 'bb:e');
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'i.tar'));
    writeFileSync(join(dir, 'host-marker'), 'host\n');
    const r = await spawnIsolated('/bin/sh', ['-c', [
      "nsenter --mount=/proc/self/ns/mnt /bin/sh -c 'ls /; echo INSIDE-END'",
      `umount -l / && echo unmounted; ls / ${dir} /newroot /l 2>&1; echo end`,
    ].join('; ')], { image: { store, ref: 'bb:e' }, capabilities: ['CAP_SYS_ADMIN', 'CAP_SYS_CHROOT'], seccomp: 'none', timeout: 10_000 });
    const [inside, after] = r.stdout.split('INSIDE-END\n');
    expect(inside!.split('\n').filter(Boolean)).toEqual(expect.arrayContaining(['bin', 'dev', 'etc', 'proc', 'sys', 'tmp']));
    expect(inside).not.toMatch(/^(newroot|rw|l)$/m);
    expect(after).toContain('unmounted');
    expect(after).not.toContain('host-marker');
    expect(after).toMatch(/\/newroot: No such file or directory/);
    expect(after).toContain('end');
  }, 60_000);

  it('falls back to a container where the view needs a whole view (a caller mount) and runs the same', async () => {
    const dir = scratch('fallback');
    await saveTar(join(dir, 'i.tar'), [busybox()], 'bb:f');
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(join(dir, 'i.tar'));
    const r = await spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'bb:f' }, mounts: [{ type: 'tmpfs', target: '/scratch' }], uid: 0, timeout: 10_000 });
    expect(r.stdout).toBe('from-image\n/etc\n0\n');
    expect(r.isolation.rootfs).toMatch(/\/merged$/);
    expect(store.containers()).toEqual([]);
    expect(hostMounts(dir)).toEqual([]);
  }, 60_000);
});

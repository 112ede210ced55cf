// LayerStore on the real kernel (issue 4): an OCI layout made by umoci and a docker-save tar
// written here, both from a busybox rootfs, import and run `/bin/sh -c 'echo ok'` through
// spawnIsolated's `image` option (test 4); hostile layers are refused or neutralised with a
// marker outside checked (test 5); containers, commit, reference counts; 8 processes share
// one store (test 7). No nsbox mount or directory may remain.
import { execFileSync, spawn as cpSpawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_COMMAND, LayerStore, NsboxError, OverlayMount, spawnIsolated, readFile } from '../../lib/index.js';
import { noIdmappedLayers, skipReason } from '../helpers/host.js';
import { busyboxEntries, busyboxRootfs, dockerSaveTar, fsSkip, makeTar, ourMounts, PREFIX, readTree, removeScratch, scratch, type TarEntry } from './fs-helpers.js';

const skip = fsSkip();
const hasUmoci = (() => { try { execFileSync('umoci', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

describe.skipIf(skip)('LayerStore', () => {
  it('imports a layer (plain and gzip: same diff id, stored once) with progress, and refuses removal while in use', async () => {
    const root = join(scratch('store'), 'store');
    const store = LayerStore.open(root);
    const tar = await makeTar([{ name: 'a/', type: 'directory' }, { name: 'a/f', body: 'x'.repeat(5 << 20) }, { name: 'b', type: 'link', linkname: 'a/f' }]);
    const seen: number[] = [];
    const l1 = await store.importLayer(Readable.from([tar]), { onProgress: (p) => seen.push(p.bytes) });
    const l2 = await store.importLayer(Readable.from([gzipSync(tar)]));
    expect(l1.diffId).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    expect(l2).toEqual(l1);
    expect(seen.at(-1)).toBe(tar.length);
    expect(seen.length).toBeGreaterThan(1);
    // overlay2 layout: diff, link, l/<link> -> ../<id>/diff
    expect(readFileSync(join(root, l1.id, 'link'), 'utf8')).toBe(l1.link);
    expect(readlinkSync(join(root, 'l', l1.link))).toBe(`../${l1.id}/diff`);
    expect(lstatSync(join(root, l1.id, 'diff/b')).ino).toBe(lstatSync(join(root, l1.id, 'diff/a/f')).ino);
    const child = await store.importLayer(Readable.from([await makeTar([{ name: 'c', body: 'c' }])]), { parent: l1.id });
    expect(readFileSync(join(root, child.id, 'lower'), 'utf8')).toBe(`l/${l1.link}`);
    await expect(store.removeLayer(l1.id)).rejects.toMatchObject({ code: 'EBUSY' });
    await store.removeLayer(child.id);
    await store.removeLayer(l1.id);
    expect(store.layers()).toEqual([]);
    expect(readdirSync(join(root, 'l'))).toEqual([]);
  });

  it('rejects bad arguments synchronously-first, naming the option', async () => {
    const store = LayerStore.open(join(scratch('bad'), 's'));
    expect(() => LayerStore.open('relative')).toThrow(TypeError);
    expect(() => LayerStore.open('/tmp/x', { driver: 'nope' as 'auto' })).toThrow(/options.driver/);
    await expect(store.importLayer(Readable.from([Buffer.alloc(0)]), { parent: 'xyz' })).rejects.toThrow(/options.parent/);
    await expect(store.importImage('rel')).rejects.toThrow(TypeError);
    await expect(store.createContainer('missing:tag')).rejects.toThrow(RangeError);
    await expect(store.createContainer('x', { tmpfsSize: -1 })).rejects.toThrow(/options.tmpfsSize/);
    expect(() => spawnIsolated('/bin/true', [], { image: { store: {}, ref: 'x' } })).toThrow(/options.image.store/);
    expect(() => spawnIsolated('/bin/true', [], { image: { store, ref: '' } })).toThrow(/options.image.ref/);
    expect(() => spawnIsolated('/bin/true', [], { image: { store, ref: 'x', tmpfsSize: 'lots' } })).toThrow(/options.image.tmpfsSize/);
    expect(() => spawnIsolated('/bin/true', [], { image: { store, ref: 'x' }, rootfs: '/tmp' })).toThrow(/options.image/);
    expect(() => spawnIsolated('/bin/true', [], { image: { store, ref: 'no:such' } })).toThrow(/options.image.ref: no image/);
  });

  it.skipIf(!hasUmoci && skipUmoci())('imports an OCI layout made by umoci and runs /bin/sh -c "echo ok" with its config', async () => {
    const dir = scratch('oci');
    const rootfs = busyboxRootfs(join(dir, 'rootfs'));
    const layout = join(dir, 'layout');
    const img = `${layout}:bb`;
    execFileSync('umoci', ['init', '--layout', layout]);
    execFileSync('umoci', ['new', '--image', img]);
    execFileSync('umoci', ['unpack', '--image', img, join(dir, 'bundle')]);
    cpSync(rootfs, join(dir, 'bundle/rootfs'), { recursive: true, verbatimSymlinks: true });
    execFileSync('umoci', ['repack', '--image', img, join(dir, 'bundle')]);
    execFileSync('umoci', ['config', '--image', img, '--config.cmd', '/bin/sh', '--config.cmd', '-c', '--config.cmd', 'echo cmd $FOO; pwd; id -u',
      '--config.env', 'FOO=bar', '--config.workingdir', '/work', '--config.user', 'worker']);
    const store = LayerStore.open(join(dir, 'store'));
    const image = await store.importImage(layout, { name: 'busybox:oci' });
    expect(image.names).toEqual(['busybox:oci']);
    expect(image.config.Env).toContain('FOO=bar');
    expect(image.config.WorkingDir).toBe('/work');
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo ok'], { image: { store, ref: 'busybox:oci' }, timeout: 10_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\n');
    expect(r.exitCode).toBe(0);
    // the image's own command, env, working dir and user
    const r2 = await spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'busybox:oci' }, timeout: 10_000 });
    expect(r2.stdout).toBe('cmd bar\n/work\n1000\n');
    // options override the config
    const r3 = await spawnIsolated(IMAGE_COMMAND, ['/bin/sh', '-c', 'echo $FOO; pwd; id -u'], {
      image: { store, ref: 'busybox:oci' }, env: { FOO: 'mine' }, cwd: '/', uid: 0, timeout: 10_000,
    });
    expect(r3.stdout).toBe('mine\n/\n0\n');
    expect(store.containers()).toEqual([]);
  });

  it('imports a docker-save tar and runs it; a writable tmpfs layer with keep: true stays for inspection', async () => {
    const dir = scratch('docker');
    const file = join(dir, 'image.tar');
    await dockerSaveTar(file);
    const store = LayerStore.open(join(dir, 'store'));
    const image = await store.importImage(file);
    expect(image.names).toEqual(['bb:docker']);
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo ok'], { image: { store, ref: 'bb:docker' }, timeout: 10_000 });
    expect(r.stdout).toBe('ok\n');
    const r2 = await spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'bb:docker', tmpfsSize: '8M' }, timeout: 10_000 });
    expect(r2.stdout).toBe('docker from-docker\n/etc\n');
    // hostname goes to /etc/hostname and /etc/hosts of the init layer
    const r3 = await spawnIsolated('/bin/cat', ['/etc/hostname'], { image: { store, ref: 'bb:docker', keep: true }, hostname: 'box1', timeout: 10_000 });
    expect(r3.stdout).toBe('box1\n');
    const kept = store.containers();
    expect(kept).toHaveLength(1);
    const c = store.container(kept[0]);
    expect(c.mounted).toBe(false);
    await c.remove();
    expect(store.containers()).toEqual([]);
    // the id works as a reference too
    expect(store.image(image.id.slice(7, 19)).id).toBe(image.id);
  });

  it("gives the image's owners to the sandbox: its root owns root's files (idmapped layers), and a commit keeps the image's ids", async (ctx) => {
    const dir = scratch('idmap');
    if (skipReason(!!noIdmappedLayers(), noIdmappedLayers())) return ctx.skip();
    const store = LayerStore.open(join(dir, 'store'));
    const entries: TarEntry[] = [
      ...busyboxEntries().map((e) => ({ ...e, uid: 0, gid: 0 })),
      { name: 'etc/owned-by-root', body: 'r\n', mode: 0o644, uid: 0, gid: 0 },
      { name: 'home/', type: 'directory' },
      { name: 'home/worker/', type: 'directory', uid: 1000, gid: 1000, mode: 0o700 },
      { name: 'home/worker/note', body: 'w\n', mode: 0o600, uid: 1000, gid: 1000 },
    ];
    await dockerSaveTar(join(dir, 'own.tar'), {}, entries, 'own:1');
    await store.importImage(join(dir, 'own.tar'));
    const ref = 'own:1';
    const run = (script: string, o: object = {}) => spawnIsolated('/bin/sh', ['-c', script], { image: { store, ref }, timeout: 10_000, ...o });
    // the sandbox's root owns root's files, the image's uid 1000 owns its own; root writes
    // its own read-only-for-others files (no capability needed: it is their owner)
    const r = await run('/bin/busybox stat -c "%u:%g %n" / /etc/owned-by-root /home/worker; echo more >> /etc/owned-by-root && cat /etc/owned-by-root; /bin/busybox touch /new-in-root && echo made');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('0:0 /\n0:0 /etc/owned-by-root\n1000:1000 /home/worker\nr\nmore\nmade\n');
    const w = await run('cat /home/worker/note', { uid: 1000, gid: 1000 });
    expect([w.stdout, w.stderr]).toEqual(['w\n', '']);
    // a kept container's diff has the ids inside, not the host's shifted ones
    const k = await run('echo x > /home/worker/added', { image: { store, ref, keep: true }, uid: 1000, gid: 1000 });
    expect(k.stderr).toBe('');
    const c = store.container(store.containers()[0]);
    expect(c.idmap?.uidMap[0]).toMatchObject({ inside: 0, count: 65536 });
    const hostUid = c.idmap!.uidMap[0].outside;
    expect(lstatSync(join(c.upperDir, 'home/worker/added')).uid).toBe(hostUid + 1000);
    const committed = await c.commit({ name: 'own:2' });
    await c.remove();
    // a container keeps the maps (or none) of its first mount: its upper dir holds files so
    const plain = await store.createContainer(ref, { name: 'plain' });
    plain.mount();
    plain.unmount();
    plain.mount({ idmap: c.idmap ?? { uidMap: [{ inside: 0, outside: hostUid, count: 65536 }], gidMap: [{ inside: 0, outside: hostUid, count: 65536 }] } });
    expect([plain.idmap, store._mounted().get(plain.id)?.idmapped]).toEqual([undefined, false]);
    await plain.remove();
    const c2 = await store.createContainer('own:2');
    const m2 = c2.mount(); // not idmapped: the layer's own ids, as a tar would carry them
    expect([lstatSync(join(m2, 'home/worker/added')).uid, lstatSync(join(m2, 'etc/owned-by-root')).uid]).toEqual([1000, 0]);
    c2.unmount();
    await c2.remove();
    expect(committed.layers).toHaveLength(2);
  });

  it('createContainer / mount / changes / commit / remove, with reference counts', async () => {
    const dir = scratch('commit');
    const file = join(dir, 'image.tar');
    await dockerSaveTar(file);
    const store = LayerStore.open(join(dir, 'store'));
    await store.importImage(file);
    const c = await store.createContainer('bb:docker', { name: 'c1', hostname: 'h1' });
    const merged = c.mount();
    expect(c.mount()).toBe(merged); // idempotent
    expect(readFileSync(join(merged, 'etc/hostname'), 'utf8')).toBe('h1\n');
    expect(readFileSync(join(merged, 'etc/hosts'), 'utf8')).toContain('h1');
    expect(lstatSync(join(merged, 'proc')).isDirectory()).toBe(true);
    writeFileSync(join(merged, 'etc/added'), 'new');
    execFileSync('rm', [join(merged, 'bin/ls')]);
    expect(c.changes()).toEqual([{ path: '/bin/ls', kind: 'deleted' }, { path: '/etc/added', kind: 'added' }]);
    await expect(store.createContainer('bb:docker', { name: 'c1' })).rejects.toMatchObject({ code: 'EEXIST' });
    const img2 = await c.commit({ name: 'bb:committed', config: { Cmd: ['/bin/cat', '/etc/added'] } });
    expect(img2.layers).toHaveLength(2);
    expect(img2.config.Cmd).toEqual(['/bin/cat', '/etc/added']);
    await expect(store.removeImage('bb:docker')).rejects.toMatchObject({ code: 'EBUSY' });
    c.unmount();
    await c.remove();
    expect(existsSync(join(store.root, c.id))).toBe(false);
    // the committed image has the change (and not the init layer's files)
    const c2 = await store.createContainer('bb:committed');
    const m2 = c2.mount();
    expect(existsSync(join(m2, 'bin/ls'))).toBe(false);
    expect(readFileSync(join(m2, 'etc/added'), 'utf8')).toBe('new');
    expect(readFileSync(join(m2, 'etc/hostname'), 'utf8')).toBe('nsbox\n');
    const r = await spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'bb:committed' }, timeout: 10_000 });
    expect(r.stdout).toBe('new');
    await c2.remove();
    // the base image's layer is still used by the committed image
    await store.removeImage('bb:docker');
    expect(store.layers()).toHaveLength(2);
    await store.removeImage('bb:committed');
    expect(store.layers()).toEqual([]);
    expect(readdirSync(store.root).filter((n) => n !== 'l' && !n.startsWith('nsbox-store'))).toEqual([]);
    expect(readdirSync(join(store.root, 'l'))).toEqual([]);
  });

  it('mounts containers with mount(2) and the l/ short links when told to (the fallback driver)', async () => {
    const dir = scratch('legacy');
    const file = join(dir, 'image.tar');
    await dockerSaveTar(file);
    const store = LayerStore.open(join(dir, 'store'), { driver: 'mount' });
    await store.importImage(file);
    const c = await store.createContainer('bb:docker');
    const merged = c.mount();
    const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(merged))!;
    expect(line).toMatch(/lowerdir=l\/[A-Z2-7]{12}:l\/[A-Z2-7]{12},upperdir=[0-9a-f]{64}\/diff,workdir=[0-9a-f]{64}\/work/);
    expect(readFileSync(join(merged, 'etc/passwd'), 'utf8')).toContain('root:x:0:0');
    writeFileSync(join(merged, 'etc/x'), 'x');
    expect(c.changes()).toEqual([{ path: '/etc/x', kind: 'added' }]);
    const r = await spawnIsolated('/bin/cat', ['/etc/passwd'], { image: { store, ref: 'bb:docker' }, timeout: 10_000 });
    expect(r.stdout).toContain('root:x:0:0');
    await c.remove();
    expect(store.containers()).toEqual([]);
  });

  it('refuses or neutralises hostile layers; nothing outside the store is written', async () => {
    const dir = scratch('hostile');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'marker'), 'untouched');
    const before = readTree(dir, true);
    const store = LayerStore.open(join(dir, 'store'));
    const rel = outside.slice(1);
    const cases: Array<[string, TarEntry[], 'refused' | 'ok']> = [
      ['../ entry', [{ name: '../../../../../../' + rel + '/marker', body: 'pwned' }], 'refused'],
      ['a/../../ entry', [{ name: 'a/../../x', body: 'pwned' }], 'refused'],
      ['absolute symlink + file through it', [{ name: 'evil', type: 'symlink', linkname: outside }, { name: 'evil/marker', body: 'pwned' }], 'refused'],
      ['symlink to / + file through it', [{ name: 'up', type: 'symlink', linkname: '/' }, { name: `up/${rel}/marker`, body: 'pwned' }], 'ok'],
      ['relative symlink climbing out', [{ name: 'd/', type: 'directory' }, { name: 'd/l', type: 'symlink', linkname: '../../../../../../../..' + outside }, { name: 'd/l/marker', body: 'pwned' }], 'refused'],
      ['hardlink to outside (..)', [{ name: 'hl', type: 'link', linkname: '../../../../../../' + rel + '/marker' }], 'refused'],
      ['hardlink to an absolute host path', [{ name: 'hl', type: 'link', linkname: `${outside}/marker` }], 'refused'],
      ['hardlink through a symlink', [{ name: 's', type: 'symlink', linkname: outside }, { name: 'hl', type: 'link', linkname: 's/marker' }], 'refused'],
      ['/dev symlink + device node', [{ name: 'dev', type: 'symlink', linkname: '/dev' }, { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }], 'refused'],
      ['/dev symlink + file through it', [{ name: 'dev', type: 'symlink', linkname: '/dev' }, { name: 'dev/null', body: 'x' }], 'refused'],
      ['char device', [{ name: 'mem', type: 'character-device', devmajor: 1, devminor: 1 }], 'refused'],
      ['whiteout named ..', [{ name: 'a/.wh...', body: '' }], 'refused'],
    ];
    for (const [what, entries, expected] of cases) {
      const p = store.importLayer(Readable.from([await makeTar(entries)]));
      if (expected === 'refused') {
        const err = await p.then(() => null, (e) => e);
        expect(err, what).toBeInstanceOf(NsboxError);
        expect((err as NsboxError).step, what).toBe('import');
      } else {
        const l = await p;
        // neutralised: the file landed inside the layer
        expect(readFileSync(join(store.layerPath(l.id), rel, 'marker'), 'utf8'), what).toBe('pwned');
        await store.removeLayer(l.id);
      }
    }
    expect(readFileSync(join(outside, 'marker'), 'utf8')).toBe('untouched');
    const after = readTree(dir, true);
    for (const k of Object.keys(after)) if (k.startsWith('store')) delete after[k];
    for (const k of Object.keys(before)) if (k.startsWith('store')) delete before[k];
    expect(after).toEqual(before);
    expect(readdirSync(store.root).filter((n) => n.startsWith('nsbox-tmp'))).toEqual([]);
    // an image whose /dev is a symlink to the host's /dev still gets a real /dev directory
    const layer = await makeTar([...busyboxEntries(), { name: 'dev', type: 'symlink', linkname: '/dev' }]);
    const c = join(dir, 'img.tar');
    const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
    const cfg = JSON.stringify({ os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } });
    writeFileSync(c, await makeTar([{ name: 'l.tar', body: layer }, { name: 'c.json', body: cfg }, { name: 'manifest.json', body: JSON.stringify([{ Config: 'c.json', RepoTags: ['devlink:1'], Layers: ['l.tar'] }]) }]));
    await store.importImage(c);
    const r = await spawnIsolated('/bin/sh', ['-c', 'ls /dev/null && echo fine'], { image: { store, ref: 'devlink:1' }, timeout: 10_000 });
    expect(r.stdout).toContain('fine');
  });

  describe('shared by 8 processes', () => {
    let bundle = '';
    beforeAll(async () => {
      const { build } = await import('esbuild');
      bundle = join(scratch('bundle'), 'fs.mjs');
      await build({ entryPoints: [resolve('lib/fs/index.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent',
        banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } });
    });

    it('imports, creates and removes containers at once without corruption; nothing remains', async () => {
      const dir = scratch('conc');
      const image = join(dir, 'image.tar');
      await dockerSaveTar(image);
      const root = join(dir, 'store');
      const addon = process.env.NSBOX_ADDON ?? realpathSync('build/Release/nsbox.node');
      const script = `
        import { LayerStore } from ${JSON.stringify(bundle)};
        import { Readable } from 'node:stream';
        import { writeFileSync, readFileSync } from 'node:fs';
        import { join } from 'node:path';
        const [root, image, n] = process.argv.slice(2);
        const store = LayerStore.open(root);
        const img = await store.importImage(image);
        const out = [];
        for (let i = 0; i < 3; i++) {
          const c = await store.createContainer(img.id, { name: 'c' + n + '-' + i });
          const m = c.mount();
          writeFileSync(join(m, 'etc/who'), n);
          if (readFileSync(join(m, 'etc/who'), 'utf8') !== n) throw new Error('crossed');
          const shared = ${JSON.stringify(await makeTar([{ name: 'shared', body: 'same' }]))}.data;
          const l = await store.importLayer(Readable.from([Buffer.from(shared)]), { parent: img.layers[0] });
          const mine = await store.importLayer(Readable.from([Buffer.from('pid ' + n + ' ' + i)]).pipe(new (await import('node:stream')).PassThrough()), {}).catch((e) => ({ err: e.code }));
          out.push(l.id);
          await c.remove();
        }
        process.stdout.write(JSON.stringify(out));
      `;
      const scriptFile = join(dir, 'child.mjs');
      writeFileSync(scriptFile, script);
      const runs = await Promise.all(Array.from({ length: 8 }, (_, n) => new Promise<{ code: number | null; out: string; err: string }>((res) => {
        const p = cpSpawn(process.execPath, [scriptFile, root, image, String(n)], { env: { ...process.env, NSBOX_ADDON: addon } });
        let out = '', err = '';
        p.stdout.on('data', (c) => (out += c));
        p.stderr.on('data', (c) => (err += c));
        p.on('close', (code) => res({ code, out, err }));
      })));
      for (const r of runs) expect(r.err + r.code).toBe('0');
      const ids = new Set(runs.flatMap((r) => JSON.parse(r.out) as string[]));
      expect(ids.size).toBe(1); // the same content on the same parent is one layer
      const store = LayerStore.open(root);
      expect(store.containers()).toEqual([]);
      expect(store.images()).toHaveLength(1);
      const layers = store.layers();
      expect(layers).toHaveLength(2);
      for (const l of layers) {
        expect(readlinkSync(join(root, 'l', l.link))).toBe(`../${l.id}/diff`);
        expect(readFileSync(join(root, l.id, 'link'), 'utf8')).toBe(l.link);
      }
      // every entry of the root is a known layer, l/, or the metadata and its lock
      const known = new Set(['l', 'nsbox-store.json', 'nsbox-store.lock', ...layers.map((l) => l.id)]);
      expect(readdirSync(root).filter((n) => !known.has(n))).toEqual([]);
      expect(readdirSync(join(root, 'l')).sort()).toEqual(layers.map((l) => l.link).sort());
      // the stored files are intact
      const c = await store.createContainer('bb:docker');
      const r = await readFile(c.mount(), 'etc/passwd');
      expect(r.toString()).toContain('root:x:0:0');
      await c.remove();
      await store.removeImage('bb:docker');
      for (const l of store.layers()) await store.removeLayer(l.id);
      expect(readdirSync(root).filter((n) => !['l', 'nsbox-store.json', 'nsbox-store.lock'].includes(n))).toEqual([]);
    });
  });
});

function skipUmoci(): boolean {
  console.warn('SKIPPED: the OCI layout test needs umoci (apt-get install umoci)');
  return true;
}

export { PREFIX };

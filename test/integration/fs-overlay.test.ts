// OverlayMount on the real kernel: whiteouts and opaque dirs with the new mount API and with the
// mount(2) fallback (issue 4, test 1), 200 layers (test 2), changes() and exportDiff ->
// extract -> mount round trip (test 3). Nothing may stay mounted.
import { chownSync, createWriteStream, createReadStream, mkdirSync, statSync, renameSync, rmSync, writeFileSync, appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { OverlayMount } from '../../lib/fs/index.js';
import { extractLayer } from '../../lib/fs/extract.js';
import { NsboxError } from '../../lib/errors.js';
import { noIdmappedLayers, skipReason } from '../helpers/host.js';
import { fsSkip, ourMounts, readTree, removeScratch, scratch, writeTree } from './fs-helpers.js';

const skip = fsSkip();
/** Whether this kernel's overlayfs takes `lowerdir+` (Linux 6.8). */
function lowerdirPlus(): boolean {
  const [maj = 0, min = 0] = (release().match(/^(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
  return maj > 6 || (maj === 6 && min >= 8);
}

afterEach(() => {
  expect(ourMounts()).toEqual([]);
  removeScratch();
});

function threeLayers(root: string) {
  const bottom = join(root, 'l3'), middle = join(root, 'l2'), top = join(root, 'l1');
  writeTree(bottom, { a: { file1: 'one', file2: 'two' }, dir: { old1: 'old', sub: { deep: 'd' } }, keep: 'k' });
  // the middle layer deletes a/file1 (whiteout) and replaces dir (opaque) with new content
  writeTree(middle, { a: { file1: null }, dir: { '.opaque': 'y', new2: 'new' }, keep: 'k2' });
  writeTree(top, { c: 'top', a: { file3: 'three' } });
  return [top, middle, bottom];
}

describe.skipIf(skip)('OverlayMount', () => {
  for (const driver of ['fsopen', 'mount'] as const) {
    it(`merges three layers with a whiteout and an opaque dir (${driver})`, () => {
      const root = scratch('three');
      const lower = threeLayers(root);
      const target = join(root, 'merged');
      mkdirSync(target);
      const m = OverlayMount.mount({ lower, target, driver });
      try {
        expect(m.driver).toBe(driver);
        expect(m.readonly).toBe(true);
        expect(readTree(target)).toEqual({
          a: 'dir', 'a/file2': `file:${Buffer.from('two').toString('base64')}`, 'a/file3': `file:${Buffer.from('three').toString('base64')}`,
          c: `file:${Buffer.from('top').toString('base64')}`,
          dir: 'dir', 'dir/new2': `file:${Buffer.from('new').toString('base64')}`,
          keep: `file:${Buffer.from('k2').toString('base64')}`,
        });
        const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(target))!;
        expect(line).toMatch(/ - overlay nsbox-overlay /);
        expect(line).toMatch(/ ro[ ,]/);
      } finally {
        m.unmount();
      }
      expect(m.mounted).toBe(false);
      m.unmount(); // idempotent
    });
  }

  it('mounts 200 lower layers, past the one-page option limit of mount(2) with full paths', () => {
    const root = scratch('many');
    const lower: string[] = [];
    for (let i = 0; i < 200; i++) {
      // long names: the full-path option string would be ~200 * 80 bytes
      const d = join(root, `layer-${String(i).padStart(3, '0')}-${'x'.repeat(60)}`);
      writeTree(d, { [`f${i}`]: String(i), shared: `from ${i}` });
      lower.unshift(d); // top first: the last made is on top
    }
    expect(lower.join(':').length).toBeGreaterThan(4096);
    const target = join(root, 'merged');
    mkdirSync(target);
    for (const driver of ['fsopen', 'mount'] as const) {
      if (driver === 'fsopen' && !lowerdirPlus()) {
        // no lowerdir+ (before 6.8) and far past one fsconfig string: the new API alone cannot
        expect(() => OverlayMount.mount({ lower, target, driver })).toThrow(/lowerdir\+ \(Linux 6\.8\)/);
        continue;
      }
      const m = OverlayMount.mount({ lower, target, driver });
      try {
        expect(m.driver).toBe(driver);
        const t = readTree(target);
        expect(Object.keys(t).length).toBe(201);
        expect(readFileSync(join(target, 'shared'), 'utf8')).toBe('from 199');
        expect(readFileSync(join(target, 'f0'), 'utf8')).toBe('0');
      } finally {
        m.unmount();
      }
    }
  });

  it('rejects bad options before mounting anything', () => {
    const root = scratch('bad');
    const l = join(root, 'l');
    mkdirSync(l);
    expect(() => OverlayMount.mount({ lower: [], target: root })).toThrow(/options.lower/);
    expect(() => OverlayMount.mount({ lower: ['rel'], target: root })).toThrow(TypeError);
    expect(() => OverlayMount.mount({ lower: [l], target: join(root, 'missing') })).toThrow(/options.target/);
    expect(() => OverlayMount.mount({ lower: [l], upper: l, target: root })).toThrow(/options.work/);
    expect(() => OverlayMount.mount({ lower: [l], target: root, driver: 'x' as 'auto' })).toThrow(/options.driver/);
    expect(() => OverlayMount.mount({ lower: [l], target: root, readonly: false })).toThrow(/options.readonly/);
    expect(() => OverlayMount.mount({ lower: [l], target: root, bogus: 1 } as never)).toThrow(/bogus/);
    expect(() => OverlayMount.mount({ lower: [l], target: root, idmap: { uidMap: [], gidMap: [] } })).toThrow(/options.idmap.uidMap/);
    expect(() => OverlayMount.mount({ lower: [l], target: root, idmap: { uidMap: [{ inside: 0, outside: -1, count: 1 }], gidMap: [{ inside: 0, outside: 1, count: 1 }] } })).toThrow(RangeError);
    expect(ourMounts()).toEqual([]);
  });

  it('idmap: the layers show shifted owners, new files land under the shifted ids, exportDiff maps them back', async (ctx) => {
    const root = scratch('idmap');
    const base = join(root, 'base'), upper = join(root, 'upper'), work = join(root, 'work'), target = join(root, 'merged');
    writeTree(base, { etc: { conf: 'v1' }, home: { u: { note: 'n' } } });
    chownSync(join(base, 'home/u'), 1000, 1000);
    chownSync(join(base, 'home/u/note'), 1000, 1000);
    for (const d of [upper, work, target]) mkdirSync(d);
    const H = 0x6fff0000;
    const idmap = { uidMap: [{ inside: 0, outside: H, count: 65536 }], gidMap: [{ inside: 0, outside: H, count: 65536 }] };
    if (skipReason(!!noIdmappedLayers(), noIdmappedLayers())) return ctx.skip();
    const m = OverlayMount.mount({ lower: [base], upper, work, target, idmap });
    try {
      expect(m.idmapped).toBe(true);
      expect([statSync(target).uid, statSync(join(target, 'etc/conf')).uid, statSync(join(target, 'home/u/note')).gid]).toEqual([H, H, H + 1000]);
      writeFileSync(join(target, 'home/u/new'), 'x');
      chownSync(join(target, 'home/u/new'), H + 1000, H + 1000); // as the sandbox's uid 1000 would make it
      expect(statSync(join(upper, 'home/u/new')).uid).toBe(H + 1000);
      const tarPath = join(root, 'diff.tar');
      await m.exportDiff(createWriteStream(tarPath));
      const layer = join(root, 'layer');
      mkdirSync(layer);
      await extractLayer(createReadStream(tarPath), layer);
      expect([statSync(join(layer, 'home/u/new')).uid, statSync(join(layer, 'home/u')).uid]).toEqual([1000, 1000]);
    } finally {
      m.unmount();
    }
  });

  it('turns a kernel refusal into an NsboxError with the kernel message, leaving nothing mounted', () => {
    const root = scratch('kerr');
    const l = join(root, 'l'), u = join(root, 'u'), w = join(root, 'u', 'w');
    writeTree(l, { x: 'x' });
    mkdirSync(w, { recursive: true }); // work inside upper: overlayfs refuses
    for (const driver of ['fsopen', 'mount'] as const) {
      let err: unknown;
      try { OverlayMount.mount({ lower: [l], upper: u, work: w, target: root, driver }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).step).toBe('overlay');
      expect((err as NsboxError).code).toBe(driver === 'fsopen' ? 'EINVAL' : 'EINVAL');
    }
  });

  it('changes() lists writes, deletes and renames; exportDiff -> extract -> mount gives the same tree', async () => {
    const root = scratch('rt');
    const base = join(root, 'base'), upper = join(root, 'upper'), work = join(root, 'work'), target = join(root, 'merged');
    writeTree(base, { etc: { conf: 'v1', gone: 'bye', old: 'renamed' }, usr: { bin: { tool: '#!/bin/sh\n' } }, data: { a: 'a', b: 'b' }, link: { symlink: 'etc/conf' } });
    for (const d of [upper, work, target]) mkdirSync(d);
    const m = OverlayMount.mount({ lower: [base], upper, work, target });
    let tree: Record<string, string>;
    try {
      expect(m.readonly).toBe(false);
      writeFileSync(join(target, 'new-file'), 'hello');            // added
      appendFileSync(join(target, 'etc/conf'), '+v2');             // modified
      rmSync(join(target, 'etc/gone'));                            // deleted
      renameSync(join(target, 'etc/old'), join(target, 'etc/new')); // deleted + added
      rmSync(join(target, 'data'), { recursive: true });           // deleted dir
      mkdirSync(join(target, 'data'));                              // ... made again: opaque
      writeFileSync(join(target, 'data/c'), 'c');
      expect(m.changes()).toEqual([
        { path: '/data/a', kind: 'deleted' },
        { path: '/data/b', kind: 'deleted' },
        { path: '/data/c', kind: 'added' },
        { path: '/etc/conf', kind: 'modified' },
        { path: '/etc/gone', kind: 'deleted' },
        { path: '/etc/new', kind: 'added' },
        { path: '/etc/old', kind: 'deleted' },
        { path: '/new-file', kind: 'added' },
      ]);
      tree = readTree(target, true);
      const tarPath = join(root, 'diff.tar');
      await m.exportDiff(createWriteStream(tarPath));
      // round trip: a fresh layer from the tar, under a new mount, shows the same tree
      const layer = join(root, 'layer');
      mkdirSync(layer);
      const r = await extractLayer(createReadStream(tarPath), layer);
      expect(r.diffId).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(r.size).toBe(readFileSync(tarPath).length);
      const t2 = join(root, 'merged2');
      mkdirSync(t2);
      const m2 = OverlayMount.mount({ lower: [layer, base], target: t2 });
      try {
        expect(readTree(t2, true)).toEqual(tree);
      } finally {
        m2.unmount();
      }
    } finally {
      m.unmount();
    }
  });
});

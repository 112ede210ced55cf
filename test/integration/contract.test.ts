// Issue 13, items 3, 7, 8, 9 and 13: IsolatedProcess keeps child_process's contract ('error' and
// 'close', killed, spawnfile/spawnargs, negative errno, Buffer types), `all` in write order, a
// default stdin that ends, ImageInfo as an image reference, CIDR sandbox addresses and overlay
// upper/work directories made on demand. Real kernel, root.
import { describe, it, expect, expectTypeOf, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import {
  spawnIsolated, prepareIsolated, NsboxError, IMAGE_COMMAND, LayerStore, OverlayMount, Bridge, type ImageInfo,
} from '../../lib/index.js';
import { errnoError } from '../../lib/errors.js';
import { isRoot, skipReason } from '../helpers/host.js';

const DIST = new URL('../../dist/index.js', import.meta.url).pathname;
const MKIMAGE = new URL('../../examples/mini-docker/make-busybox-image.sh', import.meta.url).pathname;
const sh = (script: string, o: Parameters<typeof spawnIsolated>[2] = {}) => spawnIsolated('/bin/sh', ['-c', script], o);

/** Runs an ES module snippet as the first spawn of a fresh Node process (against dist/). */
function fresh(body: string, timeout = 30_000): { code: number | null; out: string; err: string } {
  const code = `import * as m from ${JSON.stringify(DIST)};\n${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const noRoot = skipReason(!isRoot, 'contract integration tests need root (sandboxes, bridges, overlay mounts)');

describe.skipIf(noRoot)('item 3: a setup failure in event-style use', () => {
  it("emits 'error' then 'close' (no 'exit'), as ChildProcess does, in a fresh process", () => {
    const r = fresh(`
      const ev = [];
      const p = m.spawnIsolated('/no/such');
      p.on('exit', () => ev.push('exit'));
      p.on('error', (e) => ev.push(['error', e.name, e.code, e.errno, e.step, p.pid, p.exitCode].join(' ')));
      p.on('close', (c, s) => { ev.push('close ' + c + ' ' + s); setTimeout(() => console.log(JSON.stringify(ev)), 50); });
    `);
    expect(r.err).toBe('');
    expect(JSON.parse(r.out)).toEqual(['error NsboxError ENOENT -2 exec  -2', 'close -2 null']);
    expect(r.code).toBe(0);
  });

  it("nobody listens and nobody awaits: the 'error' is thrown, as child_process's is", () => {
    const r = fresh(`m.spawnIsolated('/no/such').on('exit', () => console.log('exit'));`);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/Unhandled 'error' event/);
    expect(r.err).toMatch(/NsboxError: execve failed at step 'exec' \(\/no\/such\): ENOENT/);
  });

  it('a caller who awaits (and has no error listener) gets the rejection and is never crashed', () => {
    const r = fresh(`
      const p = m.spawnIsolated('/no/such');
      p.on('exit', () => console.log('exit'));
      p.on('close', (c) => console.log('close', c));
      try { await p; } catch (e) { console.log('caught', e.code); }
      await new Promise((r) => setTimeout(r, 100));
      // a rejected promise and no unhandled rejection either: p.catch() is enough
      m.spawnIsolated('/no/such/either').catch((e) => console.log('catch', e.code));
      await new Promise((r) => setTimeout(r, 100));
      console.log('alive');
    `);
    expect(r.err).toBe('');
    expect(r.out.split('\n')).toEqual(['caught ENOENT', 'close -2', 'catch ENOENT', 'alive', '']);
    expect(r.code).toBe(0);
  });

  it("an abort before the start is an 'error' too, and its streams end", async () => {
    const p = spawnIsolated('/bin/true', [], { signal: AbortSignal.abort() });
    const seen: string[] = [];
    p.stdout!.on('end', () => seen.push('stdout end'));
    p.stdout!.resume();
    const done = new Promise<void>((res) => p.on('close', (c, s) => { seen.push(`close ${c} ${s}`); res(); }));
    p.on('error', (e) => seen.push(`error ${e.name}`));
    await done;
    expect(seen).toEqual(['stdout end', 'error AbortError', 'close null null']);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe.skipIf(noRoot)("item 7: ChildProcess's names", () => {
  it("killed, spawnfile, spawnargs, and 'close' (code, signal) after 'exit' and the streams' end", async () => {
    const p = sh('echo ready; exec sleep 30');
    expect(p.spawnfile).toBe('/bin/sh');
    expect(p.spawnargs).toEqual(['/bin/sh', '-c', 'echo ready; exec sleep 30']);
    expect(p.killed).toBe(false);
    const events: string[] = [];
    p.on('exit', (c, s) => events.push(`exit ${c} ${s}`));
    p.stdout!.on('end', () => events.push('stdout end'));
    p.stderr!.on('end', () => events.push('stderr end'));
    const closed = new Promise<void>((res) => p.on('close', (c, s) => { events.push(`close ${c} ${s}`); res(); }));
    await new Promise<void>((res) => p.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) res(); }));
    expect(p.kill('SIGTERM')).toBe(true);
    expect(p.killed).toBe(true);
    await closed;
    // the streams may end before or after the reap; 'close' comes after both, as ChildProcess's
    expect(events.slice(0, 3).sort()).toEqual(['exit null SIGTERM', 'stderr end', 'stdout end']);
    expect(events[3]).toBe('close null SIGTERM');
    expect(p.exitCode).toBe(null);
    expect(p.signalCode).toBe('SIGTERM');
    expect(p.kill()).toBe(false); // gone: nothing delivered
    const q = spawnIsolated('/bin/true');
    await q;
    expect(q.killed).toBe(false);
    expect(q.exitCode).toBe(0);
  });

  it("errno is negative, as on Node's SystemError (addon and TypeScript errors alike)", async () => {
    const nodeErr = (await access('/no/such').catch((e: unknown) => e)) as NodeJS.ErrnoException;
    const err = (await spawnIsolated('/no/such').catch((e: unknown) => e)) as NsboxError;
    expect(err).toBeInstanceOf(NsboxError);
    expect(err.code).toBe('ENOENT');
    expect(err.errno).toBe(nodeErr.errno);
    expect(err.errno).toBe(-2);
    expect(errnoError(13, 'x', 'open').errno).toBe(-13);
    expect(new NsboxError('m', { code: 'EPERM', errno: -1 }).errno).toBe(-1);
  });

  it("encoding: 'buffer' gives Buffers, in the types too", async () => {
    const b = await spawnIsolated('/bin/echo', ['x'], { encoding: 'buffer' });
    expectTypeOf(b.stdout).toEqualTypeOf<Buffer>();
    expectTypeOf(b.stderr).toEqualTypeOf<Buffer>();
    expect(Buffer.isBuffer(b.stdout)).toBe(true);
    expect(b.stdout.toString()).toBe('x\n');
    // @ts-expect-error a Buffer is not a string
    const wrong: string = b.stdout;
    expect(typeof wrong).toBe('object');
    const s = await spawnIsolated('/bin/echo', ['x']);
    expectTypeOf(s.stdout).toEqualTypeOf<string>();
    expect(s.stdout).toBe('x\n');
    const opts = { encoding: 'utf8' as const };
    expectTypeOf(spawnIsolated('/bin/true', [], opts)).resolves.toHaveProperty('stdout').toEqualTypeOf<string>();
  });
});

describe.skipIf(noRoot)('item 8: all is in write order', () => {
  it('echo a; echo b >&2; echo c gives a b c, 200 times out of 200', async () => {
    const wrong: string[] = [];
    for (let i = 0; i < 200; i += 4) {
      const rs = await Promise.all([0, 1, 2, 3].map(() => sh('echo a; echo b >&2; echo c', { all: true })));
      for (const r of rs) if (r.all !== 'a\nb\nc\n') wrong.push(JSON.stringify(r.all));
    }
    expect(wrong).toEqual([]);
    // the first spawn of a fresh process, and a prepared sandbox's run, too
    const f = fresh(`const r = await m.spawnIsolated('/bin/sh', ['-c', 'echo a; echo b >&2; echo c'], { all: true }); console.log(JSON.stringify([r.all, r.stdout, r.stderr]));`);
    expect(f.err).toBe('');
    expect(JSON.parse(f.out)).toEqual(['a\nb\nc\n', '', '']);
    const prepared = await prepareIsolated({ all: true });
    const r = await prepared.run('/bin/sh', ['-c', 'echo a; echo b >&2; echo c']);
    expect([r.all, prepared.process.stdout]).toEqual(['a\nb\nc\n', null]);
  });

  it('a long interleaving keeps its order; stdout and stderr are then one channel', async () => {
    const p = sh('i=0; while [ $i -lt 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done', { all: true });
    expect(p.stdout).toBe(null);
    expect(p.stderr).toBe(null);
    let streamed = '';
    p.all!.on('data', (c: Buffer) => { streamed += c.toString(); });
    const r = await p;
    const want = Array.from({ length: 300 }, (_, i) => `o${i}\ne${i}\n`).join('');
    expect(r.all).toBe(want);
    expect(streamed).toBe(want);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    // without `all` they stay apart
    const apart = await sh('echo o; echo e >&2');
    expect([apart.stdout, apart.stderr, apart.all]).toEqual(['o\n', 'e\n', undefined]);
  });

  it('a single 4 MiB write to stderr arrives whole (the program sees a stream, not datagrams)', async () => {
    const r = await spawnIsolated('/usr/bin/python3', ['-c', 'import os\nn = os.write(2, b"x" * (4 << 20))\nos.write(1, b"wrote %d" % n)'], { all: true });
    expect(r.exitCode).toBe(0);
    expect(r.all!.length).toBe((4 << 20) + 'wrote 4194304'.length);
    expect(r.all!.endsWith('xwrote 4194304')).toBe(true);
    expect(/^x+wrote/.test(r.all!)).toBe(true);
  });

  it('outputBytes counts the one channel, and stdout piped alone with all still works', async () => {
    const cut = await sh('yes | head -c 100000; yes e | head -c 100000 >&2', { all: true, limits: { outputBytes: 1000 }, onOutputLimit: 'truncate' });
    expect(cut.truncated).toBe(true);
    expect(cut.all!.length).toBe(1000);
    const half = await sh('echo o; echo e >&2', { all: true, stdio: ['pipe', 'pipe', 'ignore'] });
    expect([half.all, half.stdout]).toEqual(['o\n', 'o\n']);
  });
});

describe.skipIf(noRoot)('item 9: stdin nobody gave ends', () => {
  it('cat without input finishes with empty output, also as the first spawn of a fresh process', async () => {
    const r = await spawnIsolated('/bin/cat', [], { timeout: 10_000 });
    expect(r.verdict).toBe('exited');
    expect(r.stdout).toBe('');
    const f = fresh(`const r = await m.spawnIsolated('/bin/cat', [], { timeout: 10000 }); console.log(r.verdict, JSON.stringify(r.stdout));`);
    expect(f.err).toBe('');
    expect(f.out).toBe('exited ""\n');
  });

  it('stdin stays open when the caller writes in the same tick, pipes into it, or asks for it with stdio', async () => {
    const a = spawnIsolated('/bin/cat', [], { timeout: 10_000 });
    a.stdin!.write('same tick ');
    setTimeout(() => a.stdin!.end('later'), 100);
    expect((await a).stdout).toBe('same tick later');
    const b = spawnIsolated('/bin/cat', [], { stdio: 'pipe', timeout: 10_000 });
    setTimeout(() => b.stdin!.end('explicit pipe'), 100);
    expect((await b).stdout).toBe('explicit pipe');
    const c = spawnIsolated('/bin/cat', [], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 100));
    c.stdin!.end('array form');
    expect((await c).stdout).toBe('array form');
    const d = spawnIsolated('/bin/cat', [], { input: 'input', timeout: 10_000 });
    expect((await d).stdout).toBe('input');
  });

  it('a write after nsbox ended the default stdin is an error that says what to do', async () => {
    const p = spawnIsolated('/bin/cat', [], { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 50));
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      p.stdin!.once('error', resolve);
      p.stdin!.write('late');
    });
    expect(err.code).toBe('ERR_STREAM_WRITE_AFTER_END');
    expect(err.message).toMatch(/stdio: 'pipe'/);
    expect((await p).stdout).toBe('');
  });

  it("a prepared sandbox's run without input ends stdin too", async () => {
    const prepared = await prepareIsolated({ timeout: 10_000 });
    const r = await prepared.run('/bin/cat');
    expect(r.verdict).toBe('exited');
    expect(r.stdout).toBe('');
  });
});

const noBusybox = noRoot || skipReason(spawnSync('sh', ['-c', 'command -v busybox']).status !== 0, 'image tests need busybox on the host to build the image');

describe.skipIf(noBusybox)('items 9 and 13: a busybox image', () => {
  let dir: string;
  let store: LayerStore;
  let info: ImageInfo;
  beforeAll(async () => {
    dir = mkdtempSync(`/tmp/nsbox-contract-${process.pid}-`);
    chmodSync(dir, 0o711);
    const tar = join(dir, 'busybox.tar');
    expect(spawnSync('sh', [MKIMAGE, tar]).status).toBe(0);
    store = LayerStore.open(join(dir, 'store'));
    info = await store.importImage(tar);
  });
  afterAll(async () => {
    for (const n of store?.containers() ?? []) await store.container(n).remove().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('importImage returns an ImageInfo', () => {
    expect(info.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(info.names).toEqual(['busybox:latest']);
    expect(info.config.Cmd).toEqual(['/bin/sh']);
  });

  it("the image's own command (Cmd /bin/sh reading stdin) finishes without input", async () => {
    const p = spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'busybox:latest' }, timeout: 20_000 });
    const r = await p;
    expect(r.verdict).toBe('exited');
    expect(r.exitCode).toBe(0);
    expect(p.spawnfile).toBe('/bin/sh');
    expect(p.spawnargs).toEqual(['/bin/sh']);
    const fed = await spawnIsolated(IMAGE_COMMAND, [], { image: { store, ref: 'busybox:latest' }, input: 'echo from stdin', timeout: 20_000 });
    expect(fed.stdout).toBe('from stdin\n');
  });

  it('image: { ref } and createContainer() take the ImageInfo as well as a string', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo ok'], { image: { store, ref: info }, timeout: 20_000 });
    expect(r.stdout).toBe('ok\n');
    const c = await store.createContainer(info, { name: `contract-${process.pid}` });
    expect(c.image).toBe(info.id);
    await c.remove();
    expect(store.image(info).id).toBe(info.id);
    expect(() => spawnIsolated('/bin/true', [], { image: { store, ref: { id: 'nope' } as never } })).toThrow(/options\.image\.ref/);
    await expect(store.createContainer({ ...info, id: `sha256:${'0'.repeat(64)}` })).rejects.toThrow(RangeError);
    expect(store.containers()).toEqual([]);
  });
});

describe.skipIf(noRoot)('item 13: network.address in CIDR form', () => {
  const name = `nsbox${process.pid.toString(36)}ct`;
  const third = process.pid % 200;
  let br: Bridge;
  beforeAll(() => { br = Bridge.create(name, { address: `10.197.${third}.1/24` }); });
  afterAll(async () => { await br?.destroy().catch(() => {}); });

  // viewTemplate: false keeps these clear of item 4a (a first bridge spawn with the view
  // template; another helper's fix): this test is about the address only
  const net = (address: string, bridge: Bridge | string = br) => ({ network: { bridge, address }, viewTemplate: false, timeout: 20_000 });
  it('takes 10.x.y.5/24 when the prefix is the bridge\'s; another prefix is a RangeError naming the option', async () => {
    const r = await sh('ip -4 -o addr show dev eth0', net(`10.197.${third}.5/24`));
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`inet 10.197.${third}.5/24`);
    expect(() => sh('true', { network: { bridge: br, address: `10.197.${third}.5/16` } })).toThrow(RangeError);
    expect(() => sh('true', { network: { bridge: br, address: `10.197.${third}.5/16` } })).toThrow(/options\.network\.address/);
    expect(() => sh('true', { network: { bridge: br, address: `10.197.${third}.5/33` } })).toThrow(/options\.network\.address/);
    // a bridge known by name only: checked when the spawn meets it
    await expect(sh('true', net(`10.197.${third}.6/20`, name))).rejects.toThrow(/options\.network\.address 10\.197\.\d+\.6\/20 has another prefix length than the bridge/);
    const byName = await sh('ip -4 -o addr show dev eth0', net(`10.197.${third}.7/24`, name));
    expect(byName.stdout).toContain(`inet 10.197.${third}.7/24`);
  });
});

describe.skipIf(noRoot || skipReason(!/\toverlay\n/.test(readFileIfAny('/proc/filesystems')), 'overlayfs is not available'))('item 13: OverlayMount makes upper and work', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(`/tmp/nsbox-contract-ov-${process.pid}-`); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes missing upper/work directories (nested too), and removes them when the mount fails', () => {
    const lower = join(dir, 'lower');
    const target = join(dir, 'merged');
    mkdirSync(lower);
    mkdirSync(target);
    writeFileSync(join(lower, 'a'), 'A');
    const upper = join(dir, 'new/deep/upper');
    const work = join(dir, 'new/deep/work');
    const m = OverlayMount.mount({ lower: [lower], upper, work, target });
    try {
      expect(statSync(upper).isDirectory()).toBe(true);
      expect(statSync(upper).mode & 0o777).toBe(0o755);
      expect(statSync(work).mode & 0o777).toBe(0o700);
      writeFileSync(join(target, 'b'), 'B');
      expect(readdirSync(upper)).toEqual(['b']);
    } finally {
      m.unmount();
    }
    // work inside upper: the kernel refuses; what was made for it goes again
    expect(() => OverlayMount.mount({ lower: [lower], upper: join(dir, 'bad/upper'), work: join(dir, 'bad/upper/work'), target })).toThrow(NsboxError);
    expect(existsSync(join(dir, 'bad'))).toBe(false);
    // a file where a directory should be is still an argument mistake
    writeFileSync(join(dir, 'file'), '');
    expect(() => OverlayMount.mount({ lower: [lower], upper: join(dir, 'file'), work: join(dir, 'w2'), target })).toThrow(/options\.upper/);
    expect(existsSync(join(dir, 'w2'))).toBe(false);
  });
});

function readFileIfAny(p: string): string {
  try { return readFileSync(p, 'utf8'); } catch { return ''; }
}

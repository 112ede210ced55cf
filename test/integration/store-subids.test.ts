// An unprivileged caller's layer store in its subordinate ids (issue 15), as rootless
// podman's: with a range in /etc/subuid and /etc/subgid (and newuidmap/newgidmap), an image's
// files keep their owners, shifted through the caller's maps (0 -> the caller, N -> the
// range's N-th id: the maps its sandboxes get). Inside a sandbox of the image `ls -ln` shows
// the image's own owners, and a user inside cannot write root's files. Import, removal and gc
// run in a user namespace of those maps (the caller cannot remove files of its range itself),
// so nothing is left. Without a range the store squashes, as result.isolation.imageOwners says.
// The caller is a user made here (test/helpers/subuser.ts), in a fresh Node process from dist/.
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findIdMapHelpers } from '../../lib/util/idmap.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { ranError, runFresh } from '../helpers/proc.js';
import { makeSubUser, removeSubUser, type SubUser } from '../helpers/subuser.js';
import { busyboxEntries, dockerSaveTar, type TarEntry } from './fs-helpers.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const NOBODY = 65534;
const [maj, min] = (await import('node:os')).release().split('.').map(Number);
const skip = skipReason(!isRoot, 'makes a test user and its /etc/subuid range (root)')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)')
  || skipReason(!findIdMapHelpers(), 'newuidmap/newgidmap are not installed: a sandbox maps only the caller\'s own id (fix: apt install uidmap)')
  || skipReason(!existsSync('/bin/busybox'), 'no /bin/busybox on the host to build a test image')
  // nsbox's own refusal below 5.11 is asserted in the 5.10 guest (compat.test.ts)
  || skipReason(maj < 5 || (maj === 5 && min < 11), "an unprivileged caller's image needs Linux 5.11 or later (overlay inside a user namespace, userxattr)");

const ERR = `(e) => ({ error: { name: e.name, code: e.code, step: e.step, syscall: e.syscall, message: e.message } })`;

/** Runs `body` (an ES module body with `nsbox` imported) as uid `id` in a fresh Node; its last stdout line is JSON. */
async function asUser(id: number, body: string): Promise<any> {
  const r = await runFresh('setpriv', [`--reuid=${id}`, `--regid=${id}`, '--clear-groups', process.execPath, '--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, timeout: 120_000,
  });
  if (r.status !== 0) throw ranError(r, `node as uid ${id}`);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last); } catch { throw new Error(`no JSON: ${r.stdout}\n${r.stderr}`); }
}

/** The image: busybox (root's) plus files of other owners, a set-uid and a set-gid file, and a mode-0700 home of uid 1000. */
function entries(): TarEntry[] {
  return [
    ...busyboxEntries(),
    { name: 'etc/group', body: 'root:x:0:\nstaff:x:50:\napp:x:1000:\n' },
    { name: 'etc/secret', mode: 0o600, body: 'root only\n' },
    { name: 'home/', type: 'directory' },
    { name: 'home/app/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
    { name: 'home/app/f', mode: 0o600, uid: 1000, gid: 1000, body: 'app data\n' },
    { name: 'home/app/sub/', type: 'directory', mode: 0o555, uid: 1000, gid: 1000 },
    { name: 'home/app/sub/g', mode: 0o444, uid: 1000, gid: 1000, body: 'ro\n' },
    { name: 'home/app/link', type: 'symlink', linkname: 'f', uid: 1000, gid: 1000 },
    { name: 'srv/', type: 'directory', uid: 0, gid: 50, mode: 0o2775 },
    { name: 'srv/su', mode: 0o4755, uid: 0, gid: 0, body: '#!/bin/sh\n' },
    { name: 'srv/sg', mode: 0o2755, uid: 0, gid: 50, body: '#!/bin/sh\n' },
    { name: 'srv/nobody', mode: 0o644, uid: 65534, gid: 65534, body: 'n\n' },
  ];
}

const SCRIPT = 'id -u; ls -lnd /home/app /home/app/f /home/app/sub /home/app/sub/g /etc/secret /srv /srv/su /srv/sg /srv/nobody; cat /home/app/f; ( echo x >> /etc/secret ) 2>/dev/null && echo wrote || echo refused';

let u: SubUser | undefined;
let base = '';
beforeAll(async () => {
  if (skip) return;
  u = makeSubUser(`nsboxst${process.pid}`);
  base = `/tmp/nsbox-store-subids-${process.pid}`;
  mkdirSync(base, { mode: 0o755 });
  await dockerSaveTar(join(base, 'img.tar'), { Cmd: ['/bin/sh'] }, entries(), 'owners:1');
  // busybox (all root's) and a world-writable /srv: where uid 1000 writes into the container's layer (/tmp is a tmpfs)
  await dockerSaveTar(join(base, 'bb.tar'), {}, [...busyboxEntries(), { name: 'srv/', type: 'directory', mode: 0o1777 }]);
});
afterAll(() => {
  if (u) removeSubUser(u);
  if (base) rmSync(base, { recursive: true, force: true });
});

/** A directory of `id`'s own under base. */
function ownDir(name: string, id: number): string {
  const d = join(base, name);
  mkdirSync(d, { mode: 0o700 });
  chownSync(d, id, id);
  return d;
}

/** `ls -ln` lines as "mode uid gid name". */
const ls = (out: string) => out.split('\n').filter((l) => /^[-dlrwxsStT]{10}/.test(l)).map((l) => { const w = l.trim().split(/\s+/); return `${w[0]} ${w[2]} ${w[3]} ${w[w.length - 1]}`; });

describe.skipIf(skip)('an unprivileged caller\'s store in its subordinate ids', () => {
  it('keeps the image\'s owners: a fresh process imports and runs it, inside the files are the image\'s own, root\'s stay root\'s; removal leaves nothing', async () => {
    const dir = ownDir('kept', u!.uid);
    const store = JSON.stringify(`${dir}/store`);
    const out = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const store = nsbox.LayerStore.open(${store});
      const im = await store.importImage(${JSON.stringify(`${base}/img.tar`)}).catch(${ERR});
      if (im.error) { console.log(JSON.stringify({ import: im.error })); process.exit(0); }
      const run = await nsbox.spawnIsolated(nsbox.IMAGE_COMMAND, ['/bin/sh', '-c', ${JSON.stringify(SCRIPT)}], { image: { store, ref: im }, uid: 1000, gid: 1000 })
        .then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr, owners: r.isolation.imageOwners ?? null }), ${ERR});
      const asRoot = await nsbox.spawnIsolated(nsbox.IMAGE_COMMAND, ['/bin/sh', '-c', 'id -u; cat /etc/secret; cat /home/app/f 2>/dev/null || echo denied'], { image: { store, ref: im } })
        .then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr }), ${ERR});
      const afterRun = fs.readdirSync(${store}).filter((n) => /^[0-9a-f]{64}-init$/.test(n));
      console.log(JSON.stringify({ diff: store.layerPath(im.layers[0]), run, asRoot, afterRun }));`);
    expect(out.import).toBeUndefined();
    const s = u!.start, me = u!.uid;
    // on the host: image uid 0 is the caller, uid N the range's N-th id (start + N - 1); set-id bits kept
    const st = (p: string) => { const x = lstatSync(out.diff + p); return `${x.uid} ${x.gid} ${(x.mode & 0o7777).toString(8)}`; };
    expect(Object.fromEntries(['/bin/busybox', '/home/app', '/home/app/f', '/home/app/sub', '/home/app/link', '/srv', '/srv/su', '/srv/sg', '/srv/nobody'].map((p) => [p, st(p)]))).toEqual({
      '/bin/busybox': `${me} ${me} 755`,
      '/home/app': `${s + 999} ${s + 999} 700`,
      '/home/app/f': `${s + 999} ${s + 999} 600`,
      '/home/app/sub': `${s + 999} ${s + 999} 555`,
      '/home/app/link': `${s + 999} ${s + 999} 777`,
      '/srv': `${me} ${s + 49} 2775`,
      '/srv/su': `${me} ${me} 4755`,
      '/srv/sg': `${me} ${s + 49} 2755`,
      '/srv/nobody': `${s + 65533} ${s + 65533} 644`,
    });
    expect(out.run.error).toBeUndefined();
    expect(out.run.stderr).toBe('');
    expect(out.run.owners).toBeNull(); // not squashed
    const lines: string[] = out.run.stdout.trim().split('\n');
    expect(lines[0]).toBe('1000');
    // inside: the image's own owners and modes
    expect(ls(out.run.stdout).sort()).toEqual([
      'drwx------ 1000 1000 /home/app',
      '-rw------- 1000 1000 /home/app/f',
      'dr-xr-xr-x 1000 1000 /home/app/sub',
      '-r--r--r-- 1000 1000 /home/app/sub/g',
      '-rw------- 0 0 /etc/secret',
      'drwxrwsr-x 0 50 /srv',
      '-rwsr-xr-x 0 0 /srv/su',
      '-rwxr-sr-x 0 50 /srv/sg',
      '-rw-r--r-- 65534 65534 /srv/nobody',
    ].sort());
    expect(lines).toContain('app data'); // uid 1000 reads its own 0600 file
    expect(lines[lines.length - 1]).toBe('refused'); // and cannot write root's
    expect(out.asRoot.error).toBeUndefined();
    // root inside owns root's files; uid 1000's 0600 file is not its (no CAP_DAC_OVERRIDE by default)
    expect(out.asRoot.stdout).toBe('0\nroot only\ndenied\n');
    expect(out.afterRun).toEqual([]); // the ephemeral containers are gone
    // removing the image removes its layers, though the caller owns none of uid 1000's files
    const rm = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const store = nsbox.LayerStore.open(${store});
      const removed = await store.removeImage('owners:1').then(() => 'ok', ${ERR});
      console.log(JSON.stringify({ removed, left: fs.readdirSync(${store}).filter((n) => !/^(l|nsbox-store\\.(json|lock))$/.test(n)), links: fs.readdirSync(${store} + '/l') }));`);
    expect(rm).toEqual({ removed: 'ok', left: [], links: [] });
  });
  it('a run whose uid 1000 left files in its writable layer: its ephemeral container is removed all the same', async () => {
    // what uid 1000 makes is owned by the range on the host: the caller could not remove it itself
    const dir = ownDir('upper', u!.uid);
    const store = JSON.stringify(`${dir}/store`);
    const out = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const store = nsbox.LayerStore.open(${store});
      const im = await store.importImage(${JSON.stringify(`${base}/bb.tar`)});
      const run = await nsbox.spawnIsolated('/bin/sh', ['-c', 'mkdir -p /srv/d/e && echo x > /srv/d/e/f && chmod 500 /srv/d && ls -lnd /srv/d'], { image: { store, ref: im }, uid: 1000, gid: 1000 })
        .then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr }), ${ERR});
      const left = fs.readdirSync(${store}).filter((n) => /^[0-9a-f]{64}(-init)?$/.test(n) && !im.layers.includes(n));
      console.log(JSON.stringify({ run, left, containers: store.containers() }));`);
    expect(out.run).toMatchObject({ code: 0, stderr: '' });
    expect(out.run.stdout).toMatch(/^dr-x------ +\d+ 1000 +1000 /);
    expect(out.left).toEqual([]);
    expect(out.containers).toEqual([]);
  });

  it("gc as the caller removes a killed process's leftovers: its ephemeral container and a temporary import directory of the range's files", async () => {
    const dir = ownDir('gc', u!.uid);
    const store = JSON.stringify(`${dir}/store`);
    // a process killed (SIGKILL) while its sandbox runs, after uid 1000 wrote to the container
    const killed = await runFresh('setpriv', [`--reuid=${u!.uid}`, `--regid=${u!.uid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', `
      import * as nsbox from ${JSON.stringify(DIST)};
      const store = nsbox.LayerStore.open(${store});
      const im = await store.importImage(${JSON.stringify(`${base}/bb.tar`)});
      nsbox.spawnIsolated('/bin/sh', ['-c', 'mkdir -p /srv/d && echo x > /srv/d/f && chmod 500 /srv/d && echo ready > /dev/stderr && sleep 100'], { image: { store, ref: im }, uid: 1000, gid: 1000, stdio: ['ignore', 'inherit', 'pipe'] })
        .stderr.on('data', () => process.kill(process.pid, 'SIGKILL'));`], { cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, timeout: 60_000 });
    expect(killed.signal).toBe('SIGKILL');
    const records = Object.keys(JSON.parse((await import('node:fs')).readFileSync(`${dir}/store/nsbox-store.json`, 'utf8')).containers);
    expect(records).toHaveLength(1);
    // a temporary directory of the dead process holding files of the range (as an import killed after its chown pass)
    const tmp = join(dir, 'store', `nsbox-tmp-${killed.pid}-1-abcdef`);
    mkdirSync(join(tmp, 'diff/home/app'), { recursive: true });
    (await import('node:fs')).writeFileSync(join(tmp, 'diff/home/app/f'), 'x');
    for (const p of ['', '/diff', '/diff/home']) chownSync(tmp + p, u!.uid, u!.uid);
    for (const p of ['/diff/home/app', '/diff/home/app/f']) chownSync(tmp + p, u!.start + 999, u!.start + 999);
    const out = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const store = nsbox.LayerStore.open(${store});
      const removed = await store.gc().catch(${ERR});
      const im = store.images()[0];
      const left = fs.readdirSync(${store}).filter((n) => n.startsWith('nsbox-tmp-') || (/^[0-9a-f]{64}(-init)?$/.test(n) && !im.layers.includes(n)));
      console.log(JSON.stringify({ removed, left, containers: store.containers() }));`);
    expect(out.removed.error).toBeUndefined();
    expect(out.removed).toEqual(expect.arrayContaining([`nsbox-tmp-${killed.pid}-1-abcdef`, records[0]]));
    expect(out.left).toEqual([]);
    expect(out.containers).toEqual([]);
  });

  it("a kept container's changes, diff and commit run in the store namespace: they read uid 1000's 0600 file in its 0700 directory and give the ids inside (uid 1000's files stay uid 1000's in the new image)", async () => {
    const dir = ownDir('commit', u!.uid);
    const store = JSON.stringify(`${dir}/store`);
    const out = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const { PassThrough } = await import('node:stream');
      const store = nsbox.LayerStore.open(${store});
      const im = await store.importImage(${JSON.stringify(`${base}/bb.tar`)});
      const run = await nsbox.spawnIsolated('/bin/sh', ['-c', 'mkdir /srv/d && echo hi > /srv/d/f && mkdir /srv/p && echo secret > /srv/p/s && chmod 600 /srv/p/s && chmod 700 /srv/p'], { image: { store, ref: im, keep: true }, uid: 1000, gid: 1000 })
        .then((r) => ({ code: r.exitCode, stderr: r.stderr }), ${ERR});
      const c = store.container(store.containers()[0]);
      const changes = (() => { try { return c.changes().map((x) => x.kind + ' ' + x.path).sort(); } catch (e) { return e.code + ' ' + e.message; } })();
      const pt = new PassThrough(); const chunks = []; pt.on('data', (b) => chunks.push(b));
      await c.exportDiff(pt);
      const tar = Buffer.concat(chunks);
      // owners of the tar's entries (ustar: uid at 108, gid at 116, octal)
      const owners = [];
      for (let o = 0; o + 512 <= tar.length && tar[o] !== 0; ) {
        const name = tar.subarray(o, o + 100).toString().replace(/\\0.*$/s, '');
        const num = (a, n) => parseInt(tar.subarray(o + a, o + a + n).toString().replace(/\\0.*$/s, '').trim() || '0', 8);
        owners.push(name + ' ' + num(108, 8) + ':' + num(116, 8));
        o += 512 + Math.ceil(num(124, 12) / 512) * 512;
      }
      const committed = await c.commit({ name: 'committed:1' }).catch(${ERR});
      await c.remove();
      const again = await nsbox.spawnIsolated('/bin/sh', ['-c', 'ls -ln /srv/d/f; ls -lnd /srv/p /srv/p/s; cat /srv/p/s'], { image: { store, ref: 'committed:1' }, uid: 1000, gid: 1000 }).then((r) => r.stdout + r.stderr, ${ERR});
      await store.removeImage('committed:1');
      await store.removeImage(im);
      console.log(JSON.stringify({ run, changes, owners, committed: committed.error ?? 'ok', again, left: fs.readdirSync(${store}).filter((n) => !/^(l|nsbox-store\\.(json|lock))$/.test(n)) }));`);
    expect(out.run).toEqual({ code: 0, stderr: '' });
    expect(out.changes).toEqual(expect.arrayContaining(['added /srv/d', 'added /srv/d/f', 'added /srv/p', 'added /srv/p/s']));
    // uid 1000's 0600 file in its 0700 directory is read too (in the store namespace: the caller could not)
    expect(out.owners).toEqual(expect.arrayContaining(['srv/d/ 1000:1000', 'srv/d/f 1000:1000', 'srv/p/ 1000:1000', 'srv/p/s 1000:1000']));
    expect(out.committed).toBe('ok');
    expect(ls(out.again)).toEqual(['-rw-r--r-- 1000 1000 /srv/d/f', 'drwx------ 1000 1000 /srv/p', '-rw------- 1000 1000 /srv/p/s']);
    expect(out.again).toMatch(/\nsecret\n$/);
    expect(out.left).toEqual([]);
  });

  it('an owner outside the range is refused with the fix, and nothing of the import stays', async () => {
    const dir = ownDir('outside', u!.uid);
    await dockerSaveTar(join(dir, 'far.tar'), {}, [...busyboxEntries(), { name: 'far', uid: 70000, gid: 0, body: 'x' }], 'far:1');
    chownSync(join(dir, 'far.tar'), u!.uid, u!.uid);
    const store = JSON.stringify(`${dir}/store`);
    const out = await asUser(u!.uid, `
      const fs = await import('node:fs');
      const store = nsbox.LayerStore.open(${store});
      const r = await store.importImage(${JSON.stringify(`${dir}/far.tar`)}).then(() => 'imported', ${ERR});
      console.log(JSON.stringify({ r, left: fs.readdirSync(${store}).filter((n) => !/^(l|nsbox-store\\.(json|lock))$/.test(n)), images: store.images().length }));`);
    expect(out.r.error).toMatchObject({ name: 'NsboxError', code: 'EINVAL', step: 'import', syscall: 'chown' });
    expect(out.r.error.message).toMatch(/owned by uid 70000, outside the ids this user's store maps \(0 to 65535: this user and its subordinate range\); fix: a longer range in \/etc\/subuid and \/etc\/subgid/);
    expect(out).toMatchObject({ left: [], images: 0 });
  });
});

describe.skipIf(skip)('an unprivileged caller without a range', () => {
  it('squashes the image to itself, says so, and imports directories whose mode shuts their owner out', async () => {
    // before: a 0555 directory with entries failed with EACCES (the caller made it 0555 first)
    const dir = ownDir('nobody', NOBODY);
    const store = JSON.stringify(`${dir}/store`);
    const out = await asUser(NOBODY, `
      const store = nsbox.LayerStore.open(${store});
      const im = await store.importImage(${JSON.stringify(`${base}/img.tar`)}).catch(${ERR});
      if (im.error) { console.log(JSON.stringify({ import: im.error })); process.exit(0); }
      const run = await nsbox.spawnIsolated('/bin/sh', ['-c', 'ls -lnd /home/app /home/app/sub /home/app/sub/g /srv/nobody'], { image: { store, ref: im } })
        .then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr, owners: r.isolation.imageOwners ?? null }), ${ERR});
      console.log(JSON.stringify({ run }));`);
    expect(out.import).toBeUndefined();
    expect(out.run).toMatchObject({ code: 0, stderr: '', owners: 'squashed' });
    expect(ls(out.run.stdout).sort()).toEqual([
      'drwx------ 0 0 /home/app', 'dr-xr-xr-x 0 0 /home/app/sub', '-r--r--r-- 0 0 /home/app/sub/g', '-rw-r--r-- 0 0 /srv/nobody',
    ].sort());
  });
});

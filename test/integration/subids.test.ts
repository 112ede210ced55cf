// An unprivileged caller with a subordinate range (issue 15): a user made here for the test,
// given a range in /etc/subuid and /etc/subgid that no other entry overlaps, runs Node from
// dist/ (as unprivileged.test.ts does). Its sandboxes that need more ids than its own map
// 0 -> the user, 1.. -> the range (newuidmap/newgidmap, as rootless podman); the others keep
// the single-id map. The user and its lines are removed at the end.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findIdMapHelpers } from '../../lib/util/idmap.js';
import { isRoot, skipReason } from '../helpers/host.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const NOBODY = 65534;
const helpers = findIdMapHelpers();

const skip = skipReason(!isRoot, 'makes a test user and its /etc/subuid range (root)')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)')
  // nsbox's own words for this host (doctor's subuid check says the same)
  || skipReason(!helpers, 'newuidmap/newgidmap are not installed: a sandbox maps only the caller\'s own id (fix: apt install uidmap)');

const USER = `nsboxtest${process.pid}`;
let uid = 0, start = 0;
const COUNT = 65536;

/** The first start at or above 300000 that no line of /etc/subuid or /etc/subgid overlaps. */
function freeStart(): number {
  let s = 300000;
  const ranges = ['/etc/subuid', '/etc/subgid'].flatMap((f) => (existsSync(f) ? readFileSync(f, 'utf8') : '').split('\n'))
    .map((l) => l.split(':')).filter((p) => p.length === 3).map((p) => [Number(p[1]), Number(p[1]) + Number(p[2])] as const);
  for (let moved = true; moved;) {
    moved = false;
    for (const [a, b] of ranges) if (s < b && s + COUNT > a) { s = b; moved = true; }
  }
  return s;
}

/** Removes every line of `user` from /etc/subuid and /etc/subgid. */
function dropLines(user: string, id: number): void {
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const kept = text.split('\n').filter((l) => { const w = l.split(':')[0]; return w !== user && w !== String(id); }).join('\n');
    if (kept !== text) writeFileSync(f, kept);
  }
}

beforeAll(() => {
  if (skip) return;
  execOk('useradd', ['-M', '-s', '/usr/sbin/nologin', USER]);
  uid = Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim());
  dropLines(USER, uid); // useradd may have given it a range of its own (login.defs SUB_UID_*)
  start = freeStart();
  const r = `${start}-${start + COUNT - 1}`;
  execOk('usermod', ['--add-subuids', r, '--add-subgids', r, USER]);
});

afterAll(() => {
  if (skip || !uid) return;
  spawnSync('userdel', [USER]);
  dropLines(USER, uid);
  expect(readFileSync('/etc/subuid', 'utf8')).not.toContain(USER);
  expect(readFileSync('/etc/subgid', 'utf8')).not.toContain(USER);
});

function execOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Runs `body` (an ES module body with `nsbox` imported) as `id`; its last stdout line is JSON. */
function asUser(body: string, id = uid): any {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    uid: id, gid: id, cwd: '/', encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last); } catch { throw new Error(`exit ${r.status}, no JSON: ${r.stdout}\n${r.stderr}`); }
}

const ERR = `(e) => ({ error: { name: e.name, code: e.code, step: e.step, message: e.message } })`;

/** Imports a busybox image (examples/mini-docker) into a store of the user's own under `dir` and runs `script` in it with `extra` options. */
function imageRun(id: number, dir: string, script: string, extra = '{}'): any {
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, id, id);
  execOk('sh', [resolve(__dirname, '../../examples/mini-docker/make-busybox-image.sh'), `${dir}/bb.tar`]);
  chownSync(`${dir}/bb.tar`, id, id);
  return asUser(`
    const store = nsbox.LayerStore.open(${JSON.stringify(`${dir}/store`)});
    const im = await store.importImage(${JSON.stringify(`${dir}/bb.tar`)}).catch(${ERR});
    if (im.error) { console.log(JSON.stringify({ import: im })); process.exit(0); }
    const r = await nsbox.spawnIsolated(nsbox.IMAGE_COMMAND, ['/bin/sh', '-c', ${JSON.stringify(script)}], { image: { store, ref: 'busybox:latest' }, ...${extra} })
      .then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr, owners: r.isolation.imageOwners, uidMap: r.isolation.uidMap }), ${ERR});
    const left = (await import('node:fs')).readdirSync(${JSON.stringify(`${dir}/store`)}).filter((n) => /^[0-9a-f]{64}-init$/.test(n));
    console.log(JSON.stringify({ ...r, left }));`, id);
}

/** Owners of the files of the store's image layers under `dir`. */
function layerOwners(dir: string): string[] {
  const r = spawnSync('sh', ['-c', `find ${dir}/store/*/diff -printf '%U:%G\\n' | sort -u`], { encoding: 'utf8' });
  return r.stdout.trim().split('\n');
}

const hasBusybox = spawnSync('sh', ['-c', 'command -v busybox']).status === 0;

describe.skipIf(skip)('an unprivileged caller with a subordinate range', () => {
  it('runs uid 1000: its range is mapped, and what uid 1000 makes is the range\'s on the host', () => {
    const dir = `/tmp/nsbox-subids-${process.pid}`;
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, start + 999, start + 999); // sandbox uid 1000 = host start + 999
    try {
      const out = asUser(`
        const r = await nsbox.spawnIsolated('/bin/sh', ['-c', 'id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /data/f'], {
          uid: 1000, groups: [5], mounts: [{ type: 'bind', source: ${JSON.stringify(dir)}, target: '/data' }],
        }).then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr, uidMap: r.isolation.uidMap, gidMap: r.isolation.gidMap }), ${ERR});
        console.log(JSON.stringify(r));`);
      expect(out.error).toBeUndefined();
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const lines = out.stdout.trim().split('\n').map((l: string) => l.trim().split(/\s+/).join(' '));
      expect(lines).toEqual(['1000', '1000', `0 ${uid} 1`, `1 ${start} 65535`, `0 ${uid} 1`, `1 ${start} 65535`]);
      expect(out.uidMap).toEqual([{ inside: 0, outside: uid, count: 1 }, { inside: 1, outside: start, count: 65535 }]);
      expect(out.gidMap).toEqual([{ inside: 0, outside: uid, count: 1 }, { inside: 1, outside: start, count: 65535 }]);
      const st = statSync(`${dir}/f`);
      expect([st.uid, st.gid]).toEqual([start + 999, start + 999]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the single-id map when one id is enough, and maps given maps within its range', () => {
    const out = asUser(`
      const one = await nsbox.spawnIsolated('/bin/cat', ['/proc/self/uid_map']).then((r) => r.stdout, ${ERR});
      const given = await nsbox.spawnIsolated('/bin/sh', ['-c', 'id -u; cat /proc/self/uid_map'], { uid: 7,
        user: { uidMap: [{ inside: 0, outside: ${uid}, count: 1 }, { inside: 7, outside: ${start} + 10, count: 1 }], gidMap: [{ inside: 0, outside: ${uid}, count: 1 }] },
        gid: 0 }).then((r) => r.stdout + r.stderr, ${ERR});
      let outside;
      try { nsbox.spawnIsolated('/bin/true', [], { user: { uidMap: [{ inside: 0, outside: 1, count: 1 }], gidMap: [{ inside: 0, outside: ${uid}, count: 1 }] } }); outside = 'accepted'; } catch (e) { outside = e.name + ': ' + e.message; }
      console.log(JSON.stringify({ one, given, outside }));`);
    expect(out.one.trim().split(/\s+/)).toEqual(['0', String(uid), '1']);
    expect(out.given.error).toBeUndefined();
    expect(out.given.trim().split('\n').map((l: string) => l.trim().split(/\s+/).join(' '))).toEqual(['7', `0 ${uid} 1`, `7 ${start + 10} 1`]);
    expect(out.outside).toMatch(/^RangeError: options.user.uidMap maps ids outside this user's own uid and subordinate range/);
  });

  it('tells a caller without a range how to get one', () => {
    const out = asUser(`
      let r;
      try { nsbox.spawnIsolated('/bin/true', [], { uid: 1000 }); r = 'accepted'; } catch (e) { r = e.name + ': ' + e.message; }
      console.log(JSON.stringify(r));`, NOBODY);
    expect(out).toMatch(/^RangeError: options.uid 1000 is not mapped by the user namespace's uid map \(an unprivileged caller maps only its own id: this user has no subordinate range in \/etc\/subuid and \/etc\/subgid; fix: as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody\)/);
  });

  it("doctor's subuid check says the range will be used", () => {
    const out = asUser(`const r = await nsbox.doctor(); console.log(JSON.stringify(r.checks.find((c) => c.id === 'subuid')));`);
    expect(out).toMatchObject({ status: 'ok' });
    expect(out.detail).toMatch(/newuidmap\/newgidmap are installed: sandboxes that need more ids .* map it/);
  });
});

describe.skipIf(skip || skipReason(!hasBusybox, 'no busybox on the host to build a test image'))('images for an unprivileged caller', () => {
  it('uid 65534 (no range): imports into a store of its own and runs the image, files squashed to it', () => {
    const dir = `/tmp/nsbox-rootless-img-${process.pid}`;
    try {
      const out = imageRun(NOBODY, dir, 'id -u; echo hi > /made; cat /made; ls -ln /bin/busybox');
      expect(out.import).toBeUndefined();
      expect(out.error).toBeUndefined();
      expect(out.stderr).toBe('');
      const [idu, hi, ls] = out.stdout.trim().split('\n');
      expect([idu, hi]).toEqual(['0', 'hi']);
      expect(ls).toMatch(/^-rwxr-xr-x +1 0 +0 /);
      expect(out.owners).toBe('squashed');
      expect(out.left).toEqual([]); // the ephemeral container is gone
      expect(layerOwners(dir)).toEqual([`${NOBODY}:${NOBODY}`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the subuid user: the image runs with its range mapped (uid 1000 inside)', () => {
    const dir = `/tmp/nsbox-rootless-img-${process.pid}-sub`;
    try {
      const out = imageRun(uid, dir, 'id -u; touch /tmp/x; ls -ln /tmp/x', '{ uid: 1000 }');
      expect(out.import).toBeUndefined();
      expect(out.error).toBeUndefined();
      expect(out.stderr).toBe('');
      expect(out.stdout.trim().split('\n')[0]).toBe('1000');
      expect(out.stdout).toMatch(/1 1000 +1000 /);
      expect(out.uidMap).toEqual([{ inside: 0, outside: uid, count: 1 }, { inside: 1, outside: start, count: 65535 }]);
      expect(layerOwners(dir)).toEqual([`${uid}:${uid}`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

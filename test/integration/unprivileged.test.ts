// An unprivileged caller (issue 15): a fresh Node process of uid 65534 (started from root, as
// lifecycle.test.ts does) uses nsbox from dist/. Joining a user namespace and Sandbox.exec
// (no setgroups where the namespace denies it), Sandbox's default state directory, pools and
// sandboxes without a cgroup, the error a refused cgroup gives, and what doctor says.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot, nsboxCgroupsOf, skipReason } from '../helpers/host.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const CLI = resolve(__dirname, '../../dist/cli.js');
const NOBODY = 65534;
const [KMAJ, KMIN] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number) as [number, number];
const kernelAtLeast = (maj: number, min: number) => KMAJ > maj || (KMAJ === maj && KMIN >= min);

const skip = skipReason(!isRoot, 'starts its unprivileged Node processes from root (uid 65534)')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)');

/** The per-uid state directory nobody's sandboxes use without XDG_RUNTIME_DIR; removed at the end when this file made it. */
const TMP_STATE = `/tmp/nsbox-${NOBODY}`;
const hadTmpState = existsSync(TMP_STATE);
const pids = new Set<number>();

afterAll(() => {
  if (!hadTmpState) rmSync(TMP_STATE, { recursive: true, force: true });
  // nothing of the unprivileged processes stays in any cgroup hierarchy
  expect(nsboxCgroupsOf(pids)).toEqual([]);
});

/** Runs `body` (an ES module body with `nsbox` imported) as `uid`; its last stdout line is JSON. */
function asUser(body: string, opts: { uid?: number; env?: Record<string, string> } = {}): { code: number | null; out: any; stderr: string } {
  const uid = opts.uid ?? NOBODY;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    uid, gid: uid, cwd: '/', encoding: 'utf8', timeout: 60_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env },
  });
  if (r.pid) pids.add(r.pid);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let out: unknown;
  try { out = JSON.parse(last); } catch { throw new Error(`exit ${r.status}, no JSON: ${r.stdout}\n${r.stderr}`); }
  return { code: r.status, out, stderr: r.stderr };
}

/** Script text: the error `e` as plain data. */
const ERR = `(e) => ({ error: { name: e.name, code: e.code, errno: e.errno, step: e.step, path: e.path, message: e.message } })`;

describe.skipIf(skip)('an unprivileged caller (uid 65534)', () => {
  it('joins a user namespace it made (no setgroups there: it denies them), and Sandbox.exec works', () => {
    const { out } = asUser(`
      const holder = nsbox.spawnIsolated('/bin/sleep', ['30'], { stdio: 'ignore' });
      await new Promise((r) => holder.once('spawn', r));
      const user = nsbox.Namespace.ofProcess(holder.pid, 'user');
      const join = await nsbox.spawnIsolated('/bin/sh', ['-c', 'id -u; cat /proc/self/setgroups'], { join: { user } }).then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr }), ${ERR});
      let groups;
      try { nsbox.spawnIsolated('/bin/true', [], { join: { user }, groups: [0] }); groups = 'accepted'; } catch (e) { groups = e.name + ': ' + e.message; }
      holder.kill('SIGKILL'); await holder.catch(() => {});
      const box = await nsbox.Sandbox.create({ stateDir: '/tmp/nsbox-${NOBODY}-test-join' });
      const exec = await box.exec('/bin/sh', ['-c', 'id -u']).then((r) => ({ code: r.exitCode, stdout: r.stdout, stderr: r.stderr }), ${ERR});
      await box.destroy();
      console.log(JSON.stringify({ join, groups, exec }));`);
    rmSync(`/tmp/nsbox-${NOBODY}-test-join`, { recursive: true, force: true });
    expect(out.join).toEqual({ code: 0, stdout: '0\ndeny\n', stderr: '' });
    expect(out.groups).toMatch(/^TypeError: options.groups .*setgroups is denied/);
    expect(out.exec).toEqual({ code: 0, stdout: '0\n', stderr: '' });
  });

  it("records sandboxes in /tmp/nsbox-<uid>/sandboxes (0700, the caller's) without XDG_RUNTIME_DIR, in $XDG_RUNTIME_DIR/nsbox when set", () => {
    const { out } = asUser(`
      const box = await nsbox.Sandbox.create().catch(${ERR});
      if (box.error) { console.log(JSON.stringify(box)); process.exit(0); }
      const listed = nsbox.Sandbox.list().map((s) => s.id);
      console.log(JSON.stringify({ id: box.id, dir: nsbox.defaultStateDir(), listed }));
      await box.destroy();`);
    expect(out.error).toBeUndefined();
    expect(out.dir).toBe(`${TMP_STATE}/sandboxes`);
    expect(out.listed).toContain(out.id);
    for (const d of [TMP_STATE, `${TMP_STATE}/sandboxes`]) {
      const st = statSync(d);
      expect(st.uid).toBe(NOBODY);
      expect(st.mode & 0o777).toBe(0o700);
    }

    const xdg = `/tmp/nsbox-test-xdg-${process.pid}`;
    mkdirSync(xdg, { mode: 0o700 });
    chownSync(xdg, NOBODY, NOBODY);
    try {
      const r = asUser(`
        const box = await nsbox.Sandbox.create();
        console.log(JSON.stringify({ dir: nsbox.defaultStateDir(), there: (await import('node:fs')).existsSync(nsbox.defaultStateDir() + '/' + box.id + '.json') }));
        await box.destroy();`, { env: { XDG_RUNTIME_DIR: xdg } });
      expect(r.out).toEqual({ dir: `${xdg}/nsbox/sandboxes`, there: true });
    } finally {
      rmSync(xdg, { recursive: true, force: true });
    }
  });

  it('refuses a /tmp/nsbox-<uid> someone else owns', (ctx) => {
    const uid = 65533; // a uid whose per-uid directory root makes first, as another user could
    const squat = `/tmp/nsbox-${uid}`;
    if (existsSync(squat)) ctx.skip(); // someone's real directory: not this test's to replace
    mkdirSync(squat, { mode: 0o777 });
    try {
      const { out } = asUser(`console.log(JSON.stringify(await nsbox.Sandbox.create().then(async (b) => { await b.destroy(); return { made: true }; }, ${ERR})));`, { uid });
      expect(out.error).toMatchObject({ name: 'NsboxError', code: 'EPERM', path: squat });
      expect(out.error.message).toContain(`${squat} is owned by uid 0, not by this user (uid ${uid})`);
      expect(existsSync(`${squat}/sandboxes`)).toBe(false);
    } finally {
      rmSync(squat, { recursive: true, force: true });
    }
  });

  it('runs a pool and a Sandbox without limits where it may not make cgroups', () => {
    const { out } = asUser(`
      const pool = nsbox.createPool({ size: 1 });
      const run = await pool.run('/bin/echo', ['pooled']).then((r) => ({ code: r.exitCode, stdout: r.stdout }), ${ERR});
      await pool.close();
      const box = await nsbox.Sandbox.create({ stateDir: '/tmp/nsbox-${NOBODY}-test-nocg' }).catch(${ERR});
      let exec, pause;
      if (!box.error) {
        exec = await box.exec('/bin/echo', ['boxed']).then((r) => ({ code: r.exitCode, stdout: r.stdout }), ${ERR});
        pause = box.cgroup ? 'has a cgroup' : await box.pause().then(() => 'paused', ${ERR});
        await box.destroy();
      }
      console.log(JSON.stringify({ run, box: box.error ?? 'made', exec, pause }));`);
    rmSync(`/tmp/nsbox-${NOBODY}-test-nocg`, { recursive: true, force: true });
    expect(out.run).toEqual({ code: 0, stdout: 'pooled\n' });
    expect(out.box).toBe('made');
    expect(out.exec).toEqual({ code: 0, stdout: 'boxed\n' });
    // where this user may make cgroups the sandbox has one; where not, pause says why
    if (out.pause !== 'has a cgroup') {
      expect(out.pause.error).toMatchObject({ name: 'NsboxError', code: 'EOPNOTSUPP' });
      expect(out.pause.error.message).toMatch(/no cgroup .*create the sandbox with cgroup limits or a cgroupParent/);
    }
  });

  it('makes a created sandbox in one process and starts it from another; the exit status is recorded in its own state directory (issue 16 item 1)', () => {
    const made = asUser(`const b = await nsbox.Sandbox.create({ id: 'unpriv-created', keepAlive: true, program: { file: '/bin/sh', args: ['-c', 'exit 4'] } });
      console.log(JSON.stringify({ pid: b.pid, status: b.status }));`);
    expect(made.out).toMatchObject({ status: 'created' });
    const run = asUser(`const b = await nsbox.Sandbox.attach('unpriv-created');
      await b.start();
      const k = setInterval(() => {}, 50); await b.wait(); clearInterval(k);
      const exit = b.exitStatus();
      await b.destroy();
      console.log(JSON.stringify({ exit, left: nsbox.Sandbox.list().map((s) => s.id) }));`);
    expect(run.out).toEqual({ exit: { exitCode: 4, signal: null }, left: [] });
  });

  it('gets an NsboxError naming the hierarchy of the limit asked and the fix when it may not make the cgroup', (ctx) => {
    const { out } = asUser(`
      const r = await nsbox.spawnIsolated('/bin/true', [], { limits: { memory: '64m' } }).then(() => ({ ran: true }), ${ERR});
      console.log(JSON.stringify(r));`);
    if (out.ran) ctx.skip(); // this host delegates cgroups to uid 65534: nothing is refused
    const e = out.error;
    expect(e).toMatchObject({ name: 'NsboxError', code: 'EACCES', step: 'cgroup-create' });
    expect(e.message).toContain('for limits.memory');
    expect(e.message).not.toMatch(/nsbox-\d+-/); // the cgroup nsbox meant to make is not the user's business
    expect(e.path).not.toMatch(/nsbox-\d+-/);
    const v1 = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => / - cgroup cgroup /.test(l) && /[ ,]memory(,|$)/.test(l));
    if (v1) {
      expect(e.message).toMatch(/\(the memory hierarchy/);
      expect(e.path).toMatch(/memory/);
      expect(e.message).toContain('cgroupParent');
    } else {
      expect(e.message).toContain('Delegate=yes');
      expect(e.message).toContain('cgroupParent');
    }
  });

  it('doctor names permission matters as such, the real blockers, and exits 1 only when the default spawn cannot work', () => {
    const r = spawnSync(process.execPath, [CLI, 'doctor', '--json'], { uid: NOBODY, gid: NOBODY, cwd: '/', encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    const report = JSON.parse(r.stdout) as { root: boolean; defaultSpawn: boolean; checks: { id: string; status: string; detail: string; fix?: string }[] };
    expect(report.root).toBe(false);
    expect(r.status).toBe(report.defaultSpawn ? 0 : 1);
    const by = (id: string) => report.checks.find((c) => c.id === id);
    // an EPERM/EACCES on a kernel that has the feature is not advice to upgrade
    const mapi = by('idmapped-mounts')!;
    if (kernelAtLeast(5, 2) && /EPERM|EACCES/.test(mapi.detail)) {
      expect(mapi.status).toBe('warn');
      expect(`${mapi.detail} ${mapi.fix}`).not.toMatch(/Linux 5\.2\+/);
      expect(mapi.detail).toContain('permission');
    }
    const cic = by('clone-into-cgroup')!;
    if (kernelAtLeast(5, 7) && /EPERM|EACCES/.test(cic.detail)) {
      expect(cic.status).toBe('warn');
      expect(`${cic.detail} ${cic.fix}`).not.toMatch(/Linux 5\.7/);
      expect(cic.detail).toContain('permission');
    }
    // the blockers, as the host has them
    expect(by('cgroup-delegation')).toBeDefined();
    expect(by('subuid')).toBeDefined();
    const subuid = (() => { try { return readFileSync('/etc/subuid', 'utf8'); } catch { return ''; } })();
    const hasRange = subuid.split('\n').some((l) => /^(nobody|65534):\d+:[1-9]/.test(l));
    if (!hasRange) expect(by('subuid')!.status).toBe('warn');
    const tunOpen = (() => { const m = (() => { try { return statSync('/dev/net/tun').mode; } catch { return 0; } })(); return (m & 0o006) === 0o006; })();
    if (!tunOpen) expect(by('tun')!.status).toBe('fail');
    // the sysctls that exist are read; their blockers are named
    const sysctl = (p: string) => { try { return readFileSync(p, 'utf8').trim(); } catch { return undefined; } };
    const userns = by('userns')!;
    if (sysctl('/proc/sys/user/max_user_namespaces') === '0') expect(userns.detail).toContain('max_user_namespaces');
    if (sysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0') expect(userns.detail).toContain('unprivileged_userns_clone');
    if (sysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') expect(userns.detail).toContain('apparmor_restrict_unprivileged_userns');
    // the default spawn's own checks decide the exit code
    const needs = ['userns', 'seccomp', 'cgroupns'];
    expect(report.defaultSpawn).toBe(report.checks.every((c) => c.status !== 'fail' || !needs.includes(c.id)));
    // and where it works, it does: a default spawn as this user
    if (report.defaultSpawn) {
      const { out } = asUser(`console.log(JSON.stringify(await nsbox.spawnIsolated('/bin/echo', ['ok']).then((r) => r.stdout, ${ERR})));`);
      expect(out).toBe('ok\n');
    }
  });
});

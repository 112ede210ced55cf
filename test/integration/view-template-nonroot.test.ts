// The view template of an unprivileged caller (issue 17): a fresh Node process of uid 65534
// (started from root, as unprivileged.test.ts does) gets its default views from a template
// made in a user namespace of nsbox's own (addon/src/helpers.cc EnsureHolder), and each
// sandbox's user namespace is made in that one, as its child. What it must not give: the
// sandbox keeps its maps, setgroups denied, the isolation report; the mounts of its copy are
// locked even with CAP_SYS_ADMIN kept; nsbox's user namespace is out of its reach (its parent);
// the escape battery's attacks fail in such a sandbox as in any other.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot, skipReason } from '../helpers/host.js';
import { MOUNT_LOCK_EXPECTED, MOUNT_LOCK_PROBE } from '../helpers/mount-locks.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const NOBODY = 65534;
const [KMAJ, KMIN] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number) as [number, number];
const skip = skipReason(!isRoot, 'starts its unprivileged Node processes from root (uid 65534)')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)')
  || skipReason(KMAJ < 5 || (KMAJ === 5 && KMIN < 8), 'view templates need Linux 5.8');

let scratch: string | undefined;
afterAll(() => {
  cleanupBuilds();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Runs `body` (an ES module body with `nsbox` imported) as uid 65534 in a fresh Node process; its last stdout line is JSON. */
function asNobody(body: string): any {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    uid: NOBODY, gid: NOBODY, cwd: '/', encoding: 'utf8', timeout: 120_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last); } catch { throw new Error(`exit ${r.status}, no JSON: ${r.stdout}\n${r.stderr}`); }
}

describe.skipIf(skip)('view template of an unprivileged caller (uid 65534)', () => {
  it('serves its default views from its first spawn on, with the same maps, setgroups and isolation as the whole view', () => {
    const out = asNobody(`
      const probe = 'cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u; grep -c " /dev/proc " /proc/self/mountinfo; stat -c "%d %y" /; readlink /proc/self/ns/mnt; touch /dev/x 2>&1 | grep -c "Read-only"; echo hi > /dev/null && head -c 4 /dev/zero | wc -c; touch /dev/shm/x && echo shm; cat /sys/class/net/lo/operstate';
      const a = await nsbox.spawnIsolated('/bin/sh', ['-c', probe]);
      const b = await nsbox.spawnIsolated('/bin/sh', ['-c', probe]);
      const whole = await nsbox.spawnIsolated('/bin/sh', ['-c', probe], { viewTemplate: false });
      const ex = nsbox.explain('/bin/true');
      console.log(JSON.stringify({ a: a.stdout.split('\\n'), b: b.stdout.split('\\n'), whole: whole.stdout.split('\\n'), stderr: a.stderr + b.stderr + whole.stderr,
        iso: [a.isolation, whole.isolation], template: ex.templateSteps !== null, codes: [a.exitCode, b.exitCode, whole.exitCode] }));`);
    expect(out.stderr).toBe('');
    expect(out.codes).toEqual([0, 0, 0]);
    expect(out.template).toBe(true);
    const norm = (l: string[]) => l.map((x) => x.trim().replace(/\s+/g, ' '));
    const [a, b, whole] = [norm(out.a), norm(out.b), norm(out.whole)];
    // the maps and setgroups the sandbox sees: as in the whole view (the caller's own ids)
    expect(a.slice(0, 4)).toEqual(['0 65534 1', '0 65534 1', 'deny', '0']);
    expect(whole.slice(0, 4)).toEqual(a.slice(0, 4));
    // from the template (its hidden proc under /dev), the same skeleton for both, a mount
    // namespace each; the whole view has none
    expect(a[4]).toBe('1');
    expect(whole[4]).toBe('0');
    expect(b[5]).toBe(a[5]);
    expect(b[6]).not.toBe(a[6]);
    // /dev read-only, its nodes and shm work; lo up
    expect(a.slice(7, 11)).toEqual(['1', '4', 'shm', 'unknown']);
    expect(out.iso[0]).toEqual(out.iso[1]);
  });

  it('every mount of its copy is locked, also with CAP_SYS_ADMIN kept; nsbox\'s user namespace is its parent, out of its reach', () => {
    const out = asNobody(`
      const { readlinkSync } = await import('node:fs');
      const script = \`
${MOUNT_LOCK_PROBE}
fd = os.open('/proc/self/ns/user', os.O_RDONLY)
try:
    fcntl.ioctl(fd, 0xb702)
    print('parent LEAK')
except OSError as e:
    print('parent', os.strerror(e.errno))
\`;
      const p = nsbox.spawnIsolated('/usr/bin/python3', ['-c', 'import sys; sys.stdin.read(1); exec(sys.argv[1])', script], { capabilities: ['CAP_SYS_ADMIN'], seccomp: 'none', stdio: 'pipe' });
      await new Promise((r) => p.once('spawn', r));
      // outside: the sandbox's user namespace, its parent (nsbox's) and the caller's
      const { execFileSync } = await import('node:child_process');
      const ns = execFileSync('/usr/bin/python3', ['-c', \`
import fcntl, os, sys
fd = os.open('/proc/%s/ns/user' % sys.argv[1], os.O_RDONLY)
parent = fcntl.ioctl(fd, 0xb702)
grand = fcntl.ioctl(parent, 0xb702)
print(os.fstat(fd).st_ino, os.fstat(parent).st_ino, os.fstat(grand).st_ino, os.stat('/proc/self/ns/user').st_ino)\`, String(p.pid)]).toString().trim().split(' ').map(Number);
      p.stdin.end('x');
      const r = await p;
      console.log(JSON.stringify({ lines: r.stdout.trim().split('\\n'), stderr: r.stderr, ns }));`);
    expect(out.stderr).toBe('');
    expect(out.lines).toEqual([...MOUNT_LOCK_EXPECTED, 'parent Operation not permitted']);
    const [own, parent, grand, caller] = out.ns;
    // made in nsbox's user namespace, which is the caller's child (not the caller's own)
    expect(parent).not.toBe(own);
    expect(parent).not.toBe(caller);
    expect(grand).toBe(caller);
  });

  it('a sandbox keeping no capabilities gets a network namespace made ahead in nsbox\'s user namespace (lo up, out of its reach), which the caller joins with its user namespace', () => {
    const out = asNobody(`
      const { execFileSync } = await import('node:child_process');
      const parentOf = (pid) => Number(execFileSync('/usr/bin/python3', ['-c', \`import fcntl, os; fd = os.open('/proc/\${pid}/ns/user', os.O_RDONLY); print(os.fstat(fcntl.ioctl(fd, 0xb702)).st_ino)\`]).toString());
      let seen;
      for (let i = 0; i < 20 && !seen; i++) {
        await new Promise((r) => setTimeout(r, 50)); // a spare is made once a sandbox that used one has exited
        const p = nsbox.spawnIsolated('/bin/sh', ['-c', 'read x; cat /sys/class/net/lo/operstate; ip link set lo down 2>/dev/null || echo refused'], { stdio: 'pipe' });
        await new Promise((r) => p.once('spawn', r));
        const user = nsbox.Namespace.ofProcess(p.pid, 'user'), net = nsbox.Namespace.ofProcess(p.pid, 'net');
        if (net.ownerInode !== user.inode) {
          const joined = await nsbox.spawnIsolated('/bin/sh', ['-c', 'cat /sys/class/net/lo/operstate; readlink /proc/self/ns/net'], { join: { user, net } });
          seen = { owner: net.ownerInode, parent: parentOf(p.pid), net: net.inode, joined: joined.stdout + joined.stderr };
        }
        user.close(); net.close();
        p.stdin.end('\\n');
        const r = await p;
        if (seen) seen.out = r.stdout;
      }
      console.log(JSON.stringify(seen ?? null));`);
    expect(out).not.toBeNull();
    expect(out.owner).toBe(out.parent);
    expect(out.out).toBe('unknown\nrefused\n');
    expect(out.joined).toBe(`unknown\nnet:[${out.net}]\n`);
  });

  it.skipIf(!!cannotBuild())('the escape battery\'s attacks fail in its sandboxes', () => {
    scratch = mkdtempSync(join(tmpdir(), 'nsbox-escape-nonroot-'));
    chmodSync(scratch, 0o755);
    const bin = join(scratch, 'escape.static');
    copyFileSync(buildC('escape', { static: true }), bin);
    chmodSync(bin, 0o755);
    // the binary comes in on stdin (the default view has nothing of the caller's): /tmp is the sandbox's own
    const out = asNobody(`
      const { readFileSync } = await import('node:fs');
      const bin = readFileSync(${JSON.stringify(bin)});
      const res = [];
      for (const seccomp of ['default', 'none']) {
        for (const attack of ['proc-exe', 'fds', 'kernel-files', 'release-agent', 'masked', 'nnp']) {
          const p = nsbox.spawnIsolated('/bin/sh', ['-c', 'cat > /tmp/e && chmod 755 /tmp/e && exec /tmp/e "$0"; grep -c " /dev/proc " /proc/self/mountinfo', attack], { seccomp, stdio: 'pipe' });
          p.stdin.end(bin);
          const r = await p;
          res.push({ attack, seccomp, code: r.exitCode, out: r.stdout + r.stderr });
        }
      }
      console.log(JSON.stringify(res));`);
    expect(out).toHaveLength(12);
    for (const r of out) {
      expect(r.out, `${r.attack} (seccomp ${r.seccomp})`).not.toMatch(/ALLOWED/);
      expect(r.out, `${r.attack} (seccomp ${r.seccomp})`).toMatch(/^DENIED /m);
      expect(r.code, `${r.attack} (seccomp ${r.seccomp}): ${r.out}`).toBe(0);
    }
  });
});

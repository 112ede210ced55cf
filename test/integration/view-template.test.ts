// The view template (lib/plan templateView, addon/src/helpers.cc EnsureTemplate and
// LaunchInTemplate) and the network namespaces made ahead (NetSpare): what a sandbox sees,
// what it cannot undo whatever capabilities it keeps, and when they are (not) used.
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnIsolated, explain, Namespace, Bridge } from '../../lib/index.js';
import { ranError, runFresh } from '../helpers/proc.js';
import { isRoot, mountTable, skipReason, sleep } from '../helpers/host.js';
import { MOUNT_LOCK_EXPECTED, MOUNT_LOCK_PROBE } from '../helpers/mount-locks.js';
import { busyboxRootfs, removeScratch, scratch } from './fs-helpers.js';

const sh = (script: string, options: Parameters<typeof spawnIsolated>[2] = {}) => spawnIsolated('/bin/sh', ['-c', script], options);
const root = fileURLToPath(new URL('../..', import.meta.url));
const inode = (link: string) => Number(/\[(\d+)\]/.exec(link)![1]);

describe.skipIf(skipReason(!isRoot, 'view templates are made for root callers only (they need CAP_SYS_ADMIN in the initial user namespace)'))('view template', () => {
  it('the default view comes from a template: one read-only skeleton shared, a mount namespace per sandbox', async () => {
    expect(explain('/bin/true').templateSteps).not.toBeNull();
    const probe = 'stat -c "%d %y" / /dev; readlink /proc/self/ns/mnt';
    // The first sandbox's mount namespace is held open (an nsfs fd) while the second runs: once
    // freed, its inode number could be handed to the next namespace, and "each its own copy"
    // would fail by chance (seen in the 6.1 guest). The two still run one after the other, so
    // they share an id block and with it the template.
    const first = sh(`${probe}; read x`, { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise((res) => first.once('spawn', res));
    const held = openSync(`/proc/${first.pid}/ns/mnt`, 'r');
    try {
      first.stdin!.end('\n');
      const a = (await first).stdout.trim().split('\n');
      const b = (await sh(probe)).stdout.trim().split('\n');
      expect(a).toHaveLength(3);
      expect(b.slice(0, 2)).toEqual(a.slice(0, 2)); // the same root and /dev (device and ns-precise mtime)
      expect(b[2]).not.toBe(a[2]); // each its own copy
    } finally {
      closeSync(held);
    }
  });

  it('is made again after the host mount table changes', async () => {
    // the root's mtime, to the nanosecond, is when the template was made (a device number
    // could be handed out again once the old template is gone)
    const before = (await sh('stat -c %y /')).stdout;
    expect((await sh('stat -c %y /')).stdout).toBe(before);
    const dir = mkdtempSync('/tmp/nsbox-tpl-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', 'nsbox-tpl-test', dir]);
      execFileSync('umount', [dir]);
    } finally {
      rmdirSync(dir);
    }
    expect((await sh('stat -c %y /')).stdout).not.toBe(before);
  });

  it('every mount from the template is locked, also for a sandbox that keeps CAP_SYS_ADMIN; the hidden proc and sysfs stay out of reach', async () => {
    // the system calls themselves (util-linux's mount and umount have policies of their own)
    const r = await spawnIsolated('/usr/bin/python3', ['-c', `${MOUNT_LOCK_PROBE}
print('own proc unmounted', libc.umount2(b'/proc', MNT_DETACH) == 0)
print(sorted(os.listdir('/proc')))`], { capabilities: ['CAP_SYS_ADMIN'], seccomp: 'none' }); // the kernel's locks alone
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 9)).toEqual(MOUNT_LOCK_EXPECTED);
    // under the sandbox's own proc: only the masks' empty file and directory, no host pid
    expect(lines.slice(9)).toEqual(['own proc unmounted True', "['dir', 'file']"]);
  });

  it('/dev is read-only; its nodes, pts and shm work; the skeleton belongs to the sandbox root', async () => {
    const r = await sh(`
      touch /dev/x 2>&1 | grep -c 'Read-only file system'
      echo hi > /dev/null && head -c 4 /dev/zero | wc -c
      touch /dev/shm/x && echo shm ok
      test -c /dev/pts/ptmx && echo pts ok
      stat -c %u:%g / /dev /var /tmp /home /run`);
    expect(r.stdout.trim().split('\n')).toEqual(['1', '4', 'shm ok', 'pts ok', '0:0', '0:0', '0:0', '0:0', '0:0', '0:0']);
  });

  it('a sandbox with no capabilities gets a network namespace made ahead (lo up, its own sysfs); one that keeps capabilities owns its own', async () => {
    await sh('true'); // the first one starts the making of a spare
    await sleep(50);
    const hostUserNs = inode(readlinkSync('/proc/self/ns/user'));
    const ownerOf = async (options: Parameters<typeof spawnIsolated>[2]) => {
      const p = sh('read x; ls /sys/class/net; cat /sys/class/net/lo/operstate', { stdio: 'pipe', ...options });
      await new Promise((resolve) => p.once('spawn', resolve));
      const userNs = Namespace.ofProcess(p.pid!, 'user'), netNs = Namespace.ofProcess(p.pid!, 'net');
      const out = { user: userNs.inode, net: netNs.inode, netOwner: netNs.ownerInode };
      userNs.close();
      netNs.close();
      p.stdin!.end('\n');
      const r = await p;
      return { ...out, stdout: r.stdout };
    };
    const plain = await ownerOf({});
    expect(plain.netOwner).toBe(hostUserNs);
    expect(plain.stdout).toBe('lo\nunknown\n');
    await sleep(50);
    const again = await ownerOf({});
    expect(again.net).not.toBe(plain.net); // never shared: a fresh spare each time
    const withCaps = await ownerOf({ capabilities: ['CAP_NET_ADMIN'] });
    expect(withCaps.netOwner).toBe(withCaps.user);
    expect(withCaps.stdout).toBe('lo\nunknown\n');
    // the one with CAP_NET_ADMIN can manage its namespace; without it, nothing can
    expect((await sh('ip link set lo down && echo down', { capabilities: ['CAP_NET_ADMIN'] })).stdout).toBe('down\n');
    expect((await sh('ip link set lo down 2>/dev/null || echo refused')).stdout).toBe('refused\n');
  });

  it('viewTemplate: false builds the whole view for one sandbox (its /dev writable)', async () => {
    const r = await sh('touch /dev/x && echo made; grep -c " /dev/proc " /proc/self/mountinfo', { viewTemplate: false });
    expect(r.stdout).toBe('made\n0\n');
  });

  it('NSBOX_VIEW_TEMPLATE=0 turns templates off: the whole view is built per sandbox', async () => {
    const script = `
      const { spawnIsolated, explain } = await import(${JSON.stringify(`${root}/dist/index.js`)});
      const r = await spawnIsolated('/bin/sh', ['-c', 'stat -c %u:%g /; ls /dev | wc -l; cat /sys/class/net/lo/operstate']);
      process.stdout.write(JSON.stringify({ template: explain('/bin/true').templateSteps, out: r.stdout }));`;
    const r = await runFresh(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, NSBOX_VIEW_TEMPLATE: '0' } });
    if (r.status !== 0) throw ranError(r, 'fresh Node process');
    const out = JSON.parse(r.stdout);
    expect(out.template).toBeNull();
    expect(out.out).toBe('0:0\n13\nunknown\n');
  });

  it('leaves nothing on the host: no template mount in its mount table', async () => {
    await sh('true');
    expect(mountTable().join('\n')).not.toMatch(/nsbox-(root|dev|mask|base)/);
  });

  it('12 sandboxes at once, round after round: the template of each id block in use is kept, not built again', async () => {
    // each running sandbox has an id block of its own, and a template per block: with fewer
    // kept than blocks in use (8 before), every spawn of the next round built one again
    const templates = () => new Set(readdirSync('/proc/self/fd').flatMap((f) => {
      try { const l = readlinkSync(`/proc/self/fd/${f}`); return l.startsWith('mnt:') ? [l] : []; } catch { return []; }
    }));
    const round = async () => {
      const ps = Array.from({ length: 12 }, () => sh('read x', { stdio: ['pipe', 'ignore', 'ignore'] }));
      await Promise.all(ps.map((p) => new Promise((res) => p.once('spawn', res))));
      for (const p of ps) p.stdin!.end('\n');
      for (const p of ps) expect((await p).exitCode).toBe(0);
      await sleep(100); // the sandboxes' own mount namespaces are let go off the loop
    };
    await round();
    const first = templates();
    await round();
    await round();
    const third = templates();
    expect(first.size).toBeGreaterThanOrEqual(12);
    expect([...first].filter((t) => !third.has(t))).toEqual([]);
  });
});

// A root caller's rootfs (lib/plan/view.ts rootfsTemplateView): the rootfs bound in a template,
// kept by its path and its directory's identity; a mount of the template removed on the host
// drops it (addon, EnsureTemplate: the template namespace's mounts file is polled).
describe.skipIf(skipReason(!isRoot, 'view templates are made for root callers only (they need CAP_SYS_ADMIN in the initial user namespace)'))('view template of a rootfs', () => {
  const makeRootfs = (dir: string) => {
    busyboxRootfs(dir);
    for (const d of ['proc', 'dev', 'sys', 'tmp']) mkdirSync(join(dir, d));
    return dir;
  };

  it('serves a rootfs with real /proc, /dev, /sys and /tmp: its content live, the root read-only, /tmp per sandbox, the same isolation as the whole view', async () => {
    const rootfs = makeRootfs(join(scratch('tplroot'), 'rootfs'));
    try {
      // the first sandbox of a root gets the whole view (a root made for one sandbox gets no
      // template); from the second one on, a template
      expect(explain('/bin/true', [], { rootfs }).templateSteps).toBeNull();
      expect(explain('/bin/true', [], { rootfs }).templateSteps).not.toBeNull();
      const probe = 'stat -c %y /dev; cat /marker 2>&1; touch /x 2>&1 | grep -c "Read-only"; ls /tmp; echo mine > /tmp/f; test -c /dev/null && echo null';
      writeFileSync(join(rootfs, 'marker'), 'one\n');
      const a = await sh(probe, { rootfs });
      writeFileSync(join(rootfs, 'marker'), 'two\n'); // bound, not copied: the next one sees it
      const b = await sh(probe, { rootfs });
      const [la, lb] = [a.stdout.trim().split('\n'), b.stdout.trim().split('\n')];
      expect(lb[0]).toBe(la[0]); // the same template (its /dev)
      expect(la.slice(1)).toEqual(['one', '1', 'null']); // an empty /tmp of its own
      expect(lb.slice(1)).toEqual(['two', '1', 'null']); // the first one's /tmp/f is not here
      const full = await sh('true', { rootfs, viewTemplate: false });
      expect(a.isolation).toEqual({ ...full.isolation, uidMap: a.isolation.uidMap, gidMap: a.isolation.gidMap });
      // a writable rootfs: writes reach the caller's directory, as with the whole view
      chmodSync(rootfs, 0o777); // the sandbox's root is an unprivileged host id
      const w = await sh('echo w > /written && echo ok', { rootfs: { path: rootfs, readonly: false } });
      expect(w.stdout + w.stderr).toBe('ok\n');
      expect(readFileSync(join(rootfs, 'written'), 'utf8')).toBe('w\n');
    } finally {
      removeScratch();
    }
  });

  it('a directory put in place of the rootfs gets a template of its own', async () => {
    const base = scratch('tplswap');
    const rootfs = makeRootfs(join(base, 'rootfs'));
    try {
      writeFileSync(join(rootfs, 'marker'), 'old\n');
      expect((await sh('cat /marker', { rootfs })).stdout).toBe('old\n');
      expect((await sh('cat /marker', { rootfs })).stdout).toBe('old\n'); // the template's
      const again = makeRootfs(join(base, 'other')); // another directory, seen twice at the path below
      writeFileSync(join(again, 'marker'), 'new\n');
      renameSync(rootfs, join(base, 'aside')); // no mount point of the template goes: no event
      renameSync(again, rootfs);
      expect((await sh('cat /marker', { rootfs })).stdout).toBe('new\n');
      expect((await sh('cat /marker', { rootfs })).stdout).toBe('new\n'); // a template of its own
      expect(explain('/bin/true', [], { rootfs }).templateSteps).not.toBeNull();
    } finally {
      removeScratch();
    }
  });

  it('is made again when one of its mount points is removed on the host (the kernel detaches the mount in the template)', async () => {
    const rootfs = makeRootfs(join(scratch('tplrm'), 'rootfs'));
    try {
      for (let i = 0; i < 2; i++) expect((await sh('test -c /dev/null && echo null', { rootfs })).stdout).toBe('null\n');
      expect(explain('/bin/true', [], { rootfs }).templateSteps).not.toBeNull();
      rmdirSync(join(rootfs, 'dev'));
      mkdirSync(join(rootfs, 'dev'));
      expect((await sh('test -c /dev/null && echo null; ls /dev | wc -l', { rootfs })).stdout).toBe('null\n13\n');
    } finally {
      removeScratch();
    }
  });

  it('templates made and evicted over and over leave no fd behind (the builder closes what it resolved in the rootfs)', async () => {
    // 34 roots, one after the other: more templates than the addon keeps (32), so each round
    // makes and evicts them again. Before the fix each build left its rootfs fd open
    const base = scratch('tplfds');
    const roots = Array.from({ length: 34 }, (_, i) => makeRootfs(join(base, `r${i}`)));
    const fds = () => readdirSync('/proc/self/fd').length;
    try {
      const round = async () => { for (const rootfs of roots) expect((await sh('true', { rootfs })).exitCode).toBe(0); };
      await round();
      await round();
      const after2 = fds();
      await round();
      await round();
      await round();
      expect(fds() - after2).toBeLessThan(6);
    } finally {
      removeScratch();
    }
  });

  it('a rootfs with /etc files of a network (a bridge): the whole view, nothing written into the rootfs', async () => {
    // the pipeline copies the plan to add the files (forkPlan): the copy must still say its
    // template is a rootfs's, else the files went to the rootfs's own /run (written there for
    // a writable one). Before the fix: /run/.nsbox-etc-hosts in the caller's directory
    const rootfs = makeRootfs(join(scratch('tpletc'), 'rootfs'));
    mkdirSync(join(rootfs, 'run'), { mode: 0o777 });
    chmodSync(join(rootfs, 'run'), 0o777);
    const name = `nsbox${process.pid.toString(36)}t`;
    const br = Bridge.create(name, { address: '10.93.9.1/24' });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await sh('cat /etc/hosts', { rootfs: { path: rootfs, readonly: false }, network: { bridge: br, address: `10.93.9.${10 + i}`, hostname: 'tplhost' } });
        expect(r.stdout + r.stderr).toContain('tplhost');
      }
      expect(readdirSync(join(rootfs, 'run'))).toEqual([]);
    } finally {
      await br.destroy();
      removeScratch();
    }
  });

  it('a rootfs without a /dev (made on a mirror) or a caller mount: the whole view each time', async () => {
    const rootfs = busyboxRootfs(join(scratch('tplnodev'), 'rootfs'));
    try {
      for (let i = 0; i < 2; i++) expect(explain('/bin/true', [], { rootfs }).templateSteps).toBeNull();
      expect((await sh('test -c /dev/null && echo null', { rootfs })).stdout).toBe('null\n');
      const full = makeRootfs(join(scratch('tplmnt'), 'rootfs'));
      for (let i = 0; i < 2; i++) expect(explain('/bin/true', [], { rootfs: full, mounts: [{ type: 'tmpfs', target: '/work' }] }).templateSteps).toBeNull();
      expect(explain('/bin/true', [], { rootfs: full }).templateSteps).toBeNull(); // seen once
      expect(explain('/bin/true', [], { rootfs: full }).templateSteps).not.toBeNull();
    } finally {
      removeScratch();
    }
  });
});

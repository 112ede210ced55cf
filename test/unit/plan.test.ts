// Issue 2, item 5: the planner rejects bad options before anything exists, and plans what
// the README promises. Pure: a fake HostFacts stands in for the host (no kernel involved).
import { describe, it, expect, vi, afterEach } from 'vitest';
import { planView, type ViewSpec } from '../../lib/plan/view.js';
import { buildPlan, encodeOps, ImageTemplateUnfit, Op, DEFAULT_MASKED_PATHS, FALLBACK_RANGE_START, provideEtcFiles, sandboxIdMaps, idBlockSource, wantsIdBlock, REGION_BLOCKS, type HostFacts } from '../../lib/plan/index.js';

const host = (over: Partial<HostFacts> = {}): HostFacts => ({
  euid: 0,
  egid: 0,
  lastCap: 40,
  subordinate: () => null,
  cgroups: () => ({ version: 1, v1: [['memory'], ['pids']] }),
  pathKind: (p) => (p === '/bin' ? { kind: 'symlink', target: 'usr/bin' } : p.startsWith('/missing') || p === '/libx32' || p === '/lib32' ? { kind: 'missing' } : p.endsWith('.txt') ? { kind: 'file' } : { kind: 'dir' }),
  ...over,
});
const plan = (options: object, file = '/bin/true', args: string[] = []) => buildPlan({ file, args, options }, host());

describe('buildPlan: bad input', () => {
  it.each([
    ['an empty program', () => buildPlan({ file: '', args: [], options: {} }, host()), TypeError, /file must not be empty/],
    ['a relative rootfs', () => plan({ rootfs: 'rootfs' }), TypeError, /options.rootfs must be an absolute path/],
    ['a rootfs that is not a directory', () => plan({ rootfs: '/missing/x' }), TypeError, /options.rootfs must be an existing directory/],
    ['a mount target escaping with ..', () => plan({ mounts: [{ type: 'tmpfs', target: '/tmp/../../etc' }] }), TypeError, /options.mounts\[0\].target must not contain '..'/],
    ['a bind source that does not exist', () => plan({ mounts: [{ type: 'bind', source: '/missing/src', target: '/x' }] }), TypeError, /options.mounts\[0\].source does not exist/],
    ['overlapping id maps', () => plan({ user: { uidMap: [{ inside: 0, outside: 100000, count: 10 }, { inside: 5, outside: 200000, count: 10 }], gidMap: [{ inside: 0, outside: 100000, count: 1 }] } }), RangeError, /options.user.uidMap has overlapping inside ranges/],
    ['overlapping outside ranges', () => plan({ user: { uidMap: [{ inside: 0, outside: 100000, count: 10 }, { inside: 10, outside: 100005, count: 10 }], gidMap: [{ inside: 0, outside: 100000, count: 1 }] } }), RangeError, /overlapping outside ranges/],
    ['an unknown capability', () => plan({ capabilities: ['CAP_FLY'] }), TypeError, /options.capabilities: unknown capability 'CAP_FLY'/],
    ['an unknown option', () => plan({ rootFS: '/x' }), TypeError, /options has an unknown key 'rootFS'/],
    ['an unmapped uid', () => plan({ uid: 70000 }), RangeError, /options.uid 70000 is not mapped/],
    ['a hostname without a uts namespace', () => plan({ hostname: 'x', namespaces: { uts: false } }), TypeError, /options.hostname needs a uts namespace of the sandbox's own, new or joined/],
    ['a bad rlimit', () => plan({ rlimits: { nofile: { soft: 10, hard: 5 } } }), RangeError, /options.rlimits.nofile soft must not exceed hard/],
    ['a NUL in an argument', () => buildPlan({ file: '/bin/echo', args: ['a\0b'], options: {} }, host()), TypeError, /args\[0\] must not contain a NUL/],
    ['a bad stdio', () => plan({ stdio: 'pipes' }), TypeError, /options.stdio must be/],
    ['extraFds with nsbox-init', () => plan({ extraFds: [3] }), TypeError, /options\.extraFds needs init: false/],
    ['a bad extra fd', () => plan({ extraFds: [-1], init: false }), RangeError, /options\.extraFds\[0\]/],
    ['an env name with =', () => plan({ env: { 'A=B': 'x' } }), TypeError, /options.env has an invalid name/],
  ])('rejects %s', (_what, f, Err, msg) => {
    expect(f).toThrow(Err);
    expect(f).toThrow(msg);
  });
});

describe('buildPlan: defaults', () => {
  it('creates every namespace but time, maps root to the fallback range, keeps no capability', () => {
    const p = plan({});
    expect(p.summary.namespaces).toEqual(['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup']);
    expect(p.uidMap).toBe(`0 ${FALLBACK_RANGE_START} 65536\n`);
    for (const k of ['capsBounding', 'capsEffective', 'capsPermitted', 'capsInheritable', 'capsAmbient'] as const) expect(p[k]).toEqual([0, 0]);
    expect(p.noNewPrivs).toBe(true);
    expect(p.envp).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root']);
    expect(p.hostname).toBe('nsbox');
    expect(p.rlimits).toEqual([{ resource: 4, soft: 0, hard: 0 }]);
  });

  it('uses the /etc/subuid range of remapUser when there is one', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: { remapUser: 'svc' } }, host({
      subordinate: (f, u) => (u === 'svc' ? { start: f === 'subuid' ? 300000 : 400000, count: 65536 } : null),
    }));
    expect(p.uidMap).toBe('0 300000 65536\n');
    expect(p.gidMap).toBe('0 400000 65536\n');
  });

  it('maps a non-root caller to itself and denies setgroups', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: {} }, host({ euid: 1000, egid: 1000 }));
    expect(p.uidMap).toBe('0 1000 1\n');
    expect(p.setgroupsDeny).toBe(true);
    expect(p.setGroups).toBe(false);
  });

  it('shows host system dirs read-only, copies symlinks, and gives fresh tmpfs dirs', () => {
    const p = plan({});
    const binds = p.ops.filter((o) => o.op === Op.Bind && o.readonly).map((o) => o.path);
    expect(binds).toEqual(expect.arrayContaining(['/newroot/usr', '/newroot/etc', '/newroot/lib', '/newroot/sbin']));
    expect(p.ops).toContainEqual(expect.objectContaining({ op: Op.Symlink, source: 'usr/bin', path: '/newroot/bin' }));
    const tmpfs = p.ops.filter((o) => o.op === Op.Mount && o.fstype === 'tmpfs').map((o) => o.path);
    expect(tmpfs).toEqual(expect.arrayContaining(['/newroot/tmp', '/newroot/home', '/newroot/root', '/newroot/run', '/newroot/var/tmp']));
    expect(binds).not.toContain('/newroot/home');
    expect(p.ops.at(-1)).toMatchObject({ op: Op.PivotRoot, path: '/newroot' });
  });

  it('builds exec candidates from the sandbox PATH', () => {
    const p = buildPlan({ file: 'ls', args: ['-l'], options: { env: { PATH: '/a:/b' } } }, host());
    expect(p.exec).toEqual(['/a/ls', '/b/ls']);
    expect(p.argv).toEqual(['ls', '-l']);
  });

  it('joins in order mount last, in two stages: user first unprivileged, after the others as root', () => {
    const fake = (type: string, fd: number) => ({ type, fd }) as never;
    const join = { join: { mount: fake('mount', 7), net: fake('net', 5), user: fake('user', 4) } };
    const p = plan(join);
    // root enters a network namespace nsbox's user namespace owns (netPremade) before the
    // sandbox's user namespace, from which it could not
    expect(p.joins.map((j) => j.type)).toEqual(['net', 'user', 'mount']);
    expect(p.twoStage).toBe(true);
    expect(p.cloneFlags).toBe(0);
    expect(p.newPidAtStage2).toBe(true);
    const unprivileged = buildPlan({ file: '/bin/true', args: [], options: join }, host({ euid: 1000, egid: 1000 }));
    expect(unprivileged.joins.map((j) => j.type)).toEqual(['user', 'net', 'mount']);
  });

  it('calls setgroups in a joined user namespace only where it allows them (issue 15)', () => {
    const user = { type: 'user', fd: 4 } as never;
    const sg = (euid: number, state: 'allow' | 'deny' | undefined, groups?: number[]) =>
      buildPlan({ file: '/bin/true', args: [], options: { join: { user }, ...(groups ? { groups } : {}) } }, host({ euid, egid: euid, setgroupsOf: () => state }));
    expect(sg(1000, 'deny').setGroups).toBe(false);
    expect(sg(1000, undefined).setGroups).toBe(false); // not known: nothing asked, nothing called
    expect(sg(1000, undefined, [5]).setGroups).toBe(true); // asked: the kernel answers
    expect(sg(1000, 'allow').setGroups).toBe(true);
    expect(sg(0, 'deny').setGroups).toBe(false);
    expect(sg(0, undefined).setGroups).toBe(true);
    expect(() => sg(1000, 'deny', [5])).toThrow(/options.groups cannot be set in the joined user namespace/);
  });

  it("mounts a sysfs of a joined network namespace when the joined user namespace owns it (user-mode networking's holder); binds the host's /sys for one joined across user namespaces, and says which", () => {
    const fake = (type: string, fd: number) => ({ type, fd }) as never;
    const user = fake('user', 4), net = fake('net', 5);
    const owned = host({ ownsNamespace: (u, n) => u === user && n === net });
    const sysOf = (p: ReturnType<typeof plan>) => p.ops.filter((o) => o.path === '/newroot/sys');
    for (const h of [owned, host({ ...owned, euid: 1000, egid: 1000 })]) {
      const p = buildPlan({ file: '/bin/true', args: [], options: { join: { user, net } } }, h);
      expect(sysOf(p)).toEqual([expect.objectContaining({ op: Op.Mount, fstype: 'sysfs', netSysfs: true, real: true, trusted: true })]);
      // no lo to bring up: the joined namespace is as its maker left it
      expect(p.ops.some((o) => o.op === Op.LoopbackUp)).toBe(false);
      expect(p.summary).toMatchObject({ network: 'joined', sysfs: 'own' });
      // the same through network: { join }
      expect(sysOf(buildPlan({ file: '/bin/true', args: [], options: { network: { join: net }, join: { user } } }, h))[0]).toMatchObject({ fstype: 'sysfs', netSysfs: true });
    }
    // owned by another user namespace, or joined without one: the host's /sys, read-only, and the report says so
    for (const options of [{ join: { user: fake('user', 6), net } }, { join: { net } }, { network: { join: net } }]) {
      const p = buildPlan({ file: '/bin/true', args: [], options }, owned);
      expect(sysOf(p)).toEqual([expect.objectContaining({ op: Op.Bind, source: '/oldroot/sys', readonly: true })]);
      expect(sysOf(p)[0]!.netSysfs).toBeUndefined();
      expect(p.summary).toMatchObject({ network: 'joined', sysfs: 'host' });
    }
    expect(plan({}).summary.sysfs).toBe('own');
    expect(plan({ network: 'host' }).summary.sysfs).toBe('host');
    expect(plan({ namespaces: { mount: false } }).summary.sysfs).toBe('host');
    expect(plan({ join: { mount: fake('mount', 7) } }).summary.sysfs).toBe('joined');
  });

  it('takes the default view from a view template where the host allows it: the read-only skeleton built once, the fresh mounts per sandbox', () => {
    const h = host({ viewTemplates: () => true, subordinate: () => ({ start: 100000, count: 4 * 65536 }) });
    const p = buildPlan({ file: '/bin/true', args: [], options: {} }, h);
    expect(p.template).toBeDefined();
    const build = p.template!.build, child = p.template!.child;
    // the skeleton: the root and /dev tmpfs owned by the sandbox root, read-only to the superblock
    expect(build.find((o) => o.source === 'nsbox-root')?.data).toBe('mode=0755,uid=100000,gid=100000');
    expect(build.filter((o) => o.op === Op.Mount && o.flags! & 32 && o.flags! & 1).map((o) => o.path)).toEqual(['/newroot/proc', '/newroot/dev', '/newroot']);
    // proc and sysfs instances mounted before /dev covers them, and the pivot into it
    const at = (b: string) => build.findIndex((o) => o.path === b && o.op === Op.Mount);
    expect(at('/newroot/dev/proc')).toBeLessThan(at('/newroot/dev'));
    expect(at('/newroot/dev/sys')).toBeLessThan(at('/newroot/dev'));
    expect(build.at(-1)).toMatchObject({ op: Op.PivotRoot, path: '/newroot' });
    // per sandbox: no pivot, nothing of the host's tree, masks from the template's fds
    expect(child.some((o) => o.op === Op.PivotRoot || o.op === Op.Propagation)).toBe(false);
    expect(child.some((o) => [o.source, o.path].some((x) => x?.startsWith('/oldroot') || x?.startsWith('/newroot')))).toBe(false);
    expect(child.filter((o) => o.op === Op.MaskBind).map((o) => o.path)).toEqual(DEFAULT_MASKED_PATHS);
    expect(child.findIndex((o) => o.path === '/sys/firmware')).toBeGreaterThan(child.findIndex((o) => o.fstype === 'sysfs'));
    expect(p.netPremade).toBe(true);
    // the full view stays as the fallback
    expect(p.ops.at(-1)).toMatchObject({ op: Op.PivotRoot, path: '/newroot' });
  });

  it("makes a root caller's image a view template: layers idmapped and the init layer in the template, the writable overlay per sandbox moved onto /; refused (ImageTemplateUnfit) where a whole view is needed", () => {
    const h = host({ viewTemplates: () => true });
    const imageTemplate = {
      layers: [{ path: '/store/b/diff', id: '1:2' }, { path: '/store/a/diff', id: '1:3' }], userNsFd: 42,
      etc: { hostname: 'box\n', hosts: '127.0.1.1\tbox\n', 'resolv.conf': '' }, etcMode: 0o755, dirs: [['proc', 0o555]] as Array<[string, number]>,
      tmp: true, tmpfsSize: 8 << 20, rootfs: '/store/b/diff',
    };
    const p = (options: object) => buildPlan({ file: '/bin/true', args: [], options, imageTemplate, idBlock: { uid: 100000, gid: 100000 } }, h);
    const pl = p({});
    expect(pl.template?.image).toBe(true);
    // no whole view beside it: nothing to fall back on, and nothing of the host's tree per sandbox
    expect(pl.ops).toEqual([]);
    expect(pl.summary.rootfs).toBe('/store/b/diff');
    const build = pl.template!.build, child = pl.template!.child;
    expect(build.filter((o) => o.op === Op.IdmapBind)).toMatchObject([
      { source: '/oldroot/store/b/diff', path: '/newroot/l/0', fd: 42, readonly: true, data: 'nsbox-layer=1:2' },
      { source: '/oldroot/store/a/diff', path: '/newroot/l/1', fd: 42, readonly: true, data: 'nsbox-layer=1:3' },
    ]);
    // the init layer above the image's, owned by the sandbox's root; one read-only overlay of them
    expect(build.find((o) => o.fstype === 'overlay')).toMatchObject({ path: '/newroot/newroot', flags: 1 | 4, data: expect.stringMatching(/^lowerdir=\/newroot\/l\/init:\/newroot\/l\/0:\/newroot\/l\/1,/) });
    expect(build.find((o) => o.op === Op.WriteFile && o.path === '/newroot/l/init/etc/hostname')?.data).toBe('box\n');
    expect(build.filter((o) => o.op === Op.Chown).every((o) => o.uid === 100000 && o.gid === 100000)).toBe(true);
    // per sandbox: the writable layer on its own tmpfs, the overlay, then the move onto /
    expect(child.find((o) => o.source === 'nsbox-layer')).toMatchObject({ path: '/rw', fstype: 'tmpfs', data: `mode=0755,size=${8 << 20}` });
    expect(child.find((o) => o.fstype === 'overlay')).toMatchObject({ path: '/newroot', data: 'lowerdir=/newroot,upperdir=/rw/upper,workdir=/rw/work,userxattr' });
    expect(child.at(-1)).toMatchObject({ op: Op.MoveRoot, path: '/newroot', dir: '/newroot/proc/self/ns/mnt' });
    expect(child.some((o) => o.op === Op.PivotRoot || [o.source, o.path].some((x) => x?.startsWith('/oldroot')))).toBe(false);
    expect(child.filter((o) => o.op === Op.MaskBind).map((o) => o.path)).toEqual(DEFAULT_MASKED_PATHS.map((m) => `/newroot${m}`));
    // mount points in the image are resolved in its root (no symlink leads out of it)
    for (const at of ['/newroot/dev', '/newroot/proc', '/newroot/sys', '/newroot/tmp']) expect(child.find((o) => o.path === at && o.op !== Op.MaskBind)).toMatchObject({ real: true });
    expect(child.find((o) => o.path === '/newroot/dev')?.trusted).toBeFalsy();
    // files the network layer provides go into the new root before the move
    const q = { ...pl, template: { ...pl.template!, child: [...child] } };
    provideEtcFiles(q, { hosts: 'x' });
    expect(q.template.child.slice(-4).map((o) => o.op)).toEqual([Op.WriteFile, Op.Bind, Op.Unlink, Op.MoveRoot]);
    expect(q.template.child.at(-3)).toMatchObject({ source: '/rw/.nsbox-etc-hosts', path: '/newroot/etc/hosts', readonly: true });
    // a whole view is needed: refused, the image layer makes a container instead
    expect(() => p({ mounts: [{ type: 'tmpfs', target: '/scratch' }] })).toThrow(ImageTemplateUnfit);
    expect(() => p({ viewTemplate: false })).toThrow(ImageTemplateUnfit);
    expect(() => p({ user: false })).toThrow(ImageTemplateUnfit);
    expect(() => buildPlan({ file: '/bin/true', args: [], options: {}, imageTemplate }, host())).toThrow(ImageTemplateUnfit);
  });

  it('keeps the full view (no template) for a rootfs, caller mounts, joined namespaces, no user or network namespace of its own; no spare network namespace with capabilities', () => {
    const h = host({ viewTemplates: () => true });
    const p = (options: object) => buildPlan({ file: '/bin/true', args: [], options }, h);
    expect(p({ rootfs: '/srv/root' }).template).toBeUndefined();
    expect(p({ mounts: [{ type: 'tmpfs', target: '/scratch' }] }).template).toBeUndefined();
    expect(p({ user: false }).template).toBeUndefined();
    expect(p({ network: 'host' }).template).toBeUndefined();
    expect(p({ namespaces: { pid: false } }).template).toBeUndefined();
    expect(p({ join: { net: { type: 'net', fd: 3 } as never } }).template).toBeUndefined();
    expect(p({ viewTemplate: false }).template).toBeUndefined();
    expect(() => p({ viewTemplate: 'no' })).toThrow(/options.viewTemplate must be a boolean/);
    expect(p({ capabilities: ['CAP_NET_RAW'] }).netPremade).toBe(false);
    expect(p({ capabilities: ['CAP_NET_RAW'] }).template).toBeDefined();
    expect(buildPlan({ file: '/bin/true', args: [], options: {} }, host()).template).toBeUndefined();
  });
});

describe('buildPlan: an unprivileged caller\'s view template (issue 17)', () => {
  const h = host({ euid: 1000, egid: 1000, holderTemplates: () => true });
  const p = (options: object, hh: HostFacts = h) => buildPlan({ file: '/bin/true', args: [], options }, hh);

  it('is made in nsbox\'s own user namespace (Plan.holder) with the caller\'s own ids alone mapped, setgroups denied; /dev nodes and the hidden proc bound from the host', () => {
    const t = p({});
    expect(t.template).toBeDefined();
    expect(t.holder).toBe(true);
    expect(t.netPremade).toBe(true);
    expect(t.uidMap).toBe('0 1000 1\n');
    expect(t.setgroupsDeny).toBe(true);
    const build = t.template!.build;
    expect(build.some((o) => o.op === Op.Mknod)).toBe(false);
    expect(build.filter((o) => o.op === Op.Bind && o.source === '/oldroot/dev/null')).toHaveLength(1);
    expect(build.filter((o) => o.op === Op.Bind && o.source === '/oldroot/proc').map((o) => o.path)).toEqual(['/newroot/dev/proc']);
    expect(build.some((o) => o.op === Op.Mount && o.fstype === 'proc')).toBe(false);
    expect(build.filter((o) => o.op === Op.Mount && o.fstype === 'sysfs').map((o) => o.path)).toEqual(['/newroot/dev/sys']);
    // a map of the caller's own id to another id inside is kept as it is
    expect(p({ user: { uidMap: [{ inside: 5, outside: 1000, count: 1 }], gidMap: [{ inside: 5, outside: 1000, count: 1 }] }, uid: 5 })).toMatchObject({ holder: true, uidMap: '5 1000 1\n' });
  });

  it('not with a subordinate range in use, with templates off, for root, or without a default view', () => {
    const sub = host({ euid: 1000, egid: 1000, holderTemplates: () => true, subordinate: () => ({ start: 100000, count: 65536 }) });
    expect(p({ user: { uidMap: [{ inside: 0, outside: 100000, count: 10 }], gidMap: [{ inside: 0, outside: 100000, count: 10 }] } }, sub).template).toBeUndefined();
    expect(p({}, host({ euid: 1000, egid: 1000 })).template).toBeUndefined();
    expect(p({}, host({ euid: 1000, egid: 1000, holderTemplates: () => false })).template).toBeUndefined();
    expect(p({}, host({ holderTemplates: () => true })).holder).toBeUndefined();
    expect(p({ mounts: [{ type: 'tmpfs', target: '/scratch' }] }).template).toBeUndefined();
    expect(p({ viewTemplate: false }).holder).toBeUndefined();
  });

  it('joining a user and a network namespace the joined user namespace does not own: the network namespace\'s owner and it are entered first (Plan.netOwnerFirst)', () => {
    const user = { type: 'user', fd: 3 } as never, net = { type: 'net', fd: 4 } as never;
    expect(p({ join: { user, net } }, host({ euid: 1000, egid: 1000, ownsNamespace: () => false })).netOwnerFirst).toBe(true);
    expect(p({ join: { user, net } }, host({ euid: 1000, egid: 1000, ownsNamespace: () => true })).netOwnerFirst).toBeUndefined();
    expect(p({ join: { user, net } }, host({ ownsNamespace: () => false })).netOwnerFirst).toBeUndefined();
    expect(p({ join: { net } }, host({ euid: 1000, egid: 1000, ownsNamespace: () => false })).netOwnerFirst).toBeUndefined();
  });
});

describe('buildPlan: hardening and runner options (issues 6, 7)', () => {
  const kinds = (p: string) => (p === '/proc/acpi' || p === '/sys/firmware' ? { kind: 'dir' as const } : p === '/proc/kcore' || p === '/proc/sched_debug' ? { kind: 'missing' as const } : p.startsWith('/proc/') ? { kind: 'file' as const } : p === '/bin' ? { kind: 'symlink' as const, target: 'usr/bin' } : { kind: 'dir' as const });
  const h = host({ pathKind: (p) => (p === '/dev/fuse' ? { kind: 'other' } : p === '/dev/nope' ? { kind: 'missing' } : kinds(p)) });

  it('masks files with the runtime-owned empty file and directories with a read-only tmpfs; skips what this kernel lacks', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: {} }, h);
    const keys = p.ops.find((o) => o.path === '/newroot/proc/keys');
    expect(keys).toMatchObject({ op: Op.Bind, source: '/nsbox-mask/file', file: true, trusted: true });
    expect(p.ops.find((o) => o.path === '/newroot/proc/acpi')).toMatchObject({ op: Op.Bind, source: '/nsbox-mask/dir' });
    // the source tmpfs is read-only before anything is bound from it (the binds inherit that)
    const ro = p.ops.findIndex((o) => o.op === Op.RemountRo && o.path === '/nsbox-mask');
    expect(ro).toBeGreaterThan(-1);
    expect(ro).toBeLessThan(p.ops.indexOf(keys!));
    expect(p.ops.some((o) => o.path === '/newroot/proc/kcore')).toBe(false);
    expect(p.summary.maskedPaths).not.toContain('/proc/kcore');
    expect(p.summary.readonlyPaths).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
    // the mask file is written on the scratch root, never inside the new root
    expect(p.ops.find((o) => o.op === Op.WriteFile && o.path === '/nsbox-mask/file')).toBeTruthy();
  });

  it('plans devices, tty, init and the nested user namespace limit', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: { devices: ['/dev/fuse'], tty: { rows: 10, cols: 20 } } }, h);
    expect(p.ops.find((o) => o.path === '/newroot/dev/fuse')).toMatchObject({ op: Op.Bind, source: '/oldroot/dev/fuse', file: true });
    expect([p.tty, p.ttyRows, p.ttyCols, p.init]).toEqual([true, 10, 20, true]);
    expect(p.stdio.map((s) => s.kind)).toEqual([2, 2, 2]);
    expect(p.ops.find((o) => o.path === '/newroot/proc/sys/user/max_user_namespaces')).toMatchObject({ op: Op.WriteFile, data: '0\n' });
    const q = buildPlan({ file: '/bin/true', args: [], options: { nestedUserNamespaces: true, namespaces: { pid: false } } }, h);
    expect(q.init).toBe(false);
    expect(q.ops.some((o) => o.path === '/newroot/proc/sys/user/max_user_namespaces')).toBe(false);
    // never the host's limit: without a user namespace of its own nothing is written
    const r = buildPlan({ file: '/bin/true', args: [], options: { user: false } }, h);
    expect(r.ops.some((o) => o.path === '/newroot/proc/sys/user/max_user_namespaces')).toBe(false);
  });

  it('marks /proc, /dev and /sys of a rootfs as targets that must not be symlinks', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: { rootfs: '/srv/root' } }, h);
    for (const t of ['/newroot/proc', '/newroot/dev', '/newroot/sys']) expect(p.ops.find((o) => o.path === t)?.real, t).toBe(true);
  });

  it("trusts (mounts by name) only what nsbox made; a rootfs and the caller's mounts are resolved in the root", () => {
    const mounts = [{ type: 'tmpfs', target: '/data' }];
    const view = buildPlan({ file: '/bin/true', args: [], options: { mounts } }, h);
    expect(view.ops.find((o) => o.path === '/newroot/usr')?.trusted).toBe(true);
    expect(view.ops.find((o) => o.path === '/newroot/tmp')?.trusted).toBe(true);
    expect(view.ops.find((o) => o.path === '/newroot/data')?.trusted).toBeFalsy();
    const rootfs = buildPlan({ file: '/bin/true', args: [], options: { rootfs: '/srv/root', mounts } }, h);
    expect(rootfs.ops.find((o) => o.path === '/newroot/proc')?.trusted).toBeFalsy();
    expect(rootfs.ops.find((o) => o.path === '/newroot/tmp')?.trusted).toBeFalsy();
    expect(rootfs.ops.find((o) => o.path === '/newroot/data')?.trusted).toBeFalsy();
    expect(rootfs.ops.find((o) => o.path === '/newroot/dev/null')?.trusted).toBe(true);
    expect(rootfs.ops.find((o) => o.path === '/newroot/proc/keys')?.trusted).toBe(true);
  });

  it.each([
    ['a device that is not a device node', { devices: ['/dev/nope'] }, /options\.devices\[0\] must be an existing device node/],
    ['a device outside /dev', { devices: ['/etc/passwd'] }, /options\.devices\[0\] must be a device under \/dev/],
    ['a tty of 0 rows', { tty: { rows: 0 } }, /options\.tty\.rows must be an integer/],
    ['a tty without a mount namespace', { tty: true, namespaces: { mount: false } }, /options\.tty needs a mount namespace of the sandbox's own/],
    ['a relative masked path', { maskedPaths: ['proc/x'] }, /options\.maskedPaths\[0\]/],
    ['a non-boolean init', { init: 'yes' }, /options\.init must be a boolean/],
  ])('rejects %s', (_w, options, msg) => {
    expect(() => buildPlan({ file: '/bin/true', args: [], options: options as object }, h)).toThrow(msg);
  });
});

describe('encodeOps (the binary ops the addon reads)', () => {
  it('lays out kind, bits, flags, mode and the four strings', () => {
    const b = encodeOps([
      { op: Op.Bind, source: '/oldroot/usr', path: '/newroot/usr', readonly: true, recursive: true, trusted: true, flags: 6 },
      { op: Op.WriteFile, path: '/x', data: Buffer.from([0, 1, 2]), mode: 0o644, recursive: false },
    ]);
    let off = 0;
    const u32 = () => { const v = b.readUInt32LE(off); off += 4; return v; };
    const str = () => { const n = b.readInt32LE(off); off += 4; if (n < 0) return undefined; const s = b.subarray(off, off + n); off += n; return s; };
    expect(u32()).toBe(2);
    expect([b[0 + off], b[1 + off]]).toEqual([Op.Bind, 1 | 4 | 16]);
    off += 4;
    expect([u32(), u32()]).toEqual([6, 0o755]);
    expect([str()?.toString(), str()?.toString(), str(), str()]).toEqual(['/oldroot/usr', '/newroot/usr', undefined, undefined]);
    expect([b[off], b[off + 1]]).toEqual([Op.WriteFile, 0]);
    off += 4;
    expect([u32(), u32()]).toEqual([0, 0o644]);
    expect(str()?.toString()).toBe('/x');
    expect([str(), str()]).toEqual([undefined, undefined]);
    expect([...str()!]).toEqual([0, 1, 2]);
    expect(off).toBe(b.length);
  });

  it('counts bytes, not characters', () => {
    const b = encodeOps([{ op: Op.Mkdir, path: '/tmp/é✓😀' }]);
    expect(b.readInt32LE(16)).toBe(Buffer.byteLength('/tmp/é✓😀'));
    expect(b.subarray(20, 20 + b.readInt32LE(16)).toString()).toBe('/tmp/é✓😀');
  });
});

describe('buildPlan: /sys comes late (its network namespace is made meanwhile)', () => {
  const steps = (o: object) => plan(o).ops.map((op) => `${op.op}:${op.path}`);
  it('after the masks and read-only paths outside /sys, before the ones under it', () => {
    const s = steps({});
    const sysfs = s.indexOf(`${Op.Mount}:/newroot/sys`);
    expect(sysfs).toBeGreaterThan(s.indexOf(`${Op.Bind}:/newroot/proc/acpi`));
    expect(sysfs).toBeGreaterThan(s.indexOf(`${Op.Bind}:/newroot/proc/sys`));
    expect(sysfs).toBeLessThan(s.indexOf(`${Op.Bind}:/newroot/sys/firmware`));
    expect(plan({}).ops.find((op) => op.path === '/newroot/sys')?.trusted).toBe(true);
  });
  it('before the caller mounts, which may go under /sys, and the masks after them', () => {
    const s = steps({ mounts: [{ type: 'tmpfs', target: '/sys/kernel/x' }] });
    const sysfs = s.indexOf(`${Op.Mount}:/newroot/sys`);
    const caller = s.indexOf(`${Op.Mount}:/newroot/sys/kernel/x`);
    expect(sysfs).toBeLessThan(caller);
    expect(caller).toBeLessThan(s.indexOf(`${Op.Bind}:/newroot/proc/acpi`));
    expect(caller).toBeLessThan(s.indexOf(`${Op.Bind}:/newroot/sys/firmware`));
  });
});

describe('sandboxIdMaps (what image layers are idmapped with)', () => {
  it('is the user namespace the spawn makes, for root callers only', () => {
    const m = [{ inside: 0, outside: 200000, count: 10 }];
    expect(sandboxIdMaps({}, host())).toEqual({ uidMap: [{ inside: 0, outside: FALLBACK_RANGE_START, count: 65536 }], gidMap: [{ inside: 0, outside: FALLBACK_RANGE_START, count: 65536 }] });
    expect(sandboxIdMaps({ user: { uidMap: m, gidMap: m } }, host())).toEqual({ uidMap: m, gidMap: m });
    // remapUser: that user's range as it is, shared by the sandboxes (the caller's choice)
    const sub = host({ subordinate: (f) => (f === 'subuid' ? { start: 100000, count: 65536 } : { start: 300000, count: 1000 }) });
    expect(sandboxIdMaps({ remapUser: 'nsbox' }, sub))
      .toEqual({ uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 300000, count: 1000 }] });
    // the default: the sandbox's id block (block 0 stands in for a plan without one); a range
    // of one block is not enough for blocks, nsbox's region is used
    expect(sandboxIdMaps({}, sub)?.uidMap).toEqual([{ inside: 0, outside: FALLBACK_RANGE_START, count: 65536 }]);
    expect(sandboxIdMaps({}, host(), { uid: 0x6ffe0000, gid: 0x6ffe0000 })).toEqual({ uidMap: [{ inside: 0, outside: 0x6ffe0000, count: 65536 }], gidMap: [{ inside: 0, outside: 0x6ffe0000, count: 65536 }] });
    expect(sandboxIdMaps({ user: false }, host())).toBeNull();
    expect(sandboxIdMaps({ namespaces: { user: false } }, host())).toBeNull();
    expect(sandboxIdMaps({}, host({ euid: 1000 }))).toBeNull();
    expect(() => sandboxIdMaps({ user: { uidMap: [], gidMap: m } }, host())).toThrow(/options.user.uidMap/);
  });
});

describe('idBlockSource (where a root caller\'s per-sandbox id blocks are)', () => {
  it("carves the nsbox user's ranges into 64Ki blocks when both hold more than one, else nsbox's region of the container range", () => {
    const region = idBlockSource(host());
    expect([region.kind, region.count]).toEqual(['region', REGION_BLOCKS]);
    expect([region.at(0), region.at(1), region.at(REGION_BLOCKS - 1)]).toEqual([
      { uid: 0x6fff0000, gid: 0x6fff0000 }, { uid: 0x6ffe0000, gid: 0x6ffe0000 }, { uid: 0x6c000000, gid: 0x6c000000 }]);
    const sub = idBlockSource(host({ subordinate: (f) => (f === 'subuid' ? { start: 100000, count: 10 * 65536 } : { start: 900000, count: 3 * 65536 + 5 }) }));
    expect([sub.kind, sub.count, sub.at(2)]).toEqual(['subuid', 3, { uid: 100000 + 2 * 65536, gid: 900000 + 2 * 65536 }]);
    expect(idBlockSource(host({ subordinate: () => ({ start: 100000, count: 65536 }) })).kind).toBe('region');
    expect(wantsIdBlock({}, host())).toBe(true);
    expect(wantsIdBlock({ remapUser: 'x' }, host()) || wantsIdBlock({ user: false }, host()) || wantsIdBlock({}, host({ euid: 1000 }))).toBe(false);
  });

  it('builds the plan with the block it is given', () => {
    const p = buildPlan({ file: '/bin/true', args: [], options: {}, idBlock: { uid: 0x6ffd0000, gid: 0x6ffc0000 } }, host());
    expect([p.uidMap?.trim(), p.gidMap?.trim()]).toEqual([`0 ${0x6ffd0000} 65536`, `0 ${0x6ffc0000} 65536`]);
  });
});

describe('buildPlan: the default view is made once a second and shared', () => {
  it('shares frozen ops between plans, each plan with its own array; other options get other views', () => {
    const a = buildPlan({ file: '/bin/true', args: [], options: {} });
    const b = buildPlan({ file: '/bin/true', args: [], options: {} });
    expect(b.ops).not.toBe(a.ops);
    expect(b.ops).toEqual(a.ops);
    expect(b.ops.every((op, i) => op === a.ops[i] && Object.isFrozen(op))).toBe(true);
    // an extension's insertion (provideEtcFiles) touches one plan only
    provideEtcFiles(a, { hosts: '127.0.0.1 localhost\n' });
    expect(a.ops.length).toBe(b.ops.length + 2);
    expect(buildPlan({ file: '/bin/true', args: [], options: {} }).ops).toEqual(b.ops);
    // a cached encoding is the same bytes as a fresh one
    expect(Buffer.compare(encodeOps(b.ops), Buffer.from(encodeOps([...b.ops.map((op) => ({ ...op }))])))).toBe(0);
    // the key follows what shapes the view
    const noNet = buildPlan({ file: '/bin/true', args: [], options: { namespaces: { net: false } } });
    expect(noNet.ops.some((op) => op.op === Op.LoopbackUp)).toBe(false);
    expect(noNet.ops.find((op) => op.path === '/newroot/sys')?.op).toBe(Op.Bind);
    const nested = buildPlan({ file: '/bin/true', args: [], options: { nestedUserNamespaces: true } });
    expect(nested.ops.some((op) => op.path?.endsWith('max_user_namespaces'))).toBe(false);
    expect(b.ops.some((op) => op.path?.endsWith('max_user_namespaces'))).toBe(true);
    expect(buildPlan({ file: '/bin/true', args: [], options: { maskedPaths: [] } }).summary.maskedPaths).toEqual([]);
  });
});

describe('planView: a cached default view older than a second', () => {
  // a spec no other test shares a cache key with (unbindable propagation, no uts namespace)
  const spec = (): ViewSpec => ({
    ns: new Set(['user', 'pid', 'mount', 'ipc', 'net', 'cgroup']), joinedPid: false, joinedMount: false, joinedOwnNet: false,
    rootPropagation: 'unbindable', rootfs: null, rootfsReadonly: true, mounts: [], devices: [], maskedPaths: [...DEFAULT_MASKED_PATHS],
    readonlyPaths: [], ownPathLists: false, ownCgroup: false, nestedUserNamespaces: false, attach: true, attachBinds: true, template: null,
  });
  afterEach(() => { vi.useRealTimers(); });

  it('is used again when the host facts it was made from read the same, and made again when one changed', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    let lib64: ReturnType<HostFacts['pathKind']> = { kind: 'symlink', target: 'usr/lib64' };
    let reads = 0;
    const base = host();
    const h = host({ pathKind: (p) => { reads++; return p === '/lib64' ? lib64 : base.pathKind(p); } });
    const a = planView(spec(), h, true);
    expect(a.ops.find((op) => op.path === '/newroot/lib64')).toMatchObject({ op: Op.Symlink, source: 'usr/lib64' });
    // within the second: neither made again nor checked
    reads = 0;
    const b = planView(spec(), h, true);
    expect(reads).toBe(0);
    expect(b.ops.every((op, i) => op === a.ops[i])).toBe(true);
    // after it: the facts read again (not the view made again: the same shared ops)
    vi.advanceTimersByTime(1500);
    const c = planView(spec(), h, true);
    expect(reads).toBeGreaterThan(0);
    expect(c.ops.every((op, i) => op === a.ops[i])).toBe(true);
    // and checked again only a second later
    reads = 0;
    planView(spec(), h, true);
    expect(reads).toBe(0);
    // a fact that changed: the view is made again from it
    lib64 = { kind: 'dir' };
    vi.advanceTimersByTime(1500);
    const d = planView(spec(), h, true);
    expect(d.ops.find((op) => op.path === '/newroot/lib64')).toMatchObject({ op: Op.Bind, readonly: true });
    expect(d.ops[0]).not.toBe(a.ops[0]);
  });
});

describe('mount points missing from a read-only root (issue 13, item 5)', () => {
  // a rootfs /r with bin/ (dir), etc/ (dir, holding passwd) and lib -> bin; nothing else
  const tree: Record<string, string[]> = { '/r': ['bin', 'etc', 'lib'], '/r/etc': ['passwd'], '/r/bin': ['sh'] };
  const kinds = (p: string): ReturnType<HostFacts['pathKind']> => {
    if (p === '/r/lib') return { kind: 'symlink', target: 'bin' };
    if (p in tree) return { kind: 'dir' };
    if (p === '/r/etc/passwd' || p === '/r/bin/sh' || p === '/src/f') return { kind: 'file' };
    if (p === '/src' || p === '/real') return { kind: 'dir' };
    if (p === '/link') return { kind: 'symlink', target: '/real' };
    return { kind: 'missing' };
  };
  const h = host({
    pathKind: (p) => (p.startsWith('/r') || p.startsWith('/src') || p === '/link' || p === '/real' ? kinds(p) : host().pathKind(p)),
    dirInfo: (p) => (p in tree ? { mode: 0o40755, uid: 0, gid: 0, entries: tree[p]!.map((name) => ({ name, ...(kinds(`${p}/${name}`) as { kind: 'dir' | 'file' | 'symlink'; target?: string }) })) } : null),
    realPath: (p) => (p === '/link' ? '/real' : p),
  });
  const stage = (ops: { op: number; source?: string; path?: string }[]) => ops.filter((o) => (o.source ?? '').startsWith('/nsbox-mirror') || (o.path ?? '').startsWith('/nsbox-mirror'));

  it('mirrors the deepest existing directory right after the rootfs, binds its entries back, makes the missing chain; read-only', () => {
    const p = buildPlan({ file: '/bin/sh', args: [], options: { rootfs: '/r', mounts: [{ type: 'bind', source: '/src', target: '/a/b/c' }, { type: 'bind', source: '/src/f', target: '/etc/x' }] } }, h);
    const at = p.ops.findIndex((o) => o.op === Op.Attach && o.path === '/newroot');
    expect(p.ops[at]).toMatchObject({ source: '/r' });
    const s = stage(p.ops.slice(at + 1));
    // the root mirror (proc, dev, sys, tmp and a/b/c are missing), then /etc's (x is missing)
    expect(p.ops[at + 1]).toMatchObject({ op: Op.Mount, path: '/nsbox-mirror/0', fstype: 'tmpfs' });
    // (host uid 0 is not mapped in root's sandboxes: the mirror keeps the sandbox root as owner)
    expect(p.ops[at + 1]!.data).toMatch(/^mode=0755,size=\d+k,nr_inodes=\d+$/);
    expect(s).toContainEqual(expect.objectContaining({ op: Op.Bind, source: '/newroot/bin', path: '/nsbox-mirror/0/bin', readonly: true, real: true }));
    expect(s).toContainEqual(expect.objectContaining({ op: Op.Symlink, source: 'bin', path: '/nsbox-mirror/0/lib' }));
    for (const d of ['a', 'a/b', 'a/b/c', 'proc', 'dev', 'sys', 'tmp']) expect(s).toContainEqual(expect.objectContaining({ op: Op.Mkdir, path: `/nsbox-mirror/0/${d}` }));
    expect(s).toContainEqual(expect.objectContaining({ op: Op.Bind, source: '/newroot/etc/passwd', path: '/nsbox-mirror/1/passwd', file: true }));
    expect(s).toContainEqual(expect.objectContaining({ op: Op.WriteFile, path: '/nsbox-mirror/1/x', data: '' }));
    expect(s).toContainEqual(expect.objectContaining({ op: Op.Bind, source: '/nsbox-mirror/1', path: '/newroot/etc', real: true }));
    expect(s.filter((o) => o.op === Op.RemountRo).map((o) => o.path)).toEqual(['/nsbox-mirror/0', '/nsbox-mirror/1']);
    // before /proc is mounted (which lands on the mirror)
    const rootMirror = p.ops.findIndex((o) => o.op === Op.Bind && o.source === '/nsbox-mirror/0');
    expect(rootMirror).toBeLessThan(p.ops.findIndex((o) => o.path === '/newroot/proc'));
    expect(encodeOps(p.ops).length).toBeGreaterThan(0);
  });

  it('adds /etc/hosts of a network to the mirrors again (provideEtcFiles); a symlinked bind source is resolved on the host', () => {
    const p = buildPlan({ file: '/bin/sh', args: [], options: { rootfs: '/r', mounts: [{ type: 'bind', source: '/link', target: '/data' }] } }, h);
    expect(p.ops.find((o) => o.path === '/newroot/data')).toMatchObject({ op: Op.Attach, source: '/real' });
    provideEtcFiles(p, { hosts: 'x' });
    expect(stage(p.ops)).toContainEqual(expect.objectContaining({ op: Op.WriteFile, path: '/nsbox-mirror/1/hosts' }));
    expect(p.ops.filter((o) => o.op === Op.Mount && o.path?.startsWith('/nsbox-mirror')).length).toBe(2);
    const unpriv = buildPlan({ file: '/bin/sh', args: [], options: { rootfs: '/r', mounts: [{ type: 'bind', source: '/link', target: '/data' }] } }, host({ ...h, euid: 1000, egid: 1000 }));
    expect(unpriv.ops.find((o) => o.path === '/newroot/data')).toMatchObject({ op: Op.Bind, source: '/oldroot/real' });
    expect(unpriv.ops.find((o) => o.path === '/newroot')).toMatchObject({ op: Op.Bind, source: '/oldroot/r' });
  });

  it('a writable rootfs the sandbox root owns makes mount points in place (no mirror)', () => {
    const owned = host({ ...h, dirInfo: (p) => { const i = h.dirInfo!(p); return i && { ...i, uid: FALLBACK_RANGE_START, gid: FALLBACK_RANGE_START }; } });
    const p = buildPlan({ file: '/bin/sh', args: [], options: { rootfs: { path: '/r', readonly: false }, mounts: [{ type: 'tmpfs', target: '/data' }] } }, owned);
    expect(stage(p.ops)).toEqual([]);
    const q = buildPlan({ file: '/bin/sh', args: [], options: { rootfs: { path: '/r', readonly: false }, mounts: [{ type: 'tmpfs', target: '/data' }] } }, h);
    expect(stage(q.ops).some((o) => o.op === Op.RemountRo)).toBe(false);
    expect(stage(q.ops).length).toBeGreaterThan(0);
  });
});

describe('buildPlan: the five capability sets (issue 16, item 5)', () => {
  const RAW = 1 << 13, BIND = 1 << 10, CHOWN = 1, KILL = 1 << 5;
  const masks = (p: ReturnType<typeof plan>) => ({ b: p.capsBounding, e: p.capsEffective, p: p.capsPermitted, i: p.capsInheritable, a: p.capsAmbient });

  it('the array form: one mask in bounding, effective, permitted, inheritable; ambient only for a uid other than 0', () => {
    const m = [RAW | BIND, 0];
    expect(masks(plan({ capabilities: ['CAP_NET_RAW', 'net_bind_service'] }))).toEqual({ b: m, e: m, p: m, i: m, a: [0, 0] });
    expect(masks(plan({ uid: 1000, capabilities: ['CAP_NET_RAW', 'net_bind_service'] }))).toEqual({ b: m, e: m, p: m, i: m, a: m });
    const hi = plan({ capabilities: ['CAP_BPF', 'CAP_CHOWN'] });  // 39: the high half
    expect(hi.capsBounding).toEqual([CHOWN, 1 << 7]);
    expect(hi.summary.capabilities).toEqual(['CAP_CHOWN', 'CAP_BPF']);
    expect(hi.summary.capabilitySets).toBeUndefined();
  });

  it('the object form: each set as given, a missing one empty, the report lists them', () => {
    const p = plan({ uid: 1000, capabilities: { bounding: ['CAP_NET_RAW', 'CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'], permitted: ['CAP_NET_RAW', 'CAP_CHOWN', 'CAP_SYS_ADMIN'], effective: ['CAP_CHOWN'], inheritable: ['CAP_NET_RAW', 'CAP_KILL'], ambient: ['CAP_NET_RAW'] } });
    expect(masks(p)).toEqual({ b: [RAW | CHOWN | KILL | BIND, 0], e: [CHOWN, 0], p: [RAW | CHOWN | (1 << 21), 0], i: [RAW | KILL, 0], a: [RAW, 0] });
    expect(p.summary.capabilitySets).toEqual({ bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN', 'CAP_NET_RAW', 'CAP_SYS_ADMIN'], inheritable: ['CAP_KILL', 'CAP_NET_RAW'], ambient: ['CAP_NET_RAW'] });
    expect(p.summary.capabilities).toEqual(['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SYS_ADMIN']);
    expect(p.netPremade).toBe(false);
    const only = plan({ capabilities: { bounding: ['CAP_NET_RAW'] } });
    expect(masks(only)).toEqual({ b: [RAW, 0], e: [0, 0], p: [0, 0], i: [0, 0], a: [0, 0] });
    const none = plan({ uid: 1000, capabilities: {} });
    expect(masks(none)).toEqual({ b: [0, 0], e: [0, 0], p: [0, 0], i: [0, 0], a: [0, 0] });
    expect(none.summary.capabilitySets).toEqual({ bounding: [], effective: [], permitted: [], inheritable: [], ambient: [] });
    expect(none.summary.capabilities).toEqual([]);
  });

  it.each([
    ['not an array or object', 'CAP_NET_RAW', TypeError, /options.capabilities must be an array of capability names or an object of sets/],
    ['an unknown set', { effectve: [] }, TypeError, /options.capabilities has an unknown key 'effectve'/],
    ['a set that is not an array', { bounding: 'CAP_NET_RAW' }, TypeError, /options.capabilities.bounding must be an array/],
    ['an unknown name in a set', { permitted: ['CAP_FLY'] }, TypeError, /options.capabilities.permitted: unknown capability 'CAP_FLY'/],
    ['a name that is not a string', { ambient: [13] }, TypeError, /options.capabilities.ambient\[0\] must be a string/],
    ['effective beyond permitted', { bounding: ['CAP_NET_RAW'], permitted: ['CAP_NET_RAW'], effective: ['CAP_NET_RAW', 'CAP_KILL'] }, RangeError, /options.capabilities.effective must be a subset of permitted \(CAP_KILL not in it\)/],
    ['inheritable beyond bounding', { bounding: ['CAP_NET_RAW'], inheritable: ['CAP_KILL'] }, RangeError, /options.capabilities.inheritable must be a subset of bounding/],
    ['ambient beyond inheritable', { bounding: ['CAP_NET_RAW'], permitted: ['CAP_NET_RAW'], ambient: ['CAP_NET_RAW'] }, RangeError, /options.capabilities.ambient must be a subset of permitted ∩ inheritable \(CAP_NET_RAW/],
    ['ambient beyond permitted', { bounding: ['CAP_NET_RAW'], inheritable: ['CAP_NET_RAW'], ambient: ['CAP_NET_RAW'] }, RangeError, /options.capabilities.ambient must be a subset of permitted ∩ inheritable/],
  ])('refuses %s, naming the option', (_what, capabilities, Err, msg) => {
    const f = () => plan({ capabilities });
    expect(f).toThrow(Err);
    expect(f).toThrow(msg);
  });

  it('takes permitted beyond bounding, as capset(2) does', () => {
    expect(plan({ capabilities: { bounding: [], permitted: ['CAP_KILL'], effective: ['CAP_KILL'] } }).capsPermitted).toEqual([KILL, 0]);
  });
});

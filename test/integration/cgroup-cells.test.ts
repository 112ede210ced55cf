// The cgroup v2 cells of issue 15's matrix, each as a real caller: a fresh Node process (nsbox
// from dist/) started by this root test in the place a host puts a service, then asked for a
// limited spawn (memory + pids):
//  (a) a non-root user in a systemd-style delegated subtree: user.slice/user-U.slice/ is
//      root's, user@U.service (and its cgroup.procs, .subtree_control, .threads) the user's,
//      memory, pids and cpu enabled down to it, the caller in user@U.service/app.slice/<x>.scope;
//  (b) a non-root user in a root-owned user.slice/user-U.slice/session-1.scope (an ssh login);
//  (c) root "inside a container": in a user namespace (no CAP_SYS_ADMIN in the host's), at the
//      root of its own cgroup namespace with cgroup2 mounted there, which holds its processes;
//      and a container that forbids user namespaces.
// Each cell's spawn works, or the refusal nsbox gives is asserted. The hierarchy is made the
// way systemd makes it (no systemd runs in the VM: the user manager's part is done by chown).
// On a host without cgroup v2 (this project's own host is v1 hybrid) the v2 cells are skipped
// with what nsbox tells the user there.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asUserIn, CG, CTR, DIST, inContainer, makeServiceCell, makeUserCells, rmTree, runIn, SCOPE, SERVICE, SESSION, skipV2Cells, SYSTEM_SLICE, UDIR, UNIT, USER_SLICE } from '../helpers/cells.js';
import { isRoot, nsboxCgroupsOf, skipReason } from '../helpers/host.js';

const pids = new Set<number>();
const base = skipReason(!isRoot, 'sets up each cell as root and runs its callers from there')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)');
const skipV2 = base || skipV2Cells();

/** Script text: the error `e` as plain data. */
const ERR = `(e) => ({ error: { name: e.name, code: e.code, step: e.step, path: e.path, message: e.message } })`;
/** Script text: a limited spawn's outcome. */
const LIMITED = (extra = '') => `await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo ok'], { limits: { memory: 64 << 20, pids: 32 }${extra} })
  .then((r) => ({ code: r.exitCode, stdout: r.stdout, cgroup: r.isolation.cgroup }), ${ERR})`;
const DOCTOR = `nsbox.doctor().checks.find((c) => c.id === 'cgroup-delegation')`;

const run = (wrap: string, body: string) => runIn(wrap, body, pids);
const had = (d: string) => existsSync(d);

describe.skipIf(skipV2)('cgroup v2 cells', () => {
  beforeAll(() => {
    expect(had(USER_SLICE) || had(CTR) || had(SYSTEM_SLICE)).toBe(false); // a VM's fresh hierarchy: nothing of ours to clobber
    makeUserCells();
    makeServiceCell();
  });

  afterAll(() => {
    rmTree(USER_SLICE);
    rmTree(CTR);
    rmTree(SYSTEM_SLICE);
    expect(nsboxCgroupsOf(pids)).toEqual([]);
    expect([USER_SLICE, CTR, SYSTEM_SLICE].filter(existsSync)).toEqual([]);
  });

  it('(a) non-root in a delegated scope: the first limited spawn in the fresh subtree works, beside the caller', async () => {
    const out = await run(asUserIn(SCOPE), `
      const first = ${LIMITED()};
      const second = ${LIMITED()};
      const devices = await nsbox.spawnIsolated('/bin/true', [], { limits: { pids: 32, devices: [{ allow: false }] } })
        .then((r) => ({ code: r.exitCode }), ${ERR});
      console.log(JSON.stringify({ first, second, devices, doctor: ${DOCTOR} }));`);
    for (const r of [out.first, out.second]) {
      expect(r).toMatchObject({ code: 0, stdout: 'ok\n' });
      expect(r.cgroup).toMatch(new RegExp(`^${SERVICE}/app\\.slice/nsbox-`));
    }
    expect(readFileSync(`${SERVICE}/app.slice/cgroup.subtree_control`, 'utf8')).toMatch(/memory.*pids|pids.*memory/);
    expect(readFileSync(`${SCOPE}/cgroup.subtree_control`, 'utf8').trim()).toBe(''); // never touched: it holds the caller
    expect(out.doctor).toMatchObject({ status: 'ok' });
    expect(out.doctor.detail).toContain(`${SERVICE}/app.slice`);
    // device rules need a BPF program only root can load: refused with what to do (before: a
    // bare EPERM from bpf(BPF_PROG_LOAD) naming the cgroup's directory); nothing is left (afterAll)
    expect(out.devices.error).toMatchObject({ name: 'NsboxError', code: 'EPERM', step: 'cgroup-devices' });
    expect(out.devices.error.message).toMatch(/only root can load.*leave limits\.devices out/);
    expect(out.devices.error.message).not.toContain(SERVICE);
  });

  it('(b) non-root in a root-owned session scope: refused with the fix, naming the delegated subtree it cannot reach', async () => {
    const out = await run(asUserIn(SESSION), `
      const limited = ${LIMITED()};
      const parent = ${LIMITED(`, cgroupParent: ${JSON.stringify(SERVICE)}`)};
      const plain = await nsbox.spawnIsolated('/bin/echo', ['ok']).then((r) => r.stdout, ${ERR});
      console.log(JSON.stringify({ limited, parent, plain, doctor: ${DOCTOR} }));`);
    for (const r of [out.limited, out.parent]) {
      expect(r.error).toMatchObject({ name: 'NsboxError', code: 'EACCES', step: 'cgroup-create' });
      expect(r.error.message).toContain('systemd-run --user --scope -p Delegate=yes');
      expect(r.error.message).toContain(SERVICE);
      expect(r.error.message).toContain(`${UDIR}/cgroup.procs`); // the common ancestor that blocks the move
    }
    expect(out.plain).toBe('ok\n'); // no limits: no cgroup needed
    expect(out.doctor.status).toBe('warn');
    expect(out.doctor.detail).toContain(SERVICE);
    expect(out.doctor.fix).toContain('systemd-run --user --scope -p Delegate=yes');
  });

  it('(a) non-root in a Delegate=yes service holding its cgroup: refused with the cause until CGroup.enterLeaf, then in the service', async () => {
    const out = await run(asUserIn(UNIT), `
      const before = ${LIMITED()};
      const leaf = await nsbox.CGroup.enterLeaf().then((g) => g.path, ${ERR});
      const after = ${LIMITED()};
      console.log(JSON.stringify({ before, leaf, after }));`);
    expect(out.before.error).toMatchObject({ name: 'NsboxError', code: 'EBUSY', step: 'cgroup-create' });
    expect(out.before.error.message).toContain(`${UNIT} is delegated to it but holds processes`);
    expect(out.before.error.message).toContain('CGroup.enterLeaf');
    expect(out.leaf).toBe(`${UNIT}/leaf`);
    expect(out.after).toMatchObject({ code: 0, stdout: 'ok\n' });
    expect(out.after.cgroup).toMatch(new RegExp(`^${UNIT}/nsbox-`));
  });

  it('(c) root in a container at its cgroup namespace root: refused with the cause; after CGroup.enterLeaf, sandboxes go beside it', async () => {
    const out = await run(inContainer('exec "$@"'), `
      const before = ${LIMITED()};
      const doctorBefore = ${DOCTOR};
      const own = (await import('node:fs')).readFileSync('/proc/self/cgroup', 'utf8').trim();
      const leaf = await nsbox.CGroup.enterLeaf({ all: true }).then((g) => g.path, ${ERR});
      const after = ${LIMITED()};
      const again = ${LIMITED()};
      console.log(JSON.stringify({ own, before, doctorBefore, leaf, after, again, doctor: ${DOCTOR}, procs: (await import('node:fs')).readFileSync('${CG}/cgroup.procs', 'utf8') }));`);
    expect(out.own).toBe('0::/');
    expect(out.before.error).toMatchObject({ name: 'NsboxError', code: 'EBUSY', step: 'cgroup-create' });
    expect(out.before.error.message).toContain('root of its cgroup namespace');
    expect(out.before.error.message).toContain('CGroup.enterLeaf');
    expect(out.doctorBefore.status).toBe('warn');
    expect(out.doctorBefore.fix).toContain('CGroup.enterLeaf');
    expect(out.leaf).toBe(`${CG}/leaf`);
    expect(out.procs).toBe(''); // every process of the container's root moved
    for (const r of [out.after, out.again]) {
      expect(r).toMatchObject({ code: 0, stdout: 'ok\n' });
      expect(r.cgroup).toMatch(new RegExp(`^${CG}/nsbox-`));
    }
    expect(out.doctor.status).toBe('ok');
  });

  it('(c) a container without user namespaces (no CAP_SYS_ADMIN, unprivileged ones off): the refusal names the cause', async () => {
    const sysctl = '/proc/sys/kernel/unprivileged_userns_clone';
    if (!existsSync(sysctl)) return void console.warn(`SKIPPED: ${sysctl} is missing on this kernel`);
    const was = readFileSync(sysctl, 'utf8').trim();
    writeFileSync(sysctl, '0');
    try {
      const out = await run('exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin "$@"', `
        const r = await nsbox.spawnIsolated('/bin/echo', ['ok']).then((x) => x.stdout, ${ERR});
        console.log(JSON.stringify({ r }));`);
      expect(out.r.error).toMatchObject({ name: 'NsboxError', code: 'EPERM' });
      expect(out.r.error.message).toMatch(/user namespace/);
      expect(out.r.error.message).toContain('unprivileged_userns_clone');
    } finally {
      writeFileSync(sysctl, was);
    }
  });
});

describe.skipIf(base || !skipV2)('cgroup cells on a host without cgroup v2', () => {
  it('CGroup.enterLeaf refuses with the reason', async () => {
    const out = await run('exec "$@"', `console.log(JSON.stringify(await nsbox.CGroup.enterLeaf().then(() => 'moved', ${ERR})));`);
    expect(out.error).toMatchObject({ name: 'NsboxError', code: 'EOPNOTSUPP' });
    expect(out.error.message).toContain('cgroup v2');
  });
});

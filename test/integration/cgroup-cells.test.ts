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
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, nsboxCgroupsOf, skipReason } from '../helpers/host.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const CG = '/sys/fs/cgroup';
const U = 65534;
const pids = new Set<number>();

/** What nsbox itself says about cgroup v2 here (doctor's 'cgroup' check), when the host is not pure v2. */
function notV2(): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === CG);
  if (line && / - cgroup2 /.test(line)) return '';
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};
    const c = nsbox.doctor().checks.find((x) => x.id === 'cgroup'); console.log(JSON.stringify(c));`], { encoding: 'utf8' });
  const c = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as { status?: string; detail?: string; fix?: string };
  return `the cgroup v2 cells need a pure cgroup v2 host; nsbox doctor says here: ${c.status}: ${c.detail}; fix: ${c.fix}`;
}

const base = skipReason(!isRoot, 'sets up each cell as root and runs its callers from there')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)');
const v2why = base ? '' : notV2();
// the cells are built on a fresh hierarchy (test:vm's); never over a systemd host's own slices
const taken = ['user.slice', 'system.slice'].filter((d) => existsSync(`${CG}/${d}`));
const skipV2 = base || skipReason(v2why !== '', v2why)
  || skipReason(taken.length > 0, `this host's cgroup tree has its own ${taken.join(' and ')} (a systemd host): the cells are built only on a fresh hierarchy, as under npm run test:vm`);

/** Script text: the error `e` as plain data. */
const ERR = `(e) => ({ error: { name: e.name, code: e.code, step: e.step, path: e.path, message: e.message } })`;
/** Script text: a limited spawn's outcome. */
const LIMITED = (extra = '') => `await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo ok'], { limits: { memory: 64 << 20, pids: 32 }${extra} })
  .then((r) => ({ code: r.exitCode, stdout: r.stdout, cgroup: r.isolation.cgroup }), ${ERR})`;
const DOCTOR = `nsbox.doctor().checks.find((c) => c.id === 'cgroup-delegation')`;

/**
 * Runs `body` (an ES module body with `nsbox` imported) as a fresh Node process that `wrap`
 * starts: a shell line that ends in `exec "$@"` (the node command). Its last stdout line is JSON.
 */
function run(wrap: string, body: string, env: Record<string, string> = {}): any {
  const r = spawnSync('/bin/sh', ['-c', wrap, 'cell', process.execPath, '--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], {
    cwd: '/', encoding: 'utf8', timeout: 240_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/', ...env },
  });
  if (r.pid) pids.add(r.pid);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last); } catch { throw new Error(`exit ${r.status} ${r.signal ?? ''}, no JSON: ${r.stdout}\n${r.stderr}`); }
}

/** A shell line that puts itself into cgroup `dir`, then becomes uid U and runs "$@". */
const asUserIn = (dir: string) => `echo $$ > ${dir}/cgroup.procs && exec setpriv --reuid=${U} --regid=${U} --clear-groups "$@"`;

const USER_SLICE = `${CG}/user.slice`;
const UDIR = `${USER_SLICE}/user-${U}.slice`;
const SERVICE = `${UDIR}/user@${U}.service`;
const SCOPE = `${SERVICE}/app.slice/cell.scope`;
const SESSION = `${UDIR}/session-1.scope`;
const CTR = `${CG}/nsbox-cells-ctr.scope`;
const SYSTEM_SLICE = `${CG}/system.slice`;
const UNIT = `${SYSTEM_SLICE}/cell.service`;
const made: string[] = [];
const had = (d: string) => existsSync(d);

function mk(dir: string, owner?: number): void {
  if (!existsSync(dir)) { mkdirSync(dir); made.push(dir); }
  if (owner !== undefined) {
    // Delegate=yes: the directory and the three files a delegatee writes
    for (const f of ['', '/cgroup.procs', '/cgroup.subtree_control', '/cgroup.threads']) chownSync(dir + f, owner, owner);
  }
}
const enable = (dir: string, ctrls: string) => writeFileSync(`${dir}/cgroup.subtree_control`, ctrls.split(' ').map((c) => `+${c}`).join(' '));

/** Removes what the cells made, deepest first (after nsbox removed its own groups). */
function rmTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(`${dir}/${e.name}`);
  try { rmdirSync(dir); } catch { /* still in use: the leak check below says so */ }
}

describe.skipIf(skipV2)('cgroup v2 cells', () => {
  beforeAll(() => {
    expect(had(USER_SLICE) || had(CTR) || had(SYSTEM_SLICE)).toBe(false); // a VM's fresh hierarchy: nothing of ours to clobber
    // what systemd makes: root-owned slices with the delegated controllers enabled down to user@U.service
    enable(CG, 'memory pids cpu');
    mk(USER_SLICE); enable(USER_SLICE, 'memory pids cpu');
    mk(UDIR); enable(UDIR, 'memory pids cpu');
    mk(SERVICE, U); // Delegate=yes; its own subtree_control is the user manager's business (empty: fresh)
    // the user manager (as the user) makes its slices and scopes
    mk(`${SERVICE}/init.scope`, U);
    mk(`${SERVICE}/app.slice`, U);
    mk(SCOPE, U);
    // logind's session scope: root's
    mk(SESSION);
    // a system service with User=65534 and Delegate=yes: its own cgroup is the user's
    mk(SYSTEM_SLICE); enable(SYSTEM_SLICE, 'memory pids cpu');
    mk(UNIT, U);
  });

  afterAll(() => {
    rmTree(USER_SLICE);
    rmTree(CTR);
    rmTree(SYSTEM_SLICE);
    expect(nsboxCgroupsOf(pids)).toEqual([]);
    expect([USER_SLICE, CTR, SYSTEM_SLICE].filter(existsSync)).toEqual([]);
  });

  it('(a) non-root in a delegated scope: the first limited spawn in the fresh subtree works, beside the caller', () => {
    const out = run(asUserIn(SCOPE), `
      const first = ${LIMITED()};
      const second = ${LIMITED()};
      console.log(JSON.stringify({ first, second, doctor: ${DOCTOR} }));`);
    for (const r of [out.first, out.second]) {
      expect(r).toMatchObject({ code: 0, stdout: 'ok\n' });
      expect(r.cgroup).toMatch(new RegExp(`^${SERVICE}/app\\.slice/nsbox-`));
    }
    expect(readFileSync(`${SERVICE}/app.slice/cgroup.subtree_control`, 'utf8')).toMatch(/memory.*pids|pids.*memory/);
    expect(readFileSync(`${SCOPE}/cgroup.subtree_control`, 'utf8').trim()).toBe(''); // never touched: it holds the caller
    expect(out.doctor).toMatchObject({ status: 'ok' });
    expect(out.doctor.detail).toContain(`${SERVICE}/app.slice`);
  });

  it('(b) non-root in a root-owned session scope: refused with the fix, naming the delegated subtree it cannot reach', () => {
    const out = run(asUserIn(SESSION), `
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

  it('(a) non-root in a Delegate=yes service holding its cgroup: refused with the cause until CGroup.enterLeaf, then in the service', () => {
    const out = run(asUserIn(UNIT), `
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

  // the container: its cgroup (root's, as a runtime makes it) is the root of its cgroup
  // namespace, and cgroup2 is mounted there, as Docker and Kubernetes do on cgroup v2. Its root
  // is root in a user namespace of its own (every id mapped, as root; capabilities in that
  // namespace only), the map written from outside once the namespace exists. (A tmpfs goes on
  // the inherited mount first: the kernel refuses one cgroup2 superblock twice on one mount.)
  const container = (inner: string) => `mkdir -p ${CTR} && echo $$ > ${CTR}/cgroup.procs &&
    F=$(mktemp -u /tmp/nsbox-cells.XXXXXX) && mkfifo "$F" || exit 1
    unshare --user --cgroup --mount --propagation private \
      sh -c 'read _ < "$0" && mount -t tmpfs none ${CG} && mount -t cgroup2 cgroup2 ${CG} && ${inner}' "$F" "$@" &
    P=$!; me=$(readlink /proc/self/ns/user); n=0
    while [ "$(readlink /proc/$P/ns/user)" = "$me" ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done
    echo '0 0 4294967295' > /proc/$P/uid_map && echo '0 0 4294967295' > /proc/$P/gid_map && echo go > "$F"
    wait $P; rc=$?; rm -f "$F"; exit $rc`;

  it('(c) root in a container at its cgroup namespace root: refused with the cause; after CGroup.enterLeaf, sandboxes go beside it', () => {
    const out = run(container('exec "$@"'), `
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

  it('(c) a container without user namespaces (no CAP_SYS_ADMIN, unprivileged ones off): the refusal names the cause', () => {
    const sysctl = '/proc/sys/kernel/unprivileged_userns_clone';
    if (!existsSync(sysctl)) return void console.warn(`SKIPPED: ${sysctl} is missing on this kernel`);
    const was = readFileSync(sysctl, 'utf8').trim();
    writeFileSync(sysctl, '0');
    try {
      const out = run('exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin "$@"', `
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
    const out = run('exec "$@"', `console.log(JSON.stringify(await nsbox.CGroup.enterLeaf().then(() => 'moved', ${ERR})));`);
    expect(out.error).toMatchObject({ name: 'NsboxError', code: 'EOPNOTSUPP' });
    expect(out.error.message).toContain('cgroup v2');
  });
});

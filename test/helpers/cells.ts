// The cgroup v2 cells of issue 15's matrix, made the way systemd makes them (no systemd runs in
// test:vm's guest: the user manager's part is done by chown), and fresh Node processes started
// as a cell's caller. Shared by cgroup-cells.test.ts (every cgroup cell) and matrix.test.ts (the
// compatibility suite in the delegated cell).
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { skipReason } from './host.js';
import { ranError, runFresh, runFreshSync } from './proc.js';

export const DIST = resolve(__dirname, '../../dist/index.js');
export const CG = '/sys/fs/cgroup';
/** The cells' non-root user. */
export const U = 65534;

export const USER_SLICE = `${CG}/user.slice`;
export const UDIR = `${USER_SLICE}/user-${U}.slice`;
/** user@U.service: delegated to U (Delegate=yes). */
export const SERVICE = `${UDIR}/user@${U}.service`;
/** The user's scope, as `systemd-run --user --scope -p Delegate=yes` makes it. */
export const SCOPE = `${SERVICE}/app.slice/cell.scope`;
/** logind's session scope (an ssh login): root's. */
export const SESSION = `${UDIR}/session-1.scope`;
export const SYSTEM_SLICE = `${CG}/system.slice`;
/** A system service with User=U and Delegate=yes. */
export const UNIT = `${SYSTEM_SLICE}/cell.service`;

/** What nsbox itself says about cgroup v2 here (doctor's 'cgroup' check) when the host is not pure v2, else ''. */
export function notV2(): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === CG);
  if (line && / - cgroup2 /.test(line)) return '';
  const r = runFreshSync(process.execPath, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};
    const c = nsbox.doctor().checks.find((x) => x.id === 'cgroup'); console.log(JSON.stringify(c));`], { timeout: 60_000 });
  const c = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as { status?: string; detail?: string; fix?: string };
  return `the cgroup v2 cells need a pure cgroup v2 host; nsbox doctor says here: ${c.status}: ${c.detail}; fix: ${c.fix}`;
}

/** Whether (printing why not) the v2 cells can be built here: root, dist/, pure v2, a fresh hierarchy (test:vm's). */
export function skipV2Cells(): boolean {
  if (skipReason(process.geteuid?.() !== 0, 'sets up each cell as root and runs its callers from there')) return true;
  if (skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)')) return true;
  const why = notV2();
  if (skipReason(why !== '', why)) return true;
  // never over a systemd host's own slices
  const taken = ['user.slice', 'system.slice'].filter((d) => existsSync(`${CG}/${d}`));
  return skipReason(taken.length > 0, `this host's cgroup tree has its own ${taken.join(' and ')} (a systemd host): the cells are built only on a fresh hierarchy, as under npm run test:vm`);
}

function mk(dir: string, owner?: number): void {
  if (!existsSync(dir)) mkdirSync(dir);
  if (owner !== undefined) {
    // Delegate=yes: the directory and the three files a delegatee writes
    for (const f of ['', '/cgroup.procs', '/cgroup.subtree_control', '/cgroup.threads']) chownSync(dir + f, owner, owner);
  }
}
const enable = (dir: string, ctrls: string) => writeFileSync(`${dir}/cgroup.subtree_control`, ctrls.split(' ').map((c) => `+${c}`).join(' '));

/**
 * The user's part: root-owned slices with memory, pids and cpu enabled down to user@U.service
 * (delegated; its own subtree_control is the user manager's business, empty when fresh), its
 * init.scope and app.slice/cell.scope made by the user manager (as the user); logind's
 * root-owned session scope beside it.
 */
export function makeUserCells(): void {
  enable(CG, 'memory pids cpu');
  mk(USER_SLICE); enable(USER_SLICE, 'memory pids cpu');
  mk(UDIR); enable(UDIR, 'memory pids cpu');
  mk(SERVICE, U);
  mk(`${SERVICE}/init.scope`, U);
  mk(`${SERVICE}/app.slice`, U);
  mk(SCOPE, U);
  mk(SESSION);
}

/** A system service with User=U and Delegate=yes: its own cgroup is the user's. */
export function makeServiceCell(): void {
  mk(SYSTEM_SLICE); enable(SYSTEM_SLICE, 'memory pids cpu');
  mk(UNIT, U);
}

/** The container's cgroup (root's, as a container runtime makes it). */
export const CTR = `${CG}/nsbox-cells-ctr.scope`;

/**
 * A shell line that runs `inner` (ending in `exec "$@"`) as root in a container: in CTR, which
 * is the root of its cgroup namespace, with cgroup2 mounted there, as Docker and Kubernetes do on
 * cgroup v2. Its root is root in a user namespace of its own (every id mapped, as root;
 * capabilities in that namespace only), the map written from outside once the namespace exists.
 * (A tmpfs goes on the inherited mount first: the kernel refuses one cgroup2 superblock twice on
 * one mount.)
 */
export const inContainer = (inner: string) => `mkdir -p ${CTR} && echo $$ > ${CTR}/cgroup.procs &&
    F=$(mktemp -u /tmp/nsbox-cells.XXXXXX) && mkfifo "$F" || exit 1
    unshare --user --cgroup --mount --propagation private \
      sh -c 'read _ < "$0" && mount -t tmpfs none ${CG} && mount -t cgroup2 cgroup2 ${CG} && ${inner}' "$F" "$@" &
    P=$!; me=$(readlink /proc/self/ns/user); n=0
    while [ "$(readlink /proc/$P/ns/user)" = "$me" ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done
    echo '0 0 4294967295' > /proc/$P/uid_map && echo '0 0 4294967295' > /proc/$P/gid_map && echo go > "$F"
    wait $P; rc=$?; rm -f "$F"; exit $rc`;

/** Removes a cell's tree, deepest first (after nsbox removed its own groups); what is still in use stays. */
export function rmTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(`${dir}/${e.name}`);
  try { rmdirSync(dir); } catch { /* still in use: the caller's leak check says so */ }
}

/** A shell line that puts itself into cgroup `dir`, then becomes uid U and runs "$@". */
export const asUserIn = (dir: string) => `echo $$ > ${dir}/cgroup.procs && exec setpriv --reuid=${U} --regid=${U} --clear-groups "$@"`;
/** A shell line that becomes uid U (staying in this cgroup) and runs "$@". */
export const asUser = `exec setpriv --reuid=${U} --regid=${U} --clear-groups "$@"`;

/**
 * Runs a fresh Node process (`node ...args`) that the shell line `wrap` starts (it ends in
 * `exec "$@"`); its pid goes to `pids` (for leak checks). Resolves to its last stdout line as
 * JSON. Cannot hang: see test/helpers/proc.ts (its process group is killed at `timeout`).
 */
export async function runNodeIn(wrap: string, args: string[], pids: Set<number>, env: Record<string, string> = {}, timeout = 240_000): Promise<any> {
  const r = await runFresh('/bin/sh', ['-c', wrap, 'cell', process.execPath, ...args], {
    cwd: '/', timeout, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/', ...env },
  });
  pids.add(r.pid);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last); } catch { throw ranError(r, 'no JSON from the fresh Node process'); }
}

/** runNodeIn for an ES module body with `nsbox` imported from dist/. */
export const runIn = (wrap: string, body: string, pids: Set<number>, env: Record<string, string> = {}): Promise<any> =>
  runNodeIn(wrap, ['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], pids, env);

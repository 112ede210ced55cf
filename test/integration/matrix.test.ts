// The compatibility suite of issue 15's matrix: every public feature by one test, run unchanged
// as each caller of the cell this host is. The features are probed by
// test/helpers/matrix-features.mjs in a fresh Node process started as the cell's caller (nsbox
// from dist/): root; uid 65534 in root's cgroup (this host: cgroup v1, no delegation); uid
// 65534 in a systemd-style delegated scope (test:vm's cgroup v2 guests, built by
// test/helpers/cells.ts). Run by a non-root user, vitest tests that user as it is. Each test
// asserts the feature works, or the refusal nsbox gives that caller: an NsboxError whose code
// says the cause and whose message names the fix. A feature nsbox should give a caller that
// does not work is a failure; where it is known and not yet fixed, it is skipped with
// "KNOWN GAP:" and the reason.
// As a non-root user: `node node_modules/vitest/vitest.mjs run --configLoader runner
// test/integration/matrix.test.ts` with TMPDIR and HOME writable (vite's default config loader
// writes to node_modules/.vite-temp).
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asUser, asUserIn, DIST, makeUserCells, rmTree, runNodeIn, SCOPE, SERVICE, skipV2Cells, U, USER_SLICE } from '../helpers/cells.js';
import { defaultBridgeGuard, isRoot, nsboxCgroupsOf, skipReason } from '../helpers/host.js';
import { busyboxEntries, busyboxRootfs, dockerSaveTar, ourMounts, removeScratch, scratch } from './fs-helpers.js';

const FEATURES = resolve(__dirname, '../helpers/matrix-features.mjs');
const [KMAJ, KMIN] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number) as [number, number];
const kernelAtLeast = (maj: number, min: number) => KMAJ > maj || (KMAJ === maj && KMIN >= min);
const v1 = !readMode().startsWith('v2');
function readMode(): string {
  const l = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x: string) => x.split(' ')[4] === '/sys/fs/cgroup');
  return l && / - cgroup2 /.test(l) ? 'v2' : 'v1';
}
/** /dev/net/tun open to every user (Debian's 0666), which user-mode networking needs without root. */
const tunForAll = (() => { try { return (statSync('/dev/net/tun').mode & 0o006) === 0o006; } catch { return false; } })();

interface Cell {
  name: string;
  /** shell line that starts "$@" as the caller, where it runs */
  wrap: string;
  root: boolean;
  /** may make cgroups (root, or a delegated subtree) */
  cgroups: boolean;
  setup?: () => void;
  teardown?: () => void;
}

const cells: Cell[] = [];
if (isRoot) {
  cells.push({ name: 'root', wrap: 'exec "$@"', root: true, cgroups: true });
  if (!v1 && !skipV2Cells()) {
    cells.push({ name: `uid ${U} in a delegated scope (${SCOPE})`, wrap: asUserIn(SCOPE), root: false, cgroups: true,
      setup: () => { expect(existsSync(USER_SLICE)).toBe(false); makeUserCells(); }, teardown: () => rmTree(USER_SLICE) });
  } else {
    cells.push({ name: `uid ${U} (no cgroup delegated to it)`, wrap: asUser, root: false, cgroups: false });
  }
} else {
  cells.push({ name: `uid ${process.geteuid?.()} (this process)`, wrap: 'exec "$@"', root: false, cgroups: false });
}
const skipAll = skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)');
const pids = new Set<number>();

/** An NsboxError as data, from the probe. */
type ErrData = { name: string; code: string; step?: string; message: string };
const refused = (e: ErrData | undefined, code: string, fix: RegExp) => {
  expect(e, 'expected a refusal').toBeDefined();
  expect(e).toMatchObject({ name: 'NsboxError', code });
  expect(e!.message).toMatch(fix);
};

describe.skipIf(skipAll)(`compatibility suite on kernel ${release()}, cgroup ${readMode()}`, () => {
  let rootfs = '', image = '';
  let bridge: () => Promise<void> = async () => {};
  beforeAll(async () => {
    const d = scratch('matrix');
    chmodSync(d, 0o755);
    rootfs = busyboxRootfs(join(d, 'root'));
    for (const s of ['proc', 'dev', 'sys', 'tmp']) mkdirSync(join(rootfs, s));
    image = join(d, 'image.tar');
    // /work is everyone's: before Linux 6.13 (no idmapped layers) root's image files stay host
    // root's, which a root caller's sandbox root (an unprivileged host uid) may not write
    await dockerSaveTar(image, { Cmd: ['/bin/echo', 'from-image'] }, [...busyboxEntries(), { name: 'work/', type: 'directory', mode: 0o1777 }]);
    chmodSync(image, 0o644);
    if (isRoot) bridge = defaultBridgeGuard();
  });
  afterAll(async () => {
    await bridge();
    removeScratch();
    expect(ourMounts()).toEqual([]);
    if (isRoot) expect(nsboxCgroupsOf(pids)).toEqual([]);
  });

  for (const cell of cells) {
    describe(cell.name, () => {
      let out: Record<string, { ok?: any; error?: ErrData }> = {};
      beforeAll(() => {
        cell.setup?.();
        out = runNodeIn(cell.wrap, [FEATURES, DIST, rootfs, image], pids, { TMPDIR: '/tmp' }, 600_000);
      }, 900_000);
      afterAll(() => { cell.teardown?.(); });
      const ok = (f: string) => {
        const r = out[f];
        if (r?.error) throw new Error(`${f}: ${r.error.name} ${r.error.code ?? ''}: ${r.error.message}`);
        return r!.ok;
      };
      const err = (f: string) => {
        const r = out[f];
        if (!r?.error) throw new Error(`${f}: expected a refusal, got ${JSON.stringify(r?.ok)}`);
        return r.error;
      };
      /** A cgroup refused to a caller without delegation: the cause and the fix for this host. */
      const cgroupRefusal = (e: ErrData | undefined) => {
        refused(e, 'EACCES', v1 ? /cgroupParent/ : /systemd-run --user --scope -p Delegate=yes/);
        expect(e!.step).toBe('cgroup-create');
      };

      it('spawn (default view)', () => {
        expect(ok('spawn default view')).toMatchObject({ code: 0, stderr: '' });
        expect(ok('spawn default view').stdout).toMatch(/^hi\n0\n1\n(.+\n)*proc\n/);
      });

      it('rootfs', () => {
        expect(ok('rootfs')).toMatchObject({ code: 0, stdout: 'in-rootfs\n2\n', stderr: '' });
      });

      it('bind and tmpfs mounts', () => {
        const r = ok('bind and tmpfs mounts');
        expect(r).toMatchObject({ code: 0, stderr: '' });
        const [data, t, ...mounts] = r.stdout.trim().split('\n');
        expect([data, t]).toEqual(['bound', 't']);
        expect(mounts.find((l: string) => l.startsWith('/d '))).toMatch(/^\/d ro,nosuid,nodev/);
        expect(mounts.find((l: string) => l.startsWith('/t '))).toMatch(/^\/t rw,.* tmpfs$/);
      });

      it('limits and verdicts', () => {
        const r = ok('limits and verdicts');
        expect(r.wall.verdict).toBe('timeout'); // no cgroup needed
        if (cell.cgroups) expect(r.pids.verdict).toBe('pids');
        else cgroupRefusal(r.pids.error);
      });

      it('CGroup', () => {
        if (cell.cgroups) expect(ok('CGroup')).toEqual({ stats: true, verdict: 'pids' });
        else cgroupRefusal(err('CGroup'));
      });

      // a mount in the host's namespace needs root: the error says so and what works without
      it('OverlayMount', () => {
        if (cell.root) expect(ok('overlay')).toEqual(['top', 'low-g']);
        else refused(err('overlay'), 'EPERM', /needs root.*spawnIsolated's image option/);
      });

      // a non-root caller's image is mounted inside the sandbox's user namespace: Linux 5.11 (userxattr)
      const noUsernsOverlay = (e: ErrData) => refused(e, 'EOPNOTSUPP', /needs Linux 5\.11 .*run as root, or use options\.rootfs/);
      it('image import and run', () => {
        if (!cell.root && !kernelAtLeast(5, 11)) return noUsernsOverlay(err('image import and run'));
        expect(ok('image import and run')).toMatchObject({ names: ['bb:docker'], run: { code: 0, stdout: 'from-image\n' } });
      });

      it('commit', () => {
        if (!cell.root && !kernelAtLeast(5, 11)) return noUsernsOverlay(err('commit'));
        expect(ok('commit')).toMatchObject({ layers: 2, run: { code: 0, stdout: 'committed\n' } });
      });

      it('networking modes (none, loopback, user, bridge)', () => {
        const r = ok('networking modes');
        for (const m of ['none', 'loopback']) expect(r[m], m).toMatchObject({ code: 0, stdout: '0\nlo\n' });
        if (cell.root || tunForAll) expect(r.user).toMatchObject({ code: 0, stdout: '1\nlo\n' });
        else refused(r.user.error, 'EACCES', /\/dev\/net\/tun/);
        if (cell.root) expect(r.bridge).toMatchObject({ code: 0, stdout: '1\nlo\n' });
        else refused(r.bridge.error, 'EPERM', /bridge networking needs root.*network: 'user'/);
      });

      it('seccomp', () => {
        const r = ok('seccomp');
        expect(r.def).toMatchObject({ code: 0, stdout: 'Seccomp:\t2\n' });
        expect(r.denied.code).not.toBe(0);
        expect(r.denied.stderr).toMatch(/Operation not permitted/);
      });

      it('tty', () => {
        expect(ok('tty')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\/dev\/pts\/\d+\r\n30 100\r\n$/) });
      });

      it('init', () => {
        const r = ok('init');
        expect(r.withInit).toMatchObject({ code: 0, stdout: '2\nnsbox-init\n' });
        expect(r.noInit).toMatchObject({ code: 0, stdout: '1\n' });
      });

      it('prepareIsolated', () => {
        expect(ok('prepared')).toMatchObject({ code: 0, stdout: 'prepared\n' });
      });

      it('createPool', () => {
        expect(ok('pool').map((r: { stdout: string }) => r.stdout)).toEqual(['one\n', 'two\n']);
      });

      it('Sandbox create/exec/destroy', () => {
        expect(ok('Sandbox create/exec/destroy')).toMatchObject({ exec: { code: 0, stdout: 'kept\n' }, after: 0 });
      });

      it('doctor', () => {
        const checks = ok('doctor') as { id: string; status: string; detail: string; fix?: string }[];
        expect(checks.length).toBeGreaterThan(5);
        for (const c of checks) if (c.status !== 'ok' && c.status !== 'unknown') expect(c.fix, `${c.id}: ${c.status}: ${c.detail}`).toBeTruthy();
        // what doctor may call 'fail' here, each with its fix: /dev/net/tun closed to a non-root
        // caller (asserted above as a refusal), overlay in a user namespace (5.11), landlock (5.13)
        const may = [...(cell.root || tunForAll ? [] : ['tun']), ...(kernelAtLeast(5, 11) ? [] : ['overlay-userns']), ...(kernelAtLeast(5, 13) ? [] : ['landlock'])];
        expect(checks.filter((c) => c.status === 'fail' && !may.includes(c.id)).map((c) => `${c.id}: ${c.detail}`)).toEqual([]);
      });
    });
  }
});

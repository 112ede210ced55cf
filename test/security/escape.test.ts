// Hostile programs (test/security/escape.c) inside real sandboxes made by spawnIsolated with its
// defaults: writing /proc/*/exe (CVE-2019-5736), host fds in /proc/self/fd or /proc/1/fd,
// kernel knobs (/proc/sysrq-trigger, core_pattern, /sys), cgroup release_agent (CVE-2022-0492),
// masked kernel state, no_new_privs, kill(-1). Each runs with the default seccomp profile and
// with seccomp 'none', to show the other layers hold on their own; a control run on the bare
// host shows the attempts are real.
import { spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnIsolated } from '../../lib/spawn/spawn.js';
import { seccompTestRun } from '../../lib/security/seccomp/index.js';
import { alive, isRoot, skipReason } from '../helpers/host.js';
import { buildC, cannotBuild, cleanupBuilds } from './build.js';

afterAll(() => cleanupBuilds());

const why = !isRoot ? 'spawnIsolated integration tests need root' : cannotBuild();
type Opts = Parameters<typeof spawnIsolated>[2];

describe.skipIf(skipReason(!!why, `escape battery: ${why}`))('escape attempts from inside a sandbox', () => {
  const escape = () => buildC('escape', { static: true });
  const inside = (attack: string, seccomp: 'default' | 'none', extra: Opts = {}) => spawnIsolated('/opt/nsbox-escape/escape.static', [attack], {
    mounts: [{ type: 'bind', source: dirname(escape()), target: '/opt/nsbox-escape', readonly: true }],
    seccomp,
    ...extra,
  } as Opts);

  for (const seccomp of ['default', 'none'] as const) {
    for (const attack of ['proc-exe', 'fds', 'kernel-files', 'release-agent', 'masked', 'nnp']) {
      it(`${attack} fails inside (seccomp ${seccomp})`, async () => {
        const r = await inside(attack, seccomp);
        expect(r.stdout, r.stdout + r.stderr).not.toMatch(/ALLOWED/);
        expect(r.stdout).toMatch(/^DENIED /m);
        expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      });
    }
  }

  it('the same attempts are real on the bare host (control)', () => {
    for (const attack of ['kernel-files', 'masked', 'fds']) {
      const r = seccompTestRun(null, [escape(), attack]);
      // for fds: the host's pid 1 holds fds this process can list (reachable or not)
      expect(r.output, `${attack} on the host`).toMatch(attack === 'fds' ? /^(ALLOWED |DENIED \/proc\/1\/fd\/\d+ unreachable)/m : /^ALLOWED /m);
    }
  });

  it('kill(-1, SIGKILL) from inside leaves host processes alive', async () => {
    const sleeper = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => sleeper.once('spawn', r));
      for (const seccomp of ['default', 'none'] as const) {
        // the program as pid 1 (the attack refuses to run anywhere else)
        const r = await inside('kill-all', seccomp, { init: false });
        expect(r.stdout, r.stdout).toMatch(/survived/);
        expect(r.exitCode).toBe(0);
        // under nsbox-init: kill(-1) spares init and the caller (as for any pid namespace),
        // so the program goes on; nothing outside is hit
        const r2 = await spawnIsolated('/bin/sh', ['-c', 'sleep 30 & kill -KILL -1; wait; echo after'], { seccomp } as Opts);
        expect(r2.stdout).toBe('after\n');
        expect(r2.exitCode).toBe(0);
      }
      expect(alive(sleeper.pid!)).toBe(true);
      expect(alive(process.pid)).toBe(true);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
});

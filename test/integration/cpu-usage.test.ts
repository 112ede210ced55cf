// Issue 13, item 11: result.usage counts the CPU time of every process of the sandbox, also
// without a cpu cgroup and also when nsbox kills it. Each program here prints its own CPU time
// as it runs (test/security/spin.c); the last figures are a lower bound of what it used,
// whatever the load of the machine, and usage must reach it. (Before the fix a sandbox of four
// spinning threads killed after 2 s reported about 1 ms: pid 1 was SIGKILLed, and the kernel
// reaps the rest of a pid namespace with SIGCHLD ignored, so their time reached nobody.)
import { afterAll, describe, expect, it } from 'vitest';
import { basename, dirname } from 'node:path';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { spawnIsolated, type IsolatedResult, type SpawnIsolatedOptions } from '../../lib/index.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';
import { isRoot, skipReason } from '../helpers/host.js';

const why = cannotBuild();
afterAll(() => cleanupBuilds());

/** The sum of the last CPU figure each spinner printed, in ms. */
function burnt(stdout: string): number {
  const last = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const m = /^(\d+) (\d+)$/.exec(line);
    if (m) last.set(m[1]!, Number(m[2]));
  }
  return [...last.values()].reduce((a, b) => a + b, 0);
}

const used = (r: IsolatedResult<string>) => r.usage.cpuUserMs + r.usage.cpuSystemMs;

describe.skipIf(skipReason(!!why, `cpu usage tests: ${why}`))('result.usage counts every process of the sandbox', () => {
  const spin = () => buildC('spin', { static: true, libs: ['-pthread'] });
  const SPIN = () => `/opt/spin/${basename(spin())}`;
  const opts = (o: SpawnIsolatedOptions = {}): SpawnIsolatedOptions => ({
    mounts: [{ type: 'bind', source: dirname(spin()), target: '/opt/spin', readonly: true }],
    ...o,
  });
  const check = (r: IsolatedResult<string>, slack = 1) => {
    const low = burnt(r.stdout);
    console.log(`spinners burnt >= ${low} ms; usage ${used(r).toFixed(1)} ms (user ${r.usage.cpuUserMs.toFixed(1)}, system ${r.usage.cpuSystemMs.toFixed(1)})`);
    expect(low, 'the spinners ran').toBeGreaterThan(0);
    expect(used(r)).toBeGreaterThanOrEqual(low * slack);
  };

  it.each([
    ['four spinning threads', ['threads', '4']],
    ['four spinning processes', ['procs', '4']],
    ['four spinning orphans (reparented to pid 1)', ['orphans', '4']],
  ])('%s killed by the timeout', async (_name, args) => {
    const r = await spawnIsolated(SPIN(), args, opts({ timeout: 2000 }));
    expect(r.verdict).toBe('timeout');
    expect(r.signal).toBe('SIGKILL');
    check(r);
  });

  it('a sandbox ended with kill()', async () => {
    const p = spawnIsolated(SPIN(), ['procs', '3'], opts());
    setTimeout(() => p.kill(), 1000);
    const r = await p;
    expect(r.signal).toBe('SIGKILL');
    check(r);
  });

  it('a kill is not held off by pid 1: a stopped nsbox-init is SIGKILLed after the grace', async () => {
    const p = spawnIsolated('/bin/sleep', ['60']);
    await new Promise((res) => p.once('spawn', res));
    process.kill(p.pid!, 'SIGSTOP');
    const state = () => readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]![0];
    for (let i = 0; i < 200 && state() !== 'T'; i++) await new Promise((res) => setTimeout(res, 10));
    expect(state()).toBe('T');
    expect(p.kill()).toBe(true);
    const r = await p;
    expect(r.signal).toBe('SIGKILL');
  });

  it('spinners left behind when the program exits', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', `${SPIN()} procs 3 & sleep 1`], opts());
    expect(r.exitCode).toBe(0);
    check(r);
  });

  it('with init: false, the threads of the program (pid 1) count', async () => {
    const r = await spawnIsolated(SPIN(), ['threads', '3'], opts({ timeout: 1500, init: false }));
    expect(r.verdict).toBe('timeout');
    check(r);
  });

  it.skipIf(skipReason(!isRoot, 'a cgroup of its own needs root here'))('with a cgroup of its own (its figures, as before)', async () => {
    const r = await spawnIsolated(SPIN(), ['procs', '4'], opts({ timeout: 2000, limits: { pids: 64 } }));
    expect(r.verdict).toBe('timeout');
    // cgroup v1 splits user/system by ticks: allow a little for that
    check(r, 0.9);
  });

  it('as the first spawn of a fresh Node process (dist)', () => {
    const script = `import('${new URL('../../dist/index.js', import.meta.url).href}').then(async (m) => {
      const r = await m.spawnIsolated('${SPIN()}', ['procs', '4'], ${JSON.stringify(opts({ timeout: 1500 }))});
      process.stdout.write(JSON.stringify({ stdout: r.stdout, usage: r.usage, verdict: r.verdict }));
    }).catch((e) => { console.error(e.message); process.exit(1); });`;
    const r = JSON.parse(execFileSync(process.execPath, ['-e', script], { maxBuffer: 1 << 24 }).toString());
    expect(r.verdict).toBe('timeout');
    check(r);
  });
});

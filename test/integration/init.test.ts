// Issue 7, item 1: nsbox-init as pid 1 (the default with a new pid namespace): it reaps
// orphans, forwards signals to the program, and the result carries the program's own status.
import { describe, it, expect, afterAll } from 'vitest';
import { dirname } from 'node:path';
import { spawnIsolated } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { buildC, cannotBuild, cleanupBuilds } from '../security/build.js';

afterAll(() => cleanupBuilds());

const sh = (script: string, o: Parameters<typeof spawnIsolated>[2] = {}) => spawnIsolated('/bin/sh', ['-c', script], o);

describe.skipIf(skipReason(!isRoot, 'init tests need root'))('nsbox-init', () => {
  it.skipIf(skipReason(!!cannotBuild(), `orphan test: ${cannotBuild()}`))('reaps 10,000 orphans (and without init they pile up as zombies)', async () => {
    const bin = buildC('orphans', { static: true });
    const opts = { mounts: [{ type: 'bind' as const, source: dirname(bin), target: '/opt/t', readonly: true }], timeout: 120_000, limits: { pids: 256 } };
    const r = await spawnIsolated('/opt/t/orphans.static', ['10000'], opts);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('zombies 0\n');
    // control: the program as pid 1 does not reap, so the same orphans stay zombies
    const c = await spawnIsolated('/opt/t/orphans.static', ['200'], { ...opts, init: false });
    expect(Number(c.stdout.split(' ')[1])).toBeGreaterThanOrEqual(190);
  }, 180_000);

  it('gives the program a clean start: no blocked or ignored signals, a session of its own', async () => {
    // pid 1 keeps every signal blocked while it starts the program and becomes init. (The
    // program reads its own status: a shell blocks its signals for a moment around each fork.)
    const r = await spawnIsolated('/bin/grep', ['-E', '^(SigBlk|SigIgn)', '/proc/self/status']);
    expect(r.stdout).toMatch(/^SigBlk:\s+0+\nSigIgn:\s+0+\n$/);
    const st = (await spawnIsolated('/bin/cat', ['/proc/self/stat'])).stdout.split(' ');
    expect([st[0], st[5]]).toEqual(['2', '2']); // pid, session
  });

  it.skipIf(skipReason(!!cannotBuild(), `quick-exit test: ${cannotBuild()}`))('reports a program that is gone before init waits for it', async () => {
    // the program starts before nsbox-init runs; its SIGCHLD waits, blocked, for init
    const bin = buildC('quick-exit', { static: true });
    const opts = { mounts: [{ type: 'bind' as const, source: dirname(bin), target: '/opt/t', readonly: true }] };
    for (let i = 0; i < 100; i++) {
      const r = await spawnIsolated('/opt/t/quick-exit.static', [String((i * 7) % 256)], opts);
      expect([r.exitCode, r.signal]).toEqual([(i * 7) % 256, null]);
    }
  });

  it('forwards signals to the program', async () => {
    const p = sh('trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done');
    await new Promise<void>((res) => p.stdout!.on('data', (c: Buffer) => { if (String(c).includes('ready')) res(); }));
    p.kill('SIGTERM');
    const r = await p;
    expect(r.stdout).toBe('ready\ngot TERM\n');
    expect(r.exitCode).toBe(3);
    expect(r.signal).toBeNull();
  });

  it("reports the program's own exit code or signal, not init's", async () => {
    const a = await sh('exit 200');
    expect([a.exitCode, a.signal]).toEqual([200, null]);
    const b = await sh('kill -SEGV $$');
    expect([b.exitCode, b.signal]).toEqual([null, 'SIGSEGV']);
    const c = await sh('kill -USR1 $$');
    expect([c.exitCode, c.signal]).toEqual([null, 'SIGUSR1']);
    expect(b.verdict).toBe('signaled');
  });

  it('ends the sandbox when the program ends (background processes go with it)', async () => {
    const t0 = performance.now();
    const r = await sh('sleep 60 & sleep 60 & echo started');
    expect(r.stdout).toBe('started\n');
    expect(r.exitCode).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it('is a static program from a sealed memfd: /proc/1/exe is not writable, comm is nsbox-init', async () => {
    const r = await sh('cat /proc/1/comm; echo x > /proc/1/exe 2>/dev/null && echo WROTE; echo done', { capabilities: [] });
    expect(r.stdout).toBe('nsbox-init\ndone\n');
  });

  it('rejects a missing program the same way (step exec) through init', async () => {
    await expect(spawnIsolated('/no/such/prog')).rejects.toMatchObject({ step: 'exec', code: 'ENOENT' });
  });
});

// Issue 7 (pool latency): a sandbox made ahead of its program (prepareIsolated), nsbox-init
// waiting as pid 1 in serve mode; run() is a fork and exec inside it.
import { describe, it, expect } from 'vitest';
import { existsSync } from 'node:fs';
import { prepareIsolated, NsboxError } from '../../lib/index.js';
import { isRoot, skipReason, alive } from '../helpers/host.js';

describe.skipIf(skipReason(!isRoot, 'prepared sandbox tests need root'))('prepareIsolated', () => {
  it('runs one program with the isolation of a spawn, its stdin, env and cwd, and its exact status', async () => {
    const box = await prepareIsolated({ hostname: 'ready' });
    expect(alive(box.pid)).toBe(true);
    const r = await box.run('/bin/sh', ['-c', 'echo $$ $(hostname) $X $(pwd); cat; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\\t " " "; exit 7'],
      { input: 'from stdin\n', env: { X: 'x', PATH: '/usr/bin:/bin' }, cwd: '/tmp' });
    expect(r.stdout.split('\n')).toEqual(['2 ready x /tmp', 'from stdin', 'CapEff: 0000000000000000', 'NoNewPrivs: 1', 'Seccomp: 2', '']);
    expect(r.exitCode).toBe(7);
    expect(r.isolation.init).toBe(true);
    expect(() => box.run('/bin/true')).toThrow(/one program only/);
  });

  it('reports a failed exec as the spawn would (step exec) and leaves nothing', async () => {
    const box = await prepareIsolated({ limits: { pids: 16 } });
    const cg = box.cgroup!.path;
    expect(existsSync(cg)).toBe(true);
    const e = await box.run('/no/such/program').then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect((e as NsboxError).step).toBe('exec');
    expect((e as NsboxError).code).toBe('ENOENT');
    expect(existsSync(cg)).toBe(false);
    expect(alive(box.pid)).toBe(false);
  });

  it('applies the cgroup limits made at prepare time to the run (memory verdict)', async () => {
    const box = await prepareIsolated({ limits: { memory: '64M', memorySwap: '64M' } });
    const r = await box.run('/usr/bin/python3', ['-c', 'x = bytearray(300 << 20)']);
    expect(r.verdict).toBe('memory');
  });

  it('destroy() without a run ends the sandbox and removes its cgroup', async () => {
    const box = await prepareIsolated({ limits: { pids: 8 } });
    const cg = box.cgroup!.path;
    await box.destroy();
    await box.destroy();
    expect(alive(box.pid)).toBe(false);
    expect(existsSync(cg)).toBe(false);
    expect((await box.process).verdict).toBe('canceled');
  });

  it('rejects what a prepared sandbox cannot take, before anything is made', async () => {
    await expect(prepareIsolated({ tty: true })).rejects.toThrow(/options\.tty/);
    await expect(prepareIsolated({ stdio: 'inherit' })).rejects.toThrow(/options\.stdio/);
    const box = await prepareIsolated();
    expect(() => box.run('/bin/true', [], { uid: 5 } as never)).toThrow(/unknown key 'uid'/);
    await box.destroy();
  });
});

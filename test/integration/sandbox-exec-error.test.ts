// Sandbox.exec on a destroyed sandbox returns a rejected process: its failure reaches the
// caller through the promise and never comes out as an unhandled 'error' event that kills
// Node (it did: the stand-in process's own rejection was never observed). Fresh Node process.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { isRoot, skipReason } from '../helpers/host.js';

const dist = new URL('../../dist/index.js', import.meta.url).pathname;

describe.skipIf(skipReason(!isRoot, 'Sandbox.create makes a cgroup (root here)'))('Sandbox.exec after destroy', () => {
  it('rejects with the sandbox error and Node lives on', () => {
    const script = `
      const m = await import(${JSON.stringify(dist)});
      const s = await m.Sandbox.create({});
      await s.destroy();
      const p = s.exec('/bin/true');
      await new Promise((r) => setTimeout(r, 300));
      const e = await p.then(() => null, (x) => x);
      console.log(JSON.stringify({ code: e && e.code, step: e && e.step }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ code: 'ESRCH', step: 'sandbox' });
  });
});

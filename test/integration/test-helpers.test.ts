// The test helpers that start fresh Node processes (test/helpers/proc.ts, runNodeIn in
// test/helpers/cells.ts) cannot hang on what those processes leave behind. A sandbox or pasta
// left by a fresh process inherits its stdout; spawnSync waited for that pipe's EOF even after
// its own timeout, with the vitest worker blocked (a 5.10 guest hung so for 1800 s).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNodeIn } from '../helpers/cells.js';
import { alive, sleep } from '../helpers/host.js';

const dir = mkdtempSync(join(tmpdir(), 'nsbox-helpers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pids = new Set<number>();
/** A Node body that waits for `file` (a pid a grandchild wrote), then prints JSON. */
const waitFor = (file: string, then = 'console.log(JSON.stringify({ done: true }))') =>
  ['-e', `const fs = require('fs'); const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(file)})) { clearInterval(t); ${then}; } }, 10);`];

describe('fresh Node processes in tests', () => {
  it('runNodeIn returns when the process exits, though a grandchild that left its process group holds its stdout', async () => {
    const f = join(dir, 'escaped');
    const out = await runNodeIn(`setsid sh -c 'echo $$ > ${f}.t && mv ${f}.t ${f} && exec sleep 120' & exec "$@"`, waitFor(f), pids);
    expect(out).toEqual({ done: true });
    const gp = Number(readFileSync(f, 'utf8'));
    try {
      expect(alive(gp)).toBe(true); // not waited for
    } finally { process.kill(gp, 'SIGKILL'); }
  });

  it('runNodeIn kills the process group at its timeout, grandchildren included, and says so', async () => {
    const f = join(dir, 'grouped');
    const run = runNodeIn(`sh -c 'echo $$ > ${f}.t && mv ${f}.t ${f} && exec sleep 120' & exec "$@"`, waitFor(f, 'setInterval(() => {}, 1000)'), pids, {}, 3000);
    await expect(run).rejects.toThrow(/timed out \(process group killed\)/);
    const gp = Number(readFileSync(f, 'utf8'));
    for (let i = 0; i < 100 && alive(gp); i++) await sleep(20);
    expect(alive(gp)).toBe(false);
  });
});

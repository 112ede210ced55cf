// The addon keeps no static mutable state: sandboxes spawn from worker threads too, while the
// main thread spawns its own.
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { spawnIsolated } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

describe.skipIf(skipReason(!isRoot, 'needs root'))('worker threads', () => {
  it('spawn sandboxes in two workers and the main thread at once, and exit cleanly', async () => {
    const code = `
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(dist)}).then(async ({ spawnIsolated }) => {
        const rs = await Promise.all([1, 2, 3].map((i) => spawnIsolated('/bin/sh', ['-c', 'echo $$ ' + i])));
        parentPort.postMessage(rs.map((r) => r.stdout.trim()));
      });`;
    const run = () => new Promise<string[]>((res, rej) => {
      const w = new Worker(code, { eval: true });
      w.once('message', res);
      w.once('error', rej);
    });
    const [a, b, main] = await Promise.all([run(), run(), spawnIsolated('/bin/echo', ['main'])]);
    expect(a).toEqual(['2 1', '2 2', '2 3']); // pid 2: nsbox-init is pid 1
    expect(b).toEqual(['2 1', '2 2', '2 3']);
    expect(main.stdout).toBe('main\n');
  });
});

// A sandbox stopped by a signal reports the signal's name as child_process does (issue 14:
// one signal table, lib/util/sys.ts; before it, signal 6 came back as 'SIGIOT').
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { spawnIsolated } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

describe.skipIf(skipReason(!isRoot, 'spawn integration tests need root'))('signal names of a sandbox result', () => {
  for (const sig of ['SIGABRT', 'SIGIO', 'SIGTERM'] as const) {
    it(`a program killed by ${sig} reports ${sig}, the name child_process reports`, async () => {
      const script = `ulimit -c 0; kill -${sig.slice(3)} $$`;
      const p = spawnIsolated('/bin/sh', ['-c', script]);
      const exit = new Promise<unknown>((res) => p.once('exit', (_code: unknown, signal: unknown) => res(signal)));
      const r = await p;
      expect(spawnSync('/bin/sh', ['-c', script]).signal).toBe(sig);
      expect({ signal: r.signal, signalCode: p.signalCode, exit: await exit }).toEqual({ signal: sig, signalCode: sig, exit: sig });
    });
  }
});

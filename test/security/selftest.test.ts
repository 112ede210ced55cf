// Issue 6: `nsbox doctor --self-test` runs the escape battery in real sandboxes on the user's
// host. With the defaults everything holds; with weakened options the same probes see it.
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { sandboxSelfTest } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const root = new URL('../..', import.meta.url).pathname;

describe.skipIf(skipReason(!isRoot, 'the sandbox self-test needs root'))('sandbox self-test', () => {
  it('holds with the default options', async () => {
    const r = await sandboxSelfTest();
    expect(r.map((a) => a.id)).toEqual(['proc-exe', 'host-fds', 'kernel-files', 'masked', 'privileges', 'nested-userns', 'mount', 'network', 'cwd-fd', 'kill-all']);
    for (const a of r) expect(a.denied, `${a.id}: ${a.got}`).toBe(true);
  });

  it('reports what weakened options let through', async () => {
    const r = await sandboxSelfTest({ network: 'host', seccomp: 'none' });
    const bad = r.filter((a) => !a.denied).map((a) => a.id);
    expect(bad).toEqual(expect.arrayContaining(['network', 'privileges']));
  });

  it('nsbox doctor --self-test runs it and exits 0 here', () => {
    const out = execFileSync(process.execPath, [`${root}dist/cli.js`, 'doctor', '--self-test'], { encoding: 'utf8' });
    expect(out).toMatch(/\[held {3}\] in a sandbox: kill\(-1, SIGKILL\)/);
    expect(out).not.toMatch(/ESCAPED/);
  });
});

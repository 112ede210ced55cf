// Root in a container that has a user namespace of its own but shares the host's network
// namespace (issue 15's container cell): it is uid 0, yet has no CAP_NET_ADMIN over that
// network namespace. Bridge networking is refused with the cause and the fix (before: nft's raw
// "cache initialization failed: Operation not permitted"), and doctor says the same. Here the
// container is `unshare --user --map-root-user` from root; test:vm's container cell
// (matrix.test.ts) runs the whole compatibility suite in one with its own cgroup namespace.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoot, skipReason } from '../helpers/host.js';
import { ranError, runFresh } from '../helpers/proc.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const skip = skipReason(!isRoot, 'makes its container (a user namespace mapping root) from root')
  || skipReason(!existsSync(DIST), 'dist/ is missing (npm run build:ts)');

describe.skipIf(skip)('root in a user namespace that does not own its network namespace', () => {
  it("bridge networking: EPERM naming the cause and network: 'user'; doctor's nftables check says the same", async () => {
    const r = await runFresh('unshare', ['--user', '--map-root-user', process.execPath, '--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};
      const e = await nsbox.spawnIsolated('/bin/true', [], { network: { mode: 'bridge' } }).then(() => null, (e) => ({ name: e.name, code: e.code, step: e.step, message: e.message }));
      console.log(JSON.stringify({ uid: process.geteuid(), e, nft: nsbox.doctor().checks.find((c) => c.id === 'nftables') }));`], { cwd: '/', timeout: 60_000 });
    if (r.status !== 0) throw ranError(r, 'node in unshare --user --map-root-user');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.uid).toBe(0);
    expect(out.e).toMatchObject({ name: 'NsboxError', code: 'EPERM', step: 'network' });
    expect(out.e.message).toMatch(/user namespace that does not own its network namespace .*network: 'user'.*a network namespace of its own/);
    expect(out.nft).toMatchObject({ status: 'warn', fix: expect.stringContaining("network: 'user'") });
  });
});

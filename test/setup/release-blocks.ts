// vitest ends each file's worker process with a signal, so its exit handlers never run: the id
// block claims it still held idle (a block is kept 2 s after its sandbox ends, for the next
// one) and the spare cgroups made ahead for limited spawns (removed after 2 s unused) would
// stay behind until gc. Each file gives them back when it ends.
import { afterAll } from 'vitest';
import { releaseIdleBlocks } from '../../lib/ns/idblocks.js';
import { releaseSpares } from '../../lib/cgroup/spares.js';

afterAll(async () => {
  releaseIdleBlocks();
  await releaseSpares();
});

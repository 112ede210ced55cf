// The ids layer: a root caller's sandbox with nsbox's default maps gets a 64Ki id block of its
// own (lib/ns/idblocks.ts hands them out, lib/plan/ids.ts says where they are), so sandboxes
// do not share the kernel's per-uid quotas. Acquired while the inputs are resolved, before the
// image layer idmaps an image with it and before the plan is built with it; given back when the
// sandbox has ended (the thread's teardown gives back what is left). A sandbox that is to
// outlive the thread (parentDeathSignal: false) is named in its claim once it runs.
import { acquireIdBlock, type IdBlockClaim } from '../../ns/idblocks.js';
import { idBlockSource, realHost, wantsIdBlock } from '../../plan/index.js';
import { processStart } from '../../owner.js';
import type { SpawnLayer } from '../layer.js';

export const idsLayer: SpawnLayer = {
  name: 'ids',
  open(opts) {
    if (!wantsIdBlock(opts, realHost)) return undefined;
    let claim: IdBlockClaim | undefined;
    return {
      async resolve(input) {
        // a user-mode network's sandbox joins its holder's user namespace (the holder has a block)
        if (claim || !wantsIdBlock(input.options, realHost)) return undefined;
        claim = acquireIdBlock(idBlockSource(realHost));
        return { ...input, idBlock: { uid: claim.uid, gid: claim.gid } };
      },
      resolveNow(input) {
        // the usual case: a block this thread holds is lent from memory. Any failure (all
        // blocks in use) is resolve's to report, as a rejection
        if (claim || !wantsIdBlock(input.options, realHost)) return undefined;
        try { claim = acquireIdBlock(idBlockSource(realHost)); } catch { return undefined; }
        return { ...input, idBlock: { uid: claim.uid, gid: claim.gid } };
      },
      spawned(pid) {
        // a sandbox that outlives this thread keeps its block: the claim names it from now on
        if (claim && opts.parentDeathSignal === false) {
          const start = processStart(pid);
          if (start !== undefined) claim.handOver(pid, start);
        }
      },
      release() {
        claim?.release();
        claim = undefined;
      },
    };
  },
};

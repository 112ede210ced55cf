// The network layer: `options.network`. 'none', 'loopback', 'host' and { join } are namespace
// choices the planner makes (it brings `lo` up); this layer validates the option when
// spawnIsolated is called (a bad value throws before anything is made), makes a bridge
// network's host side (veth, address, nft elements) before the spawn, hands the veth to the
// child before "go" (Bindings.net), puts /etc/hosts and /etc/resolv.conf in, and removes it
// all after exit. A sandbox that may outlive the thread (parentDeathSignal: false) has them
// handed over to its pid 1 once it runs (`spawned`). User-mode networking is ./usernet.ts.
import { randomBytes } from '../../util/builtins.js';
import { prepareSandboxNetwork, validateNetworkOption, type NetworkOption, type PreparedNetwork } from '../../net/network.js';
import type { UserNetworkOption } from '../../net/usernet.js';
import { onTeardown } from '../../teardown.js';
import { processStart } from '../../owner.js';
import type { SpawnIsolatedOptions } from '../../plan/options.js';
import type { SpawnLayer } from '../layer.js';
import { userModeRun } from './usernet.js';
import { egressExplain, egressRun } from './egress.js';
import type { EgressNetworkOption } from '../../net/egress/policy.js';

/** The word result.isolation.network and explain() use for an option. */
function networkLabel(o: SpawnIsolatedOptions): string | undefined {
  const net = o.network;
  if (net === undefined) return undefined; // the planner's word (its namespaces decide)
  if (typeof net === 'string') return net;
  if ('join' in net) return 'joined';
  if ('mode' in net && (net as { mode?: unknown }).mode !== undefined) return String((net as { mode: unknown }).mode);
  return 'bridge';
}

export const networkLayer: SpawnLayer = {
  name: 'network',
  open(o, ctx) {
    const opt = validateNetworkOption(o.network as NetworkOption | undefined);
    const label = networkLabel(o);
    const report = () => (label === undefined ? {} : { network: label });
    if (typeof opt === 'string' || 'join' in opt) return { report };
    if ('mode' in opt && opt.mode === 'egress') {
      const run = egressRun(opt as EgressNetworkOption, o, ctx);
      return { ...run, report: (plan) => ({ ...run.report?.(plan), ...report() }) };
    }
    if ('mode' in opt && opt.mode === 'user') {
      const run = userModeRun(opt as UserNetworkOption, o, ctx);
      return { ...run, report: (plan) => ({ ...run.report?.(plan), ...report() }) };
    }
    let prepared: PreparedNetwork | undefined;
    let dropTeardown = () => {};
    return {
      async acquire(_plan, bindings) {
        prepared = await prepareSandboxNetwork(opt, { id: randomBytes(6).toString('hex'), handoff: 'create' });
        // the thread's teardown deletes the veth (its IPAM entry and nft elements are swept
        // once this process is gone), unless the sandbox is to outlive the thread (spawned)
        if (prepared.hostLink && o.parentDeathSignal !== false) dropTeardown = onTeardown({ links: [prepared.hostLink] });
        bindings.net.push(...prepared.handoff);
      },
      contribute: () => ({
        netPremade: false, // its namespace receives a link: made for it, no spare
        ...(prepared ? { etcFiles: { hosts: prepared.files.hosts, 'resolv.conf': prepared.files.resolvConf } } : {}),
      }),
      report,
      spawned(pid) {
        // a sandbox that may outlive this thread owns its lease, veth and DNAT entries from
        // now on (they name its pid 1), so that neither another process's allocation nor gc
        // takes them once this process is gone
        if (prepared?.hostLink && o.parentDeathSignal === false) {
          const start = processStart(pid);
          if (start !== undefined) prepared.handOver(pid, start);
        }
      },
      async release() {
        // the result need not wait ~20 ms for the kernel to delete the veth (networkSettled() does)
        dropTeardown();
        await prepared?.release({ waitForLinks: false });
      },
    };
  },
  explain: (o) => {
    const opt = validateNetworkOption(o.network as NetworkOption | undefined);
    const label = networkLabel(o);
    // an egress policy's TLS interception is a relaxation explain() names as the result does
    const tls = typeof opt === 'object' && 'mode' in opt && opt.mode === 'egress' ? egressExplain(opt as EgressNetworkOption) : {};
    return { ...(label === undefined ? {} : { network: label }), ...tls };
  },
};

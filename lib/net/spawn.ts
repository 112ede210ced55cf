// Wires the `network` option into spawnIsolated through the spawn extension hook: the option
// is validated when spawnIsolated is called (a bad value throws before anything is made),
// the host side is prepared before spawn, plan.net carries the hand-off done before "go",
// and release runs after exit.
import { randomBytes } from 'node:crypto';
import { registerSpawnExtension } from '../spawn/spawn.js';
import { provideEtcFiles } from '../spawn/plan.js';
import { prepareSandboxNetwork, validateNetworkOption, type NetworkOption, type PreparedNetwork } from './network.js';

let registered = false;

/**
 * Makes spawnIsolated honour bridge networking in `options.network`. Idempotent. `'none'`,
 * `'loopback'` need nothing here (the planner brings `lo` up); `'host'` and `{ join }` are
 * namespace choices the planner makes.
 */
export function enableNetworkForSpawn(): void {
  if (registered) return;
  registered = true;
  registerSpawnExtension((o) => {
    const opt = validateNetworkOption((o as { network?: NetworkOption }).network);
    if (typeof opt === 'string' || 'join' in opt) return undefined;
    let prepared: PreparedNetwork | undefined;
    return {
      async prepare(plan) {
        prepared = await prepareSandboxNetwork(opt, { id: randomBytes(6).toString('hex'), handoff: 'create' });
        (plan as { net: PreparedNetwork['handoff'] }).net.push(...prepared.handoff);
        provideEtcFiles(plan, { hosts: prepared.files.hosts, 'resolv.conf': prepared.files.resolvConf });
      },
      async release() {
        await prepared?.release();
      },
    };
  });
}

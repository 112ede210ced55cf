// Wires the `seccomp` option into spawnIsolated through the spawn extension hook: the option is
// resolved (validated, compiled or taken from the per-process cache) synchronously when
// spawnIsolated is called, so a bad value throws before anything is created, and the program is
// put into the plan, which the child installs as its last step before execve (after
// no_new_privs; see addon/src/child.cc).
import { registerSpawnExtension } from '../../spawn/spawn.js';
import { resolveSeccompOption, type SeccompOption } from './option.js';

let registered = false;

/**
 * Makes spawnIsolated honour `options.seccomp` (`'default'` when absent, `'none'`, or a profile).
 * Idempotent. Note: with `allowNewPrivileges: true` the kernel installs a filter only for a
 * process with CAP_SYS_ADMIN in its user namespace; otherwise the spawn fails with an
 * NsboxError at step `'seccomp'`.
 */
export function enableSeccompForSpawn(): void {
  if (registered) return;
  registered = true;
  registerSpawnExtension((o) => {
    const prog = resolveSeccompOption((o as { seccomp?: SeccompOption }).seccomp, 'options.seccomp');
    if (!prog) return undefined;
    return {
      prepare(plan) {
        plan.seccomp = prog;
      },
    };
  });
}

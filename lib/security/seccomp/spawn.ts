// Wires the `seccomp` option into spawnIsolated through the spawn extension hook: the option is
// resolved (validated, compiled or taken from the per-process cache) synchronously when
// spawnIsolated is called, so a bad value throws before anything is created, and the program is
// put into the plan, which the child installs as its last step before execve (after
// no_new_privs; see addon/src/child.cc). With `allowNewPrivileges: true` it goes on earlier,
// before the child drops its privileges (see ./early.ts), and a custom profile is checked here
// against what the child still does after it.
import { registerSpawnExtension } from '../../spawn/spawn.js';
import { checkSeccompEarly } from './early.js';
import { resolveSeccompOption, type SeccompOption } from './option.js';

let registered = false;

/**
 * Makes spawnIsolated honour `options.seccomp` (`'default'` when absent, `'none'`, or a profile).
 * Idempotent. With `allowNewPrivileges: true` the filter is installed while the child still
 * holds CAP_SYS_ADMIN in its user namespace (the kernel's condition without no_new_privs), so
 * it must allow the calls the child makes after it: a profile that does not is a TypeError.
 */
export function enableSeccompForSpawn(): void {
  if (registered) return;
  registered = true;
  registerSpawnExtension((o) => {
    const prog = resolveSeccompOption((o as { seccomp?: SeccompOption }).seccomp, 'options.seccomp');
    if (!prog) return undefined;
    if (o.allowNewPrivileges === true) {
      const uid = typeof o.uid === 'number' ? o.uid : 0;
      checkSeccompEarly(prog, uid, typeof o.gid === 'number' ? o.gid : uid);
    }
    return {
      prepare(plan) {
        plan.seccomp = prog;
      },
    };
  });
}

// The seccomp layer: `options.seccomp` ('default' when absent, 'none', or a profile) resolved
// when spawnIsolated is called (validated, compiled or taken from the per-process cache), so a
// bad value throws before anything is made. The child installs the program as its last step
// before execve (after no_new_privs; see addon/src/child.cc). With `allowNewPrivileges: true`
// it goes on earlier, while the child still holds CAP_SYS_ADMIN in its user namespace (the
// kernel's condition without no_new_privs), so a profile must allow the calls the child makes
// after it: one that does not is a TypeError here (see security/seccomp/early.ts).
import { checkSeccompEarly } from '../../security/seccomp/early.js';
import { resolveSeccompOption } from '../../security/seccomp/option.js';
import type { SpawnIsolatedOptions } from '../../plan/options.js';
import type { SpawnLayer } from '../layer.js';

function label(o: SpawnIsolatedOptions): 'default' | 'custom' {
  return o.seccomp === undefined || o.seccomp === 'default' ? 'default' : 'custom';
}

export const seccompLayer: SpawnLayer = {
  name: 'seccomp',
  open(o) {
    const prog = resolveSeccompOption(o.seccomp, 'options.seccomp');
    if (!prog) return undefined;
    if (o.allowNewPrivileges === true) {
      const uid = typeof o.uid === 'number' ? o.uid : 0;
      checkSeccompEarly(prog, uid, typeof o.gid === 'number' ? o.gid : uid);
    }
    return {
      contribute: () => ({ seccomp: prog }),
      report: () => ({ seccomp: prog.length > 0 ? label(o) : 'none' }),
    };
  },
  explain: (o) => ({ seccomp: o.seccomp === 'none' ? 'none' : label(o) }),
};

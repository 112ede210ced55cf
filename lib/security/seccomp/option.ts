// The `seccomp` option of spawnIsolated, resolved into the spawn plan's `seccomp` field (raw
// `struct sock_filter[]`). Compiling the default profile takes about half a millisecond, a
// quarter of a whole spawn, so compiled programs of frozen profiles are kept per process.
import { compileSeccomp } from './compile.js';
import { defaultProfile } from './default-profile.js';
import type { SeccompProfile } from './profile.js';

/** `'default'` (nsbox's profile for untrusted code), `'none'` (no filter), or a profile of your own. */
export type SeccompOption = 'default' | 'none' | SeccompProfile;

/** What a sandbox got, for `explain` and the isolation report. */
export interface SeccompSummary {
  /** which profile. */
  profile: 'default' | 'none' | 'custom';
  /** number of BPF instructions installed (0 for none). */
  instructions: number;
}

const compiled = new WeakMap<object, Buffer>();

const frozen = (v: unknown) => v === null || typeof v !== 'object' || Object.isFrozen(v);
function deepFrozen(p: SeccompProfile): boolean {
  return Object.isFrozen(p) && frozen(p.defaultAction) && frozen(p.badArchAction) && frozen(p.architectures)
    && Object.isFrozen(p.rules)
    && p.rules.every((r) => Object.isFrozen(r) && frozen(r.action) && frozen(r.syscalls) && (!r.args || (Object.isFrozen(r.args) && r.args.every(frozen))));
}

/**
 * Resolves the `seccomp` option into the program the spawn child installs right before exec
 * (before it drops privileges with `allowNewPrivileges`; see ./early.ts)
 * (undefined: no filter). `undefined` means `'default'`. Throws TypeError/RangeError naming
 * `option` for bad input. Programs of deep-frozen profiles (`Seccomp.profile()`, the default) are
 * compiled once per process.
 */
export function resolveSeccompOption(opt: SeccompOption | undefined, option = 'seccomp'): Buffer | undefined {
  if (opt === 'none') return undefined;
  const profile = opt === undefined || opt === 'default' ? defaultProfile : opt;
  if (profile === null || typeof profile !== 'object' || Array.isArray(profile)) {
    throw new TypeError(`${option}: must be 'default', 'none' or a seccomp profile object`);
  }
  // a cached program belongs to a profile that was deep-frozen when it was compiled, and
  // frozen objects stay frozen
  const have = compiled.get(profile);
  if (have) return have;
  const cacheable = deepFrozen(profile);
  const prog = compileSeccomp(profile);
  if (cacheable) compiled.set(profile, prog);
  return prog;
}

/**
 * Gives a deep-frozen profile its compiled program without compiling it here (nsbox-runc's
 * cache of programs, lib/oci/seccomp-cache.ts, compiled it from the same profile text with the
 * same build). Returns false, and keeps nothing, for a profile that is not deep-frozen.
 */
export function primeSeccompProgram(profile: SeccompProfile, program: Buffer): boolean {
  if (!deepFrozen(profile)) return false;
  compiled.set(profile, program);
  return true;
}

/** A short description of what `opt` installs. */
export function summarizeSeccompOption(opt: SeccompOption | undefined): SeccompSummary {
  if (opt === 'none') return { profile: 'none', instructions: 0 };
  const prog = resolveSeccompOption(opt);
  return { profile: opt === undefined || opt === 'default' ? 'default' : 'custom', instructions: (prog?.length ?? 0) / 8 };
}

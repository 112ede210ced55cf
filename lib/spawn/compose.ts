// The two functions both spawnIsolated and explain() use: the one frozen plan composed from
// the base plan and the layers' contributions, and the isolation report made from that plan
// and the layers' reports (result.isolation and explain().isolation say the same words).
import { carryMountPointContext, forkPlan, provideEtcFiles, type Plan } from '../plan/index.js';
import type { IsolationReport, SpawnIsolatedOptions } from '../plan/options.js';
import type { Contribution } from './layer.js';

/**
 * @internal Variables set over a spawn's environment after every layer's (a key of the options
 * object, a symbol: never an option a caller gives, never in Object.keys). Sandbox.exec sets it
 * to what its holder's network gave the holder's program (an egress policy's proxy variables),
 * so a program joining that network is pointed at the same proxy.
 */
export const ENV_OVER: unique symbol = Symbol('nsbox.envOver');

/** The variables the contributions set, in layer order (later ones win), or undefined when none does. */
export function contributedEnv(parts: ReadonlyArray<Contribution | undefined>): Record<string, string> | undefined {
  let env: Record<string, string> | undefined;
  for (const c of parts) if (c?.env) env = { ...env, ...c.env };
  return env;
}

/** envp with `env`'s variables set over it (replacing those of the same name). */
export function envOver(envp: readonly string[], env: Readonly<Record<string, string>>): string[] {
  const names = new Set(Object.keys(env));
  return [...envp.filter((e) => !names.has(e.slice(0, e.indexOf('=')))), ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
}

/** The plan the addon runs: the base plan with every contribution applied, in layer order; frozen. */
export function composePlan(base: Plan, parts: ReadonlyArray<Contribution | undefined>): Readonly<Plan> {
  const given = parts.filter((c): c is Contribution => c !== undefined);
  if (given.length === 0) return Object.freeze(base);
  // the op lists are copied only for a contribution that adds ops (etc files): most spawns
  // get a seccomp program and nothing else
  let plan: Plan;
  if (given.some((c) => c.etcFiles)) plan = forkPlan(base);
  else {
    plan = { ...base };
    carryMountPointContext(base, plan);
  }
  for (const c of given) {
    if (c.seccomp) plan.seccomp = c.seccomp;
    if (c.netPremade === false) plan.netPremade = false;
    if (c.setGroups === false) plan.setGroups = false;
    if (c.etcFiles) provideEtcFiles(plan, c.etcFiles);
    if (c.env) plan.envp = envOver(plan.envp, c.env);
  }
  return Object.freeze(plan);
}

/** What the sandbox gets (nothing weaker goes unsaid): the plan's summary, then each layer's words. */
export function isolationReport(plan: Readonly<Plan>, o: SpawnIsolatedOptions, reports: ReadonlyArray<Partial<IsolationReport> | undefined>): IsolationReport {
  const r: IsolationReport = { ...plan.summary, seccomp: 'none', cgroup: null, limits: o.limits ? { ...o.limits } : null };
  for (const x of reports) if (x) Object.assign(r, x);
  return r;
}

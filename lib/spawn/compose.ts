// The two functions both spawnIsolated and explain() use: the one frozen plan composed from
// the base plan and the layers' contributions, and the isolation report made from that plan
// and the layers' reports (result.isolation and explain().isolation say the same words).
import { forkPlan, provideEtcFiles, type Plan } from '../plan/index.js';
import type { IsolationReport, SpawnIsolatedOptions } from '../plan/options.js';
import type { Contribution } from './layer.js';

/** The plan the addon runs: the base plan with every contribution applied, in layer order; frozen. */
export function composePlan(base: Plan, parts: ReadonlyArray<Contribution | undefined>): Readonly<Plan> {
  const given = parts.filter((c): c is Contribution => c !== undefined);
  if (given.length === 0) return Object.freeze(base);
  const plan = forkPlan(base);
  for (const c of given) {
    if (c.seccomp) plan.seccomp = c.seccomp;
    if (c.netPremade === false) plan.netPremade = false;
    if (c.setGroups === false) plan.setGroups = false;
    if (c.etcFiles) provideEtcFiles(plan, c.etcFiles);
    if (c.env) {
      const names = new Set(Object.keys(c.env));
      plan.envp = [...plan.envp.filter((e) => !names.has(e.slice(0, e.indexOf('=')))), ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`)];
    }
  }
  return Object.freeze(plan);
}

/** What the sandbox gets (nothing weaker goes unsaid): the plan's summary, then each layer's words. */
export function isolationReport(plan: Readonly<Plan>, o: SpawnIsolatedOptions, reports: ReadonlyArray<Partial<IsolationReport> | undefined>): IsolationReport {
  const r: IsolationReport = { ...plan.summary, seccomp: 'none', cgroup: null, limits: o.limits ? { ...o.limits } : null };
  for (const x of reports) if (x) Object.assign(r, x);
  return r;
}

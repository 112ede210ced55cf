import { buildPlan, Op, type Plan } from '../plan/index.js';
import type { IsolationReport, SpawnIsolatedOptions } from '../plan/options.js';
import { envOver, isolationReport } from './compose.js';
import { egressEnv } from './layers/egress.js';
import type { EgressNetworkOption } from '../net/egress/policy.js';
import { LAYERS } from './layers/index.js';

const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

/** A readable form of a plan (what `nsbox explain` prints). */
export interface ExplainedPlan {
  argv: string[];
  execCandidates: string[];
  /** The program's environment, with what nsbox sets over it (an egress policy's proxy variables). */
  env: string[];
  namespaces: { created: string[]; joined: string[] };
  uidMap: string | null;
  gidMap: string | null;
  uid: number;
  gid: number;
  capabilities: string[];
  noNewPrivs: boolean;
  hostname: string | null;
  cwd: string;
  rlimits: Plan['rlimits'];
  /** What the sandbox would get (as IsolatedResult.isolation, before it runs). */
  isolation: IsolationReport;
  /** What the sandbox's setup process does, in order (in a copy of the view template when there is one). */
  steps: string[];
  /** How the view template is built (once, shared by sandboxes of this view), or null: the whole view is built by `steps`. */
  templateSteps: string[] | null;
}

/** Builds the plan `spawnIsolated(file, args, options)` would run, and describes it. Creates nothing. */
export function explain(file: string, args: string[] = [], options: SpawnIsolatedOptions = {}): ExplainedPlan {
  const p = buildPlan({ file, args, options });
  // what the network sets over env when the sandbox is made (an egress policy's proxy variables)
  const net = options.network as { mode?: string } | undefined;
  const layerEnv = typeof net === 'object' && net !== null && net.mode === 'egress' ? egressEnv(net as EgressNetworkOption) : undefined;
  return {
    argv: p.argv,
    execCandidates: p.exec,
    env: layerEnv ? envOver(p.envp, layerEnv) : p.envp,
    namespaces: { created: p.summary.namespaces, joined: p.summary.joined },
    uidMap: p.uidMap?.trim() ?? null,
    gidMap: p.gidMap?.trim() ?? null,
    uid: p.uid,
    gid: p.gid,
    capabilities: p.summary.capabilities,
    noNewPrivs: p.noNewPrivs,
    hostname: p.hostname ?? null,
    cwd: p.cwd,
    rlimits: p.rlimits,
    // the report the result gives, from what each layer says before anything is made
    isolation: isolationReport(p, options, LAYERS.map((l) => l.explain?.(options))),
    steps: describe(p.template?.child ?? p.ops),
    templateSteps: p.template ? describe(p.template.build) : null,
  };
}

function describe(ops: readonly Plan['ops'][number][]): string[] {
  return ops.map((o) => {
    const parts = [OP_NAMES[o.op] ?? `op${o.op}`];
    for (const k of ['source', 'path', 'putOld', 'dir', 'fstype'] as const) if (o[k] !== undefined) parts.push(String(o[k]));
    if (typeof o.data === 'string' && o.data) parts.push(`(${o.data})`);
    if (o.readonly) parts.push('ro');
    return parts.join(' ');
  });
}

// What a layer of the spawn pipeline is (see docs/architecture.md, "The spawn pipeline").
//
// spawnIsolated composes a fixed list of layers (./layers.ts). Each layer looks at the options
// once, synchronously (its mistakes throw before anything is made), and returns a run object
// for this spawn, or nothing when the options do not concern it. The pipeline then calls, in
// this order and for every layer that has the hook:
//   resolve   - may replace the inputs before the plan is built (an image becomes a rootfs)
//   acquire   - makes the host resources the plan needs, into the spawn's Bindings
//   contribute- its part of the plan, from the plan and what it acquired (pure: no I/O)
//   spawned   - the sandbox's first process exists (its pid)
//   report    - its part of result.isolation
//   release   - in reverse order, on every path (after exit, or after a failed setup)
// The plan handed to the addon is composed once from the base plan and the contributions,
// and frozen: nothing changes it afterwards.
import type { Plan, PlanInput } from '../plan/index.js';
import type { IsolatedResult, IsolationReport, SpawnIsolatedOptions } from '../plan/options.js';
import type { PreparedNetwork } from '../net/network.js';

/**
 * What spawnIsolated was called with (a layer's resolve may give other inputs): the planner's
 * input, which the resolve hooks complete (the ids layer's block, the image layer's root).
 */
export type SpawnInput = PlanInput;

/** A sandbox that a layer runs for its own purposes (a user-mode network's holder and helper). */
export interface HelperProcess extends PromiseLike<{ exitCode: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  readonly pid: number | undefined;
  once(event: 'spawn', f: () => void): unknown;
  kill(signal?: NodeJS.Signals | number): boolean;
  catch(f: (e: unknown) => unknown): Promise<unknown>;
}

/** What the pipeline lends a layer: nothing global, nothing imported upward. */
export interface LayerContext {
  /** Runs a helper sandbox through the same pipeline (its options must not need the calling layer). */
  spawn(file: string, args: string[], options: SpawnIsolatedOptions): HelperProcess;
}

/** Host resources acquired for one spawn: handed to the addon beside the plan, never in it. */
export interface Bindings {
  /** cgroup v2 fd for clone3(CLONE_INTO_CGROUP), or -1 */
  cgroupFd: number;
  /** v1 `tasks` files the child moves itself with (opened by the parent) */
  cgroupTasks: string[];
  /** cgroup.procs files the parent writes the child's pid into (when neither of the above can be used) */
  cgroupProcs: string[];
  /** links moved into the sandbox's network namespace before it runs */
  net: PreparedNetwork['handoff'];
}

/** A layer's part of the plan. The pipeline applies every contribution once, in layer order. */
export interface Contribution {
  /** the seccomp program the child installs */
  seccomp?: Buffer;
  /** the sandbox's namespace receives links: it is made for it (no spare network namespace) */
  netPremade?: false;
  /** the joined user namespace denies setgroups(2), which then has nothing to drop */
  setGroups?: false;
  /** files put over /etc/<name> inside the sandbox (hosts, resolv.conf) */
  etcFiles?: Record<string, string>;
  /** variables set in the program's environment (over the plan's own) */
  env?: Record<string, string>;
}

/** One spawn's use of a layer. Every hook is optional. */
export interface LayerRun {
  resolve?(input: SpawnInput): Promise<SpawnInput | undefined>;
  /**
   * resolve without waiting, tried before the base plan is built (the layers that resolve in
   * their order, while each can): the resolved input, or undefined when it cannot now (resolve
   * then runs as before, and its failure rejects the spawn; a layer that resolved now returns
   * nothing from it). Saves building the plan twice and the wait.
   */
  resolveNow?(input: SpawnInput): SpawnInput | undefined;
  acquire?(plan: Plan, bindings: Bindings): Promise<void>;
  contribute?(plan: Plan): Contribution | undefined;
  /** the sandbox's first process exists (host pid): what must outlive the thread with it is handed to it */
  spawned?(pid: number): void;
  /** Its part of result.isolation, given the plan the addon ran. */
  report?(plan: Readonly<Plan>): Partial<IsolationReport>;
  /** The sandbox's process object exists (spawnIsolated's return): what the layer shows on it (`p.network`, events). */
  attach?(proc: import('node:events').EventEmitter): void;
  /** Its part of the result (`result.network`), once the sandbox has exited. */
  result?(): Partial<IsolatedResult>;
  /** Undoes what resolve/acquire made. Must not throw. */
  release?(): Promise<void> | void;
}

/** A layer: validates its options and returns its run for this spawn, or undefined when not involved. */
export interface SpawnLayer {
  readonly name: string;
  open(options: SpawnIsolatedOptions, ctx: LayerContext): LayerRun | undefined;
  /** What explain() reports for these options before anything is made (the same words as the result). */
  explain?(options: SpawnIsolatedOptions): Partial<IsolationReport>;
}

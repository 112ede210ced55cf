// OCI hooks of a created sandbox (Sandbox.create with `program` and `hooks`): validation and
// the running of host hooks with the OCI state JSON on stdin. Where each kind runs (the host,
// or inside the sandbox) is Sandbox's business (lib/runner/sandbox.ts); this file runs one
// list of host programs.
import { spawnChild as spawn } from '../util/builtins.js';
import { errnoError, NsboxError } from '../errors.js';
import { fail, isObject } from '../util/validate.js';

/** One OCI hook: `path` (absolute), `args` (with argv[0] first, as OCI has it), `env` (`K=V`), `timeout` (seconds). */
export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/**
 * OCI hooks of a created sandbox, each given the OCI state ({@link OciState}) as JSON on
 * stdin. What nsbox does, against the OCI runtime spec's order:
 * - `prestart` (deprecated by OCI) and `createRuntime`: on the host, in the caller's
 *   namespaces, once the sandbox exists (namespaces, mounts, cgroup, network; pid 1 known),
 *   before create returns. The sandbox's root is already pivoted: nsbox makes the whole view
 *   in one step, so there is no moment "before pivot_root" a hook could use. A failure makes
 *   create fail, and the sandbox is removed.
 * - `createContainer`: the same moment, inside the sandbox's namespaces except its mount
 *   namespace (user, pid, net, ipc, uts, cgroup; its credentials, capabilities and seccomp),
 *   with the host's filesystem: the path resolves in the caller's mount namespace, as OCI
 *   says. A failure makes create fail.
 * - `startContainer`: at start, before the program runs, inside the sandbox (all its
 *   namespaces, as `exec`): the path resolves in the sandbox. `path` is the program run and
 *   `args[1..]` its arguments (argv[0] is `path`). A failure stops the sandbox (start rejects).
 * - `poststart`: on the host once the program has been started (exec'd), before start
 *   returns. A failure is reported (start rejects with it) but the program keeps running,
 *   as OCI says ("log a warning ... continue").
 * - `poststop`: on the host when the sandbox is destroyed, after its processes, cgroup and
 *   state are gone; a failure is reported by destroy() after everything was removed.
 */
export interface OciHooks {
  prestart?: OciHook[];
  createRuntime?: OciHook[];
  createContainer?: OciHook[];
  startContainer?: OciHook[];
  poststart?: OciHook[];
  poststop?: OciHook[];
}

/** The state OCI hooks get on stdin (and `Sandbox.ociState()` returns). */
export interface OciState {
  ociVersion: string;
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped';
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

export const HOOK_KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;

/** Validates `hooks` (TypeError/RangeError naming the field); returns a plain copy. */
export function checkHooks(option: string, hooks: unknown): OciHooks {
  if (!isObject(hooks)) fail(option, 'must be an object');
  const out: OciHooks = {};
  for (const [k, list] of Object.entries(hooks)) {
    if (!(HOOK_KINDS as readonly string[]).includes(k)) fail(option, `has an unknown key '${k}' (OCI hooks: ${HOOK_KINDS.join(', ')})`);
    if (list === undefined) continue;
    if (!Array.isArray(list)) fail(`${option}.${k}`, 'must be an array of hooks');
    out[k as keyof OciHooks] = list.map((h, i) => checkHook(`${option}.${k}[${i}]`, h));
  }
  return out;
}

function checkHook(option: string, h: unknown): OciHook {
  if (!isObject(h)) fail(option, 'must be { path, args?, env?, timeout? }');
  for (const k of Object.keys(h)) if (!['path', 'args', 'env', 'timeout'].includes(k)) fail(option, `has an unknown key '${k}'`);
  if (typeof h.path !== 'string' || !h.path.startsWith('/')) fail(`${option}.path`, 'must be an absolute path');
  if (h.args !== undefined && (!Array.isArray(h.args) || h.args.some((a) => typeof a !== 'string'))) fail(`${option}.args`, 'must be an array of strings');
  if (h.env !== undefined && (!Array.isArray(h.env) || h.env.some((a) => typeof a !== 'string' || !a.includes('=')))) fail(`${option}.env`, 'must be an array of KEY=value strings');
  if (h.timeout !== undefined && (typeof h.timeout !== 'number' || !Number.isInteger(h.timeout) || h.timeout < 1)) fail(`${option}.timeout`, 'must be a positive integer (seconds)', RangeError);
  const out: OciHook = { path: h.path };
  if (h.args !== undefined) out.args = [...h.args as string[]];
  if (h.env !== undefined) out.env = [...h.env as string[]];
  if (h.timeout !== undefined) out.timeout = h.timeout as number;
  return out;
}

/** `K=V` strings as an env object (the later of two equal keys wins). */
export function envObject(list: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** The NsboxError of a hook that failed (step `hook`, the kind and path named). */
export function hookError(kind: string, h: OciHook, why: string, errno = 5): NsboxError {
  return errnoError(errno, 'hook', kind, h.path, `the ${kind} hook ${h.path} ${why}`);
}

/**
 * Runs host hooks one after the other, each with `state` as JSON on stdin, its env exactly
 * `env` (none when absent, as OCI says), argv[0] `args[0]`. Rejects with the first failure (a
 * non-zero exit, a signal, its timeout, or a program that cannot be run), naming the hook and
 * its stderr's last line.
 */
export async function runHooks(kind: string, hooks: OciHook[] | undefined, state: OciState): Promise<void> {
  for (const h of hooks ?? []) await runHook(kind, h, state);
}

function runHook(kind: string, h: OciHook, state: OciState): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = h.args ?? [h.path];
    // its own process group: a timeout kills what it started too
    const child = spawn(h.path, args.slice(1), { argv0: args[0] ?? h.path, env: envObject(h.env), stdio: ['pipe', 'ignore', 'pipe'], detached: true });
    let err = '';
    let timedOut = false;
    const t = h.timeout !== undefined ? setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, h.timeout * 1000) : undefined;
    child.stderr!.on('data', (c: Buffer) => { if (err.length < 4096) err += c.toString(); });
    child.stdin!.on('error', () => {}); // a hook that does not read its stdin
    child.stdin!.end(JSON.stringify(state));
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (t) clearTimeout(t);
      reject(hookError(kind, h, `could not be run: ${e.code ?? e.message}`, typeof e.errno === 'number' ? Math.abs(e.errno) : 2));
    });
    child.once('exit', (code, signal) => {
      if (t) clearTimeout(t);
      const done = () => {
        const last = err.trim().split('\n').pop() ?? '';
        if (timedOut) reject(hookError(kind, h, `did not end within its timeout of ${h.timeout} s`, 62));
        else if (signal) reject(hookError(kind, h, `was killed by ${signal}${last ? `: ${last}` : ''}`));
        else if (code !== 0) reject(hookError(kind, h, `exited with ${code}${last ? `: ${last}` : ''}`));
        else resolve();
      };
      // its stderr to the end, unless something it left running holds it open
      if (child.stderr!.readableEnded) return done();
      const late = setTimeout(() => { child.stderr!.destroy(); done(); }, 200);
      child.stderr!.once('end', () => { clearTimeout(late); done(); });
    });
  });
}

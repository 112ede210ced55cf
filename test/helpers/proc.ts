// Fresh processes for tests that cannot hang. A process a test starts may leave grandchildren
// behind (a sandbox, pasta, slirp4netns) that inherit its stdout and stderr: with pipes, a
// reader waits for EOF until the last of them exits, and spawnSync/execFileSync do so even after
// their own timeout killed the child, blocking the vitest worker so that vitest's own timeouts
// never fire (a 5.10 guest once hung so for 1800 s). Here the child's stdout and stderr go to
// files (nothing to wait on but the child's exit), the child leads a process group of its own
// (setsid) that is killed as a whole on timeout, and the wait is asynchronous.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Ran {
  pid: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** killed by the timeout */
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** ms; then the child's whole process group gets SIGKILL (default 240 s) */
  timeout?: number;
}

function outFiles(): { dir: string; out: number; err: number } {
  const dir = mkdtempSync(join(tmpdir(), 'nsbox-test-run-'));
  return { dir, out: openSync(join(dir, 'out'), 'w+'), err: openSync(join(dir, 'err'), 'w+') };
}

function collect(f: { dir: string; out: number; err: number }): { stdout: string; stderr: string } {
  closeSync(f.out); closeSync(f.err);
  const r = { stdout: readFileSync(join(f.dir, 'out'), 'utf8'), stderr: readFileSync(join(f.dir, 'err'), 'utf8') };
  rmSync(f.dir, { recursive: true, force: true });
  return r;
}

const killGroup = (pid: number) => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } };

/** Runs `file args` (stdin /dev/null, stdout and stderr to files) and waits for its exit, at most `timeout` ms. */
export function runFresh(file: string, args: string[], o: RunOptions = {}): Promise<Ran> {
  const f = outFiles();
  const timeout = o.timeout ?? 240_000;
  return new Promise<Ran>((resolve, reject) => {
    let timedOut = false;
    const c = spawn(file, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', f.out, f.err], detached: true });
    const t = setTimeout(() => { timedOut = true; killGroup(c.pid!); }, timeout);
    c.once('error', (e) => { clearTimeout(t); collect(f); reject(e); });
    c.once('exit', (status, signal) => {
      clearTimeout(t);
      // what the child left in its group (a daemonized helper left it by setsid) goes too
      killGroup(c.pid!);
      resolve({ pid: c.pid!, status, signal, timedOut, ...collect(f) });
    });
  });
}

/**
 * runFresh for module scope (a describe.skipIf condition): synchronous, but bounded: with no
 * pipe to the child, the wait ends when the child exits or is killed at `timeout`.
 */
export function runFreshSync(file: string, args: string[], o: RunOptions = {}): Ran {
  const f = outFiles();
  const r = spawnSync(file, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', f.out, f.err], timeout: o.timeout ?? 60_000, killSignal: 'SIGKILL' });
  return { pid: r.pid, status: r.status, signal: r.signal, timedOut: (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT', ...collect(f) };
}

/** A run that failed, as an Error with what the process said. */
export function ranError(r: Ran, what: string): Error {
  const how = r.timedOut ? 'timed out (process group killed)' : `exit ${r.status ?? ''}${r.signal ?? ''}`;
  return new Error(`${what}: ${how}\nstdout: ${r.stdout.slice(-4000)}\nstderr: ${r.stderr.slice(-4000)}`);
}

// Typed wrapper of the addon's test/diagnostic helper `seccompTestRun` (addon/src/seccomp.cc):
// run one program under a seccomp filter in a forked child and collect how it ended. Not a main
// path: sandboxes install their filter through the spawn plan. Used by the tests and by
// `nsbox doctor --self-test`.
import { native } from '../../native.js';

interface SeccompNative {
  seccompTestRun(filter: Buffer | null, argv: string[], timeoutMs: number): { status: number; output: string; timedOut: boolean };
}

/** How a program run by `seccompTestRun` ended. */
export interface SeccompTestResult {
  /** raw wait status. */
  status: number;
  /** exit code, when it exited. */
  exitCode?: number;
  /** signal number, when a signal ended it (31 = SIGSYS: a seccomp kill or trap). */
  signal?: number;
  /** stdout and stderr together (at most 1 MiB). */
  output: string;
  /** the timeout passed and the program was killed. */
  timedOut: boolean;
}

/**
 * Test and diagnostic helper: forks, sets no_new_privs, installs `filter` (raw
 * `struct sock_filter[]`, or null for none) and execs `argv` (absolute path, no PATH search),
 * waits for it and returns its end. A filter the kernel refuses, or an exec failure, throws
 * NsboxError (step `'seccomp'` or `'exec'`).
 */
export function seccompTestRun(filter: Buffer | null, argv: readonly string[], opts: { timeoutMs?: number } = {}): SeccompTestResult {
  if (filter !== null && !Buffer.isBuffer(filter)) throw new TypeError('filter: must be a Buffer or null');
  if (filter && (filter.length === 0 || filter.length % 8 !== 0 || filter.length / 8 > 4096)) {
    throw new RangeError('filter: must hold 1 to 4096 struct sock_filter (8 bytes each)');
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string' && !a.includes('\0'))) {
    throw new TypeError('argv: must be a non-empty array of strings without NUL');
  }
  if (!argv[0]!.startsWith('/')) throw new RangeError('argv[0]: must be an absolute path');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError('timeoutMs: must be a positive integer');
  const r = (native() as unknown as SeccompNative).seccompTestRun(filter, [...argv], timeoutMs);
  const s = r.status;
  const res: SeccompTestResult = { status: s, output: r.output, timedOut: r.timedOut };
  if ((s & 0x7f) === 0) res.exitCode = (s >> 8) & 0xff;
  else if (((s & 0x7f) + 1) >> 1 > 0) res.signal = s & 0x7f;
  return res;
}

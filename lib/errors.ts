import { errnoName } from './util/sys.js';

/** Fields of a kernel failure, as Node's SystemError carries them. */
export interface NsboxErrorInfo {
  /** errno name, e.g. `'EPERM'`. */
  code: string;
  /** the errno number (either sign is accepted; the error carries it negative, as Node's SystemError does). */
  errno: number;
  /** the failing system call, e.g. `'pivot_root'`. */
  syscall?: string;
  /** the path involved, if any. */
  path?: string;
  /** the plan step that failed, e.g. `'exec'`, `'mount'`, `'uid_map'`, `'clone'`. */
  step?: string;
  /** extra words from the kernel (netlink extended ack) or from nsbox. */
  detail?: string;
}

/**
 * A kernel failure while building or running a sandbox. Argument mistakes are
 * `TypeError`/`RangeError` instead, thrown before anything is created.
 */
// (the class itself is named NsboxError: that is what stacks and util.inspect show)
const NsboxErrorClass = class NsboxError extends Error implements NsboxErrorInfo {
  code: string;
  /** The errno as Node's SystemError has it: negative (`-13` for EACCES); `-e.errno` is the C errno. */
  errno: number;
  syscall?: string;
  path?: string;
  step?: string;
  detail?: string;

  constructor(message: string, info: NsboxErrorInfo) {
    super(message);
    this.name = 'NsboxError';
    this.code = info.code;
    // Node's SystemError (fs, net, child_process) carries errno negative, as libuv does
    this.errno = -Math.abs(info.errno);
    if (info.syscall !== undefined) this.syscall = info.syscall;
    if (info.path !== undefined) this.path = info.path;
    if (info.step !== undefined) this.step = info.step;
    if (info.detail !== undefined) this.detail = info.detail;
  }
};

// One class per process, whichever build loads first: the package has an ESM and a CJS build
// (and an app may load both, directly or through its dependencies), and `instanceof
// NsboxError` must hold for an error thrown by either. The class is kept on globalThis under a
// registered symbol; the key names this shape of the class, so a future incompatible shape
// takes a new key.
const SHARED = Symbol.for('nsbox.NsboxError.v1');
const shared = globalThis as unknown as { [SHARED]?: typeof NsboxErrorClass };
if (!shared[SHARED]) Object.defineProperty(globalThis, SHARED, { value: NsboxErrorClass, enumerable: false, writable: false, configurable: false });

/**
 * A kernel failure while building or running a sandbox. Argument mistakes are
 * `TypeError`/`RangeError` instead, thrown before anything is created.
 * The same class for the package's ESM and CJS builds (`instanceof` holds across both).
 */
export const NsboxError: typeof NsboxErrorClass = shared[SHARED]!;
/** A kernel failure while building or running a sandbox (the instance type of `NsboxError`). */
export type NsboxError = InstanceType<typeof NsboxErrorClass>;

/** Builds an NsboxError from an errno number, for failures detected in TypeScript. */
export function errnoError(errno: number, step: string, syscall: string, path?: string, detail?: string): NsboxError {
  const code = errnoName(errno) ?? `E${errno}`;
  const msg = `${syscall} failed at step '${step}'${path ? ` (${path})` : ''}: ${code}${detail ? `: ${detail}` : ''}`;
  return new NsboxError(msg, { code, errno, syscall, path, step, detail });
}

/** Wraps a Node fs error (ENOENT etc.) thrown by a TypeScript-side kernel call. */
export function fromNodeError(err: unknown, step: string): NsboxError {
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : 5;
  return new NsboxError(`${e.syscall ?? 'call'} failed at step '${step}'${e.path ? ` (${e.path})` : ''}: ${e.code ?? ''} ${e.message}`, {
    code: e.code ?? errnoName(errno) ?? 'EIO', errno, syscall: e.syscall, path: e.path, step,
  });
}

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
export class NsboxError extends Error implements NsboxErrorInfo {
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
}

const ERRNO: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM',
  13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 20: 'ENOTDIR', 21: 'EISDIR', 22: 'EINVAL',
  24: 'EMFILE', 28: 'ENOSPC', 30: 'EROFS', 38: 'ENOSYS', 39: 'ENOTEMPTY', 95: 'EOPNOTSUPP',
};

/** Builds an NsboxError from an errno number, for failures detected in TypeScript. */
export function errnoError(errno: number, step: string, syscall: string, path?: string, detail?: string): NsboxError {
  const code = ERRNO[errno] ?? `E${errno}`;
  const msg = `${syscall} failed at step '${step}'${path ? ` (${path})` : ''}: ${code}${detail ? `: ${detail}` : ''}`;
  return new NsboxError(msg, { code, errno, syscall, path, step, detail });
}

/** Wraps a Node fs error (ENOENT etc.) thrown by a TypeScript-side kernel call. */
export function fromNodeError(err: unknown, step: string): NsboxError {
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : 5;
  return new NsboxError(`${e.syscall ?? 'call'} failed at step '${step}'${e.path ? ` (${e.path})` : ''}: ${e.code ?? ''} ${e.message}`, {
    code: e.code ?? ERRNO[errno] ?? 'EIO', errno, syscall: e.syscall, path: e.path, step,
  });
}

// Where Sandbox records its sandboxes when the caller names no `stateDir`: root's /run/nsbox,
// another user's runtime directory ($XDG_RUNTIME_DIR), else a directory of the user's own in
// /tmp. /tmp is shared: the per-uid directory is trusted only when the caller owns it and no one
// else may write it, so another user cannot plant state files nsbox would act on.
import { accessSync, chmodSync, constants, lstatSync, mkdirSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { errnoError } from '../errors.js';

/** Where root's sandboxes are recorded (`Sandbox.list`); other users get {@link defaultStateDir}'s. */
export const DEFAULT_STATE_DIR = '/run/nsbox/sandboxes';

function euid(): number {
  return process.geteuid?.() ?? 0;
}

/** $XDG_RUNTIME_DIR when it is set, absolute and writable by the caller. */
function runtimeDir(): string | undefined {
  const x = process.env.XDG_RUNTIME_DIR;
  if (!x || !isAbsolute(x)) return undefined;
  try { accessSync(x, constants.W_OK | constants.X_OK); } catch { return undefined; }
  return x.replace(/\/+$/, '');
}

/** Refuses a per-uid directory in /tmp that is not a directory of the caller's own. */
function checkOwn(dir: string): 'missing' | 'ok' {
  let st;
  try { st = lstatSync(dir); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  if (!st.isDirectory()) throw errnoError(20, 'sandbox', 'state-dir', dir, `${dir} is not a directory (a symlink or file someone else may have made): remove it or pass options.stateDir`);
  if (st.uid !== euid()) throw errnoError(1, 'sandbox', 'state-dir', dir, `${dir} is owned by uid ${st.uid}, not by this user (uid ${euid()}): remove it or pass options.stateDir`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  return 'ok';
}

/**
 * The default state directory of this caller: root's {@link DEFAULT_STATE_DIR}; for another
 * user `$XDG_RUNTIME_DIR/nsbox/sandboxes` when that variable names a directory the user may
 * write, else `/tmp/nsbox-<uid>/sandboxes`. With `make`, the directories are created (0700);
 * a `/tmp/nsbox-<uid>` that is not the caller's own directory is refused (NsboxError EPERM).
 */
export function defaultStateDir(make = false): string {
  const uid = euid();
  if (uid === 0) return DEFAULT_STATE_DIR;
  const xdg = runtimeDir();
  if (xdg) return `${xdg}/nsbox/sandboxes`;
  const base = `/tmp/nsbox-${uid}`;
  if (checkOwn(base) === 'missing' && make) {
    try { mkdirSync(base, { mode: 0o700 }); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    checkOwn(base); // made by someone else in between: refused here
  }
  return `${base}/sandboxes`;
}

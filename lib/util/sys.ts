// errno and signal names, from Node's own tables (os.constants): the one source the rest of
// nsbox uses, so that no file keeps a list of its own. The addon names the errnos of the
// failures it reports itself (addon/src/errors.cc, ErrnoName). No nsbox imports.
import { constants } from 'node:os';

/** Signal numbers by name ('SIGTERM' -> 15), as Node knows them on this host. */
export const SIGNALS: Readonly<Record<string, number>> = constants.signals;

/** errno numbers by name ('ENOENT' -> 2), as Node knows them on this host. */
export const ERRNOS: Readonly<Record<string, number>> = constants.errno;

// Second names of one number (the kernel headers define them as the first): never the name
// nsbox reports. EOPNOTSUPP is the kernel's (and the addon's) name for 95; libuv's
// util.getSystemErrorName says ENOTSUP and knows fewer numbers (no ECHILD, ESTALE, EDQUOT), so
// it is not used. SIGABRT and SIGIO are the names Node's child_process reports.
const ALIASES = new Set(['EWOULDBLOCK', 'ENOTSUP', 'EDEADLOCK', 'SIGIOT', 'SIGPOLL', 'SIGCLD', 'SIGUNUSED']);

function byNumber<T extends string>(table: Readonly<Record<string, number>>): Map<number, T> {
  const m = new Map<number, T>();
  for (const [name, n] of Object.entries(table)) if (!ALIASES.has(name) && !m.has(n)) m.set(n, name as T);
  return m;
}
const SIGNAL_NAMES = byNumber<NodeJS.Signals>(SIGNALS);
const ERRNO_NAMES = byNumber<string>(ERRNOS);

/** The name of signal `n` ('SIGTERM' for 15); undefined when Node has none (real-time signals). */
export function signalName(n: number): NodeJS.Signals | undefined {
  return SIGNAL_NAMES.get(n);
}

/** The name of positive errno `n` ('ENOENT' for 2); undefined when Node has none. */
export function errnoName(n: number): string | undefined {
  return ERRNO_NAMES.get(n);
}

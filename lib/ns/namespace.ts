import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { native } from '../native.js';

/**
 * Whether this process's user namespace owns its network namespace, so that its root has
 * CAP_NET_ADMIN there. Not so for root in a container that has a user namespace of its own but
 * shares the host's network namespace (or one made outside it). True when the kernel cannot say.
 */
export function ownsNetworkNamespace(): boolean {
  let n = -1, u = -1;
  try {
    n = openSync('/proc/self/ns/net', 'r');
    u = openSync('/proc/self/ns/user', 'r');
    // an owner outside this user namespace's reach: NS_GET_USERNS refuses (no ownerInode)
    return native().nsInfo(n).ownerInode === native().nsInfo(u).inode;
  } catch {
    return true;
  } finally {
    if (n >= 0) closeSync(n);
    if (u >= 0) closeSync(u);
  }
}

/** Namespace kinds nsbox can create or join. */
export type NamespaceType = 'pid' | 'mount' | 'uts' | 'ipc' | 'net' | 'cgroup' | 'user' | 'time';

/** clone(2) flag of each namespace type. */
export const CLONE_FLAGS: Record<NamespaceType, number> = {
  mount: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  net: 0x40000000,
  time: 0x00000080,
};

/** File name of each type under /proc/<pid>/ns. */
const PROC_NAME: Record<NamespaceType, string> = {
  mount: 'mnt', cgroup: 'cgroup', uts: 'uts', ipc: 'ipc', user: 'user', pid: 'pid', net: 'net', time: 'time',
};

const BY_FLAG = new Map<number, NamespaceType>(Object.entries(CLONE_FLAGS).map(([k, v]) => [v, k as NamespaceType]));

function checkType(type: unknown): NamespaceType {
  if (typeof type !== 'string' || !(type in CLONE_FLAGS)) {
    throw new TypeError(`namespace type must be one of ${Object.keys(CLONE_FLAGS).join(', ')} (got ${String(type)})`);
  }
  return type as NamespaceType;
}

/**
 * An open namespace file (an fd on a /proc/<pid>/ns/* file or a persisted copy of one).
 * Pass it in `join` to run a sandbox inside it. Close it when done (`close()` or `using`).
 */
export class Namespace implements Disposable {
  /** Namespace type. */
  readonly type: NamespaceType;
  /** Inode number: equal inodes mean the same namespace (as `ls -l /proc/<pid>/ns` shows). */
  readonly inode: number;
  #fd: number;
  /** the process it was opened from (/proc/<pid>/ns/*), for what only /proc/<pid> tells */
  #pid: number | undefined;

  private constructor(fd: number, pid?: number) {
    const info = native().nsInfo(fd);
    const type = BY_FLAG.get(info.nstype);
    if (!type) {
      native().closeFd(fd);
      throw new TypeError(`not a namespace type nsbox knows (nstype 0x${info.nstype.toString(16)})`);
    }
    this.#fd = fd;
    this.#pid = pid;
    this.type = type;
    this.inode = info.inode;
  }

  /** The namespace of `type` that process `pid` is in. */
  static ofProcess(pid: number, type: NamespaceType): Namespace {
    if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`pid must be a positive integer (got ${pid})`);
    const t = checkType(type);
    return new Namespace(native().nsOpen(`/proc/${pid}/ns/${PROC_NAME[t]}`), pid);
  }

  /** Opens a namespace file: /proc/<pid>/ns/<type>, or one made by {@link Namespace.persist}. */
  static open(path: string): Namespace {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`path must be an absolute path (got ${String(path)})`);
    const pid = /^\/proc\/(\d+)\/ns\/[a-z_]+$/.exec(path)?.[1];
    return new Namespace(native().nsOpen(path), pid === undefined ? undefined : Number(pid));
  }

  /**
   * Removes a persisted namespace file (detaches its bind mount, deletes the file). The
   * namespace itself lives on while a process or an open fd holds it.
   */
  static remove(path: string): void {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`path must be an absolute path (got ${String(path)})`);
    native().nsRemove(path);
  }

  /** The open file descriptor (valid until {@link Namespace.close}). */
  get fd(): number {
    if (this.#fd < 0) throw new Error('namespace is closed');
    return this.#fd;
  }

  /** Inode of the user namespace that owns this namespace, when the kernel tells. */
  get ownerInode(): number | undefined {
    return native().nsInfo(this.fd).ownerInode;
  }

  /**
   * A user namespace's setgroups(2) state (`/proc/<pid>/setgroups`): `'deny'` when its maker
   * was unprivileged (or asked so), `'allow'` otherwise. Known only for a namespace opened from
   * a process (`ofProcess`, `open('/proc/<pid>/ns/user')`) that is still in it; else undefined.
   */
  get setgroups(): 'allow' | 'deny' | undefined {
    const pid = this.#pid;
    if (this.type !== 'user' || pid === undefined || this.#fd < 0) return undefined;
    // the pid still names a process in this namespace before and after the read (not a reused pid)
    const inHere = () => { try { return statSync(`/proc/${pid}/ns/user`).ino === this.inode; } catch { return false; } };
    if (!inHere()) return undefined;
    let v: string;
    try { v = readFileSync(`/proc/${pid}/setgroups`, 'utf8').trim(); } catch { return undefined; }
    if (!inHere()) return undefined;
    return v === 'allow' || v === 'deny' ? v : undefined;
  }

  /**
   * Keeps the namespace alive after its processes exit: bind-mounts it on `path` (a new
   * file, like `ip netns add` does under /run/netns). Remove with {@link Namespace.remove}.
   */
  persist(path: string): void {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`path must be an absolute path (got ${String(path)})`);
    native().nsPersist(this.fd, path);
  }

  /** Closes the fd. Idempotent. */
  close(): void {
    if (this.#fd >= 0) native().closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

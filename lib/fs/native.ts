// Types of the filesystem layer's raw addon functions (addon/src/fs.cc). Internal: callers
// validate their arguments first.
import { native } from '../native.js';
import { NsboxError } from '../errors.js';

/** Entry kinds of fsLayerCreate (addon/src/fs.cc `Kind`). */
export const Kind = { File: 0, Dir: 1, Symlink: 2, Hardlink: 3, Char: 4, Block: 5, Fifo: 6, Whiteout: 7, Opaque: 8 } as const;

/** openat2 RESOLVE_* bits. */
export const RESOLVE = { NO_XDEV: 0x01, NO_MAGICLINKS: 0x02, NO_SYMLINKS: 0x04, BENEATH: 0x08, IN_ROOT: 0x10, CACHED: 0x20 } as const;
export const RESOLVE_SAFE = RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS;

/** open(2) flags (x86-64 / generic values; those that differ on other arches are not used). */
export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, TRUNC: 0o1000, APPEND: 0o2000,
  DIRECTORY: 0o200000, NOFOLLOW: 0o400000, PATH: 0o10000000,
} as const;

export interface OverlayNativeOptions {
  lower: string[];
  upper?: string;
  work?: string;
  target: string;
  readonly?: boolean;
  userxattr?: boolean;
  nosuid?: boolean;
  source?: string;
  params?: Array<[string, string]>;
  /** a user namespace fd (fsUserNs): the lower layers go in idmapped through it */
  idmapFd?: number;
  /** every layer in one escaped `lowerdir=` string instead of one `lowerdir+` each */
  lowerdir?: string;
}

export interface FsNative {
  /** true: mounted with fsopen (lowerdir+, or `lowerdir` when given); false: this kernel lacks fsopen or lowerdir+ (use a fallback). */
  fsOverlayMount(o: OverlayNativeOptions): boolean;
  /** fd of a new user namespace with these maps (uid_map/gid_map text), for idmapped mounts */
  fsUserNs(uidMap: string, gidMap: string): number;
  /** 0, or the errno with which an idmapped clone of the mount at `path` was refused (never attached) */
  fsIdmapProbe(path: string, usernsFd: number): number;
  /**
   * Runs `ops` in a new user namespace mapped by newuidmap/newgidmap (helpers and map texts):
   * null, or the first failure.
   */
  fsSubidOps(newuidmap: string, uidMap: string, newgidmap: string, gidMap: string,
    ops: Array<{ kind: 'chown'; root: string; entries: Buffer } | { kind: 'remove'; dir: string; name: string }>): null | { errno: number; op: number; entry: number; syscall: string };
  /** Runs `file argv` as root of a new user namespace mapped by newuidmap/newgidmap; its pidfd (for watchExit) and the read ends of its stdout and stderr. */
  fsSubidExec(newuidmap: string, uidMap: string, newgidmap: string, gidMap: string, file: string, argv: string[], envp: string[]): { pidfd: number; out: number; err: number };
  fsOverlayMountLegacy(dir: string, data: string, target: string, flags: number, source?: string): void;
  fsUmount(target: string, detach?: boolean): void;
  fsMount(source: string, target: string, type: string, flags: number, data: string): void;
  fsOpenat2(dirfd: number, path: string, flags: number, mode?: number, resolve?: number, step?: string): number;
  fsOpenParentIn(rootFd: number, rel: string, create: boolean): number;
  fsOpenat(dirfd: number, name: string, flags: number, mode?: number, step?: string): number;
  fsLayerCreate(rootFd: number, rel: string, kind: number, mode: number, uid: number, gid: number, link: string,
    major: number, minor: number, mtimeSec: number, opaqueXattr: string, data?: Buffer): number;
  fsSetTimesIn(rootFd: number, rel: string, mtimeSec: number): void;
  fsFgetxattr(fd: number, name: string): Buffer | null;
  fsLgetxattr(path: string, name: string): Buffer | null;
  fsLsetxattr(path: string, name: string, value: Buffer): void;
  /** exclusive null = unlock. Returns false when the lock is held elsewhere (non-blocking). */
  fsFlock(fd: number, exclusive: boolean | null, wait?: boolean): boolean;
  closeFd(fd: number): void;
}

export function fsNative(): FsNative {
  return native() as unknown as FsNative;
}

/** An NsboxError for a failure found in TypeScript, with any errno name (errors.ts maps only common ones). */
export function fsError(code: string, errno: number, step: string, syscall: string, path: string | undefined, detail: string): NsboxError {
  return new NsboxError(`${syscall} failed at step '${step}'${path ? ` (${path})` : ''}: ${code}: ${detail}`, { code, errno, syscall, path, step, detail });
}

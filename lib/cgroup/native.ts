// Typed view of the cgroup part of the addon (addon/src/cgroup.cc).
import { native } from '../native.js';

/** A uv_poll watch on an eventfd or inotify fd; unref'd, so it never keeps Node alive. */
export interface NativeCgroupWatch {
  close(): void;
  ref(ref: boolean): void;
}

/** The functions addon/src/cgroup.cc exports. */
export interface CgroupNative {
  cgroupPageSize(): number;
  cgroupEventfd(controlPath: string, targetPath: string, args?: string): number;
  cgroupInotify(paths: string[]): number;
  CgroupWatch: new (fd: number, cb: (errno: number | null) => void) => NativeCgroupWatch;
  /** v2: attaches a device program of these rules (five numbers each) in place of the ones attached to dir */
  cgroupDevices(dir: string, rules: number[]): void;
  /**
   * Runs [kind, path, value] triples in order on the thread pool ('m' mkdir, 'w' write value,
   * 'c' copy the file named by value, trimmed, when not empty); stops at the first failure.
   * Resolves to [index of the failed op or -1, errno].
   */
  cgroupBatch(ops: string[]): Promise<[number, number]>;
  /** the ids of the device programs attached to dir */
  cgroupDeviceProgramIds(dir: string): number[];
}

/** The addon, typed for this area. */
export function cgNative(): CgroupNative {
  return native() as unknown as CgroupNative;
}

let pageSizeCache: number | undefined;

/** The system page size (from the addon; 4096 when the addon cannot be loaded). */
export function pageSize(): number {
  if (pageSizeCache === undefined) {
    try {
      pageSizeCache = cgNative().cgroupPageSize();
    } catch {
      pageSizeCache = 4096;
    }
  }
  return pageSizeCache;
}

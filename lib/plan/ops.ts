// The ops a plan is made of: what the child does to build the sandbox's filesystem view, one
// step each, with named fields. The addon executes them as given (addon/src/child.cc, RunOp):
// it never adds an op of its own. Their binary form is in encode.ts.

/** mount(2) flags the planner uses. */
export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, REMOUNT: 32, BIND: 4096, REC: 16384,
  UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20,
} as const;

/** Op codes shared with addon/src/plan.h (OpKind). */
export const Op = {
  Mkdir: 1, Mount: 2, Bind: 3, Symlink: 4, WriteFile: 5, Propagation: 6, RemountRo: 7,
  PivotRoot: 8, Chmod: 9, Umount: 10, LoopbackUp: 11, Chown: 12, MaskOpen: 13, MaskBind: 14,
  Unlink: 15, Mknod: 16, Attach: 17, IdmapBind: 18, MoveRoot: 19,
} as const;

/**
 * One step of the view. Which fields an op reads:
 *
 * | op | fields |
 * |---|---|
 * | Mkdir | path, mode |
 * | Mount | source, path, fstype, data (options), flags (with MS.REMOUNT and no source: a remount), copyUp |
 * | Bind | source (a host path under /oldroot or a path already in the view), path, readonly, file, recursive, flags, present, dir |
 * | Attach | source (a host path the caller clones before clone), path, readonly, file, recursive, flags |
 * | Symlink | source (the link's content), path |
 * | WriteFile | path, data, mode |
 * | Propagation | path, flags |
 * | RemountRo | path, recursive |
 * | PivotRoot | path (the new root), putOld (relative to it; none: the old root is detached) |
 * | Chmod | path, mode |
 * | Umount | path |
 * | LoopbackUp | - |
 * | Chown | path, uid, gid |
 * | MaskOpen | path (the empty file), dir (the empty directory) |
 * | MaskBind | path, file |
 * | Unlink | path, flags |
 * | Mknod | path, mode, dev |
 * | IdmapBind | source, path, fd (a user namespace), readonly; data: for the template's key only |
 * | MoveRoot | path (the mount moved onto /), dir (the mount namespace file opened first) |
 */
export interface PlanOp {
  op: number;
  /** what the op acts on: the directory made, the mount point, the link or file made, the new root */
  path?: string;
  /** what goes there: a mount's source, a bind's tree, a symlink's content */
  source?: string;
  /** a Mount's filesystem type */
  fstype?: string;
  /** a Mount's options; a WriteFile's content */
  data?: string | Uint8Array;
  /** PivotRoot: where the old root goes, relative to the new one */
  putOld?: string;
  /** MaskOpen: the empty directory masks are bound from; a `present` Bind: the source for a directory target */
  dir?: string;
  /** Chown: the owner */
  uid?: number;
  gid?: number;
  /** Mknod: the device number, major << 8 | minor */
  dev?: number;
  /** IdmapBind: the fd of the user namespace whose maps the mount takes (this process's) */
  fd?: number;
  flags?: number;
  mode?: number;
  readonly?: boolean;
  file?: boolean;
  recursive?: boolean;
  /** the target and every component on its way must not be a symlink */
  real?: boolean;
  /** the target lies in what nsbox made itself: mounted by name, not resolved in the root */
  trusted?: boolean;
  /** a Mount of the sysfs of the sandbox's own network namespace (made ahead: moved in; made beside the child: joined first) */
  netSysfs?: boolean;
  /** a tmpfs Mount that starts with a copy of the directory it covers (OCI tmpcopyup) */
  copyUp?: boolean;
  /**
   * a Bind made only where the sandbox has its target (looked up inside the root, symlinks
   * followed there; none: nothing is done), as a file or a directory as the target is there;
   * a directory gets `dir` as its source instead of `source` (masks and read-only paths)
   */
  present?: boolean;
}

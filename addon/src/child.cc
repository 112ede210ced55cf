// The code that runs between clone and exec.
//
// Rules (DESIGN.md §3): only raw system calls (sys.h), no allocation, no locks, no C++
// exceptions, no libc functions that touch errno or global state. Everything the child reads
// was decoded into `Plan` before clone. Any failure is sent to the parent on the error pipe as
// {step, syscall, errno, path} and the child exits; EOF on that pipe (it is close-on-exec)
// means execve succeeded.
#include "helpers.h"
#include "plan.h"
#include "sys.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>  // ST_* flag values (statfs.f_flags uses the same bits)
#include <sys/wait.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

#ifndef NS_GET_USERNS
#define NS_GET_USERNS _IO(0xb7, 0x1)
#endif

namespace nsbox {
namespace {

using sys::call;

struct KSigaction { void* handler; unsigned long flags; void* restorer; unsigned long mask; };
struct MountAttr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
constexpr uint64_t kAttrRdonly = 0x1, kAttrNosuid = 0x2, kAttrNodev = 0x4, kAttrNoexec = 0x8;

size_t Len(const char* s) { size_t n = 0; while (s && s[n]) n++; return n; }

// Whether `path` is strictly below the directory `dir` (both absolute, normalized).
bool Below(const char* path, const char* dir) {
  size_t i = 0;
  for (; dir[i]; i++) if (path[i] != dir[i]) return false;
  return path[i] == '/' && path[i + 1] != 0;
}

bool IsTmpfs(const char* fstype) {
  const char* t = "tmpfs";
  size_t i = 0;
  for (; t[i]; i++) if (!fstype || fstype[i] != t[i]) return false;
  return fstype[i] == 0;
}

// Sends the failure to the parent and exits. Never returns.
[[noreturn]] void Die(ChildCtx* ctx, const Err& e) {
  ChildMsg m;
  m.kind = 1;
  m.pid = 0;
  m.err = e;
  call(SYS_write, ctx->errFd, &m, sizeof m);
  call(SYS_exit_group, 127);
  __builtin_unreachable();
}

[[noreturn]] void DieSys(ChildCtx* ctx, long r, const char* step, const char* syscall, const char* path = nullptr) {
  Err e;
  Fail(&e, (int)-r, step, syscall, path);
  Die(ctx, e);
}

// mkdir -p; the path is absolute.
long MkdirP(const char* path, unsigned mode) {
  // the common case first: the parent exists (one syscall instead of one per component)
  long r = call(SYS_mkdirat, AT_FDCWD, path, mode);
  if (r == 0 || r == -EEXIST) return 0;
  if (r != -ENOENT) return r;
  char buf[4096];
  size_t n = Len(path);
  if (n == 0 || n >= sizeof buf) return -ENAMETOOLONG;
  for (size_t i = 0; i <= n; i++) {
    buf[i] = path[i];
    if ((path[i] == '/' && i > 0) || path[i] == 0) {
      buf[i] = 0;
      r = call(SYS_mkdirat, AT_FDCWD, buf, mode);
      if (r < 0 && r != -EEXIST) return r;
      buf[i] = path[i];
    }
  }
  return 0;
}

long ParentDir(const char* path, unsigned mode) {
  char buf[4096];
  size_t n = Len(path);
  if (n >= sizeof buf) return -ENAMETOOLONG;
  size_t cut = 0;
  for (size_t i = 0; i < n; i++) { buf[i] = path[i]; if (path[i] == '/') cut = i; }
  if (cut == 0) return 0;
  buf[cut] = 0;
  return MkdirP(buf, mode);
}

long TouchFile(const char* path) {
  // the common case in one call: a new empty file (mknod makes a regular file without opening
  // anything); an existing one of any kind is used as it is (never opened: it may be
  // /proc/sysrq-trigger, or a FIFO)
  long m = call(SYS_mknodat, AT_FDCWD, path, S_IFREG | 0644, 0);
  if (m == 0 || m == -EEXIST) return 0;
  struct stat st;
  if (call(SYS_newfstatat, AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  long r = ParentDir(path, 0755);
  if (r < 0) return r;
  long fd = call(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd == -EEXIST || fd == -EISDIR) return 0;
  if (fd < 0) {
    // an existing file on a read-only mount is fine as a bind target
    struct stat st;
    if (call(SYS_newfstatat, AT_FDCWD, path, &st, 0) == 0) return 0;
    return fd;
  }
  call(SYS_close, fd);
  return 0;
}

// Flags the kernel locks on a mount made in a less privileged namespace: a remount must
// carry them or it fails with EPERM (and the mount's own, which a bind remount would clear).
// A mount's own flags (statfs f_flags) as mount(2) flags. Read-only too: a bind remount sets
// the flags exactly, and would make a bind of a read-only mount writable.
unsigned long MountFlagsOf(const struct statfs& s) {
  unsigned long f = 0;
  if (s.f_flags & ST_RDONLY) f |= MS_RDONLY;
  if (s.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (s.f_flags & ST_NODEV) f |= MS_NODEV;
  if (s.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (s.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (s.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (s.f_flags & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

unsigned long LockedFlags(const char* target) {
  struct statfs s;
  if (call(SYS_statfs, target, &s) < 0) return 0;
  return MountFlagsOf(s);
}

// Adds read-only / nosuid / nodev / noexec to a mount (recursively where the kernel can).
// mount_setattr flags for read-only and the MS_NOSUID/NODEV/NOEXEC bits of `extra`
MountAttr AttrsOf(bool readonly, unsigned long extra) {
  MountAttr a{};
  if (readonly) a.attr_set |= kAttrRdonly;
  if (extra & MS_NOSUID) a.attr_set |= kAttrNosuid;
  if (extra & MS_NODEV) a.attr_set |= kAttrNodev;
  if (extra & MS_NOEXEC) a.attr_set |= kAttrNoexec;
  return a;
}

long Restrict(const char* target, bool readonly, unsigned long extra, bool recursive) {
  MountAttr a = AttrsOf(readonly, extra);
  if (a.attr_set == 0) return 0;
  long r = call(SYS_mount_setattr, AT_FDCWD, target, recursive ? AT_RECURSIVE : 0, &a, sizeof a);
  if (r != -ENOSYS) return r;
  unsigned long f = MS_BIND | MS_REMOUNT | LockedFlags(target) | (extra & (MS_NOSUID | MS_NODEV | MS_NOEXEC));
  if (readonly) f |= MS_RDONLY;
  return call(SYS_mount, nullptr, target, nullptr, f, nullptr);
}

// --- paths inside the new root -----------------------------------------------------------
// Every op path under kJail ("/newroot", the N of lib/plan/view.ts) lies in the sandbox's
// root, which may be an untrusted rootfs: a symlink there must never lead a mkdir, a file or a
// mount outside it (CVE-2021-30465 and kin). Such paths are resolved with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to the root, created one
// component at a time with *at() calls, and mounts are placed through the resolved fd
// (move_mount, or a mount on "." after fchdir), never by name.
constexpr char kJail[] = "/newroot";
constexpr size_t kJailLen = sizeof kJail - 1;
struct OpenHow { uint64_t flags, mode, resolve; };
constexpr uint64_t kResolveNoMagiclinks = 0x02, kResolveNoSymlinks = 0x04, kResolveInRoot = 0x10;
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

// The part of `path` below the jail, or nullptr when it is not there or the op is trusted.
const char* JailRel(ChildCtx* ctx, const char* path) {
  if (ctx->trusted) return nullptr;  // a path nsbox itself made (see Op::trusted): by name
  for (size_t i = 0; i < kJailLen; i++) if (path[i] != kJail[i]) return nullptr;
  if (path[kJailLen] != '/') return nullptr;
  const char* r = path + kJailLen;
  while (*r == '/') r++;
  return r;
}

long RootFd(ChildCtx* ctx) {
  if (ctx->rootFd < 0) {
    long fd = call(SYS_openat, AT_FDCWD, kJail, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fd;
    ctx->rootFd = (int)fd;
  }
  return ctx->rootFd;
}

// openat2 inside the root; `rel` is relative to it ("" = the root itself).
long OpenRel(ChildCtx* ctx, const char* rel, long flags, bool real) {
  long root = RootFd(ctx);
  if (root < 0) return root;
  OpenHow how{(uint64_t)(flags | O_CLOEXEC), 0, kResolveInRoot | kResolveNoMagiclinks | (real ? kResolveNoSymlinks : 0)};
  return call(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
}

// Opens `path`, resolving it inside the root when it lies there.
long OpenIn(ChildCtx* ctx, const char* path, long flags, bool real) {
  const char* rel = JailRel(ctx, path);
  if (!rel) return call(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC);
  return OpenRel(ctx, rel, flags, real);
}

// mkdir -p inside the root: each component is made in its parent's fd, each prefix resolved
// in the root, so a symlinked component can only lead somewhere inside the root.
long MkdirIn(ChildCtx* ctx, const char* path, unsigned mode, bool real) {
  const char* rel = JailRel(ctx, path);
  if (!rel) return MkdirP(path, mode);
  long fd = OpenRel(ctx, rel, O_PATH | O_DIRECTORY, real);
  if (fd >= 0) { call(SYS_close, fd); return 0; }
  if (fd != -ENOENT) return fd;
  char buf[4096];
  size_t n = Len(rel);
  if (n >= sizeof buf) return -ENAMETOOLONG;
  long parent = OpenRel(ctx, "", O_PATH | O_DIRECTORY, false);
  if (parent < 0) return parent;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    buf[i] = rel[i];
    if (rel[i] != '/' && rel[i] != 0) continue;
    if (i == start) { start = i + 1; continue; }
    buf[i] = 0;
    long r = call(SYS_mkdirat, parent, buf + start, mode);
    if (r < 0 && r != -EEXIST) { call(SYS_close, parent); return r; }
    long next = OpenRel(ctx, buf, O_PATH | O_DIRECTORY, real);
    call(SYS_close, parent);
    if (next < 0) return next;
    parent = next;
    buf[i] = rel[i];
    start = i + 1;
  }
  call(SYS_close, parent);
  return 0;
}

// The parent directory of `path` (made if missing), opened; *base = the last component.
long ParentIn(ChildCtx* ctx, const char* path, const char** base, bool real) {
  char buf[4096];
  size_t n = Len(path), cut = 0;
  if (n >= sizeof buf) return -ENAMETOOLONG;
  for (size_t i = 0; i < n; i++) { buf[i] = path[i]; if (path[i] == '/') cut = i; }
  *base = path + cut + 1;
  if (cut == 0) { buf[0] = '/'; buf[1] = 0; } else buf[cut] = 0;
  long r = MkdirIn(ctx, buf, 0755, real);
  if (r < 0) return r;
  return OpenIn(ctx, buf, O_PATH | O_DIRECTORY, real);
}

// The target of a bind: a directory, or for `file` a file (an empty one is made if missing).
long BindTarget(ChildCtx* ctx, const Op& op) {
  if (!op.file) {
    long r = MkdirIn(ctx, op.b, 0755, op.real);
    return r < 0 ? r : OpenIn(ctx, op.b, O_PATH | O_DIRECTORY, op.real);
  }
  const char* base;
  long pfd = ParentIn(ctx, op.b, &base, op.real);
  if (pfd < 0) return pfd;
  long fd = call(SYS_openat, pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -ENOENT) {
    // missing: an empty file to mount on (never opened for writing when it exists)
    long w = call(SYS_openat, pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w >= 0) call(SYS_close, w);
    fd = w >= 0 || w == -EEXIST ? call(SYS_openat, pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC) : w;
  }
  struct stat st;
  if (fd >= 0 && call(SYS_fstat, fd, &st) == 0 && S_ISLNK(st.st_mode)) {
    call(SYS_close, fd);
    // a symlink where a file must be (the /dev/null swap of CVE-2025-31133) is refused;
    // elsewhere it is followed, inside the root
    fd = op.real ? -ELOOP : OpenIn(ctx, op.b, O_PATH, false);
  }
  call(SYS_close, pfd);
  return fd;
}

long SetAttrFd(long fd, bool readonly, unsigned long extra, bool recursive, unsigned long propagation) {
  MountAttr a = AttrsOf(readonly, extra);
  a.propagation = propagation;
  if (a.attr_set == 0 && propagation == 0) return 0;
  return call(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof a);
}

// mount(2) with `flags` on the mount whose root `fd` holds (attached by now), so nothing is
// looked up by name in the root: a directory by fchdir to it and a mount on "."; a file
// through its magic link in the caller's /proc (procFd).
long MountOnFd(long fd, int procFd, unsigned long flags) {
  long r;
  if (call(SYS_fchdir, fd) == 0) {
    r = call(SYS_mount, nullptr, ".", nullptr, flags, nullptr);
    call(SYS_chdir, "/");
    return r;
  }
  if (procFd < 0) return -ENOSYS;
  char path[32] = "self/fd/";
  size_t at = Len(path);
  char digits[12];
  int n = 0;
  unsigned long v = (unsigned long)fd;
  do { digits[n++] = char('0' + v % 10); v /= 10; } while (v && n < 11);
  while (n) path[at++] = digits[--n];
  path[at] = 0;
  if ((r = call(SYS_fchdir, procFd)) < 0) return r;
  r = call(SYS_mount, nullptr, path, nullptr, flags, nullptr);
  call(SYS_chdir, "/");
  return r;
}

// Remounts the mount whose root `fd` holds with the restrictions of a bind, for kernels
// without mount_setattr (before 5.12). Only that mount, not the ones below it.
long RemountFd(long fd, int procFd, bool readonly, unsigned long extra) {
  struct statfs s;
  long r = call(SYS_fstatfs, fd, &s);
  if (r < 0) return r;
  unsigned long f = MS_BIND | MS_REMOUNT | (extra & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) | MountFlagsOf(s);
  if (readonly) f |= MS_RDONLY;
  return MountOnFd(fd, procFd, f);
}

// bind op.a onto op.b: the source tree is cloned (open_tree), restricted while detached, then
// moved onto the resolved target fd
// (kAttach: the tree is the one the parent cloned and restricted, op.fd; a source inside the
// root is resolved there, like a target). Without mount_setattr (5.2 to 5.11) the restrictions
// follow once it is attached: a bind remount of the moved mount, through its fd.
constexpr char kOpenTree[] = "open_tree";
long BindIn(ChildCtx* ctx, const Op& op, const char** failedCall) {
  *failedCall = kOpenTree;
  long tree, r;
  const char* srel = op.kind == OpKind::kBind ? JailRel(ctx, op.a) : nullptr;
  if (op.kind == OpKind::kAttach) {
    if (op.fd < 0) return -EBADF;
    tree = op.fd;
  } else if (srel) {
    long src = OpenRel(ctx, srel, O_PATH, op.real);
    if (src < 0) return src;
    tree = call(SYS_open_tree, src, "", OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH | (op.recursive ? AT_RECURSIVE : 0));
    call(SYS_close, src);
  } else {
    tree = call(SYS_open_tree, AT_FDCWD, op.a, OPEN_TREE_CLONE | O_CLOEXEC | (op.recursive ? AT_RECURSIVE : 0));
  }
  if (tree < 0) return tree;
  *failedCall = "mount_setattr";
  // kAttach: restricted by the parent already, unless the kernel lacks mount_setattr
  // (AttachTree marks that with kAttachLate in op.mode)
  r = op.kind == OpKind::kAttach ? (op.mode == kAttachLate ? -ENOSYS : 0) : SetAttrFd(tree, op.readonly, op.flags, op.recursive, 0);
  const bool late = r == -ENOSYS;
  if (r < 0 && !late) { call(SYS_close, tree); return r; }
  *failedCall = op.file ? "open" : "mkdir";
  long t = BindTarget(ctx, op);
  if (t < 0) { call(SYS_close, tree); return t; }
  *failedCall = "move_mount";
  r = call(SYS_move_mount, tree, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
  call(SYS_close, t);
  if (r == 0 && late && op.kind == OpKind::kAttach) {
    // a clone made in the host's namespace may be a peer of host mounts: make it private (or
    // a slave) before anything is mounted under it, or those mounts would reach the host
    *failedCall = "mount";
    r = MountOnFd(tree, ctx->plan->procFd, ((op.flags & MS_SLAVE) ? MS_SLAVE : MS_PRIVATE) | (op.recursive ? MS_REC : 0));
  }
  if (r == 0 && late) {
    *failedCall = "mount";
    r = RemountFd(tree, ctx->plan->procFd, op.readonly, op.flags);
  }
  call(SYS_close, tree);
  return r;
}

// --- tmpcopyup: a fresh tmpfs gets a copy of the directory it covers (Op::copyUp) ---

struct Dirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[1]; };
// how deep a copied tree may go (each level holds a directory buffer on the child's stack)
constexpr int kCopyUpDepth = 32;

// owner, mode (not of a symlink) and times of `name` in `dir` as `st` says
long CopyMeta(long dir, const char* name, const struct stat& st, const char** what) {
  *what = "fchownat";
  long r = call(SYS_fchownat, dir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
  // EINVAL: an owner not mapped in the sandbox's user namespace (stat showed the overflow id);
  // the copy stays the sandbox root's, as an unprivileged caller's image files do
  if (r < 0 && r != -EINVAL) return r;
  *what = "fchmodat";
  if (!S_ISLNK(st.st_mode) && (r = call(SYS_fchmodat, dir, name, st.st_mode & 07777)) < 0) return r;
  *what = "utimensat";
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  return call(SYS_utimensat, dir, name, ts, AT_SYMLINK_NOFOLLOW);
}

// a symlink copied (its own frame: the target buffer is on the stack only while it runs)
__attribute__((noinline)) long CopyLink(long src, long dst, const char* name, const char** what) {
  char target[4096];
  *what = "readlinkat";
  long n = call(SYS_readlinkat, src, name, target, sizeof target - 1);
  if (n < 0) return n;
  target[n] = 0;
  *what = "symlinkat";
  return call(SYS_symlinkat, target, dst, name);
}

long CopyFile(long src, long dst, const char* name, const char** what) {
  *what = "open";
  long in = call(SYS_openat, src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) return in;
  long out = call(SYS_openat, dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) { call(SYS_close, in); return out; }
  *what = "sendfile";
  long r;
  do { r = call(SYS_sendfile, out, in, nullptr, 1L << 30); } while (r > 0 || r == -EINTR);
  call(SYS_close, in);
  call(SYS_close, out);
  return r;
}

// What directory `src` holds, copied into directory `dst`: directories, files, symlinks and
// fifos with their owners, modes and times. Device nodes and sockets are left out; hard links
// become separate files.
long CopyTree(long src, long dst, int depth, const char** what) {
  if (depth > kCopyUpDepth) { *what = "openat"; return -ELOOP; }
  alignas(8) char buf[2048];
  for (;;) {
    *what = "getdents64";
    long n = call(SYS_getdents64, src, buf, sizeof buf);
    if (n <= 0) return n;
    for (long off = 0; off < n;) {
      const Dirent64* d = reinterpret_cast<const Dirent64*>(buf + off);
      off += d->reclen;
      const char* name = d->name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      struct stat st;
      *what = "newfstatat";
      long r = call(SYS_newfstatat, src, name, &st, AT_SYMLINK_NOFOLLOW);
      if (r < 0) return r;
      switch (st.st_mode & S_IFMT) {
        case S_IFDIR: {
          *what = "mkdirat";
          if ((r = call(SYS_mkdirat, dst, name, 0700)) < 0) return r;
          *what = "open";
          long s2 = call(SYS_openat, src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (s2 < 0) return s2;
          long d2 = call(SYS_openat, dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (d2 < 0) { call(SYS_close, s2); return d2; }
          r = CopyTree(s2, d2, depth + 1, what);
          call(SYS_close, s2);
          call(SYS_close, d2);
          break;
        }
        case S_IFREG: r = CopyFile(src, dst, name, what); break;
        case S_IFLNK: r = CopyLink(src, dst, name, what); break;
        case S_IFIFO:
          *what = "mknodat";
          r = call(SYS_mknodat, dst, name, S_IFIFO | 0600, 0);
          break;
        default: continue;  // device nodes and sockets
      }
      if (r < 0 || (r = CopyMeta(dst, name, st, what)) < 0) return r;
    }
  }
}

bool HasOpt(const char* data, const char* key) {
  if (!data) return false;
  size_t k = Len(key);
  for (const char* p = data; *p;) {
    size_t i = 0;
    while (i < k && p[i] == key[i]) i++;
    if (i == k) return true;
    while (*p && *p != ',') p++;
    if (*p == ',') p++;
  }
  return false;
}

// After a copyUp mount: `under` (the directory it covers, opened before) copied into the new
// mount `top`; the new root takes the covered directory's mode unless the options give one.
long CopyUp(const Op& op, long under, long top, const char** what) {
  long r = CopyTree(under, top, 0, what);
  if (r < 0) return r;
  struct stat st;
  *what = "fstat";
  if ((r = call(SYS_fstat, under, &st)) < 0) return r;
  *what = "fchmod";
  if (!HasOpt(op.d, "mode=") && (r = call(SYS_fchmod, top, st.st_mode & 07777)) < 0) return r;
  return 0;
}

// a filesystem mount onto the resolved directory: mount(2) on "." after fchdir to it
long MountIn(ChildCtx* ctx, const Op& op, const char** failedCall) {
  *failedCall = "mkdir";
  long r = MkdirIn(ctx, op.b, 0755, op.real);
  if (r < 0) return r;
  *failedCall = "open";
  long t = OpenIn(ctx, op.b, O_PATH | O_DIRECTORY, op.real);
  if (t < 0) return t;
  long under = -1;
  if (op.copyUp && (under = call(SYS_openat, t, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) { call(SYS_close, t); return under; }
  *failedCall = "mount";
  r = call(SYS_fchdir, t);
  if (r == 0) r = call(SYS_mount, op.a, ".", op.c, op.flags, op.d);
  call(SYS_chdir, "/");
  call(SYS_close, t);
  if (r == 0 && op.copyUp) {
    // the target again: now the new mount's root
    *failedCall = "open";
    long top = OpenIn(ctx, op.b, O_RDONLY | O_DIRECTORY, op.real);
    r = top < 0 ? top : CopyUp(op, under, top, failedCall);
    if (top >= 0) call(SYS_close, top);
  }
  if (under >= 0) call(SYS_close, under);
  return r;
}

const char* const kNetStepCall[] = {"clone3", "setns(CLONE_NEWUSER)", "unshare(CLONE_NEWNET)", "ioctl(SIOCSIFFLAGS)", "open", "sendmsg"};

// The network namespace the parent makes beside this child (asyncNet) arrives on its channel
// in two messages: first its fd (or the errno of the step that failed), then whether lo came up.
int RecvNetReady(ChildCtx* ctx) {
  NetReadyMsg m{};
  struct iovec iov{&m, sizeof m};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  long r;
  do { r = call(SYS_recvmsg, ctx->netFd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL); } while (r == -EINTR);
  int fd = -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
    __builtin_memcpy(&fd, CMSG_DATA(c), sizeof fd);
  }
  if (r == 0) call(SYS_exit_group, 127);  // parent gone: nothing to report to
  if (r != (long)sizeof m) DieSys(ctx, r < 0 ? r : -EPROTO, "network", "recvmsg");
  if (m.err) DieSys(ctx, -m.err, "network", m.which >= 0 && m.which <= kNetSend ? kNetStepCall[m.which] : "?");
  return fd;
}

void JoinNet(ChildCtx* ctx) {
  TRACE(kTrNetWait);
  int fd = RecvNetReady(ctx);
  if (fd < 0) DieSys(ctx, -EPROTO, "network", "recvmsg");
  long r = call(SYS_setns, fd, CLONE_NEWNET);
  call(SYS_close, fd);
  if (r < 0) DieSys(ctx, r, "network", "setns(CLONE_NEWNET)");
  ctx->netJoined = true;
  TRACE(kTrNetJoined);
}

// A mount onto the root itself (a rootfs's mirror, see lib/plan/mountpoints.ts) covers what the
// cached root fd shows: later lookups must start from the new top.
void RootCovered(ChildCtx* ctx, const char* target) {
  if (ctx->rootFd < 0 || !target) return;
  for (size_t i = 0; i <= kJailLen; i++) if (target[i] != kJail[i]) return;
  call(SYS_close, ctx->rootFd);
  ctx->rootFd = -1;
}

void RunOp(ChildCtx* ctx, const Op& op) {
  long r = 0;
  ctx->trusted = op.trusted;
  switch (op.kind) {
    case OpKind::kMkdir:
      if ((r = MkdirIn(ctx, op.a, op.mode, op.real)) < 0) DieSys(ctx, r, "mkdir", "mkdir", op.a);
      break;
    case OpKind::kMount:
      if (op.netSysfs && ctx->netPremade && ctx->sysfsFd >= 0) {
        // made ahead: its sysfs came with it (mounting one takes rights over the namespace
        // that its owner, nsbox's user namespace, does not give us)
        r = call(SYS_move_mount, ctx->sysfsFd, "", AT_FDCWD, op.b, MOVE_MOUNT_F_EMPTY_PATH);
        if (r < 0) DieSys(ctx, r, "mount", "move_mount", op.b);
        call(SYS_close, ctx->sysfsFd);
        ctx->sysfsFd = -1;
        break;
      }
      // made beside the child: enter it first (a fresh sysfs shows the namespace it is mounted in)
      if (op.netSysfs && ctx->asyncNet && !ctx->netJoined) JoinNet(ctx);
      if (!JailRel(ctx, op.b)) {
        // in a view template's copy the mount point is there (the template made it): one
        // lookup, not an mkdir that fails with EEXIST and then the mount; made only if missing
        const bool fresh = ctx->freshTmpfs && Below(op.b, ctx->freshTmpfs);
        if (ctx->inTemplate && IsTmpfs(op.c)) ctx->freshTmpfs = op.b;
        if (ctx->inTemplate && !op.copyUp && !fresh && (r = call(SYS_mount, op.a, op.b, op.c, op.flags, op.d)) != -ENOENT) {
          if (r < 0) DieSys(ctx, r, "mount", "mount", op.b);
          break;
        }
        if ((r = MkdirP(op.b, 0755)) < 0) DieSys(ctx, r, "mount", "mkdir", op.b);
        long under = -1;
        if (op.copyUp && (under = call(SYS_openat, AT_FDCWD, op.b, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) DieSys(ctx, under, "mount", "open", op.b);
        if ((r = call(SYS_mount, op.a, op.b, op.c, op.flags, op.d)) < 0) DieSys(ctx, r, "mount", "mount", op.b);
        if (op.copyUp) {
          const char* what = "open";
          long top = call(SYS_openat, AT_FDCWD, op.b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
          r = top < 0 ? top : CopyUp(op, under, top, &what);
          if (r < 0) DieSys(ctx, r, "copy-up", what, op.b);
          call(SYS_close, top);
          call(SYS_close, under);
        }
        break;
      }
      {
        const char* what;
        if ((r = MountIn(ctx, op, &what)) < 0) DieSys(ctx, r, op.copyUp ? "copy-up" : "mount", what, op.b);
      }
      break;
    case OpKind::kAttach: {
      const char* what;
      if ((r = BindIn(ctx, op, &what)) < 0) DieSys(ctx, r, "bind", what, what == kOpenTree ? op.a : op.b);
      break;
    }
    case OpKind::kBind: {
      if (op.present) {
        // a mask or read-only path that need not exist: only where the sandbox has it, as it is there
        long t = OpenIn(ctx, op.b, O_PATH, false);
        if (t == -ENOENT) break;
        if (t < 0) DieSys(ctx, t, "bind", "open", op.b);
        struct stat st;
        r = call(SYS_fstat, t, &st);
        call(SYS_close, t);
        if (r < 0) DieSys(ctx, r, "bind", "fstat", op.b);
        Op as = op;
        as.present = false;
        as.file = !S_ISDIR(st.st_mode);
        if (!as.file && op.c) as.a = op.c;
        RunOp(ctx, as);
        return;
      }
      const char* what = kOpenTree;
      const bool inRoot = JailRel(ctx, op.b) != nullptr || JailRel(ctx, op.a) != nullptr;
      if (inRoot && (r = BindIn(ctx, op, &what)) >= 0) break;
      if (inRoot && !(r == -ENOSYS && what == kOpenTree)) DieSys(ctx, r, "bind", what, what == kOpenTree ? op.a : op.b);
      // outside the root, or no open_tree (kernels before 5.2): by name (in a view template's
      // copy the target is there: the bind first, the target made only if it is missing)
      r = ctx->inTemplate && !(ctx->freshTmpfs && Below(op.b, ctx->freshTmpfs)) ? call(SYS_mount, op.a, op.b, nullptr, MS_BIND | (op.recursive ? MS_REC : 0), nullptr) : -ENOENT;
      if (r == -ENOENT) {
        r = op.file ? TouchFile(op.b) : MkdirP(op.b, 0755);
        if (r < 0) DieSys(ctx, r, "bind", op.file ? "open" : "mkdir", op.b);
        r = call(SYS_mount, op.a, op.b, nullptr, MS_BIND | (op.recursive ? MS_REC : 0), nullptr);
      }
      if (r < 0) DieSys(ctx, r, "bind", "mount", op.a);
      if ((r = Restrict(op.b, op.readonly, op.flags, op.recursive)) < 0) DieSys(ctx, r, "bind", "mount_setattr", op.b);
      break;
    }
    case OpKind::kSymlink: {
      // by name (a path nsbox made, or outside the root): one call when the parent exists
      if (!JailRel(ctx, op.b)) {
        r = call(SYS_symlinkat, op.a, AT_FDCWD, op.b);
        if (r == 0 || r == -EEXIST) break;
        if (r != -ENOENT) DieSys(ctx, r, "symlink", "symlink", op.b);
      }
      const char* base;
      long pfd = ParentIn(ctx, op.b, &base, op.real);
      if (pfd < 0) DieSys(ctx, pfd, "symlink", "mkdir", op.b);
      r = call(SYS_symlinkat, op.a, pfd, base);
      call(SYS_close, pfd);
      if (r < 0 && r != -EEXIST) DieSys(ctx, r, "symlink", "symlink", op.b);
      break;
    }
    case OpKind::kWriteFile: {
      constexpr long kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW;
      // by name when that is how it is resolved anyway: one call when the parent exists
      long fd = JailRel(ctx, op.a) ? -ENOENT : call(SYS_openat, AT_FDCWD, op.a, kFlags, op.mode);
      if (fd == -ENOENT) {
        const char* base;
        long pfd = ParentIn(ctx, op.a, &base, op.real);
        if (pfd < 0) DieSys(ctx, pfd, "write-file", "mkdir", op.a);
        fd = call(SYS_openat, pfd, base, kFlags, op.mode);
        call(SYS_close, pfd);
      }
      if (fd < 0) DieSys(ctx, fd, "write-file", "open", op.a);
      size_t off = 0;
      while (off < op.dlen) {
        r = call(SYS_write, fd, op.d + off, op.dlen - off);
        if (r == -EINTR) continue;
        if (r < 0) DieSys(ctx, r, "write-file", "write", op.a);
        off += (size_t)r;
      }
      call(SYS_close, fd);
      break;
    }
    case OpKind::kPropagation:
    case OpKind::kRemountRo: {
      const bool prop = op.kind == OpKind::kPropagation;
      const char* step = prop ? "propagation" : "remount";
      if (JailRel(ctx, op.b)) {
        long fd = OpenIn(ctx, op.b, O_PATH, op.real);
        if (fd < 0) DieSys(ctx, fd, step, "open", op.b);
        r = prop ? SetAttrFd(fd, false, 0, op.flags & MS_REC, op.flags & ~MS_REC) : SetAttrFd(fd, true, op.flags, op.recursive, 0);
        call(SYS_close, fd);
        if (r != -ENOSYS) {
          if (r < 0) DieSys(ctx, r, step, "mount_setattr", op.b);
          break;
        }
      }
      if (prop) {
        if ((r = call(SYS_mount, nullptr, op.b, nullptr, op.flags, nullptr)) < 0) DieSys(ctx, r, step, "mount", op.b);
      } else if ((r = Restrict(op.b, true, op.flags, op.recursive)) < 0) {
        DieSys(ctx, r, step, "mount_setattr", op.b);
      }
      break;
    }
    case OpKind::kPivotRoot:
      if ((r = call(SYS_chdir, op.a)) < 0) DieSys(ctx, r, "pivot", "chdir", op.a);
      if (op.b) {
        if ((r = call(SYS_pivot_root, ".", op.b)) < 0) DieSys(ctx, r, "pivot", "pivot_root", op.a);
      } else {
        // pivot onto itself, then detach the old root stacked underneath
        if ((r = call(SYS_pivot_root, ".", ".")) < 0) DieSys(ctx, r, "pivot", "pivot_root", op.a);
        if ((r = call(SYS_umount2, ".", MNT_DETACH)) < 0) DieSys(ctx, r, "pivot", "umount2", op.a);
      }
      if ((r = call(SYS_chdir, "/")) < 0) DieSys(ctx, r, "pivot", "chdir", "/");
      break;
    case OpKind::kChmod: {
      long fd = OpenIn(ctx, op.a, O_RDONLY | O_NOFOLLOW, op.real);
      if (fd < 0) DieSys(ctx, fd, "chmod", "open", op.a);
      r = call(SYS_fchmod, fd, op.mode);
      call(SYS_close, fd);
      if (r < 0) DieSys(ctx, r, "chmod", "chmod", op.a);
      break;
    }
    case OpKind::kUmount:
      if ((r = call(SYS_umount2, op.b, MNT_DETACH)) < 0) DieSys(ctx, r, "umount", "umount2", op.b);
      break;
    case OpKind::kLoopbackUp:
      if (ctx->netPremade || ctx->asyncNet) break;  // its maker brought lo up
      if ((r = sys::LoopbackUp()) < 0) DieSys(ctx, r, "loopback", "ioctl(SIOCSIFFLAGS)", "lo");
      break;
    case OpKind::kChown:
      if ((r = call(SYS_fchownat, AT_FDCWD, op.a, op.flags, op.mode, AT_SYMLINK_NOFOLLOW)) < 0) DieSys(ctx, r, "chown", "fchownat", op.a);
      break;
    case OpKind::kMknod:
      // the mode as given (umask 0 for it, then back)
      {
        long old = call(SYS_umask, 0);
        r = call(SYS_mknodat, AT_FDCWD, op.a, op.mode, op.flags);
        call(SYS_umask, old);
        if (r < 0 && r != -EEXIST) DieSys(ctx, r, "mknod", "mknod", op.a);
      }
      break;
    case OpKind::kUnlink:
      if ((r = call(SYS_unlinkat, AT_FDCWD, op.a, op.flags)) < 0) DieSys(ctx, r, "unlink", "unlinkat", op.a);
      break;
    case OpKind::kMaskOpen:
      // the template's empty file and directory, covered by /proc once it is mounted: held
      // as fds, the masks are cloned from them
      for (int i = 0; i < 2; i++) {
        const char* path = i == 0 ? op.a : op.b;
        if ((r = call(SYS_openat, AT_FDCWD, path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) DieSys(ctx, r, "mask", "open", path);
        ctx->maskFd[i] = (int)r;
      }
      break;
    case OpKind::kMaskBind: {
      int src = ctx->maskFd[op.file ? 0 : 1];
      if (src < 0) DieSys(ctx, -EBADF, "mask", "open_tree", op.b);
      long tree = call(SYS_open_tree, src, "", OPEN_TREE_CLONE | AT_EMPTY_PATH | O_CLOEXEC);
      if (tree < 0) DieSys(ctx, tree, "mask", "open_tree", op.b);
      r = call(SYS_move_mount, tree, "", AT_FDCWD, op.b, MOVE_MOUNT_F_EMPTY_PATH);
      call(SYS_close, tree);
      if (r < 0) DieSys(ctx, r, "mask", "move_mount", op.b);
      break;
    }
    case OpKind::kIdmapBind: {
      long tree = call(SYS_open_tree, AT_FDCWD, op.a, OPEN_TREE_CLONE | O_CLOEXEC);
      if (tree < 0) DieSys(ctx, tree, "idmap", "open_tree", op.a);
      constexpr uint64_t kAttrIdmap = 0x00100000;
      MountAttr a{kAttrIdmap | kAttrNodev | (op.readonly ? kAttrRdonly : 0), 0, 0, (uint64_t)op.flags};
      const char* what = "mount_setattr";
      r = call(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &a, sizeof a);
      if (r == 0) { what = "move_mount"; r = call(SYS_move_mount, tree, "", AT_FDCWD, op.b, MOVE_MOUNT_F_EMPTY_PATH); }
      call(SYS_close, tree);
      if (r < 0) DieSys(ctx, r, "idmap", what, op.a);
      break;
    }
    case OpKind::kMoveRoot: {
      // the namespace file first: once the mount is moved, "/" still leads to the old root
      long ns = call(SYS_openat, AT_FDCWD, op.b, O_RDONLY | O_CLOEXEC);
      if (ns < 0) DieSys(ctx, ns, "pivot", "open", op.b);
      if ((r = call(SYS_mount, op.a, "/", nullptr, MS_MOVE, nullptr)) < 0) DieSys(ctx, r, "pivot", "mount", op.a);
      // entering a mount namespace takes as root the mount on top of its root: the one moved there
      r = call(SYS_setns, ns, CLONE_NEWNS);
      call(SYS_close, ns);
      if (r < 0) DieSys(ctx, r, "pivot", "setns(CLONE_NEWNS)", op.a);
      if ((r = call(SYS_chdir, "/")) < 0) DieSys(ctx, r, "pivot", "chdir", "/");
      if (ctx->rootFd >= 0) { call(SYS_close, ctx->rootFd); ctx->rootFd = -1; }
      break;
    }
    default:
      DieSys(ctx, -EINVAL, "plan", "none");
  }
  if (op.kind == OpKind::kBind || op.kind == OpKind::kAttach || op.kind == OpKind::kMount) RootCovered(ctx, op.b);
}

void WaitGo(ChildCtx* ctx) {
  char c;
  for (;;) {
    long r = call(SYS_read, ctx->goFd, &c, 1);
    if (r == -EINTR) continue;
    if (r == 1) return;
    call(SYS_exit_group, 127);  // parent gone or gave up: nothing to report to
  }
}

// The caller's extra fds on 3, 4, ..., kept across exec (as runc's --preserve-fds). The
// child's own error pipe, and sources sitting in that range but not in their place, are moved
// above it first (a source on another's target would be overwritten by an earlier dup).
constexpr size_t kMaxExtraFds = 256;
void PlaceExtraFds(ChildCtx* ctx, const Plan& p) {
  const size_t n = p.extraFds.size();
  const int top = 3 + (int)n;
  long r;
  if (n > kMaxExtraFds) DieSys(ctx, -EINVAL, "stdio", "extraFds");
  if (ctx->errFd < top) {
    if ((r = call(SYS_fcntl, ctx->errFd, F_DUPFD_CLOEXEC, top)) < 0) DieSys(ctx, r, "stdio", "fcntl");
    ctx->errFd = (int)r;
  }
  int src[kMaxExtraFds];
  for (size_t i = 0; i < n; i++) {
    src[i] = p.extraFds[i];
    if (src[i] < top && src[i] != 3 + (int)i) {
      if ((r = call(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, top)) < 0) DieSys(ctx, r, "stdio", "fcntl");
      src[i] = (int)r;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const int to = 3 + (int)i;
    r = src[i] == to ? call(SYS_fcntl, to, F_SETFD, 0) : call(SYS_dup3, src[i], to, 0);
    if (r < 0) DieSys(ctx, r, "stdio", "dup3");
  }
}

void PlaceStdio(ChildCtx* ctx) {
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = ctx->stdio[i];
    // a source sitting on 0..2 could be overwritten by an earlier dup: move it up first
    if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
      long r = call(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3);
      if (r < 0) DieSys(ctx, r, "stdio", "fcntl");
      src[i] = (int)r;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (src[i] < 0) continue;
    long r = src[i] == i ? call(SYS_fcntl, i, F_SETFD, 0) : call(SYS_dup3, src[i], i, 0);
    if (r < 0) DieSys(ctx, r, "stdio", "dup3");
  }
}

void SetCredentials(ChildCtx* ctx, const Plan& p) {
  long r;
  if (p.dropCaps) {
    // bounding set: drop every capability not in it (needs CAP_SETPCAP, held until setuid)
    for (int c = 0; c <= p.lastCap; c++) {
      if (c < 64 && (p.capsBounding >> c) & 1) continue;
      r = call(SYS_prctl, PR_CAPBSET_DROP, c, 0, 0, 0);
      if (r < 0 && r != -EINVAL) DieSys(ctx, r, "capabilities", "prctl(PR_CAPBSET_DROP)");
    }
    if ((r = call(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0)) < 0) DieSys(ctx, r, "capabilities", "prctl(PR_SET_KEEPCAPS)");
  }
  if (p.setIds) {
    if (p.setGroups && (r = call(SYS_setgroups, p.groups.size(), p.groups.data())) < 0) DieSys(ctx, r, "credentials", "setgroups");
    if ((r = call(SYS_setresgid, p.gid, p.gid, p.gid)) < 0) DieSys(ctx, r, "credentials", "setresgid");
    if ((r = call(SYS_setresuid, p.uid, p.uid, p.uid)) < 0) DieSys(ctx, r, "credentials", "setresuid");
  }
  if (p.dropCaps) {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    for (int i = 0; i < 2; i++) {
      d[i].effective = (uint32_t)(p.capsEffective >> (32 * i));
      d[i].permitted = (uint32_t)(p.capsPermitted >> (32 * i));
      d[i].inheritable = (uint32_t)(p.capsInheritable >> (32 * i));
    }
    if ((r = call(SYS_capset, &h, d)) < 0) DieSys(ctx, r, "capabilities", "capset");
    call(SYS_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }
  r = call(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (r < 0 && r != -EINVAL) DieSys(ctx, r, "capabilities", "prctl(PR_CAP_AMBIENT)");
  if (p.capsAmbient) {
    for (int c = 0; c < 64 && c <= p.lastCap; c++) {
      if (!((p.capsAmbient >> c) & 1)) continue;
      if ((r = call(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0)) < 0) DieSys(ctx, r, "capabilities", "prctl(PR_CAP_AMBIENT_RAISE)");
    }
  }
}

void InstallSeccomp(ChildCtx* ctx, const Plan& p) {
  if (p.seccomp.empty()) return;
  struct sock_fprog prog{(unsigned short)p.seccomp.size(), const_cast<sock_filter*>(p.seccomp.data())};
  long r = call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
  if (r < 0) DieSys(ctx, r, "seccomp", "seccomp");
}

// Writes a whole small file (e.g. /proc/self/timens_offsets), relative to dirfd.
long WriteSmall(int dirfd, const char* path, const char* data) {
  long fd = call(SYS_openat, dirfd, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  long r = call(SYS_write, fd, data, Len(data));
  call(SYS_close, fd);
  return r < 0 ? r : 0;
}

// A terminal from the sandbox's own devpts (mounted by the ops above): the slave becomes
// stdin, stdout and stderr; the parent takes the master with pidfd_getfd while this process
// waits for a second "go" (the master is close-on-exec here). The program becomes the
// session leader with the slave as controlling terminal (here without init, in nsbox-init's
// child with it).
void OpenTerminal(ChildCtx* ctx, const Plan& p) {
  long master = call(SYS_openat, AT_FDCWD, "/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) DieSys(ctx, master, "tty", "open", "/dev/ptmx");
  int unlock = 0;
  long r = call(SYS_ioctl, master, TIOCSPTLCK, &unlock);
  if (r < 0) DieSys(ctx, r, "tty", "ioctl(TIOCSPTLCK)");
  struct winsize ws{};
  ws.ws_row = (unsigned short)p.ttyRows;
  ws.ws_col = (unsigned short)p.ttyCols;
  if ((r = call(SYS_ioctl, master, TIOCSWINSZ, &ws)) < 0) DieSys(ctx, r, "tty", "ioctl(TIOCSWINSZ)");
  long slave = call(SYS_ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0) DieSys(ctx, slave, "tty", "ioctl(TIOCGPTPEER)");
  for (int i = 0; i < 3; i++) {
    if ((r = call(SYS_dup3, slave, i, 0)) < 0) DieSys(ctx, r, "tty", "dup3");
  }
  if (slave > 2) call(SYS_close, slave);
  ChildMsg m;
  m.kind = 4;
  m.pid = (int)master;
  call(SYS_write, ctx->errFd, &m, sizeof m);
  WaitGo(ctx);
  call(SYS_close, master);
  if (!p.init && (r = call(SYS_ioctl, 0, TIOCSCTTY, 0)) < 0) DieSys(ctx, r, "tty", "ioctl(TIOCSCTTY)");
}

// execve over the candidates from PATH (computed before clone), execvp's error rules:
// ENOENT/ENOTDIR/EACCES move on, EACCES is what is reported if nothing ran
[[noreturn]] void ExecProgram(ChildCtx* ctx) {
  const Plan& p = *ctx->plan;
  long best = -ENOENT, r;
  const char* bestPath = p.exec[0];
  for (size_t i = 0; p.exec[i]; i++) {
    r = call(SYS_execve, p.exec[i], p.argv.data(), p.envp.data());
    if (r == -ENOENT || r == -ENOTDIR || r == -ESTALE || r == -ENODEV || r == -ETIMEDOUT) continue;
    if (r == -EACCES) { if (best != -EACCES) { best = r; bestPath = p.exec[i]; } continue; }
    best = r;
    bestPath = p.exec[i];
    break;
  }
  DieSys(ctx, best, "exec", "execve", bestPath);
}

// The working directory as an O_PATH fd (or -errno), looked up in the sandbox's own root with
// no magic links, so /proc/self/fd/N cannot lead to a directory of the host through an fd
// still open here (CVE-2024-21626). -ENOSYS: a kernel before openat2 (then chdir).
constexpr long kCwdNotOpen = -1L << 20;
long OpenCwd(const Plan& p) {
  OpenHow how{O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kResolveNoMagiclinks};
  return call(SYS_openat2, AT_FDCWD, p.cwd, &how, sizeof how);
}

[[noreturn]] void Setup(ChildCtx* ctx) {
  const Plan& p = *ctx->plan;
  long r;
  // The time namespace for the program, first: /proc/self/timens_offsets is writable only by
  // this process's owner, and the id and dumpable changes below give the file to another
  // (host root, whom the sandbox's root is not). The offsets are set before anything enters.
  if (p.timeOffsets) {
    if ((r = call(SYS_unshare, CLONE_NEWTIME)) < 0) DieSys(ctx, r, "time", "unshare(CLONE_NEWTIME)");
    r = p.procFd >= 0 ? WriteSmall(p.procFd, "self/timens_offsets", p.timeOffsets) : WriteSmall(AT_FDCWD, "/proc/self/timens_offsets", p.timeOffsets);
    if (r < 0) DieSys(ctx, r, "time", "write", "/proc/self/timens_offsets");
  }
  // Not dumpable (no ptrace, /proc/pid owned by root) until execve resets it, where it
  // matters: a process joining existing namespaces meets processes of the sandbox there, which
  // must not attach to it before exec. Dumpability belongs to the mm, so a CLONE_VM child
  // (a sandbox of its own: nobody else inside yet) leaves it alone: it would be Node's. (Its
  // uid change still resets the shared flag; spawn.cc restores Node's after exec.)
  if (ctx->ownMm) call(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
  // cgroup v1: move into the sandbox's groups ("0" = this thread, which is the whole process)
  for (int fd : p.cgroupTaskFds) {
    if ((r = call(SYS_write, fd, "0", 1)) < 0) DieSys(ctx, r, "cgroup", "write", "tasks");
  }
  // In a new user namespace the child still carries the caller's host ids, which map to
  // nothing there: it could not create an inode (EOVERFLOW). Become the namespace's root
  // first; capabilities stay full (an unmapped euid becoming ns-root gains, not loses).
  if (p.earlyIds) {
    if ((r = call(SYS_setresgid, p.earlyGid, p.earlyGid, p.earlyGid)) < 0) DieSys(ctx, r, "credentials", "setresgid");
    if ((r = call(SYS_setresuid, p.earlyUid, p.earlyUid, p.earlyUid)) < 0) DieSys(ctx, r, "credentials", "setresuid");
  }
  if (p.lateUnshare && (r = call(SYS_unshare, p.lateUnshare)) < 0) DieSys(ctx, r, "unshare", "unshare");
  PlaceStdio(ctx);
  TRACE(kTrOpsStart);
  for (const Op& op : p.ops) {
    RunOp(ctx, op);
    TRACE_OP((size_t)(&op - p.ops.data()));
  }
  TRACE(kTrOpsEnd);
  if (ctx->asyncNet && !ctx->netJoined) JoinNet(ctx);
  // A session of its own. Not earlier: with autogroup scheduling setsid allocates per-CPU
  // data, and would wait for the allocator's lock while the network namespace is being made.
  if ((r = call(SYS_setsid)) < 0) DieSys(ctx, r, "setsid", "setsid");
  // lo is up in the namespace made beside us (or the program does not run). Read here when a
  // terminal's handshake follows on "go", else as late as possible (just before exec).
  bool loUp = !ctx->asyncNet;
  if (!loUp && p.tty) { RecvNetReady(ctx); loUp = true; }
  if (p.tty) OpenTerminal(ctx, p);
  if (p.hostname && (r = call(SYS_sethostname, p.hostname, Len(p.hostname))) < 0) DieSys(ctx, r, "hostname", "sethostname");
  if (p.domainname && (r = call(SYS_setdomainname, p.domainname, Len(p.domainname))) < 0) DieSys(ctx, r, "hostname", "setdomainname");
  for (const Rlimit& rl : p.rlimits) {
    struct { unsigned long long cur, max; } v{rl.soft, rl.hard};
    if ((r = call(SYS_prlimit64, 0, rl.resource, &v, nullptr)) < 0) DieSys(ctx, r, "rlimit", "prlimit64");
  }
  // Without no_new_privs the kernel takes a filter only from a process with CAP_SYS_ADMIN in
  // its user namespace, which SetCredentials is about to drop: then the filter goes on here,
  // before it (as runc does), and everything from here to exec runs under it (the syscalls
  // listed by seccompEarlyCalls() in lib/security/seccomp/early.ts, checked against a custom
  // profile before anything is made). With no_new_privs (the default) it goes on last.
  // The working directory is opened before an early filter (as runc enters it before it drops
  // credentials), so that a profile need not allow openat2; with no_new_privs after them.
  long cwdFd = kCwdNotOpen;
  if (!p.noNewPrivs) {
    cwdFd = OpenCwd(p);
    InstallSeccomp(ctx, p);
  }
  SetCredentials(ctx, p);
  // after the last credential change (which clears it): die with the parent thread
  if (p.pdeathsig > 0) {
    call(SYS_prctl, PR_SET_PDEATHSIG, p.pdeathsig, 0, 0, 0);
    // the parent holds the write end of "go" until it has seen exec; a hangup means it died
    // before PDEATHSIG was armed (getppid() says nothing inside a new pid namespace)
    struct pollfd pf{ctx->goFd, POLLIN, 0};
    struct timespec zero{0, 0};
    if (call(SYS_ppoll, &pf, 1, &zero, nullptr, 0) > 0 && (pf.revents & POLLHUP)) call(SYS_exit_group, 127);
  }
  // as root first when the filter went on early (above); again here as the program's user if
  // that found no way in (EACCES: a directory only that user may enter)
  if (cwdFd == kCwdNotOpen || cwdFd == -EACCES) cwdFd = OpenCwd(p);
  if (cwdFd == -ENOSYS) {
    if ((r = call(SYS_chdir, p.cwd)) < 0) DieSys(ctx, r, "cwd", "chdir", p.cwd);
  } else {
    if (cwdFd < 0) DieSys(ctx, cwdFd, "cwd", "openat2", p.cwd);
    r = call(SYS_fchdir, cwdFd);
    call(SYS_close, cwdFd);
    if (r < 0) DieSys(ctx, r, "cwd", "chdir", p.cwd);
  }
  if (p.noNewPrivs && (r = call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0) DieSys(ctx, r, "no_new_privs", "prctl");
  if (!loUp) RecvNetReady(ctx);
  if (ctx->restoreAffinity && (r = call(SYS_sched_setaffinity, 0, sizeof(cpu_set_t), ctx->affinity)) < 0) {
    DieSys(ctx, r, "affinity", "sched_setaffinity");
  }
  // the caller's extra fds on 3, 4, ... (never with nsbox-init: build.ts)
  const unsigned top = 3 + (unsigned)p.extraFds.size();
  if (top > 3) PlaceExtraFds(ctx, p);
  // every other fd closes at exec (the error pipe too, which is how the parent learns that
  // exec succeeded)
  r = call(SYS_close_range, top, ~0U, CLOSE_RANGE_CLOEXEC);
  if (r < 0) {
    // kernels before 5.11: mark them one by one
    for (int fd = (int)top; fd < 65536; fd++) call(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
  }
  // signals: dispositions were reset at entry; unblock now
  unsigned long none = 0;
  call(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
  if (p.umask >= 0) call(SYS_umask, p.umask);  // (nsbox's own WriteFile/Mknod ops are done by now)
  if (p.noNewPrivs) InstallSeccomp(ctx, p);
  TRACE(kTrExec);
  if (p.init) {
    // pid 1 is nsbox-init (from its sealed memfd); it forks the program (at once, or in serve
    // mode once the run arrives) and reports a failed exec on the error pipe, so that pipe
    // stays open across this exec. (Not the other way round, the program first and init after:
    // the program would then exist while pid 1 is not yet made undumpable by init, and could
    // reach pid 1's fds through /proc/1/fd in that moment.)
    if ((r = call(SYS_fcntl, ctx->errFd, F_SETFD, 0)) < 0) DieSys(ctx, r, "init", "fcntl");
    if ((r = call(SYS_fcntl, ctx->statusFd, F_SETFD, 0)) < 0) DieSys(ctx, r, "init", "fcntl");
    if (ctx->ctlFd >= 0 && (r = call(SYS_fcntl, ctx->ctlFd, F_SETFD, 0)) < 0) DieSys(ctx, r, "init", "fcntl");
    r = call(SYS_execveat, p.initFd, "", p.initArgv.data(), p.envp.data(), AT_EMPTY_PATH);
    call(SYS_fcntl, ctx->errFd, F_SETFD, FD_CLOEXEC);
    DieSys(ctx, r, "init", "execveat", "nsbox-init");
  }
  ExecProgram(ctx);
}

int Stage2Entry(void* arg) {
  ChildCtx* ctx = static_cast<ChildCtx*>(arg);
  ctx->stage1 = false;  // this is a copy of stage 1's memory
  Setup(ctx);
}

// Stage 1 of a spawn that joins namespaces: join while still holding the caller's
// privileges, create the new namespaces (a new user namespace last-but-owning the rest),
// get "go" once the parent has written the id maps, then fork the sandbox process as a
// sibling (CLONE_PARENT) so that a new pid namespace is owned by the new user namespace and
// the parent can wait for it. Reports the sandbox's pid and exits.
[[noreturn]] void Stage1(ChildCtx* ctx) {
  const Plan& p = *ctx->plan;
  long r;
  int netFirst = -1;
  if (p.netOwnerFirst) {
    // the network namespace belongs to the user namespace the sandbox's was made in (nsbox's
    // own, whose owner we are): entered from there, before the sandbox's user namespace, from
    // which it could not be. Where that cannot be done, the joins below go on as always
    for (const Join& j : p.joins) if (j.nstype == CLONE_NEWNET) netFirst = j.fd;
    long owner = netFirst < 0 ? -1 : call(SYS_ioctl, netFirst, NS_GET_USERNS);
    r = owner < 0 ? owner : call(SYS_setns, owner, CLONE_NEWUSER);
    if (owner >= 0) call(SYS_close, owner);
    if (r < 0) netFirst = -1;
    else if ((r = call(SYS_setns, netFirst, CLONE_NEWNET)) < 0) DieSys(ctx, r, "join", "setns", "net");
  }
  for (const Join& j : p.joins) {
    if (j.fd == netFirst && j.nstype == CLONE_NEWNET) continue;
    if ((r = call(SYS_setns, j.fd, j.nstype)) < 0) {
      const char* t = j.nstype == CLONE_NEWUSER ? "user" : j.nstype == CLONE_NEWNET ? "net" : j.nstype == CLONE_NEWNS ? "mnt"
                    : j.nstype == CLONE_NEWPID ? "pid" : j.nstype == CLONE_NEWUTS ? "uts" : j.nstype == CLONE_NEWIPC ? "ipc"
                    : j.nstype == CLONE_NEWCGROUP ? "cgroup" : "time";
      DieSys(ctx, r, "join", "setns", t);
    }
  }
  if (p.unshareFlags && (r = call(SYS_unshare, p.unshareFlags)) < 0) DieSys(ctx, r, "unshare", "unshare");
  // tell the parent that the user namespace exists: now it can write the id maps
  ChildMsg ready;
  ready.kind = 3;
  ready.pid = 0;
  call(SYS_write, ctx->errFd, &ready, sizeof ready);
  WaitGo(ctx);
  struct clone_args a{};
  a.flags = CLONE_PARENT | (p.newPidAtStage2 ? CLONE_NEWPID : 0);
  a.exit_signal = 0;
  long pid = nsbox_clone3(&a, sizeof a, Stage2Entry, ctx);
  if (pid == -ENOSYS) {
    // no clone3: clone(2) with no new stack (a copy of this one, as fork)
    pid = call(SYS_clone, a.flags, 0, nullptr, nullptr, 0);
    if (pid == 0) call(SYS_exit_group, Stage2Entry(ctx));
  }
  if (pid < 0) DieSys(ctx, pid, "clone", "clone3");
  ChildMsg m;
  m.kind = 2;
  m.pid = (int)pid;
  call(SYS_write, ctx->errFd, &m, sizeof m);
  call(SYS_exit_group, 0);
  __builtin_unreachable();
}

}  // namespace

int ChildMain(void* arg) {
  ChildCtx* ctx = static_cast<ChildCtx*>(arg);
  TRACE(kTrChildEntry);
  // handlers installed by Node must never run here: back to defaults (the mask, blocked by
  // the parent around clone, stays blocked until just before exec)
  KSigaction dfl{};
  for (int s = 1; s <= 64; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    call(SYS_rt_sigaction, s, &dfl, nullptr, sizeof(unsigned long));
  }
  for (int fd : ctx->closeFds) if (fd >= 0) call(SYS_close, fd);
  if (ctx->stage1) Stage1(ctx);
  WaitGo(ctx);
  TRACE(kTrChildGo);
  TRACE_CPU(kTrChildCpu);
  Setup(ctx);
}

int TemplateMain(void* arg) {
  TemplateBuild* b = static_cast<TemplateBuild*>(arg);
  ChildCtx ctx{};
  ctx.errFd = b->errFd;
  ctx.rootFd = -1;
  ctx.maskFd[0] = ctx.maskFd[1] = -1;
  // the namespace's fd and its mounts file are opened at the end through this directory: the
  // new root has no /proc
  b->ctx = &ctx;
  long self = call(SYS_openat, AT_FDCWD, "/proc/thread-self", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (self < 0) DieSys(&ctx, self, "template", "open", "/proc/thread-self");
  b->selfFd = (int)self;
  long r;
  // an unprivileged caller's template is made in nsbox's own user namespace (EnsureHolder)
  if (b->userFd >= 0 && (r = call(SYS_setns, b->userFd, CLONE_NEWUSER)) < 0) DieSys(&ctx, r, "template", "setns(CLONE_NEWUSER)");
  // ... with a network namespace of its own there, whose sysfs it may mount (the hidden one: the
  // host's, bound, would bring every mount below it into each copy). It lives as long as that
  // sysfs, i.e. the template
  r = call(SYS_unshare, CLONE_NEWNS | (b->userFd >= 0 ? CLONE_NEWNET : 0));
  if (r < 0) DieSys(&ctx, r, "template", "unshare(CLONE_NEWNS)");
  for (const Op& op : *b->ops) RunOp(&ctx, op);
  // the rootfs's fd of ops resolved in it (RootFd): in our caller's table too
  if (ctx.rootFd >= 0) { call(SYS_close, ctx.rootFd); ctx.rootFd = -1; }
  r = call(SYS_openat, (int)self, "ns/mnt", O_RDONLY | O_CLOEXEC);
  // the mounts file of the namespace we are in now: it polls POLLPRI once a mount of it is made
  // or goes (the kernel detaches one whose mount point was removed in another namespace, e.g.
  // a rootfs's /dev removed on the host); no mount is made in it after this
  long w = r < 0 ? -1 : call(SYS_openat, (int)self, "mounts", O_RDONLY | O_CLOEXEC);
  // CLONE_FILES: the directory's fd is in the caller's table, closed here (else one stays per template)
  call(SYS_close, self);
  b->selfFd = -1;
  if (r < 0) DieSys(&ctx, r, "template", "open", "ns/mnt");
  b->nsFd = (int)r;
  b->watchFd = w < 0 ? -1 : (int)w;
  call(SYS_exit, 0);
  return 0;
}

}  // namespace nsbox

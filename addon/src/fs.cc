// Filesystem layer: overlay mounts (new mount API with one `lowerdir+` per layer, and the
// mount(2) fallback with short relative links), safe path resolution inside a root
// (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), the primitives the layer importer needs
// to create entries through directory fds, and flock for the layer store.
//
// All of this runs on the Node main thread (never between clone and exec), so ordinary code is
// fine; kernel calls go through syscall(2) where glibc has no wrapper. Errors follow
// common.h: an Err is filled where the call fails and becomes an NsboxError at the edge.
#include "common.h"
#include "helpers.h"  // nsbox_clone3
#include "sys.h"

#include <dirent.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <string>
#include <vector>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif

namespace nsbox {
namespace {

constexpr unsigned long long kResolveSafe = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

int Openat2(int dirfd, const char* path, int flags, int mode, unsigned long long resolve) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? static_cast<unsigned long long>(mode) : 0;
  how.resolve = resolve;
  long r;
  do r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  while (r < 0 && errno == EAGAIN);  // RESOLVE_IN_ROOT may ask to retry after a racing rename
  return static_cast<int>(r);
}

// Reads what the kernel logged on an fs context fd ("e overlayfs: ...") into e->message.
void ReadFsLog(int fsfd, Err* e) {
  std::string all;
  char buf[512];
  for (int i = 0; i < 8; i++) {
    ssize_t n = read(fsfd, buf, sizeof buf - 1);
    if (n <= 0) break;
    buf[n] = 0;
    if (!all.empty()) all += "; ";
    all += buf;
  }
  if (!all.empty() && e) CopyStr(e->message, sizeof e->message, all.c_str());
}

std::string Str(const Napi::Value& v) { return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); }

// ---- a user namespace for idmapped mounts -------------------------------------------------
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef FSCONFIG_SET_FD
#define FSCONFIG_SET_FD 5
#endif
struct MountAttrArg { uint64_t attr_set, attr_clr, propagation, userns_fd; };

// Runs as a CLONE_VM|CLONE_FILES child in its new user namespace: waits until the parent has
// written the maps and opened the namespace (EOF on the pipe), then exits. It shares the fd
// table, so it holds the pipe's write end itself: were the parent killed meanwhile, no EOF
// would ever come and it would sleep forever (holding every fd of the dead process). So it
// dies with its parent (PDEATHSIG), or at once when the parent is already gone.
struct UserNsArg { int fd; long parent; };
int UserNsChild(void* arg) {
  const UserNsArg* u = static_cast<UserNsArg*>(arg);
  sys::call(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (sys::call(SYS_getppid) != u->parent) return 0;
  char c;
  while (sys::call(SYS_read, u->fd, &c, 1) == -EINTR) {}
  return 0;
}

// fsUserNs(uidMap, gidMap) -> fd of a new user namespace with these maps ("inside outside
// count" lines), for MOUNT_ATTR_IDMAP. The namespace outlives the short-lived child that made it.
Napi::Value FsUserNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string um = Str(info[0]), gm = Str(info[1]);
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "idmap", "pipe2");
  UniqueFd rd(pfd[0]), wr(pfd[1]);
  void* stack = mmap(nullptr, kHelperStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return ThrowErrno(env, errno, "idmap", "mmap");
  struct clone_args a{};
  a.flags = CLONE_VM | CLONE_FILES | CLONE_NEWUSER;
  a.exit_signal = 0;  // reaped below (__WALL): no SIGCHLD for Node
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = kHelperStackSize;
  UserNsArg rfd{rd.get(), static_cast<long>(getpid())};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = nsbox_clone3(&a, sizeof a, UserNsChild, &rfd);
  if (pid == -ENOSYS) {
    // no clone3 (before 5.3, or a seccomp profile that hides it): clone(2)
    int c = clone(UserNsChild, static_cast<char*>(stack) + kHelperStackSize, CLONE_VM | CLONE_FILES | CLONE_NEWUSER, &rfd);
    pid = c < 0 ? -errno : c;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) { munmap(stack, kHelperStackSize); return ThrowErrno(env, (int)-pid, "idmap", "clone3"); }
  Err e;
  int fd = -1;
  char path[64];
  auto writeMap = [&](const char* file, const std::string& text) {
    snprintf(path, sizeof path, "/proc/%ld/%s", pid, file);
    UniqueFd f(open(path, O_WRONLY | O_CLOEXEC));
    if (!f.valid() || write(f.get(), text.data(), text.size()) != (ssize_t)text.size()) return Fail(&e, errno ? errno : EIO, "idmap", "write", path);
    return 0;
  };
  if (writeMap("uid_map", um) == 0 && writeMap("gid_map", gm) == 0) {
    snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail(&e, errno, "idmap", "open", path);
  }
  wr.reset();  // the child's read ends: it exits
  siginfo_t si;
  while (sys::call(SYS_waitid, P_PID, pid, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  munmap(stack, kHelperStackSize);
  if (fd < 0) return ThrowErr(env, e);
  return Napi::Number::New(env, fd);
}

// ---- store operations inside the caller's user namespace ----------------------------------
// An unprivileged caller's layer store keeps the image's owners in the caller's subordinate
// range (as rootless podman's): uid 0 of the image is the caller, uid N its range's N-th id.
// The caller can neither chown to those ids nor remove what they own, so those steps run in a
// short-lived CLONE_VM|CLONE_FILES helper in a new user namespace whose maps newuidmap and
// newgidmap write (0 -> the caller, 1.. -> the range: a sandbox's own maps). There it is root
// with every capability over the files those maps cover. It shares our memory and fd table
// and runs with every signal blocked: child.cc's rules hold (raw system calls, no allocation).
struct LinuxDirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; };

enum SubidOpKind { kSubidChown = 0, kSubidRemove = 1 };
struct SubidOp {
  int kind;
  int dirfd;                 // chown: the layer root; remove: the parent directory
  const char* name;          // remove: the entry to remove (a whole tree)
  const uint8_t* entries;    // chown: records of uid, gid, mode (u32 each, ~0: none), length (u32), path, NUL
  size_t entriesLen;
};
struct SubidArg {
  int go;                    // read end: one byte = the maps are written; EOF = give up
  long parent;
  const SubidOp* ops;
  size_t nops;
  // the first failure (errno 0: none)
  int err = 0;
  long op = -1, entry = -1;
  const char* syscall = "";
};

long OpenInRoot(int root, const char* rel, int flags) {
  struct open_how how;
  char* p = reinterpret_cast<char*>(&how);
  for (size_t i = 0; i < sizeof how; i++) p[i] = 0;
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.resolve = kResolveSafe;
  long r;
  do r = sys::call(SYS_openat2, root, rel[0] ? rel : ".", &how, sizeof how);
  while (r == -EAGAIN);
  return r;
}

// Removes `name` under `dirfd` and everything below it (unlinkat never follows a symlink; a
// directory is opened O_NOFOLLOW). Listed again from the start until it is empty.
long RemoveTreeAt(int dirfd, const char* name, int depth, const char** sc) {
  long r = sys::call(SYS_unlinkat, dirfd, name, 0);
  if (r == 0 || r == -ENOENT) return 0;
  if (r != -EISDIR) { *sc = "unlinkat"; return r; }
  if (depth > 400) { *sc = "openat"; return -ELOOP; }
  long fd = sys::call(SYS_openat, dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) { *sc = "openat"; return fd; }
  alignas(8) char buf[1024];
  for (bool any = true; any;) {
    any = false;
    sys::call(SYS_lseek, fd, 0, SEEK_SET);
    long n;
    while ((n = sys::call(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
      for (long off = 0; off < n;) {
        const LinuxDirent64* d = reinterpret_cast<const LinuxDirent64*>(buf + off);
        off += d->reclen;
        if (d->name[0] == '.' && (d->name[1] == 0 || (d->name[1] == '.' && d->name[2] == 0))) continue;
        any = true;
        if ((r = RemoveTreeAt(static_cast<int>(fd), d->name, depth + 1, sc)) < 0) { sys::call(SYS_close, fd); return r; }
      }
    }
    if (n < 0) { *sc = "getdents64"; sys::call(SYS_close, fd); return n; }
  }
  sys::call(SYS_close, fd);
  r = sys::call(SYS_unlinkat, dirfd, name, AT_REMOVEDIR);
  if (r < 0 && r != -ENOENT) { *sc = "rmdir"; return r; }
  return 0;
}

int SubidChild(void* arg) {
  SubidArg* a = static_cast<SubidArg*>(arg);
  sys::call(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (sys::call(SYS_getppid) != a->parent) return 1;
  char c;
  long n;
  while ((n = sys::call(SYS_read, a->go, &c, 1)) == -EINTR) {}
  if (n != 1) return 1;  // the maps could not be written
  for (size_t i = 0; i < a->nops; i++) {
    const SubidOp& op = a->ops[i];
    if (op.kind == kSubidRemove) {
      const char* sc = "";
      long r = RemoveTreeAt(op.dirfd, op.name, 0, &sc);
      if (r < 0) { a->err = static_cast<int>(-r); a->op = static_cast<long>(i); a->syscall = sc; return 1; }
      continue;
    }
    size_t off = 0;
    for (long k = 0; off + 16 <= op.entriesLen; k++) {
      uint32_t v[4];
      const uint8_t* src = op.entries + off;
      uint8_t* dst = reinterpret_cast<uint8_t*>(v);
      for (int b = 0; b < 16; b++) dst[b] = src[b];
      const char* path = reinterpret_cast<const char*>(op.entries + off + 16);
      off += 16 + v[3] + 1;
      long fd = OpenInRoot(op.dirfd, path, O_PATH | O_NOFOLLOW);
      const char* sc = "openat2";
      long r = fd;
      if (fd >= 0) {
        sc = "fchownat";
        r = sys::call(SYS_fchownat, fd, "", v[0], v[1], AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        sys::call(SYS_close, fd);
      }
      if (r >= 0 && v[2] != 0xffffffffu) {
        // chown cleared the set-id bits: put the mode back (a regular file or a directory)
        sc = "fchmod";
        fd = OpenInRoot(op.dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        r = fd < 0 ? fd : sys::call(SYS_fchmod, fd, v[2]);
        if (fd >= 0) sys::call(SYS_close, fd);
      }
      if (r < 0) { a->err = static_cast<int>(-r); a->op = static_cast<long>(i); a->entry = k; a->syscall = sc; return 1; }
    }
  }
  return 0;
}

// fsSubidOps(newuidmap, uidMap, newgidmap, gidMap, ops) -> null, or { errno, op, entry,
// syscall } for the first operation that failed. ops: { kind: 'chown', root, entries: Buffer }
// (see SubidOp) or { kind: 'remove', dir, name }. Throws NsboxError when the namespace cannot
// be made or mapped (step 'store-userns', 'uid_map' or 'gid_map').
Napi::Value FsSubidOps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string uh = Str(info[0]), um = Str(info[1]), gh = Str(info[2]), gm = Str(info[3]);
  Napi::Array list = info[4].As<Napi::Array>();
  std::vector<SubidOp> ops(list.Length());
  std::vector<UniqueFd> fds;
  std::vector<std::string> names(list.Length());
  std::vector<Napi::Buffer<uint8_t>> bufs;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object o = list.Get(i).As<Napi::Object>();
    std::string kind = Str(o.Get("kind"));
    std::string dir = Str(o.Get(kind == "chown" ? "root" : "dir"));
    int fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ThrowErrno(env, errno, "store-userns", "open", dir.c_str());
    fds.emplace_back(fd);
    ops[i].dirfd = fd;
    if (kind == "chown") {
      Napi::Buffer<uint8_t> b = o.Get("entries").As<Napi::Buffer<uint8_t>>();
      bufs.push_back(b);
      ops[i].kind = kSubidChown;
      ops[i].entries = b.Data();
      ops[i].entriesLen = b.Length();
      ops[i].name = "";
    } else {
      names[i] = Str(o.Get("name"));
      ops[i].kind = kSubidRemove;
      ops[i].name = names[i].c_str();
      ops[i].entries = nullptr;
      ops[i].entriesLen = 0;
    }
  }
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "store-userns", "pipe2");
  UniqueFd rd(pfd[0]), wr(pfd[1]);
  // a stack of its own, big enough for RemoveTreeAt's depth (touched only as deep as it goes)
  constexpr size_t kStack = 2 << 20;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (stack == MAP_FAILED) return ThrowErrno(env, errno, "store-userns", "mmap");
  SubidArg arg;
  arg.go = rd.get();
  arg.parent = static_cast<long>(getpid());
  arg.ops = ops.data();
  arg.nops = ops.size();
  struct clone_args a{};
  a.flags = CLONE_VM | CLONE_FILES | CLONE_NEWUSER;
  a.exit_signal = 0;  // reaped below (__WALL): no SIGCHLD for Node
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = kStack;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = nsbox_clone3(&a, sizeof a, SubidChild, &arg);
  if (pid == -ENOSYS) {
    int c = clone(SubidChild, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_FILES | CLONE_NEWUSER, &arg);
    pid = c < 0 ? -errno : c;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) { munmap(stack, kStack); return ThrowErrno(env, (int)-pid, "store-userns", "clone3"); }
  Err e;
  int r = RunIdMapHelper(uh, static_cast<pid_t>(pid), um, &e, "uid_map");
  if (r == 0) r = RunIdMapHelper(gh, static_cast<pid_t>(pid), gm, &e, "gid_map");
  if (r == 0) {
    char go = 'g';
    while (write(wr.get(), &go, 1) < 0 && errno == EINTR) {}
  }
  wr.reset();
  siginfo_t si;
  while (sys::call(SYS_waitid, P_PID, pid, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  munmap(stack, kStack);
  if (r < 0) return ThrowErr(env, e);
  if (si.si_code != CLD_EXITED) return ThrowErrno(env, EINTR, "store-userns", "waitid");
  if (arg.err == 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("errno", arg.err);
  out.Set("op", Napi::Number::New(env, static_cast<double>(arg.op)));
  out.Set("entry", Napi::Number::New(env, static_cast<double>(arg.entry)));
  out.Set("syscall", arg.syscall);
  return out;
}

// fsSubidExec(newuidmap, uidMap, newgidmap, gidMap, file, argv, envp) -> { pidfd, out, err }:
// runs `file` as root of a new user namespace with those maps (a CLONE_VM helper that execs it
// once newuidmap/newgidmap wrote them: it starts with every capability there), stdin
// /dev/null, stdout and stderr pipes whose read ends are returned (with its pidfd, for
// watchExit). It has a copy of our fd table (no CLONE_FILES); every fd but 0-2 is close-on-exec
// or closed by execve's rules. It dies with this thread (PDEATHSIG).
struct SubidExecArg {
  int go, goWr;              // the go pipe (the child closes its copy of the write end)
  int execWr;                // close-on-exec: EOF at exec; else the child writes its errno
  long parent;
  int in, out, err;
  const char* file;
  char* const* argv;
  char* const* envp;
};
int SubidExecChild(void* arg) {
  SubidExecArg* a = static_cast<SubidExecArg*>(arg);
  sys::call(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  sys::call(SYS_close, a->goWr);
  if (sys::call(SYS_getppid) != a->parent) return 127;
  char c;
  long n;
  while ((n = sys::call(SYS_read, a->go, &c, 1)) == -EINTR) {}
  if (n != 1) return 127;
  long r = 0;
  if ((r = sys::call(SYS_dup3, a->in, 0, 0)) >= 0 && (r = sys::call(SYS_dup3, a->out, 1, 0)) >= 0 && (r = sys::call(SYS_dup3, a->err, 2, 0)) >= 0) {
    uint64_t none = 0;
    sys::call(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
    r = sys::call(SYS_execve, a->file, a->argv, a->envp);
  }
  int er = static_cast<int>(-r);
  sys::call(SYS_write, a->execWr, &er, sizeof er);
  return 127;
}

Napi::Value FsSubidExec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string uh = Str(info[0]), um = Str(info[1]), gh = Str(info[2]), gm = Str(info[3]), file = Str(info[4]);
  auto strings = [](const Napi::Value& v) {
    std::vector<std::string> out;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    return out;
  };
  std::vector<std::string> argvS = strings(info[5]), envS = strings(info[6]);
  std::vector<char*> argv, envp;
  for (std::string& x : argvS) argv.push_back(x.data());
  argv.push_back(nullptr);
  for (std::string& x : envS) envp.push_back(x.data());
  envp.push_back(nullptr);
  int gp[2], op[2], ep[2];
  if (pipe2(gp, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "store-userns", "pipe2");
  UniqueFd goRd(gp[0]), goWr(gp[1]);
  if (pipe2(op, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "store-userns", "pipe2");
  UniqueFd outRd(op[0]), outWr(op[1]);
  if (pipe2(ep, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "store-userns", "pipe2");
  UniqueFd errRd(ep[0]), errWr(ep[1]);
  int xp[2];
  if (pipe2(xp, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "store-userns", "pipe2");
  UniqueFd execRd(xp[0]), execWr(xp[1]);
  UniqueFd devNull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull.valid()) return ThrowErrno(env, errno, "store-userns", "open", "/dev/null");
  constexpr size_t kStack = 64 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return ThrowErrno(env, errno, "store-userns", "mmap");
  SubidExecArg arg{goRd.get(), goWr.get(), execWr.get(), static_cast<long>(getpid()), devNull.get(), outWr.get(), errWr.get(), file.c_str(), argv.data(), envp.data()};
  int pidfd = -1;
  struct clone_args a{};
  a.flags = CLONE_VM | CLONE_NEWUSER | CLONE_PIDFD;
  a.pidfd = (uint64_t)(uintptr_t)&pidfd;
  a.exit_signal = 0;  // reaped by watchExit (__WALL)
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = kStack;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = nsbox_clone3(&a, sizeof a, SubidExecChild, &arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) { munmap(stack, kStack); return ThrowErrno(env, (int)-pid, "store-userns", "clone3"); }
  UniqueFd pfd(pidfd);
  Err e;
  int r = RunIdMapHelper(uh, static_cast<pid_t>(pid), um, &e, "uid_map");
  if (r == 0) r = RunIdMapHelper(gh, static_cast<pid_t>(pid), gm, &e, "gid_map");
  if (r == 0) {
    char go = 'g';
    while (write(goWr.get(), &go, 1) < 0 && errno == EINTR) {}
  }
  goWr.reset();
  // the child shares our memory (its stack, argv, envp) until it execs or exits: wait for
  // that (EOF on the exec pipe: exec'd, or gone; a number: execve's errno) before anything
  // here goes away
  execWr.reset();
  outWr.reset();
  errWr.reset();
  int execErr = 0;
  ssize_t got;
  while ((got = read(execRd.get(), &execErr, sizeof execErr)) < 0 && errno == EINTR) {}
  munmap(stack, kStack);
  if (r < 0 || got == sizeof execErr) {
    siginfo_t si;
    while (sys::call(SYS_waitid, P_PIDFD, pfd.get(), &si, WEXITED | __WALL, nullptr) == -EINTR) {}
    if (r < 0) return ThrowErr(env, e);
    return ThrowErrno(env, execErr, "store-userns", "execve", file.c_str());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pidfd", pfd.release());
  out.Set("out", outRd.release());
  out.Set("err", errRd.release());
  return out;
}

// ---- overlay, new mount API -------------------------------------------------------------
// Whether this kernel's overlayfs still takes its options through the legacy fs_context
// (kernels before 6.5): every fsconfig key is accepted as text, unchecked, and only
// FSCONFIG_CMD_CREATE parses them, so `lowerdir+` is not refused where it is set but fails
// with a bare EINVAL at create. Told apart by a key no overlayfs knows, on a context of its
// own: the native parser refuses it at once. Asked once per process.
bool LegacyOverlayContext() {
  static int legacy = -1;
  if (legacy < 0) {
    UniqueFd fs(static_cast<int>(syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC)));
    if (!fs.valid()) return false;  // the caller's own fsopen reports why
    legacy = syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_FLAG, "nsbox-probe", nullptr, 0) == 0 ? 1 : 0;
  }
  return legacy == 1;
}

// opts: { lower: string[] (top first), upper?, work?, target, readonly?, userxattr?,
//         source?, params?: [key, value][], lowerdir?: string, idmapFd?: number }
// `lowerdir`: every layer in one `lowerdir=` string (escaped by the caller) instead of one
// `lowerdir+` per layer, for kernels without `lowerdir+`.
// Returns true on success, false when this kernel has no fsopen or cannot take `lowerdir+`
// (before 6.8; the caller retries with `lowerdir` or falls back to mount(2)); throws
// NsboxError for every other failure.
Napi::Value OverlayMountNew(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Array lower = o.Get("lower").As<Napi::Array>();
  std::string upper = Str(o.Get("upper")), work = Str(o.Get("work")), target = Str(o.Get("target"));
  std::string source = o.Has("source") ? Str(o.Get("source")) : "nsbox-overlay";
  bool readonly = o.Get("readonly").ToBoolean();
  bool userxattr = o.Get("userxattr").ToBoolean();
  const bool oneString = o.Has("lowerdir") && o.Get("lowerdir").IsString();
  const int idmapFd = o.Has("idmapFd") ? o.Get("idmapFd").As<Napi::Number>().Int32Value() : -1;
  Err e;
  UniqueFd fs(static_cast<int>(syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC)));
  if (!fs.valid()) {
    if (errno == ENOSYS) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, errno, "overlay", "fsopen", target.c_str());
  }
  if (!oneString && LegacyOverlayContext()) {
    // no lowerdir+ here (its per-layer fds neither): say so before anything is tried
    if (idmapFd >= 0) return ThrowErrno(env, EOPNOTSUPP, "overlay-idmap", "fsconfig", "lowerdir+");
    return Napi::Boolean::New(env, false);
  }
  auto set = [&](const char* key, const char* val) -> int {
    if (syscall(SYS_fsconfig, fs.get(), val ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, val, 0) < 0) return -errno;
    return 0;
  };
  int r = set("source", source.c_str());
  if (r < 0) { Fail(&e, -r, "overlay", "fsconfig", "source"); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
  // idmapFd >= 0: each layer goes in as an idmapped clone of its directory (the namespace's
  // maps shift its owners), by fd. A kernel or filesystem that cannot: EOPNOTSUPP at step
  // 'overlay-idmap', and the caller mounts without.
  std::vector<UniqueFd> layerFds;
  if (oneString) {
    std::string all = Str(o.Get("lowerdir"));
    if ((r = set("lowerdir", all.c_str())) < 0) { Fail(&e, -r, "overlay", "fsconfig", "lowerdir"); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
  }
  for (uint32_t i = 0; !oneString && i < lower.Length(); i++) {
    std::string p = Str(lower.Get(i));
    if (idmapFd >= 0) {
      UniqueFd t(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, p.c_str(), OPEN_TREE_CLONE | O_CLOEXEC)));
      if (!t.valid()) return ThrowErrno(env, errno == ENOSYS || errno == EINVAL ? EOPNOTSUPP : errno, "overlay-idmap", "open_tree", p.c_str());
      MountAttrArg attr{MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)idmapFd};
      if (syscall(SYS_mount_setattr, t.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        return ThrowErrno(env, errno == ENOSYS || errno == EINVAL ? EOPNOTSUPP : errno, "overlay-idmap", "mount_setattr", p.c_str());
      }
      if (syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_FD, "lowerdir+", nullptr, t.get()) < 0) {
        int er = errno;
        Fail(&e, er == EINVAL ? EOPNOTSUPP : er, "overlay-idmap", "fsconfig", p.c_str());
        ReadFsLog(fs.get(), &e);
        return ThrowErr(env, e);
      }
      layerFds.push_back(std::move(t));
      continue;
    }
    r = set("lowerdir+", p.c_str());
    if (r < 0) {
      // no lowerdir+ on this kernel: "unknown parameter" is EINVAL on the very first layer
      if (i == 0 && r == -EINVAL) {
        Err probe;
        ReadFsLog(fs.get(), &probe);
        if (strstr(probe.message, "nknown parameter") || strstr(probe.message, "lowerdir+")) return Napi::Boolean::New(env, false);
        CopyStr(e.message, sizeof e.message, probe.message);
        Fail(&e, -r, "overlay", "fsconfig", p.c_str());
        return ThrowErr(env, e);
      }
      Fail(&e, -r, "overlay", "fsconfig", p.c_str());
      ReadFsLog(fs.get(), &e);
      return ThrowErr(env, e);
    }
  }
  if (!upper.empty()) {
    if ((r = set("upperdir", upper.c_str())) < 0) { Fail(&e, -r, "overlay", "fsconfig", upper.c_str()); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
    if ((r = set("workdir", work.c_str())) < 0) { Fail(&e, -r, "overlay", "fsconfig", work.c_str()); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
  }
  if (userxattr && (r = set("userxattr", nullptr)) < 0) { Fail(&e, -r, "overlay", "fsconfig", "userxattr"); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
  if (o.Has("params")) {
    Napi::Array ps = o.Get("params").As<Napi::Array>();
    for (uint32_t i = 0; i < ps.Length(); i++) {
      Napi::Array kv = ps.Get(i).As<Napi::Array>();
      std::string k = Str(kv.Get(0u)), v = Str(kv.Get(1u));
      if ((r = set(k.c_str(), v.c_str())) < 0) { Fail(&e, -r, "overlay", "fsconfig", k.c_str()); ReadFsLog(fs.get(), &e); return ThrowErr(env, e); }
    }
  }
  if (syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    int er = errno;
    // idmapped layers the kernel took by fd but cannot stack: mount without
    if (idmapFd >= 0 && er == EINVAL) er = EOPNOTSUPP;
    Fail(&e, er, idmapFd >= 0 && er == EOPNOTSUPP ? "overlay-idmap" : "overlay", "fsconfig", target.c_str());
    ReadFsLog(fs.get(), &e);
    return ThrowErr(env, e);
  }
  unsigned attrs = MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0);
  if (o.Get("nosuid").ToBoolean()) attrs |= MOUNT_ATTR_NOSUID;
  UniqueFd mnt(static_cast<int>(syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, attrs)));
  if (!mnt.valid()) return ThrowErrno(env, errno, "overlay", "fsmount", target.c_str());
  // the target is opened first and the mount moved onto the fd: no second path walk
  UniqueFd t(Openat2(AT_FDCWD, target.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_NO_MAGICLINKS));
  if (!t.valid()) return ThrowErrno(env, errno, "overlay", "open", target.c_str());
  if (syscall(SYS_move_mount, mnt.get(), "", t.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
    return ThrowErrno(env, errno, "overlay", "move_mount", target.c_str());
  }
  return Napi::Boolean::New(env, true);
}

// ---- overlay, mount(2) fallback ------------------------------------------------------------
// (dir, data, target, flags, source?): mounts with relative layer paths resolved from `dir` (the
// overlay2 `l/` short links keep the option string under one page). The chdir happens in a
// vfork child (its own cwd: no CLONE_FS), so the Node process's cwd never changes.
Napi::Value OverlayMountLegacy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = Str(info[0]), data = Str(info[1]), target = Str(info[2]);
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  std::string source = info[4].IsString() ? Str(info[4]) : std::string("nsbox-overlay");
  if (data.size() >= static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    Err e;
    Fail(&e, E2BIG, "overlay", "mount", target.c_str());
    CopyStr(e.message, sizeof e.message, "the mount(2) option string is longer than a page: too many layers for the fallback");
    return ThrowErr(env, e);
  }
  volatile int childErr = 0;
  volatile int childStep = 0;
  const char* d = dir.c_str();
  const char* dt = data.c_str();
  const char* tg = target.c_str();
  const char* src = source.c_str();
  pid_t pid = vfork();
  if (pid == 0) {
    if (syscall(SYS_chdir, d) < 0) { childErr = errno; childStep = 1; _exit(1); }
    if (syscall(SYS_mount, src, tg, "overlay", flags, dt) < 0) { childErr = errno; childStep = 2; _exit(1); }
    _exit(0);
  }
  if (pid < 0) return ThrowErrno(env, errno, "overlay", "vfork", target.c_str());
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (childErr) return ThrowErrno(env, childErr, "overlay", childStep == 1 ? "chdir" : "mount", childStep == 1 ? dir.c_str() : target.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return ThrowErrno(env, EIO, "overlay", "mount", target.c_str());
  return env.Undefined();
}

// (target, detach?) umount2 with UMOUNT_NOFOLLOW.
Napi::Value Umount(const Napi::CallbackInfo& info) {
  std::string target = Str(info[0]);
  int flags = UMOUNT_NOFOLLOW | (info[1].ToBoolean() ? MNT_DETACH : 0);
  if (syscall(SYS_umount2, target.c_str(), flags) < 0) return ThrowErrno(info.Env(), errno, "umount", "umount2", target.c_str());
  return info.Env().Undefined();
}

// (source, target, fstype, flags, data) plain mount(2), for a container's tmpfs layer.
Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string src = Str(info[0]), target = Str(info[1]), type = Str(info[2]), data = Str(info[4]);
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  if (syscall(SYS_mount, src.c_str(), target.c_str(), type.c_str(), flags, data.empty() ? nullptr : data.c_str()) < 0) {
    return ThrowErrno(info.Env(), errno, "mount", "mount", target.c_str());
  }
  return info.Env().Undefined();
}

// ---- safe paths ------------------------------------------------------------------------------
// (dirfd, path, flags, mode, resolve) -> fd. resolve: RESOLVE_* bits (default: IN_ROOT|NO_MAGICLINKS).
Napi::Value Openat2Js(const Napi::CallbackInfo& info) {
  int dirfd = info[0].As<Napi::Number>().Int32Value();
  std::string path = Str(info[1]);
  int flags = info[2].As<Napi::Number>().Int32Value();
  int mode = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  unsigned long long resolve = info[4].IsNumber() ? static_cast<unsigned long long>(info[4].As<Napi::Number>().Int64Value()) : kResolveSafe;
  int fd = Openat2(dirfd, path.c_str(), flags, mode, resolve);
  if (fd < 0) return ThrowErrno(info.Env(), errno, info[5].IsString() ? Str(info[5]).c_str() : "resolve", "openat2", path.c_str());
  return Napi::Number::New(info.Env(), fd);
}

// Splits a normalised relative path ("a/b/c") into components.
std::vector<std::string> Components(const std::string& rel) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    if (j > i) out.push_back(rel.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Opens (creating missing directories, mode 0755, owned by the caller) the directory `rel`
// inside rootFd. Every prefix is resolved from the root with RESOLVE_IN_ROOT, so a symlink in
// the tree can never lead outside it.
int OpenDirIn(int rootFd, const std::vector<std::string>& comps, size_t n, bool create, Err* e, const char* step) {
  std::string prefix;
  UniqueFd cur(fcntl(rootFd, F_DUPFD_CLOEXEC, 0));
  if (!cur.valid()) return Fail(e, errno, step, "fcntl");
  for (size_t i = 0; i < n; i++) {
    if (!prefix.empty()) prefix += '/';
    prefix += comps[i];
    int fd = Openat2(rootFd, prefix.c_str(), O_PATH | O_DIRECTORY, 0, kResolveSafe);
    if (fd < 0 && errno == ENOENT && create) {
      if (mkdirat(cur.get(), comps[i].c_str(), 0755) < 0 && errno != EEXIST) return Fail(e, errno, step, "mkdirat", prefix.c_str());
      fd = Openat2(rootFd, prefix.c_str(), O_PATH | O_DIRECTORY, 0, kResolveSafe);
    }
    if (fd < 0) return Fail(e, errno, step, "openat2", prefix.c_str());
    cur.reset(fd);
  }
  return cur.release();
}

// (rootFd, rel, create) -> fd of the parent directory of `rel` (O_PATH), created if asked.
Napi::Value OpenParentIn(const Napi::CallbackInfo& info) {
  int rootFd = info[0].As<Napi::Number>().Int32Value();
  std::vector<std::string> c = Components(Str(info[1]));
  Err e;
  int fd = OpenDirIn(rootFd, c, c.empty() ? 0 : c.size() - 1, info[2].ToBoolean(), &e, "files");
  if (fd < 0) return ThrowErr(info.Env(), e);
  return Napi::Number::New(info.Env(), fd);
}

// Entry kinds of layerCreate, shared with lib/fs/native.ts.
enum Kind { kFile = 0, kDir = 1, kSymlink = 2, kHardlink = 3, kChar = 4, kBlock = 5, kFifo = 6, kWhiteout = 7, kOpaque = 8 };

// Removes `name` in `dirfd` (recursively for a directory) so an entry can replace it.
int RemoveAt(int dirfd, const char* name, int depth, Err* e) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return Fail(e, errno, "import", "unlinkat", name);
  if (depth > 256) return Fail(e, ELOOP, "import", "unlinkat", name);
  UniqueFd d(openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.valid()) return Fail(e, errno, "import", "openat", name);
  int dup = fcntl(d.get(), F_DUPFD_CLOEXEC, 0);
  DIR* dir = fdopendir(dup);
  if (!dir) { close(dup); return Fail(e, errno, "import", "fdopendir", name); }
  std::vector<std::string> names;
  while (struct dirent* de = readdir(dir)) {
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) names.push_back(de->d_name);
  }
  closedir(dir);
  for (auto& n : names) if (int r = RemoveAt(d.get(), n.c_str(), depth + 1, e); r < 0) return r;
  if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0) return Fail(e, errno, "import", "unlinkat", name);
  return 0;
}

// (rootFd, rel, kind, mode, uid, gid, link, major, minor, mtimeSec, opaqueXattr, data?)
// Creates one layer entry inside rootFd; returns an fd open for writing for regular files
// (or -1 when `data` was given: then the file is written and finished here), else -1. Parents are resolved with RESOLVE_IN_ROOT (created when missing); the final
// component is created with *at calls on the parent fd and never followed. A hardlink's
// target is resolved inside the root as well. Ownership and mode of a regular file are set
// by the caller once its data is written (chown clears set-id bits).
Napi::Value LayerCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int rootFd = info[0].As<Napi::Number>().Int32Value();
  std::string rel = Str(info[1]);
  int kind = info[2].As<Napi::Number>().Int32Value();
  mode_t mode = static_cast<mode_t>(info[3].As<Napi::Number>().Uint32Value()) & 07777;
  uid_t uid = info[4].As<Napi::Number>().Uint32Value();
  gid_t gid = info[5].As<Napi::Number>().Uint32Value();
  std::string link = Str(info[6]);
  unsigned maj = info[7].As<Napi::Number>().Uint32Value(), mnr = info[8].As<Napi::Number>().Uint32Value();
  double mtime = info[9].As<Napi::Number>().DoubleValue();
  std::string opaqueXattr = Str(info[10]);
  Err e;
  std::vector<std::string> c = Components(rel);
  if (kind == kOpaque) {
    // rel names the directory itself
    UniqueFd p(OpenDirIn(rootFd, c, c.size(), true, &e, "import"));
    if (!p.valid()) return ThrowErr(env, e);
    UniqueFd d(openat(p.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid()) return ThrowErrno(env, errno, "import", "openat", rel.c_str());
    if (fsetxattr(d.get(), opaqueXattr.c_str(), "y", 1, 0) < 0) return ThrowErrno(env, errno, "import", "fsetxattr", rel.c_str());
    return Napi::Number::New(env, -1);
  }
  if (c.empty()) {
    // the layer root itself (an entry "./"): take its mode and owner
    if (kind != kDir) return ThrowErrno(env, EINVAL, "import", "openat2", "/");
    if (fchownat(rootFd, "", uid, gid, AT_EMPTY_PATH) < 0) return ThrowErrno(env, errno, "import", "fchownat", rel.c_str());
    UniqueFd d(openat(rootFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.valid() && fchmod(d.get(), mode) < 0) return ThrowErrno(env, errno, "import", "fchmod", rel.c_str());
    return Napi::Number::New(env, -1);
  }
  UniqueFd parent(OpenDirIn(rootFd, c, c.size() - 1, true, &e, "import"));
  if (!parent.valid()) return ThrowErr(env, e);
  const char* name = c.back().c_str();
  struct stat st;
  bool exists = fstatat(parent.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && !(kind == kDir && S_ISDIR(st.st_mode))) {
    if (RemoveAt(parent.get(), name, 0, &e) < 0) return ThrowErr(env, e);
    exists = false;
  }
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(mtime);
  ts[0].tv_nsec = ts[1].tv_nsec = 0;
  switch (kind) {
    case kFile: {
      int fd = openat(parent.get(), name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return ThrowErrno(env, errno, "import", "openat", rel.c_str());
      if (!info[11].IsBuffer()) return Napi::Number::New(env, fd);
      // a small file whose data the caller already has: written, owned and closed here, in one call
      UniqueFd f(fd);
      Napi::Buffer<char> data = info[11].As<Napi::Buffer<char>>();
      for (size_t off = 0; off < data.Length();) {
        ssize_t n = write(f.get(), data.Data() + off, data.Length() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ThrowErrno(env, errno, "import", "write", rel.c_str());
        off += static_cast<size_t>(n);
      }
      if (fchown(f.get(), uid, gid) < 0) return ThrowErrno(env, errno, "import", "fchown", rel.c_str());
      if (fchmod(f.get(), mode) < 0) return ThrowErrno(env, errno, "import", "fchmod", rel.c_str());
      if (futimens(f.get(), ts) < 0) return ThrowErrno(env, errno, "import", "futimens", rel.c_str());
      return Napi::Number::New(env, -1);
    }
    case kDir: {
      if (!exists && mkdirat(parent.get(), name, 0700) < 0) return ThrowErrno(env, errno, "import", "mkdirat", rel.c_str());
      UniqueFd d(openat(parent.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!d.valid()) return ThrowErrno(env, errno, "import", "openat", rel.c_str());
      if (fchown(d.get(), uid, gid) < 0) return ThrowErrno(env, errno, "import", "fchown", rel.c_str());
      if (fchmod(d.get(), mode) < 0) return ThrowErrno(env, errno, "import", "fchmod", rel.c_str());
      return Napi::Number::New(env, -1);
    }
    case kSymlink:
      if (symlinkat(link.c_str(), parent.get(), name) < 0) return ThrowErrno(env, errno, "import", "symlinkat", rel.c_str());
      break;
    case kHardlink: {
      // the target is found inside the root (a "../../etc/passwd" stays in it) and must not be a directory
      UniqueFd t(Openat2(rootFd, link.c_str(), O_PATH | O_NOFOLLOW, 0, kResolveSafe));
      if (!t.valid()) return ThrowErrno(env, errno, "import", "openat2", link.c_str());
      if (linkat(t.get(), "", parent.get(), name, AT_EMPTY_PATH) < 0) return ThrowErrno(env, errno, "import", "linkat", rel.c_str());
      return Napi::Number::New(env, -1);  // shares the target's inode: no metadata of its own
    }
    case kChar: case kBlock: case kFifo: case kWhiteout: {
      mode_t type = kind == kBlock ? S_IFBLK : kind == kFifo ? S_IFIFO : S_IFCHR;
      dev_t dev = kind == kWhiteout ? makedev(0, 0) : makedev(maj, mnr);
      if (mknodat(parent.get(), name, type | (kind == kWhiteout ? 0 : mode), dev) < 0) return ThrowErrno(env, errno, "import", "mknodat", rel.c_str());
      break;
    }
    default:
      return ThrowErrno(env, EINVAL, "import", "layerCreate", rel.c_str());
  }
  if (fchownat(parent.get(), name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) return ThrowErrno(env, errno, "import", "fchownat", rel.c_str());
  if (kind != kSymlink && kind != kWhiteout && fchmodat(parent.get(), name, mode, 0) < 0) return ThrowErrno(env, errno, "import", "fchmodat", rel.c_str());
  if (utimensat(parent.get(), name, ts, AT_SYMLINK_NOFOLLOW) < 0) return ThrowErrno(env, errno, "import", "utimensat", rel.c_str());
  return Napi::Number::New(env, -1);
}

// (rootFd, rel, mtimeSec): sets a directory's times once its children exist.
Napi::Value SetTimesIn(const Napi::CallbackInfo& info) {
  int rootFd = info[0].As<Napi::Number>().Int32Value();
  std::string rel = Str(info[1]);
  double mtime = info[2].As<Napi::Number>().DoubleValue();
  std::vector<std::string> c = Components(rel);
  Err e;
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(mtime);
  ts[0].tv_nsec = ts[1].tv_nsec = 0;
  if (c.empty()) {
    if (utimensat(rootFd, "", ts, AT_EMPTY_PATH) < 0) return ThrowErrno(info.Env(), errno, "import", "utimensat", "/");
    return info.Env().Undefined();
  }
  UniqueFd parent(OpenDirIn(rootFd, c, c.size() - 1, false, &e, "import"));
  if (!parent.valid()) return ThrowErr(info.Env(), e);
  if (utimensat(parent.get(), c.back().c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0) return ThrowErrno(info.Env(), errno, "import", "utimensat", rel.c_str());
  return info.Env().Undefined();
}

// (parentFd, name, flags, mode) -> fd: openat on a directory fd, the last component never
// followed (O_NOFOLLOW is added).
Napi::Value OpenatJs(const Napi::CallbackInfo& info) {
  int dirfd = info[0].As<Napi::Number>().Int32Value();
  std::string name = Str(info[1]);
  int flags = info[2].As<Napi::Number>().Int32Value();
  int mode = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  int fd = openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return ThrowErrno(info.Env(), errno, info[4].IsString() ? Str(info[4]).c_str() : "files", "openat", name.c_str());
  return Napi::Number::New(info.Env(), fd);
}

// (fd, name) -> Buffer | null: an xattr of an open file (null when absent or unsupported).
Napi::Value Fgetxattr(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string name = Str(info[1]);
  char buf[4096];
  ssize_t n = fgetxattr(fd, name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return info.Env().Null();
    return ThrowErrno(info.Env(), errno, "changes", "fgetxattr", name.c_str());
  }
  return Napi::Buffer<char>::Copy(info.Env(), buf, static_cast<size_t>(n));
}

// (path, name) -> Buffer | null: an xattr of a path, not following a final symlink.
Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info[0]), name = Str(info[1]);
  char buf[4096];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return info.Env().Null();
    return ThrowErrno(info.Env(), errno, "changes", "lgetxattr", path.c_str());
  }
  return Napi::Buffer<char>::Copy(info.Env(), buf, static_cast<size_t>(n));
}

// (path, name, value) lsetxattr.
Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info[0]), name = Str(info[1]);
  Napi::Buffer<char> v = info[2].As<Napi::Buffer<char>>();
  if (lsetxattr(path.c_str(), name.c_str(), v.Data(), v.Length(), 0) < 0) return ThrowErrno(info.Env(), errno, "overlay", "lsetxattr", path.c_str());
  return info.Env().Undefined();
}

// (fd, exclusive, wait=false) -> true when locked, false when it would block.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = (info[1].ToBoolean() ? LOCK_EX : LOCK_SH) | (info[2].ToBoolean() ? 0 : LOCK_NB);
  if (info[1].IsNull()) op = LOCK_UN;
  while (flock(fd, op) < 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    return ThrowErrno(info.Env(), errno, "lock", "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// fsIdmapProbe(path, usernsFd) -> 0, or the errno with which an idmapped clone of path's
// mount was refused (the filesystem or the kernel cannot). The clone is never attached.
Napi::Value IdmapProbe(const Napi::CallbackInfo& info) {
  std::string path = Str(info[0]);
  int usernsFd = info[1].As<Napi::Number>().Int32Value();
  UniqueFd t(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | O_CLOEXEC)));
  if (!t.valid()) return Napi::Number::New(info.Env(), errno);
  MountAttrArg attr{MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)usernsFd};
  if (syscall(SYS_mount_setattr, t.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) return Napi::Number::New(info.Env(), errno);
  return Napi::Number::New(info.Env(), 0);
}

}  // namespace

void InitFs(Napi::Env env, Napi::Object exports) {
  exports.Set("fsIdmapProbe", Napi::Function::New(env, IdmapProbe, "fsIdmapProbe"));
  exports.Set("fsOverlayMount", Napi::Function::New(env, OverlayMountNew, "fsOverlayMount"));
  exports.Set("fsUserNs", Napi::Function::New(env, FsUserNs, "fsUserNs"));
  exports.Set("fsSubidOps", Napi::Function::New(env, FsSubidOps, "fsSubidOps"));
  exports.Set("fsSubidExec", Napi::Function::New(env, FsSubidExec, "fsSubidExec"));
  exports.Set("fsOverlayMountLegacy", Napi::Function::New(env, OverlayMountLegacy, "fsOverlayMountLegacy"));
  exports.Set("fsUmount", Napi::Function::New(env, Umount, "fsUmount"));
  exports.Set("fsMount", Napi::Function::New(env, Mount, "fsMount"));
  exports.Set("fsOpenat2", Napi::Function::New(env, Openat2Js, "fsOpenat2"));
  exports.Set("fsOpenParentIn", Napi::Function::New(env, OpenParentIn, "fsOpenParentIn"));
  exports.Set("fsOpenat", Napi::Function::New(env, OpenatJs, "fsOpenat"));
  exports.Set("fsLayerCreate", Napi::Function::New(env, LayerCreate, "fsLayerCreate"));
  exports.Set("fsSetTimesIn", Napi::Function::New(env, SetTimesIn, "fsSetTimesIn"));
  exports.Set("fsFgetxattr", Napi::Function::New(env, Fgetxattr, "fsFgetxattr"));
  exports.Set("fsLgetxattr", Napi::Function::New(env, Lgetxattr, "fsLgetxattr"));
  exports.Set("fsLsetxattr", Napi::Function::New(env, Lsetxattr, "fsLsetxattr"));
  exports.Set("fsFlock", Napi::Function::New(env, Flock, "fsFlock"));
}

}  // namespace nsbox

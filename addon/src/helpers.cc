// The CLONE_VM helpers of a spawn, the stacks they run on, and the parent-side code that
// starts and reaps them. What lives here and the rules it keeps: helpers.h. No N-API here:
// errors go back to spawn.cc as -errno (and an Err), which it throws.
#include "helpers.h"
#include "sys.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <algorithm>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x1
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif

// clone3 with a new stack: the child starts on `args->stack` and must not return into a C
// frame of the parent, so it calls fn(arg) and exits with its result.
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl nsbox_clone3\n"
    ".type nsbox_clone3,@function\n"
    "nsbox_clone3:\n"           // rdi=args rsi=size rdx=fn rcx=arg
    "  mov %rcx, %r8\n"          // syscall clobbers rcx and r11
    "  mov $435, %eax\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"         // child: outermost frame
    "  and $-16, %rsp\n"
    "  mov %r8, %rdi\n"
    "  call *%rdx\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n"          // exit (this thread only; fn normally never returns)
    "  syscall\n"
    "  hlt\n"
    "1: ret\n"
    ".size nsbox_clone3, .-nsbox_clone3\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl nsbox_clone3\n"
    ".type nsbox_clone3,%function\n"
    "nsbox_clone3:\n"           // x0=args x1=size x2=fn x3=arg
    "  mov x9, x2\n"
    "  mov x10, x3\n"
    "  mov x8, #435\n"
    "  svc #0\n"
    "  cbnz x0, 1f\n"
    "  mov x29, xzr\n"
    "  mov x30, xzr\n"
    "  mov x0, x10\n"
    "  blr x9\n"
    "  mov x8, #93\n"
    "  svc #0\n"
    "  brk #0\n"
    "1: ret\n"
    ".size nsbox_clone3, .-nsbox_clone3\n");
#endif

namespace nsbox {
namespace {

using sys::call;

// A helper's stack (kHelperStackSize, a guard page at its low end), made once into *slot.
void* MapHelperStack(void** slot) {
  if (!*slot) {
    void* s = mmap(nullptr, kHelperStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s != MAP_FAILED) { mprotect(s, 4096, PROT_NONE); *slot = s; }
  }
  return *slot;
}

// The calling spawner thread's stack for the helpers that run while it waits or one at a time
// (network maker, template builder, launcher)
void* HelperStack(SpawnStacks* st) { return MapHelperStack(&st->helper); }

// Starts `fn` as a helper of ours on `stack`: CLONE_VM plus `flags`, exit_signal 0 (reaped with
// __WALL, no SIGCHLD for Node to see), every signal blocked while it starts (it keeps the mask;
// runs only raw system calls). clone(2) where there is no clone3. Returns its pid or -errno.
long CloneHelper(void* stack, unsigned long long flags, int (*fn)(void*), void* arg) {
  struct clone_args a{};
  a.flags = CLONE_VM | flags;
  a.exit_signal = 0;
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = kHelperStackSize;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long hp = nsbox_clone3(&a, sizeof a, fn, arg);
  if (hp == -ENOSYS) {
    int r = clone(fn, (char*)stack + kHelperStackSize, (int)(CLONE_VM | flags), arg);
    hp = r < 0 ? -errno : r;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return hp;
}

}  // namespace

// One child stack per spawner thread, reused: a spawn returns only after its child has exec'd
// or died, so the stack is free again by then. Freed when the thread ends (FreeSpawnStacks).
void* ChildStack(SpawnStacks* st) {
  if (!st->child) {
    void* s = mmap(nullptr, kChildStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s == MAP_FAILED) return nullptr;
    mprotect(s, 4096, PROT_NONE);  // guard page
    st->child = s;
  }
  return st->child;
}

void FreeSpawnStacks(SpawnStacks* st) {
  if (st->child) munmap(st->child, kChildStackSize);
  if (st->helper) munmap(st->helper, kHelperStackSize);
  st->child = st->helper = nullptr;
}

// ---- the network namespace made beside the child (NetMaker, helpers.h) ----------------------

namespace {

// Tells the child on its network channel: the namespace's fd (SCM_RIGHTS), or the errno and
// step that failed.
long SendNetReady(int sock, int err, int which, int fd) {
  NetReadyMsg nm{err, which};
  struct iovec iov{&nm, sizeof nm};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    __builtin_memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  long r;
  do { r = call(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL); } while (r == -EINTR);
  return r < 0 ? r : 0;
}

// Runs as the helper (CLONE_VM, so only raw syscalls): makes the namespace and sends it.
int NetMakerMain(void* arg) {
  NetMaker* m = static_cast<NetMaker*>(arg);
  TRACE(kTrHelperEntry);
  if (m->avoidCpu >= 0) {
    // the CPUs the parent is not on: the child starts on the parent's, warm, once it waits
    cpu_set_t away = m->cpus;
    CPU_CLR(m->avoidCpu, &away);
    call(SYS_sched_setaffinity, 0, sizeof away, &away);
  }
  TRACE_CPU(kTrHelperCpu);
  auto done = [m](int err, int which, int fd) {
    long r = SendNetReady(m->sock, err, which, fd);
    m->sendErr = (int)-r;
    if (fd >= 0) call(SYS_close, fd);
    return 0;
  };
  long r;
  if (m->joinUser) {
    r = call(SYS_setns, m->pidfd, CLONE_NEWUSER);
    if (r == -EINVAL || r == -EBADF) {
      long fd = call(SYS_openat, AT_FDCWD, m->userNs, O_RDONLY | O_CLOEXEC);
      r = fd;
      if (fd >= 0) { r = call(SYS_setns, fd, CLONE_NEWUSER); call(SYS_close, fd); }
    }
    if (r < 0) return done((int)-r, kNetSetnsUser, -1);
  }
  TRACE(kTrNetUnshare);
  if ((r = call(SYS_unshare, CLONE_NEWNET)) < 0) return done((int)-r, kNetUnshare, -1);
  TRACE(kTrNetUnshared);
  r = call(SYS_openat, AT_FDCWD, "/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (r < 0) return done((int)-r, kNetOpen, -1);
  // the child goes on with it at once; lo comes up meanwhile (a second message, which the
  // child waits for before exec)
  done(0, 0, (int)r);
  TRACE(kTrNetSent);
  if (m->sendErr) return 0;
  r = sys::LoopbackUp();
  return done(r < 0 ? (int)-r : 0, kNetLoopback, -1);
}

}  // namespace

// Starts the helper that makes the network namespace beside the child (see NetMaker); it runs
// while we write the id maps and the child builds its view. Returns its pid, or -errno (then
// the child has been told why on its channel).
long StartNetMaker(SpawnStacks* st, NetMaker* m) {
  long hp = -ENOMEM;
  if (HelperStack(st)) {
    // CLONE_FILES: the helper sends on our end of the channel; reaped by FinishNetMaker
    TRACE(kTrHelperClone);
    TRACE_CPU(kTrParentCpu);
    hp = CloneHelper(st->helper, CLONE_FILES, NetMakerMain, m);
  }
  if (hp < 0) m->sendErr = (int)-SendNetReady(m->sock, (int)-hp, kNetClone, -1);
  return hp;
}

// Waits for the helper. Returns 0, or -errno when the child could not be told (the caller
// then kills it). EPIPE: the child is gone already, and its own report (or EOF) comes next.
int FinishNetMaker(long hp, const NetMaker& m) {
  if (hp > 0) {
    siginfo_t si;
    while (call(SYS_waitid, P_PID, hp, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
    TRACE(kTrHelperDone);
  }
  return m.sendErr > 0 && m.sendErr != EPIPE ? -m.sendErr : 0;
}

// ---- the spare network namespace -----------------------------------------------------------

// A spare network namespace, made ahead by a helper of ours while nothing waits for it, with
// lo up and a detached sysfs instance of it. Making one takes ~0.6 ms (the kernel's per-netns
// setup: sysctl tables, loopback, IPv6), the longest single step of a spawn. A spare belongs
// to our user namespace (an unprivileged caller's: to nsbox's own, EnsureHolder, where its
// sandboxes' user namespaces are made), not to the sandbox's, so the sandbox has no capability over it: only
// a sandbox that keeps no capabilities gets one (plan.netPremade), where nothing can tell the
// difference. It enters it at birth (the launcher joins it before clone3); its /sys is the
// detached sysfs, moved into place (it could not mount one itself).
//
// Up to kSpares are kept ready, made one at a time. Spawns back to back take one each while the
// next is made (a spare is started once a sandbox that used one has exited, and takes ~0.6 ms):
// with one kept, about half of them found it still being made and made their own netns on their
// path (the child waiting ~0.9 ms for it); with two, the one made during the previous spawn is
// there.
constexpr int kSpares = 2;
struct NetSpare {
  long helper = 0;           // the maker's pid while it runs (reaped with __WALL), else 0
  int netFd = -1, sysFd = -1;  // what the maker made, written by it (CLONE_VM); moved to ready once reaped
  int err = 0;
  int readyNet[kSpares] = {-1, -1}, readySys[kSpares] = {-1, -1};
  int ready = 0;             // readyNet/readySys [0, ready) hold spares
  void* stack = nullptr;     // kHelperStackSize
  int avoidCpu = -1;         // the CPU of the thread that started it: the maker moves off it
  cpu_set_t cpus;            // that thread's CPU set
  int userFd = -1;           // nsbox's own user namespace to make it in (EnsureHolder), or -1
};

namespace {

// Runs as the helper (CLONE_VM, so only raw syscalls): makes the spare and exits.
int SpareMain(void* arg) {
  NetSpare* s = static_cast<NetSpare*>(arg);
  if (s->avoidCpu >= 0) {
    cpu_set_t away = s->cpus;
    CPU_CLR(s->avoidCpu, &away);
    call(SYS_sched_setaffinity, 0, sizeof away, &away);
  }
  long r = 0, net = -1, fs = -1, mnt = -1;
  // an unprivileged caller's spare belongs to nsbox's own user namespace (EnsureHolder), like its
  // templates: entered first, with a mount namespace of its own there (fsmount wants one that
  // namespace owns; a copy of ours, whose sysfs is visible, as a new sysfs needs)
  if (s->userFd >= 0) r = call(SYS_setns, s->userFd, CLONE_NEWUSER);
  if (s->userFd >= 0 && r == 0) r = call(SYS_unshare, CLONE_NEWNS);
  if (r == 0) r = call(SYS_unshare, CLONE_NEWNET);
  if (r == 0) r = net = call(SYS_openat, AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (r >= 0) r = sys::LoopbackUp();
  if (r >= 0) r = fs = call(SYS_fsopen, "sysfs", FSOPEN_CLOEXEC);
  if (r >= 0) r = call(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", "sysfs", 0);
  if (r >= 0) r = call(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "ro", nullptr, 0);  // the superblock too
  if (r >= 0) r = call(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
  if (r >= 0) r = mnt = call(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0x1 | 0x2 | 0x4 | 0x8);  // MOUNT_ATTR_RDONLY|NOSUID|NODEV|NOEXEC
  if (fs >= 0) call(SYS_close, fs);
  if (r < 0) {
    if (net >= 0) call(SYS_close, net);
    s->err = (int)-r;
  } else {
    s->netFd = (int)net;
    s->sysFd = (int)mnt;
  }
  call(SYS_exit, 0);
  return 0;
}

// Reaps a maker that is done, and keeps what it made. Blocks only with `wait`.
void ReapSpare(NetSpare* s, bool wait) {
  if (!s || !s->helper) return;
  siginfo_t si{};
  long r;
  do { r = call(SYS_waitid, P_PID, s->helper, &si, WEXITED | __WALL | (wait ? 0 : WNOHANG), nullptr); } while (r == -EINTR);
  if (r == 0 && si.si_pid == 0) return;  // still at work
  s->helper = 0;
  if (s->netFd >= 0) {
    if (s->ready < kSpares) {
      s->readyNet[s->ready] = s->netFd;
      s->readySys[s->ready] = s->sysFd;
      s->ready++;
    } else {
      close(s->netFd);
      close(s->sysFd);
    }
  }
  s->netFd = s->sysFd = -1;
}

}  // namespace

// Starts making a spare unless kSpares are there or one is on its way.
void StartSpare(AddonData* d) {
  std::lock_guard<std::mutex> lock(d->viewMu);
  if (!d->spare) d->spare = new NetSpare();
  NetSpare* s = d->spare;
  ReapSpare(s, false);
  if (s->helper || s->ready >= kSpares) return;
  if (!MapHelperStack(&s->stack)) return;  // its own: it runs while others do
  s->err = 0;
  s->netFd = s->sysFd = -1;
  s->userFd = d->holderFd;
  int here = sched_getcpu();
  s->avoidCpu = sched_getaffinity(0, sizeof s->cpus, &s->cpus) == 0 && CPU_COUNT(&s->cpus) >= 2 && here >= 0 && CPU_ISSET(here, &s->cpus) ? here : -1;
  long hp = CloneHelper(s->stack, CLONE_FILES, SpareMain, s);
  s->helper = hp > 0 ? hp : 0;
}

// Takes a spare if one is ready (never waits for one being made).
bool TakeSpare(AddonData* d, int* netFd, int* sysFd) {
  std::lock_guard<std::mutex> lock(d->viewMu);
  NetSpare* s = d->spare;
  if (!s) return false;
  ReapSpare(s, false);
  if (s->ready == 0) return false;
  s->ready--;
  *netFd = s->readyNet[s->ready];
  *sysFd = s->readySys[s->ready];
  s->readyNet[s->ready] = s->readySys[s->ready] = -1;
  return true;
}

namespace {
// under d->viewMu
void DropSpare(AddonData* d) {
  NetSpare* s = d->spare;
  if (!s) return;
  ReapSpare(s, true);
  for (int i = 0; i < s->ready; i++) {
    close(s->readyNet[i]);
    close(s->readySys[i]);
    s->readyNet[i] = s->readySys[i] = -1;
  }
  s->ready = 0;
}

}  // namespace

void FreeSpare(AddonData* d) {
  std::lock_guard<std::mutex> lock(d->viewMu);
  if (!d->spare) return;
  DropSpare(d);
  if (d->spare->stack) munmap(d->spare->stack, kHelperStackSize);
  delete d->spare;
  d->spare = nullptr;
}

// ---- the launcher and the view templates ---------------------------------------------------

namespace {

// A sandbox child of a view template is made by a launcher: a CLONE_VM|CLONE_VFORK|CLONE_FILES
// helper of ours that enters the template's mount namespace and calls clone3 there with
// CLONE_PARENT, so the child is ours and its new mount namespace (created by clone3 with its
// new user namespace, which owns it) is a copy of the template, every mount in it locked.
// Nothing to unmount, no pivot: the child starts with the view's root as its own.
struct Launch {
  int templateFd;
  int netFd;     // a spare network namespace to be born in, or -1
  struct clone_args* args;
  ChildCtx* ctx;
  LaunchMaps* maps;  // an unprivileged caller's (EnsureHolder): entered, maps written; or null
  long pid;      // the child's, or -errno of clone3
  int setnsErr;  // errno of setns into the template (no child then)
};

// Writes `len` bytes of `data` to /proc/<pid>/<file> (through procFd): 0 or -errno.
long WriteProcFile(int procFd, long pid, const char* file, const char* data, size_t len) {
  char path[48];
  char digits[24];
  int n = 0, k = 0;
  do { digits[n++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0 && n < (int)sizeof digits);
  while (n > 0) path[k++] = digits[--n];
  path[k++] = '/';
  for (const char* c = file; *c && k < (int)sizeof path - 1; c++) path[k++] = *c;
  path[k] = 0;
  long fd = call(SYS_openat, procFd, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  long r;
  do { r = call(SYS_write, fd, data, len); } while (r == -EINTR);
  call(SYS_close, fd);
  return r < 0 ? r : (size_t)r == len ? 0 : -EIO;
}

// Runs as the helper (CLONE_VM, so only raw syscalls): enters the template, clones the child.
int LauncherMain(void* arg) {
  Launch* l = static_cast<Launch*>(arg);
  TRACE(kTrLaunchEntry);
  LaunchMaps* m = l->maps;
  // nsbox's own user namespace first: it owns the template and the spare, and the child's user
  // namespace is made in it, as its child
  long r = m ? call(SYS_setns, m->userFd, CLONE_NEWUSER) : 0;
  if (r == 0) r = call(SYS_setns, l->templateFd, CLONE_NEWNS);
  if (r == 0 && l->netFd >= 0) r = call(SYS_setns, l->netFd, CLONE_NEWNET);
  TRACE(kTrLaunchSetns);
  if (r < 0) {
    l->setnsErr = (int)-r;
  } else {
    l->pid = nsbox_clone3(l->args, sizeof *l->args, ChildMain, l->ctx);
    TRACE(kTrLaunchCloned);
    if (m && l->pid > 0) {
      // the child's id maps, by us: only a process of its parent user namespace (ours now) may
      // open them for writing. They map ids of that namespace, where the caller's own uid and
      // gid are themselves (EnsureHolder): the same lines as the caller would write
      r = 0;
      if (m->setgroupsDeny) { m->failedAt = "setgroups"; r = WriteProcFile(m->procFd, l->pid, "setgroups", "deny", 4); }
      if (r == 0) { m->failedAt = "uid_map"; r = WriteProcFile(m->procFd, l->pid, "uid_map", m->uidMap, m->uidLen); }
      if (r == 0) { m->failedAt = "gid_map"; r = WriteProcFile(m->procFd, l->pid, "gid_map", m->gidMap, m->gidLen); }
      m->err = (int)-r;
    }
  }
  call(SYS_exit, 0);
  return 0;
}

}  // namespace

// Returns the child's pid or -errno; *setnsErr is set when the template could not be entered.
long LaunchInTemplate(AddonData* d, SpawnStacks* st, int templateFd, int netFd, struct clone_args* args, ChildCtx* ctx, int* setnsErr, LaunchMaps* maps) {
  if (!HelperStack(st)) return -ENOMEM;
  UniqueFd holder;
  if (maps) {
    {
      // a copy: another spawner thread may drop the templates (and this) meanwhile
      std::lock_guard<std::mutex> lock(d->viewMu);
      if (d->holderFd < 0 || d->procFd < 0) return -EPROTO;  // EnsureTemplate made them
      holder.reset(fcntl(d->holderFd, F_DUPFD_CLOEXEC, 3));
    }
    if (holder.get() < 0) return -errno;
    maps->userFd = holder.get();
    maps->procFd = d->procFd;
    maps->err = 0;
    maps->failedAt = "uid_map";
  }
  Launch l{templateFd, netFd, args, ctx, maps, -EPROTO, 0};
  long hp = CloneHelper(st->helper, CLONE_VFORK | CLONE_FILES, LauncherMain, &l);
  TRACE(kTrLaunchBack);
  if (hp < 0) return hp;
  siginfo_t si;
  while (call(SYS_waitid, P_PID, hp, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  if (l.setnsErr) { *setnsErr = l.setnsErr; return -l.setnsErr; }
  return l.pid;
}

namespace {
// under d->viewMu
void DropTemplatesLocked(AddonData* d) {
  for (auto& t : d->templates) { close(t.nsFd); if (t.watchFd >= 0) close(t.watchFd); }
  d->templates.clear();
  DropSpare(d);
  // nsbox's own user namespace goes with what it held (made again by the next template)
  if (d->holderFd >= 0) { close(d->holderFd); d->holderFd = -1; }
}
}  // namespace

void DropTemplates(AddonData* d) {
  std::lock_guard<std::mutex> lock(d->viewMu);
  DropTemplatesLocked(d);
}

// ---- nsbox's own user namespace (an unprivileged caller's templates) -----------------------

// A mount namespace can be entered, and so copied for a sandbox, only with CAP_SYS_ADMIN over
// the user namespace that owns it. An unprivileged caller has that only over user namespaces
// it made: so its view templates (and spare network namespaces) are made in one of nsbox's,
// made here once per environment, and each sandbox's user namespace is made in it too, as its
// child (LaunchInTemplate), whose copy of the template is then locked as a root caller's is.
// It maps the caller's own uid and gid to themselves (setgroups denied, as in an unprivileged
// sandbox): the sandbox's maps keep their lines, and its ids are the caller's as before. A
// sandbox has no capability in it (it is the parent of the sandbox's), nor over what it owns;
// only the caller (its owner) and our helpers that enter it do. Its fd is ours only: closed by
// DropTemplates and with the environment, and then nothing of it lives on but the sandboxes
// made in it.
namespace {

// Runs as the helper (CLONE_VM, in the new user namespace): waits until the parent has written
// its maps and opened it (EOF on the pipe), then exits.
int HolderMain(void* arg) {
  int fd = *static_cast<int*>(arg);
  char c;
  while (call(SYS_read, fd, &c, 1) == -EINTR) {}
  call(SYS_exit, 0);
  return 0;
}

// under d->viewMu
int EnsureHolder(AddonData* d, SpawnStacks* st, Err* e) {
  if (d->procFd < 0) {
    d->procFd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d->procFd < 0) return Fail(e, errno, "template", "open", "/proc");
  }
  if (d->holderFd >= 0) return d->holderFd;
  if (!HelperStack(st)) return Fail(e, ENOMEM, "template", "mmap");
  int pp[2];
  if (pipe2(pp, O_CLOEXEC) < 0) return Fail(e, errno, "template", "pipe2");
  int readFd = pp[0];
  // CLONE_FILES: one table, so our close of the write end is the helper's EOF
  long hp = CloneHelper(st->helper, CLONE_NEWUSER | CLONE_FILES, HolderMain, &readFd);
  if (hp < 0) { close(pp[0]); close(pp[1]); return Fail(e, (int)-hp, "template", "clone3"); }
  char path[64], map[64];
  const char* step = "setgroups";
  int err = 0;
  for (int k = 0; k < 3 && !err; k++) {
    step = k == 0 ? "setgroups" : k == 1 ? "uid_map" : "gid_map";
    snprintf(path, sizeof path, "/proc/%ld/%s", hp, step);
    unsigned id = k == 1 ? geteuid() : getegid();
    int n = k == 0 ? snprintf(map, sizeof map, "deny") : snprintf(map, sizeof map, "%u %u 1\n", id, id);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t w = fd < 0 ? -1 : write(fd, map, (size_t)n);
    if (w != n) err = w < 0 ? errno : EIO;
    if (fd >= 0) close(fd);
  }
  if (!err) {
    step = "ns/user";
    snprintf(path, sizeof path, "/proc/%ld/ns/user", hp);
    d->holderFd = open(path, O_RDONLY | O_CLOEXEC);
    if (d->holderFd < 0) err = errno;
  }
  close(pp[1]);
  siginfo_t si;
  while (call(SYS_waitid, P_PID, hp, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  close(pp[0]);
  if (err) return Fail(e, err, "template", step);
  // spares made before it are not in it: a sandbox made in it could not enter them
  DropSpare(d);
  return d->holderFd;
}

}  // namespace

// The view template: a mount namespace holding the read-only part of a default view (root
// tmpfs, /usr and /etc, /dev, the masks' sources, hidden proc and sysfs instances that let a
// user namespace mount its own) or of a root caller's rootfs (the rootfs bound, and the same
// /dev, masks' sources and hidden instances), built once by running the ops of `plan.templateBuf` in a helper of
// ours. Sandboxes of that view start in a copy of it (LaunchInTemplate) instead of building
// the view each time.
// Kept by the ops' encoding (for a rootfs: its path and its directory's device and inode,
// lib/plan/view.ts); all are dropped when the host's mount table changes (their binds would no
// longer show what a fresh view would), one when a mount of its own went (its mount point
// removed on the host: the kernel detaches the mount in every namespace), and all by
// dropTemplates() (nsbox calls it when spawns stop for a while). Returns the namespace's fd,
// or -errno with `e` filled.
// One per view and id block in use: a root caller's sandboxes each have a block of their own
// (the lowest free one), so N sandboxes at once cycle through about N blocks. Fewer templates
// than that, and every spawn built one (at concurrency 16 with 8 kept: a build per spawn, half
// the throughput). The least recently used goes first.
constexpr size_t kMaxTemplates = 32;

namespace {
int EnsureTemplateLocked(AddonData* d, SpawnStacks* st, Plan& p, Err* e) {
  if (d->mountsFd < 0) d->mountsFd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
  if (d->mountsFd >= 0) {
    struct pollfd pf{d->mountsFd, POLLPRI, 0};
    if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLPRI | POLLERR))) DropTemplatesLocked(d);
  }
  for (auto it = d->templates.begin(); it != d->templates.end(); ++it) {
    if (it->key.size() != p.templateLen || std::memcmp(it->key.data(), p.templateBuf, p.templateLen) != 0) continue;
    // a mount of the template itself went since it was built (its mount point removed on the
    // host, which detaches it in every namespace): built again. Else it serves.
    struct pollfd tf{it->watchFd, POLLPRI, 0};
    if (it->watchFd < 0 || poll(&tf, 1, 0) == 0 || !(tf.revents & (POLLPRI | POLLERR))) {
      std::rotate(it, it + 1, d->templates.end());  // the most recently used last
      return d->templates.back().nsFd;
    }
    close(it->nsFd);
    close(it->watchFd);
    d->templates.erase(it);
    break;
  }
  std::vector<Op> ops;
  if (!DecodeTemplateOps(&p, &ops)) return Fail(e, EINVAL, "template", "decode");
  if (!HelperStack(st)) return Fail(e, ENOMEM, "template", "mmap");
  int userFd = -1;
  if (p.holder && (userFd = EnsureHolder(d, st, e)) < 0) return userFd;
  int ep[2];
  if (pipe2(ep, O_CLOEXEC | O_NONBLOCK) < 0) return Fail(e, errno, "template", "pipe2");
  TemplateBuild b{&ops, userFd, ep[1], -1, -1, -1, nullptr};
  // CLONE_VFORK: we sleep until it is done; CLONE_FILES: the namespace's fd lands in our table
  long hp = CloneHelper(st->helper, CLONE_VFORK | CLONE_FILES, TemplateMain, &b);
  if (hp > 0) {
    siginfo_t si;
    while (call(SYS_waitid, P_PID, hp, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  }
  ChildMsg m;
  ssize_t n = read(ep[0], &m, sizeof m);
  close(ep[0]);
  close(ep[1]);
  // what a builder that failed left in our table (its context is on the helper stack, still ours)
  if (b.selfFd >= 0) close(b.selfFd);
  if (hp > 0 && b.ctx && b.ctx->rootFd >= 0) close(b.ctx->rootFd);
  if (hp < 0) return Fail(e, (int)-hp, "template", "clone3");
  if (n == (ssize_t)sizeof m && m.kind == 1) {
    if (b.nsFd >= 0) close(b.nsFd);
    if (b.watchFd >= 0) close(b.watchFd);
    *e = m.err;
    CopyStr(e->step, sizeof e->step, "template");
    return -e->err;
  }
  if (b.nsFd < 0) return Fail(e, EPROTO, "template", "clone3");
  // one per view and id block in use (the template's root belongs to the block's root): the
  // least recently used goes first (kMaxTemplates)
  if (d->templates.size() >= kMaxTemplates) {
    close(d->templates.front().nsFd);
    if (d->templates.front().watchFd >= 0) close(d->templates.front().watchFd);
    d->templates.erase(d->templates.begin());
  }
  d->templates.push_back({std::string(reinterpret_cast<const char*>(p.templateBuf), p.templateLen), b.nsFd, b.watchFd});
  return b.nsFd;
}
}  // namespace

int EnsureTemplate(AddonData* d, SpawnStacks* st, Plan& p, Err* e) {
  std::lock_guard<std::mutex> lock(d->viewMu);
  int fd = EnsureTemplateLocked(d, st, p, e);
  if (fd < 0) return fd;
  // ours: another spawner thread may close the template's own fd (dropped, or the oldest of
  // kMaxTemplates) while this one launches into it
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return dup >= 0 ? dup : Fail(e, errno, "template", "fcntl");
}


// ---- sockets made inside another network namespace (NetnsSockets, helpers.h) ----------------

namespace {

// Runs as the helper (CLONE_VM, so only raw syscalls): enters the namespaces, makes the sockets.
int NetnsSocketsMain(void* arg) {
  NetnsSockets* s = static_cast<NetnsSockets*>(arg);
  auto fail = [s](long r, int at) {
    s->err = (int)-r;
    s->failedAt = at;
    for (int i = 0; i < s->n; i++) if (s->fds[i] >= 0) { call(SYS_close, s->fds[i]); s->fds[i] = -1; }
    return 0;
  };
  long r;
  if (s->userFd >= 0 && (r = call(SYS_setns, s->userFd, CLONE_NEWUSER)) < 0) return fail(r, 0);
  if ((r = call(SYS_setns, s->netFd, CLONE_NEWNET)) < 0) return fail(r, 1);
  for (int i = 0; i < s->n; i++) {
    long fd = call(SYS_socket, AF_INET, (s->tcp[i] ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(fd, 2 + i);
    s->fds[i] = (int)fd;
    int one = 1;
    if (s->tcp[i]) call(SYS_setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // the connections accepted on it are loopback ones inside the sandbox: no pacing or model
    // of a path there, only its cost (a host default of bbr paces each burst on a timer, and
    // the sandbox's reads get smaller); the host's upstream connections keep its default
    if (s->tcp[i]) call(SYS_setsockopt, fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
    struct sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = __builtin_bswap16(s->port[i]);
    a.sin_addr.s_addr = __builtin_bswap32(0x7f000001);
    if ((r = call(SYS_bind, fd, &a, sizeof a)) < 0) return fail(r, 2 + i);
    if (s->tcp[i] && (r = call(SYS_listen, fd, 4096)) < 0) return fail(r, 2 + i);
  }
  return 0;
}

}  // namespace

int MakeNetnsSockets(AddonData* d, NetnsSockets* s, Err* e) {
  if (s->n < 0 || s->n > kMaxNetnsSockets) return Fail(e, EINVAL, "egress", "socket");
  for (int i = 0; i < kMaxNetnsSockets; i++) s->fds[i] = -1;
  s->err = 0;
  s->failedAt = -1;
  // a stack of its own: this runs on the event loop, while the spawner thread (spawner.cc) may
  // be using their stacks for a spawn's helpers at the same moment
  if (!MapHelperStack(&d->socketsStack)) return Fail(e, ENOMEM, "egress", "mmap");
  // CLONE_VFORK: we sleep until it is done; CLONE_FILES: the sockets land in our table
  long hp = CloneHelper(d->socketsStack, CLONE_VFORK | CLONE_FILES, NetnsSocketsMain, s);
  if (hp < 0) return Fail(e, (int)-hp, "egress", "clone3");
  siginfo_t si;
  while (call(SYS_waitid, P_PID, hp, &si, WEXITED | __WALL, nullptr) == -EINTR) {}
  if (s->err) {
    const char* sc = s->failedAt == 0 ? "setns(CLONE_NEWUSER)" : s->failedAt == 1 ? "setns(CLONE_NEWNET)" : "bind";
    return Fail(e, s->err, "egress", sc);
  }
  return 0;
}

}  // namespace nsbox

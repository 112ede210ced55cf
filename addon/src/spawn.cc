// Parent side of a spawn: stdio, pipes, clone3 (CLONE_VM on a private stack), id maps and
// cgroup placement before "go", then wait for exec (EOF) or a reported failure. The CLONE_VM
// helpers it starts (network maker, spare maker, launcher, template builder) and the stacks
// they run on are in helpers.cc.
#include "fdpass.h"
#include "helpers.h"
#include "plan.h"
#include "spawner.h"
#include "sys.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <sys/wait.h>
#include <spawn.h>
#include <string>
#include <vector>
#include <net/if.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {

// newuidmap/newgidmap (setuid, from uidmap) write an unprivileged caller's subordinate range:
// `helper pid inside outside count...`, run from here while the child waits for "go". Its
// message (stderr) is dropped: the exit status fails the spawn at step uid_map/gid_map.
int RunIdMapHelper(const std::string& helper, pid_t pid, const std::string& map, Err* e, const char* step) {
  std::vector<std::string> words{helper, std::to_string(pid)};
  size_t i = 0;
  while (i < map.size()) {
    size_t j = map.find_first_of(" \n", i);
    if (j == std::string::npos) j = map.size();
    if (j > i) words.push_back(map.substr(i, j - i));
    i = j + 1;
  }
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  char* envp[] = {(char*)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
  pid_t h;
  int r = posix_spawn(&h, helper.c_str(), &fa, &at, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (r != 0) return Fail(e, r, step, "posix_spawn", helper.c_str());
  int st = 0;
  while (waitpid(h, &st, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return Fail(e, EPERM, step, helper.c_str() + helper.rfind('/') + 1, helper.c_str());
  return 0;
}

namespace {

using sys::call;

// Whether the kernel has mount_setattr (5.12). Without it a bind's restrictions are applied
// by remounting it, a file bind through its magic link in our /proc (Plan::procFd). Asked once.
bool HaveMountSetattr() {
  static const bool have = syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0) < 0 && errno != ENOSYS;
  return have;
}

// Test hook: NSBOX_TEST_NO_CLONE_INTO_CGROUP=1 in the environment when the addon loads makes a
// spawn into a cgroup take the path of kernels without CLONE_INTO_CGROUP (5.3 to 5.6): clone(2),
// then the pid written to cgroup.procs. Both are the real system calls; only the clone3 that
// would have worked is skipped. Read once, on the main thread.
bool NoCloneIntoCgroupForTests() {
  static const bool on = [] { const char* v = getenv("NSBOX_TEST_NO_CLONE_INTO_CGROUP"); return v && v[0] == '1'; }();
  return on;
}

// The network namespace can be made beside the child: a new one, with no hand-off (a veth
// moved in by pid before "go" needs it from the start). One CPU more is needed too (Spawn).
bool asyncNetOk(const Plan& p) { return !p.twoStage && (p.cloneFlags & CLONE_NEWNET) && p.net.empty(); }

int WriteFile(const char* path, const std::string& data, Err* e, const char* step) {
  UniqueFd fd(open(path, O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(e, errno, step, "open", path);
  ssize_t n = write(fd.get(), data.data(), data.size());
  if (n < 0) return Fail(e, errno, step, "write", path);
  if ((size_t)n != data.size()) return Fail(e, EIO, step, "write", path);
  return 0;
}

// Before "go": id maps for the child's new user namespace, then cgroup placement.
int ParentSteps(const Plan& p, pid_t pid, bool placedInCgroup, Err* e) {
  char path[64];
  if (!p.newUidMap.empty()) {
    if (int r = RunIdMapHelper(p.newUidMap, pid, p.uidMap, e, "uid_map"); r < 0) return r;
    if (int r = RunIdMapHelper(p.newGidMap, pid, p.gidMap, e, "gid_map"); r < 0) return r;
  } else if (!p.uidMap.empty() || !p.gidMap.empty()) {
    if (p.setgroupsDeny) {
      snprintf(path, sizeof path, "/proc/%d/setgroups", pid);
      if (int r = WriteFile(path, "deny", e, "gid_map"); r < 0) return r;
    }
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    if (int r = WriteFile(path, p.uidMap, e, "uid_map"); r < 0) return r;
    snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
    if (int r = WriteFile(path, p.gidMap, e, "gid_map"); r < 0) return r;
  }
  for (const NetHandoffSpec& n : p.net) {
    int r = n.hostName.empty() ? NetHandoff(n, pid, e) : NetHandoffCreate(n, n.hostName, n.master, pid, e);
    if (r < 0) return r;
  }
  if (!placedInCgroup && p.cgroupTaskFds.empty()) {
    std::string s = std::to_string(pid);
    for (const std::string& procs : p.cgroupProcs)
      if (int r = WriteFile(procs.c_str(), s, e, "cgroup"); r < 0) return r;
  }
  return 0;
}

// oom_score_adj (Plan::oomScoreAdj), written here, not in the child: CAP_SYS_RESOURCE (to
// lower it) counts only in the initial user namespace, where the caller may have it and the
// sandbox never does. The kernel gives the value to every process sharing the target's mm, so
// while the CLONE_VM child shares ours Node gets it too: Node's own value is kept when the
// first such spawn starts and put back when the last one in flight (worker threads may spawn
// at once) has seen its child exec (as VmChild does for the dumpable flag). Process-wide,
// as the value is. Two-stage children have an mm of their own; the restore is then a no-op.
// No CLONE_VM child of another spawn is in flight meanwhile (VmChild: it would take the value).
std::mutex oomMu;
int oomInFlight = 0;
std::string oomSaved;
int SetOomScoreAdj(const Plan& p, pid_t pid, bool* held, Err* e) {
  if (!p.setOomScoreAdj) return 0;
  {
    std::lock_guard<std::mutex> lock(oomMu);
    if (oomInFlight == 0) {
      char buf[16];
      UniqueFd self(open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC));
      ssize_t n = self.valid() ? read(self.get(), buf, sizeof buf - 1) : -1;
      if (n <= 0) return Fail(e, n < 0 ? errno : EIO, "oom_score_adj", "read", "/proc/self/oom_score_adj");
      oomSaved.assign(buf, (size_t)n);
    }
    oomInFlight++;
    *held = true;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/oom_score_adj", pid);
  int r = WriteFile(path, std::to_string(p.oomScoreAdj), e, "oom_score_adj");
  if (r == -EACCES) CopyStr(e->message, sizeof e->message, "lowering oom_score_adj below the floor this process inherited (the value last set with CAP_SYS_RESOURCE, usually 0) needs CAP_SYS_RESOURCE: give a higher oomScoreAdj, or run with CAP_SYS_RESOURCE");
  return r;
}
void RestoreOomScoreAdj(bool held) {
  if (!held) return;
  std::lock_guard<std::mutex> lock(oomMu);
  if (--oomInFlight > 0) return;
  Err ignored;
  WriteFile("/proc/self/oom_score_adj", oomSaved, &ignored, "oom_score_adj");
}

// Node's dumpable setting as it was when the addon loaded (process-wide, like the mm).
// A CLONE_VM child that changes its ids sets the mm's flag to fs.suid_dumpable; it is put back
// once no such child is in flight (spawner threads of this and other environments spawn at
// once): a child that has not exec'd yet shares Node's memory, and keeps the flag as its own
// uid change left it until then. Counted like the oom_score_adj above.
// A spawn that writes an oom_score_adj (SetOomScoreAdj) would give its value to every other
// CLONE_VM child in flight, which keeps it across its exec: such a spawn has its child alone
// (vmLock exclusive; the others hold it shared while theirs is in flight).
std::atomic<int> initialDumpable{-1};
std::shared_mutex vmLock;
std::mutex vmMu;
int vmInFlight = 0;  // under vmMu
struct VmChild {
  bool on = false, alone = false;
  void Begin(bool exclusive) {
    if (exclusive) vmLock.lock(); else vmLock.lock_shared();
    alone = exclusive;
    std::lock_guard<std::mutex> lock(vmMu);
    vmInFlight++;
    on = true;
  }
  // after the child has exec'd or died (or was never made), and its oom_score_adj is undone
  void End() {
    if (!on) return;
    on = false;
    {
      std::lock_guard<std::mutex> lock(vmMu);
      if (--vmInFlight == 0) {
        int d = initialDumpable.load();
        if (d >= 0 && prctl(PR_GET_DUMPABLE) != d) prctl(PR_SET_DUMPABLE, d);
      }
    }
    if (alone) vmLock.unlock(); else vmLock.unlock_shared();
  }
  ~VmChild() { End(); }
};

void Reap(int pidfd) {
  siginfo_t si;
  for (;;) {
    long r = call(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED | __WALL, nullptr);
    if (r != -EINTR) return;
  }
}

struct Fds {
  int parent[3] = {-1, -1, -1};   // our ends of stdio pipes
  int child[3] = {-1, -1, -1};    // what the child puts on 0..2
  bool ownChild[3] = {false, false, false};
  int go[2] = {-1, -1}, err[2] = {-1, -1};
  int status[2] = {-1, -1};       // nsbox-init's report of the program's wait status
  int ctl[2] = {-1, -1};          // serve: the run socket (ours, the child's)
  int net[2] = {-1, -1};          // asyncNet: the namespace's channel (the child's, ours)
  void CloseChildSide() {
    for (int i = 0; i < 3; i++) if (ownChild[i] && child[i] >= 0) { close(child[i]); child[i] = -1; }
    if (go[0] >= 0) { close(go[0]); go[0] = -1; }
    if (err[1] >= 0) { close(err[1]); err[1] = -1; }
    if (status[1] >= 0) { close(status[1]); status[1] = -1; }
    if (ctl[1] >= 0) { close(ctl[1]); ctl[1] = -1; }
    if (net[0] >= 0) { close(net[0]); net[0] = -1; }
  }
  void CloseAll() {
    CloseChildSide();
    for (int& f : parent) if (f >= 0) { close(f); f = -1; }
    for (int* f : {&go[1], &err[0], &status[0], &ctl[0], &net[1]}) if (*f >= 0) { close(*f); *f = -1; }
  }
};

int MakeStdio(const Plan& p, Fds* f, Err* e) {
  for (int i = 0; i < 3; i++) {
    switch (p.stdioKind[i]) {
      case StdioKind::kPipe: {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Fail(e, errno, "stdio", "socketpair");
        f->parent[i] = sv[0];
        f->child[i] = sv[1];
        f->ownChild[i] = true;
        // one direction each, as a pipe would be
        shutdown(sv[1], i == 0 ? SHUT_WR : SHUT_RD);
        break;
      }
      case StdioKind::kInherit: f->child[i] = i; break;
      case StdioKind::kIgnore: {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0) return Fail(e, errno, "stdio", "open", "/dev/null");
        f->child[i] = fd;
        f->ownChild[i] = true;
        break;
      }
      case StdioKind::kFd: f->child[i] = p.stdioFd[i]; break;
      case StdioKind::kSameAsOut:
        // only fd 2, after fd 1 (the loop's order); our end stays fd 1's
        if (i != 2 || p.stdioKind[1] != StdioKind::kPipe) return Fail(e, EINVAL, "stdio", "socketpair");
        f->child[i] = f->child[1];
        break;
    }
  }
  return 0;
}

// kAttach ops (lib/plan/view.ts): the tree at op.a (its source) cloned here, by the caller, before clone:
// the sandbox's root (an unprivileged host id) may not be able to reach it (a rootfs or image
// store in a 0700 directory). The copy is made private (it is a peer of nothing on the host)
// (or a slave: op.flags MS_SLAVE) and restricted here; the child only moves it into place. Returns the fd or -1 with `e` set.
int AttachTree(Op& op, Err* e) {
  constexpr unsigned kOpenTreeClone = 1, kAtRecursive = 0x8000, kAtEmptyPath = 0x1000;
  UniqueFd t((int)syscall(SYS_open_tree, AT_FDCWD, op.a, kOpenTreeClone | O_CLOEXEC | (op.recursive ? kAtRecursive : 0)));
  if (!t.valid()) { Fail(e, errno, "bind", "open_tree", op.a); return -1; }
  struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } a{};
  if (op.readonly) a.attr_set |= 0x1;          // MOUNT_ATTR_RDONLY
  if (op.flags & MS_NOSUID) a.attr_set |= 0x2;  // MOUNT_ATTR_NOSUID
  if (op.flags & MS_NODEV) a.attr_set |= 0x4;   // MOUNT_ATTR_NODEV
  if (op.flags & MS_NOEXEC) a.attr_set |= 0x8;  // MOUNT_ATTR_NOEXEC
  // a peer of nothing; a slave of the host's mount when the root's propagation is 'slave'
  a.propagation = (op.flags & MS_SLAVE) ? MS_SLAVE : MS_PRIVATE;
  if (syscall(SYS_mount_setattr, t.get(), "", kAtEmptyPath | (op.recursive ? kAtRecursive : 0), &a, sizeof a) < 0) {
    // before 5.12: the child restricts it once attached (BindIn's late path)
    if (errno == ENOSYS) { op.mode = kAttachLate; return t.release(); }
    Fail(e, errno, "bind", "mount_setattr", op.a);
    return -1;
  }
  return t.release();
}

// What a spawn made: the fds are ours (the caller's once handed over).
struct SpawnResult {
  int mntNsFd = -1, pid = -1, pidfd = -1, statusFd = -1, ttyFd = -1, ctlFd = -1;
  int stdio[3] = {-1, -1, -1};
};

// The blocking part of a spawn, from the attached trees to the child's exec: no N-API, so it
// runs on the environment's spawner thread (spawner.cc) while the event loop goes on. `plan`
// was decoded on the loop (DecodePlan), nsbox-init's memfd opened there too (plan.initFd).
// Fills `out`, or returns -errno with `e` filled; on failure nothing it made is left.
int SpawnCore(AddonData* d, SpawnStacks* st, Plan& plan, SpawnResult* out, Err& e) {
  std::vector<UniqueFd> attachFds;  // the child has its own copies; ours close on return
  for (Op& op : plan.ops) {
    if (op.kind != OpKind::kAttach) continue;
    int fd = AttachTree(op, &e);
    if (fd < 0) return -e.err;
    attachFds.emplace_back(fd);
    op.fd = fd;
  }
  // the mount namespace is a copy of the view template (LaunchInTemplate): only for a sandbox
  // with user, mount and pid namespaces of its own, so that its copy is locked
  const bool templ = plan.templateLen > 0 && !plan.twoStage &&
                     (plan.cloneFlags & (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID)) == (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID);
  UniqueFd templateFd;  // a duplicate: ours until the launch is done
  if (templ) {
    int fd = EnsureTemplate(d, st, plan, &e);
    if (fd < 0) return -e.err;
    templateFd.reset(fd);
  }
  Fds f;
  if (MakeStdio(plan, &f, &e) < 0) { f.CloseAll(); return -e.err; }
  TRACE(kTrStdio);
  if (pipe2(f.go, O_CLOEXEC) < 0 || pipe2(f.err, O_CLOEXEC) < 0) {
    int er = errno;
    f.CloseAll();
    return Fail(&e, er, "clone", "pipe2");
  }
  if (plan.init) {
    // pid 1 runs nsbox-init, which forks the program: argv tells it where to report a failed
    // exec (the error pipe, kept open across this one exec) and which paths to try
    if (pipe2(f.status, O_CLOEXEC | O_NONBLOCK) < 0) { int er = errno; f.CloseAll(); return Fail(&e, er, "init", "pipe2"); }
    plan.initArgv.push_back("nsbox-init");
    plan.initArgv.push_back(plan.Keep(std::to_string(f.err[1])));
    plan.initArgv.push_back(plan.Keep(std::to_string(f.status[1])));
    plan.initArgv.push_back(plan.tty ? "1" : "0");  // the program takes fd 0 as its terminal
    if (plan.serve) {
      // prepared: no program yet; it comes later as one message on this socket (ServeRun)
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f.ctl) < 0) { int er = errno; f.CloseAll(); return Fail(&e, er, "init", "socketpair"); }
      plan.initArgv.push_back("0");
      plan.initArgv.push_back(plan.Keep(std::to_string(f.ctl[1])));
      plan.initArgv.push_back(nullptr);
    } else {
      size_t n = plan.exec.size() - 1;  // without the terminating null
      plan.initArgv.push_back(plan.Keep(std::to_string(n)));
      for (size_t i = 0; i < n; i++) plan.initArgv.push_back(plan.exec[i]);
      for (const char* a : plan.argv) plan.initArgv.push_back(a);  // includes the null
    }
  }
  // cgroup v1: the child moves itself by writing "0" to each hierarchy's `tasks` file (opened
  // here, so the kernel checks our credentials). A single thread moving itself skips the
  // global threadgroup rwsem that a write of another pid to cgroup.procs takes, and that
  // waits for an RCU grace period (10-20 ms here) on every spaced-out spawn.
  std::vector<UniqueFd> taskFds;
  if (plan.cgroupFd < 0) {
    for (const std::string& tasks : plan.cgroupTasks) {
      UniqueFd fd(open(tasks.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.valid()) { taskFds.clear(); break; }  // cannot: the parent writes the pid to cgroupProcs
      taskFds.push_back(std::move(fd));
    }
    for (const UniqueFd& fd : taskFds) plan.cgroupTaskFds.push_back(fd.get());
  }
  UniqueFd procFd;
  if (plan.timeOffsets || !HaveMountSetattr()) {
    procFd.reset(open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
    plan.procFd = procFd.get();
  }
  void* stack = ChildStack(st);
  if (!stack) { f.CloseAll(); return Fail(&e, ENOMEM, "clone", "mmap"); }

  ChildCtx ctx{};
  ctx.plan = &plan;
  ctx.goFd = f.go[0];
  ctx.errFd = f.err[1];
  ctx.closeFds[0] = f.go[1];
  ctx.closeFds[1] = f.err[0];
  for (int i = 0; i < 3; i++) ctx.stdio[i] = f.child[i];
  ctx.stage1 = plan.twoStage;
  ctx.rootFd = -1;
  ctx.statusFd = f.status[1];
  ctx.ownMm = plan.twoStage;
  ctx.ctlFd = f.ctl[1];

  // the network namespace is made beside the child (NetMaker) unless a hand-off (a veth
  // moved in by pid before "go") needs it to exist from the start, or there is one CPU only
  // (nothing to gain: the two would take turns). It reaches the child on a channel of its own.
  // a spare network namespace, made ahead: see NetSpare
  int spareNet = -1, spareSys = -1;
  const bool wantSpare = templ && plan.netPremade && (plan.cloneFlags & CLONE_NEWNET) && plan.net.empty();
  if (wantSpare && TakeSpare(d, &spareNet, &spareSys)) {
    plan.cloneFlags &= ~(unsigned long long)CLONE_NEWNET;
    ctx.netPremade = true;
  }
  ctx.sysfsFd = spareSys;
  NetMaker nm{};
  const bool asyncNet = asyncNetOk(plan) && sched_getaffinity(0, sizeof nm.cpus, &nm.cpus) == 0 && CPU_COUNT(&nm.cpus) >= 2;
  if (asyncNet && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f.net) < 0) {
    int er = errno;
    f.CloseAll();
    return Fail(&e, er, "network", "socketpair");
  }
  ctx.asyncNet = asyncNet;
  ctx.inTemplate = templ;
  ctx.freshTmpfs = nullptr;
  ctx.maskFd[0] = ctx.maskFd[1] = -1;
  ctx.netFd = f.net[0];
  ctx.closeFds[2] = f.net[1];
  if (asyncNet) plan.cloneFlags &= ~(unsigned long long)CLONE_NEWNET;

  int pidfd = -1;
  struct clone_args args{};
  args.flags = CLONE_PIDFD | plan.cloneFlags | (plan.twoStage ? 0 : CLONE_VM);
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;
  args.stack = (uint64_t)(uintptr_t)stack;
  args.stack_size = kChildStackSize;
  bool intoCgroup = plan.cgroupFd >= 0;
  if (intoCgroup) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)plan.cgroupFd;
  }

  VmChild vm;  // a child sharing our mm: counted until it has exec'd
  if (!plan.twoStage) vm.Begin(plan.setOomScoreAdj);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  TRACE(kTrClone);
  long pid;
  int launchErr = 0;
  int holderMapErr = 0;
  const char* holderMapFile = nullptr;
  if (templ) {
    // made by a launcher standing in the template's mount namespace, as our child
    // (CLONE_PARENT, which wants exit_signal 0: reaped with __WALL). No clone(2) fallback:
    // the planner uses templates only where clone3 is there (viewTemplates). (Pinning us to
    // our CPU for the launch, so that launcher and child start there, was tried: slower.)
    args.flags |= CLONE_PARENT;
    args.exit_signal = 0;
    // an unprivileged caller's: in nsbox's own user namespace, whose launcher writes the maps
    LaunchMaps maps{plan.uidMap.data(), plan.uidMap.size(), plan.gidMap.data(), plan.gidMap.size(), plan.setgroupsDeny, -1, -1, 0, nullptr};
    pid = LaunchInTemplate(d, st, templateFd.get(), spareNet, &args, &ctx, &launchErr, plan.holder ? &maps : nullptr);
    if (plan.holder && pid > 0) {
      if (maps.err) holderMapErr = maps.err, holderMapFile = maps.failedAt;
      plan.uidMap.clear();  // written: ParentSteps has none left to write
      plan.gidMap.clear();
    }
  } else if (intoCgroup && NoCloneIntoCgroupForTests()) {
    pid = -E2BIG;  // what kernels 5.3 to 5.6 answer: their clone_args end before `cgroup`
  } else {
    pid = nsbox_clone3(&args, sizeof args, ChildMain, &ctx);
  }
  if (!templ && (pid == -ENOSYS || ((pid == -EINVAL || pid == -E2BIG) && intoCgroup))) {
    // no clone3 (or no CLONE_INTO_CGROUP: EINVAL for the unknown flag, E2BIG for the unknown
    // `cgroup` field on 5.3 to 5.6): clone(2), and the cgroup is joined by pid below
    intoCgroup = false;
    unsigned long fl = (unsigned long)(CLONE_PIDFD | plan.cloneFlags | (plan.twoStage ? 0 : CLONE_VM) | SIGCHLD);
    int r = clone(ChildMain, (char*)stack + kChildStackSize, (int)fl, &ctx, &pidfd);
    pid = r < 0 ? -errno : r;
  }
  TRACE(kTrCloned);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  f.CloseChildSide();
  // the child has its own copies
  templateFd.reset();
  if (spareNet >= 0) close(spareNet);
  if (spareSys >= 0) close(spareSys);
  if (pid < 0) {
    f.CloseAll();
    if (launchErr) return Fail(&e, launchErr, "template", "setns");
    // no clone3 for the launcher (hidden by a seccomp profile): step 'template', so that the
    // caller turns templates off and spawns with the whole view
    return Fail(&e, (int)-pid, templ && pid == -ENOSYS ? "template" : "clone", "clone3");
  }

  // the helper starts now, on another CPU, and works while we write the maps
  long helper = 0;
  char userNs[64];
  if (asyncNet) {
    snprintf(userNs, sizeof userNs, "/proc/%d/ns/user", (int)pid);
    nm.pidfd = pidfd;
    nm.sock = f.net[1];
    nm.userNs = userNs;
    nm.joinUser = plan.cloneFlags & CLONE_NEWUSER;
    int here = sched_getcpu();
    nm.avoidCpu = here >= 0 && CPU_ISSET(here, &nm.cpus) ? here : -1;
    nm.sendErr = -1;
    helper = StartNetMaker(st, &nm);
    if (nm.avoidCpu >= 0) {
      // and the child (asleep until "go", wherever it was made) wakes up here; it takes back
      // the caller's CPU set before exec
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(here, &one);
      if (sched_setaffinity((pid_t)pid, sizeof one, &one) == 0) ctx.restoreAffinity = true;
      ctx.affinity = &nm.cpus;
    }
  }
  bool failed = false;
  bool oomHeld = false;  // SetOomScoreAdj counted this spawn in: RestoreOomScoreAdj after exec
  if (plan.twoStage) {
    // stage 1 joins and unshares first; its id maps can only be written after that
    ChildMsg m;
    ssize_t n;
    while ((n = read(f.err[0], &m, sizeof m)) < 0 && errno == EINTR) {}
    if (n != (ssize_t)sizeof m) { failed = true; Fail(&e, EPROTO, "handshake", "read"); }
    else if (m.kind == 1) { failed = true; e = m.err; }
  }
  if (!failed && holderMapErr) {
    // step 'template': the caller turns templates off and spawns with the whole view
    failed = true;
    Fail(&e, holderMapErr, "template", "write", holderMapFile);
  }
  if (failed) {
    call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  } else if (ParentSteps(plan, (pid_t)pid, intoCgroup, &e) < 0 || SetOomScoreAdj(plan, (pid_t)pid, &oomHeld, &e) < 0) {
    failed = true;
    call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  } else {
    TRACE(kTrGo);
    char g = 'g';
    while (write(f.go[1], &g, 1) < 0 && errno == EINTR) {}
  }
  // Two at work on two CPUs: the helper went to another CPU, and the child, woken by "go",
  // has ours (warm) once we sleep here. Left to the scheduler the two often shared a CPU
  // while the other idled: a task that ran in the last 0.5 ms counts as cache-hot and is not
  // moved.
  if (asyncNet) {
    if (int r = FinishNetMaker(helper, nm); r < 0 && !failed) {
      failed = true;
      Fail(&e, -r, "network", "sendmsg");
      call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    }
    close(f.net[1]);
    f.net[1] = -1;
  }
  int ttyMaster = -1;
  // Wait for exec (EOF) or a failure report. Stage 1 of a two-stage spawn reports the pid
  // of the real sandbox process first, then exits.
  for (;;) {
    ChildMsg m;
    ssize_t n = read(f.err[0], &m, sizeof m);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (n != (ssize_t)sizeof m) { if (!failed) { failed = true; Fail(&e, EPROTO, "handshake", "read"); } break; }
    if (m.kind == 4 && !failed) {
      // the terminal's master, open in the child: take a copy, then let it go on
      long fd = call(SYS_pidfd_getfd, pidfd, m.pid, 0);
      if (fd < 0) { failed = true; Fail(&e, (int)-fd, "tty", "pidfd_getfd"); call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0); continue; }
      fcntl((int)fd, F_SETFD, FD_CLOEXEC);
      if (!plan.consoleSocket.empty()) {
        // OCI --console-socket: the master goes to its new owner before the program runs
        int r = SendConsole(plan.consoleSocket.c_str(), (int)fd, &e);
        close((int)fd);
        if (r < 0) { failed = true; call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0); continue; }
      } else {
        ttyMaster = (int)fd;
      }
      char g = 'g';
      while (write(f.go[1], &g, 1) < 0 && errno == EINTR) {}
      continue;
    }
    if (m.kind == 2) {
      int fd2 = (int)call(SYS_pidfd_open, m.pid, 0);
      Reap(pidfd);
      close(pidfd);
      pidfd = fd2;
      pid = m.pid;
      if (fd2 < 0) { failed = true; Fail(&e, -fd2, "clone", "pidfd_open"); break; }
    } else if (!failed) {
      failed = true;
      e = m.err;
    }
  }
  TRACE(kTrExecSeen);
  close(f.go[1]); f.go[1] = -1;
  close(f.err[0]); f.err[0] = -1;
  // The CLONE_VM child shared our mm until exec (or death, seen as EOF above); its uid change
  // set the mm's dumpable flag to fs.suid_dumpable. Node's is put back (as it was at load)
  // once no other such child is in flight (vm.End, after the oom_score_adj, which it may have
  // to itself; on failure once the child is reaped).
  RestoreOomScoreAdj(oomHeld);
  if (failed && ttyMaster >= 0) { close(ttyMaster); ttyMaster = -1; }
  if (failed) {
    if (pidfd >= 0) {
      call(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
      Reap(pidfd);
      close(pidfd);
    }
    f.CloseAll();
    return -(e.err ? e.err : EPROTO);
  }
  vm.End();
  // Hold the sandbox's mount namespace: when its last process exits, the kernel would tear it
  // down inside that exit (an RCU grace period, ~0.3 ms here) before it reports the exit.
  // With this fd open the exit is reported at once; nsbox closes the fd afterwards off the
  // event loop, where the teardown happens instead.
  int mntNs = -1;
  if (((plan.cloneFlags | plan.unshareFlags) & CLONE_NEWNS) || templ) {
    char nsPath[64];
    snprintf(nsPath, sizeof nsPath, "/proc/%d/ns/mnt", (int)pid);
    mntNs = open(nsPath, O_RDONLY | O_CLOEXEC);
  }
  out->mntNsFd = mntNs;
  out->pid = (int)pid;
  out->pidfd = pidfd;
  out->statusFd = f.status[0];
  out->ttyFd = ttyMaster;
  out->ctlFd = f.ctl[0];
  f.ctl[0] = -1;
  f.status[0] = -1;
  for (int i = 0; i < 3; i++) out->stdio[i] = f.parent[i];
  TRACE(kTrSpawnReturn);
  return 0;
}

// A spawn for the spawner thread: decoded here, made there, handed to `cb` here.
struct SpawnTask : SpawnerTask {
  Plan plan;
  SpawnResult out;
  Err e;
  int rc = 0;
  napi_ref cb = nullptr;
  napi_async_context async = nullptr;
  napi_env env = nullptr;

  void Run(AddonData* d, SpawnStacks* st) override { rc = SpawnCore(d, st, plan, &out, e); }

  // cb(err, null) or cb(null, { pid, pidfd, ... })
  void Done(napi_env raw) override {
    Napi::Env env(raw);
    napi_value fn = nullptr;
    napi_value argv[2];
    if (rc < 0) {
      argv[0] = MakeError(env, e);
      argv[1] = env.Null();
    } else {
      Napi::Object o = Napi::Object::New(env);
      o.Set("mntNsFd", out.mntNsFd);
      o.Set("pid", (double)out.pid);
      o.Set("pidfd", out.pidfd);
      o.Set("statusFd", out.statusFd);
      o.Set("ttyFd", out.ttyFd);
      o.Set("ctlFd", out.ctlFd);
      Napi::Array stdio = Napi::Array::New(env, 3);
      for (uint32_t i = 0; i < 3; i++) stdio.Set(i, out.stdio[i]);
      o.Set("stdio", stdio);
      argv[0] = env.Null();
      argv[1] = o;
    }
    if (napi_get_reference_value(raw, cb, &fn) == napi_ok && fn) CallJs(raw, async, fn, 2, argv);
    Release();
  }

  // the environment is going away: a sandbox JS never saw is killed, reaped and closed
  void Drop() override {
    if (!ran || rc < 0) return;
    if (out.pidfd >= 0) {
      call(SYS_pidfd_send_signal, out.pidfd, SIGKILL, nullptr, 0);
      Reap(out.pidfd);
    }
    for (int fd : {out.pidfd, out.mntNsFd, out.statusFd, out.ttyFd, out.ctlFd, out.stdio[0], out.stdio[1], out.stdio[2]})
      if (fd >= 0) close(fd);
  }

  void Release() {
    if (cb) napi_delete_reference(env, cb);
    if (async) napi_async_destroy(env, async);
    cb = nullptr;
    async = nullptr;
  }
};

// spawn(plan, ops?, template?, cb, bindings?): the plan (and the bindings beside it) is read here, on the loop (mistakes throw at
// once); the rest runs on the spawner thread, and cb(err, out) follows on the loop.
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!info[0].IsObject() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "spawn(plan, ops, template, cb): plan must be an object and cb a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#ifdef NSBOX_TRACE
  std::memset(g_trace, 0, sizeof g_trace);  // a phase this spawn does not have shows as none
#endif
  TRACE(kTrSpawnEntry);
  auto* t = new SpawnTask();
  Plan& plan = t->plan;
  if (!DecodePlan(env, info[0].As<Napi::Object>(), &plan, info[1], info[2], info[4])) { delete t; return env.Undefined(); }
  // the template's encoding points into the caller's buffer: the plan keeps a copy
  if (plan.templateLen > 0) plan.templateBuf = reinterpret_cast<const uint8_t*>(plan.Keep(std::string(reinterpret_cast<const char*>(plan.templateBuf), plan.templateLen)));
  TRACE(kTrPlanDecoded);
  if (plan.init) {
    // nsbox-init's sealed memfd, made once (here: the environment's state is the loop's)
    Err e;
    int ifd = InitProgramFd(env, &e);
    if (ifd < 0) { delete t; return ThrowErr(env, e); }
    plan.initFd = ifd;
  }
  t->env = env;
  napi_create_reference(env, info[3], 1, &t->cb);
  napi_value name;
  napi_create_string_utf8(env, "nsbox:spawn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, nullptr, name, &t->async);
  SpawnerSubmit(env, d, t);
  return env.Undefined();
}

#ifdef NSBOX_TRACE
// trace(): { points: { name: ns }, ops: [ns after each op] } of the last spawn
Napi::Value Trace(const Napi::CallbackInfo& info) {
  static const char* const names[] = {"spawnEntry", "planDecoded", "clone", "cloned", "go", "execSeen", "spawnReturn", "exitSeen", "childEntry", "childGo", "opsStart", "opsEnd", "exec", "netWait", "netJoined", "helperClone", "helperEntry", "netUnshare", "netUnshared", "netSent", "helperDone", "childCpu", "helperCpu", "parentCpu", "stdio", "launchEntry", "launchSetns", "launchCloned", "launchBack"};
  Napi::Env env = info.Env();
  Napi::Object points = Napi::Object::New(env);
  for (int i = 0; i < kTrCount; i++) points.Set(names[i], (double)g_trace[i]);
  Napi::Array ops = Napi::Array::New(env, 80);
  for (uint32_t i = 0; i < 80; i++) ops.Set(i, (double)g_traceOps[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("points", points);
  out.Set("ops", ops);
  return out;
}
#endif

// pidfdSignal(pidfd, sig, initKill?): with initKill, asks nsbox-init to end the sandbox
// (kInitKillSignal queued with kInitKillValue; `sig` is ignored). Returns 0 or a positive errno.
Napi::Value PidfdSignal(const Napi::CallbackInfo& info) {
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int sig = info[1].As<Napi::Number>().Int32Value();
  long r;
  if (info.Length() > 2 && info[2].ToBoolean()) {
    siginfo_t si{};
    si.si_signo = kInitKillSignal;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = kInitKillValue;
    r = call(SYS_pidfd_send_signal, pidfd, kInitKillSignal, &si, 0);
  } else {
    r = call(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
  }
  return Napi::Number::New(info.Env(), r < 0 ? (double)-r : 0);
}

// serveRun(ctlFd, { cwd, exec, argv, envp, stdio: [{kind, fd}] x3 }): starts the program of a
// prepared sandbox (nsbox-init in serve mode): stdio made as for a spawn, one message with
// the strings and four fds (this run's error pipe, stdin, stdout, stderr). Returns at once
// with { stdio: [our ends], errFd }: errFd (non-blocking) is the read end of the error pipe,
// which ends (EOF) once the program has exec'd, or brings one failure report first (a
// ChildMsg: childError() makes it an NsboxError). The caller waits for that on the event
// loop and owns every fd returned. Takes ownership of nothing given.
Napi::Value ServeRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ctl = info[0].As<Napi::Number>().Int32Value();
  Napi::Object o = info[1].As<Napi::Object>();
  Plan p;  // only stdio is used
  Napi::Array st = o.Get("stdio").As<Napi::Array>();
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Object x = st.Get(i).As<Napi::Object>();
    p.stdioKind[i] = (StdioKind)x.Get("kind").As<Napi::Number>().Int32Value();
    p.stdioFd[i] = x.Get("fd").As<Napi::Number>().Int32Value();
  }
  std::string req(16, '\0');  // counts, then kind 0: a run (addon/init/init.cc)
  auto strings = [&](const char* key) -> uint32_t {
    Napi::Array a = o.Get(key).As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) { req += a.Get(i).As<Napi::String>().Utf8Value(); req.push_back('\0'); }
    return a.Length();
  };
  req += o.Get("cwd").As<Napi::String>().Utf8Value();
  req.push_back('\0');
  uint32_t counts[3];
  counts[0] = strings("exec");
  counts[1] = strings("argv");
  counts[2] = strings("envp");
  std::memcpy(req.data(), counts, sizeof counts);
  Err e;
  Fds f;
  if (MakeStdio(p, &f, &e) < 0) { f.CloseAll(); return ThrowErr(env, e); }
  if (pipe2(f.err, O_CLOEXEC) < 0) { int er = errno; f.CloseAll(); return ThrowErrno(env, er, "run", "pipe2"); }
  int fds[4] = {f.err[1], f.child[0], f.child[1], f.child[2]};
  struct iovec iov{req.data(), req.size()};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)] = {};
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  ssize_t n;
  while ((n = sendmsg(ctl, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  int sendErr = n < 0 ? errno : 0;
  f.CloseChildSide();
  if (sendErr) { f.CloseAll(); return ThrowErrno(env, sendErr, "run", "sendmsg"); }
  fcntl(f.err[0], F_SETFL, O_NONBLOCK);
  Napi::Object out = Napi::Object::New(env);
  Napi::Array stdio = Napi::Array::New(env, 3);
  for (uint32_t i = 0; i < 3; i++) stdio.Set(i, f.parent[i]);
  out.Set("stdio", stdio);
  out.Set("errFd", f.err[0]);
  return out;
}

// childError(buf): the NsboxError of a failure report (a ChildMsg, as read from an error pipe),
// or null when `buf` holds none.
Napi::Value ChildError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) return env.Null();
  Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
  ChildMsg m;
  if (b.Length() < sizeof m) {
    Err e;
    Fail(&e, EPROTO, "run", "read");
    return MakeError(env, e);
  }
  std::memcpy(&m, b.Data(), sizeof m);
  if (m.kind != 1) return env.Null();
  m.err.step[sizeof m.err.step - 1] = m.err.syscall[sizeof m.err.syscall - 1] = 0;
  m.err.path[sizeof m.err.path - 1] = m.err.message[sizeof m.err.message - 1] = 0;
  return MakeError(env, m.err);
}

// ttyResize(masterFd, rows, cols): the terminal's size (the program gets SIGWINCH).
Napi::Value TtyResize(const Napi::CallbackInfo& info) {
  struct winsize ws{};
  int fd = info[0].As<Napi::Number>().Int32Value();
  ws.ws_row = (unsigned short)info[1].As<Napi::Number>().Uint32Value();
  ws.ws_col = (unsigned short)info[2].As<Napi::Number>().Uint32Value();
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0) return ThrowErrno(info.Env(), errno, "tty", "ioctl(TIOCSWINSZ)");
  return info.Env().Undefined();
}

// Closes an fd on a libuv worker thread: the last reference to a namespace tears it down there
// (an RCU grace period), off the event loop. Node's fs.close would do the same but warns in a
// worker thread about an fd it did not open.
class CloseWorker : public Napi::AsyncWorker {
 public:
  CloseWorker(Napi::Env env, int fd) : Napi::AsyncWorker(env), fd_(fd) {}
  void Execute() override { close(fd_); }
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status == napi_cancelled) close(fd_);  // the thread ended before the pool ran it
    if (status != napi_cancelled && !CanRunJs(env)) { Destroy(); return; }
    Napi::AsyncWorker::OnWorkComplete(env, status);
  }
 private:
  int fd_;
};

// closeFd(fd, later?): closes fd now, or with `later` on the thread pool.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (info.Length() > 1 && info[1].ToBoolean()) (new CloseWorker(info.Env(), fd))->Queue();
  else close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitSpawn(Napi::Env env, Napi::Object exports) {
  int expected = -1;
  initialDumpable.compare_exchange_strong(expected, prctl(PR_GET_DUMPABLE));
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  NoCloneIntoCgroupForTests();  // read here, on the main thread
  exports.Set("startSpare", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    OnSpawner(info.Env(), info.Env().GetInstanceData<AddonData>(), StartSpare);
    return info.Env().Undefined();
  }, "startSpare"));
  exports.Set("dropTemplates", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    OnSpawner(info.Env(), info.Env().GetInstanceData<AddonData>(), DropTemplates);
    return info.Env().Undefined();
  }, "dropTemplates"));
  exports.Set("pidfdSignal", Napi::Function::New(env, PidfdSignal, "pidfdSignal"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("ttyResize", Napi::Function::New(env, TtyResize, "ttyResize"));
#ifdef NSBOX_TRACE
  exports.Set("trace", Napi::Function::New(env, Trace, "trace"));
#endif
  exports.Set("serveRun", Napi::Function::New(env, ServeRun, "serveRun"));
  exports.Set("childError", Napi::Function::New(env, ChildError, "childError"));
}

}  // namespace nsbox

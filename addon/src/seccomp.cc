// Seccomp, kernel side. Filters are compiled in TypeScript (lib/security/seccomp/) and installed
// by the spawn child (child.cc) as its last step before execve. This file holds a TEST AND
// DIAGNOSTIC helper only, not a main path:
//
//   seccompTestRun(filter: Buffer | null, argv: string[], timeoutMs: number)
//     -> { status: number, output: string, timedOut: boolean }
//
// It fork()s (a plain fork: it is not on a hot path, and a fork child can run the few
// async-signal-safe calls below without the CLONE_VM care spawn.cc takes), resets signal state,
// sets no_new_privs, installs the filter with SECCOMP_SET_MODE_FILTER and execve()s argv with
// stdout+stderr on a pipe. The parent collects the output until EOF (or the timeout, then
// SIGKILL) and reaps that one pid with waitpid (never -1). `status` is the raw wait status.
// A failure before exec (filter refused, exec failed) comes back over a close-on-exec pipe and
// is thrown as NsboxError with step 'seccomp' or 'exec'. Used by the seccomp tests and by
// `nsbox doctor --self-test`.
//
// Also for `doctor()` (lib/security/doctor.ts), each in a forked child so the Node process
// changes nothing about itself:
//   hostProbe(name: string, arg?: string) -> { ok: boolean, errno: number, value: number }
//     'userns' 'clone3' 'pidfd' 'seccomp-actions' 'landlock' 'overlay-userns' 'mount-api'
//     'clone-into-cgroup' (arg: a cgroup2 directory, normally the caller's own) 'nftables'
//     'i386' (an int 0x80 getpid without a filter; `signal` is set when the probe died of one)
//   seccompSelfTest(filter: Buffer) -> Array<{ id, ret, errno, signal }>
//     installs the filter in a forked child and makes the attacks of the self-test battery
//     there with raw syscalls (no compiler or test binaries needed on the user's host).
#include "common.h"

#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <string>
#include <vector>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace nsbox {
namespace {

struct ChildFailure {
  int err;
  int stage;  // 1 = seccomp, 2 = exec, 3 = setup
};

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

[[noreturn]] void ChildDie(int fd, int stage, int err) {
  ChildFailure f{err, stage};
  ssize_t w = ::write(fd, &f, sizeof f);
  (void)w;
  _exit(127);
}

Napi::Value SeccompTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // arguments were validated in TypeScript (lib/security/seccomp/test-run.ts)
  std::vector<sock_filter> filter;
  bool haveFilter = info[0].IsBuffer();
  if (haveFilter) {
    Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
    filter.resize(b.Length() / sizeof(sock_filter));
    std::memcpy(filter.data(), b.Data(), filter.size() * sizeof(sock_filter));
  }
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<std::string> args;
  for (uint32_t i = 0; i < arr.Length(); i++) args.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  int64_t timeoutMs = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 30000;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char envPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {envPath, nullptr};
  struct sock_fprog prog{(unsigned short)filter.size(), filter.data()};

  int outP[2], errP[2];
  if (pipe2(outP, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "seccomp-test", "pipe2");
  UniqueFd outR(outP[0]), outW(outP[1]);
  if (pipe2(errP, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "seccomp-test", "pipe2");
  UniqueFd errR(errP[0]), errW(errP[1]);
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) return ThrowErrno(env, errno, "seccomp-test", "open", "/dev/null");

  pid_t pid = fork();
  if (pid < 0) return ThrowErrno(env, errno, "seccomp-test", "fork");
  if (pid == 0) {
    // child: async-signal-safe calls only
    int ew = errW.get();
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, nullptr);  // Node ignores SIGPIPE: undo
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(devnull.get(), 0) < 0 || dup2(outW.get(), 1) < 0 || dup2(outW.get(), 2) < 0) ChildDie(ew, 3, errno);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);  // no Node fd reaches the program
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ChildDie(ew, 3, errno);
    if (haveFilter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) ChildDie(ew, 1, errno);
    execve(argv[0], argv.data(), envp);
    ChildDie(ew, 2, errno);
  }
  outW.reset();
  errW.reset();
  ChildFailure fail{0, 0};
  ssize_t n;
  do n = read(errR.get(), &fail, sizeof fail); while (n < 0 && errno == EINTR);
  std::string output;
  bool timedOut = false;
  if (n != (ssize_t)sizeof fail) {
    int64_t deadline = NowMs() + timeoutMs;
    char buf[4096];
    for (;;) {
      int64_t left = deadline - NowMs();
      if (left <= 0) { timedOut = true; break; }
      struct pollfd p{outR.get(), POLLIN, 0};
      int r = poll(&p, 1, (int)std::min<int64_t>(left, 1000));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      ssize_t got = read(outR.get(), buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      if (output.size() < (1u << 20)) output.append(buf, (size_t)got);
    }
    if (timedOut) kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n == (ssize_t)sizeof fail) {
    return ThrowErrno(env, fail.err, fail.stage == 1 ? "seccomp" : fail.stage == 2 ? "exec" : "seccomp-test",
                      fail.stage == 1 ? "seccomp" : fail.stage == 2 ? "execve" : "setup",
                      fail.stage == 2 ? args[0].c_str() : nullptr);
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("status", status);
  res.Set("output", Napi::String::New(env, output));
  res.Set("timedOut", timedOut);
  return res;
}

// ---- host probes (doctor) ----------------------------------------------------------------

struct ProbeResult {
  int ok;
  int err;
  long value;
};

// Async-signal-safe helpers for the forked child.
size_t StrLen(const char* s) { size_t n = 0; while (s[n]) n++; return n; }
char* PutUint(char* p, unsigned long v) {
  char tmp[24];
  int n = 0;
  do { tmp[n++] = char('0' + v % 10); v /= 10; } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}
bool WriteFile(const char* path, const char* data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t w = write(fd, data, StrLen(data));
  int e = errno;
  close(fd);
  errno = e;
  return w == (ssize_t)StrLen(data);
}

ProbeResult Ok(long v = 0) { return {1, 0, v}; }
ProbeResult No(int e) { return {0, e, 0}; }

ProbeResult ProbeUserns() {
  if (unshare(CLONE_NEWUSER) < 0) return No(errno);
  return Ok();
}

ProbeResult ProbeClone3() {
  // a size below the first version's is EINVAL where clone3 exists, ENOSYS where it does not
  long r = syscall(SYS_clone3, nullptr, 0);
  if (r < 0 && errno == EINVAL) return Ok();
  return No(r < 0 ? errno : EINVAL);
}

ProbeResult ProbePidfd() {
  long r = syscall(SYS_pidfd_open, getpid(), 0);
  if (r < 0) return No(errno);
  close((int)r);
  return Ok();
}

ProbeResult ProbeSeccompActions() {
  const uint32_t acts[] = {SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_TRAP, SECCOMP_RET_ERRNO,
                           SECCOMP_RET_USER_NOTIF, SECCOMP_RET_TRACE, SECCOMP_RET_LOG, SECCOMP_RET_ALLOW};
  long mask = 0;
  int lastErr = 0;
  for (int i = 0; i < 8; i++) {
    uint32_t a = acts[i];
    if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &a) == 0) mask |= 1L << i;
    else lastErr = errno;
  }
  if (!mask) return No(lastErr ? lastErr : ENOSYS);
  return Ok(mask);
}

ProbeResult ProbeLandlock() {
  long r = syscall(444 /* landlock_create_ruleset, same number on x86_64 and aarch64 */, nullptr, 0, 1UL /* VERSION */);
  if (r < 0) return No(errno);
  return Ok(r);
}

ProbeResult ProbeMountApi() {
  // fsopen of a filesystem type that cannot exist: ENODEV where the new mount API exists
  long r = syscall(SYS_fsopen, "nsbox-no-such-fs", 0);
  if (r >= 0) { close((int)r); return Ok(); }
  if (errno == ENODEV) {
    // mount_setattr (idmapped mounts) with a bad fd: EBADF where it exists
    long m = syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0);
    return m < 0 && errno == ENOSYS ? ProbeResult{1, ENOSYS, 1} : Ok(2);
  }
  return No(errno);
}

ProbeResult ProbeOverlayUserns() {
  char map[64];
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return No(errno);
  WriteFile("/proc/self/setgroups", "deny");
  char* p = map;
  *p++ = '0'; *p++ = ' '; p = PutUint(p, uid); *p++ = ' '; *p++ = '1'; *p = 0;
  if (!WriteFile("/proc/self/uid_map", map)) return No(errno);
  p = map;
  *p++ = '0'; *p++ = ' '; p = PutUint(p, gid); *p++ = ' '; *p++ = '1'; *p = 0;
  if (!WriteFile("/proc/self/gid_map", map)) return No(errno);
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) return No(errno);
  // a tmpfs of this private mount namespace over /tmp: nothing outside sees it
  if (mount("nsbox-doctor", "/tmp", "tmpfs", 0, nullptr) < 0) return No(errno);
  if (mkdir("/tmp/l", 0700) < 0 || mkdir("/tmp/u", 0700) < 0 || mkdir("/tmp/w", 0700) < 0 || mkdir("/tmp/m", 0700) < 0) return No(errno);
  if (mount("overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr") < 0) return No(errno);
  return Ok();
}

ProbeResult ProbeCloneIntoCgroup(const char* dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return No(errno);
  struct clone_args ca;
  std::memset(&ca, 0, sizeof ca);
  ca.flags = 0x200000000ULL;  // CLONE_INTO_CGROUP
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t)fd;
  long r = syscall(SYS_clone3, &ca, sizeof ca);
  if (r == 0) _exit(0);
  if (r < 0) return No(errno);
  int st;
  waitpid((pid_t)r, &st, 0);
  return Ok();
}

// An i386 system call through int 0x80, with no filter: some hosts cannot make them at all
// (IA32 emulation off, or a hypervisor that faults int 0x80): then the probe dies of a signal.
ProbeResult ProbeI386() {
#if defined(__x86_64__)
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L /* i386 getpid */) : "memory");
  if (ret < 0) return No((int)-ret);
  return Ok(ret);
#else
  return No(ENOSYS);
#endif
}

ProbeResult ProbeNftables() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return No(errno);
  struct {
    struct nlmsghdr h;
    struct nfgenmsg g;
  } req;
  std::memset(&req, 0, sizeof req);
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = (10 /* NFNL_SUBSYS_NFTABLES */ << 8) | 1 /* NFT_MSG_GETTABLE */;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.g.nfgen_family = AF_UNSPEC;
  req.g.version = NFNETLINK_V0;
  if (send(fd, &req, sizeof req, 0) < 0) return No(errno);
  alignas(struct nlmsghdr) char buf[8192];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n < (ssize_t)sizeof(struct nlmsghdr)) return No(n < 0 ? errno : EIO);
  struct nlmsghdr* h = (struct nlmsghdr*)buf;
  if (h->nlmsg_type == NLMSG_ERROR) {
    struct nlmsgerr* e = (struct nlmsgerr*)NLMSG_DATA(h);
    if (e->error != 0) return No(-e->error);
  }
  return Ok();
}

Napi::Value HostProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string arg = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
  int which = name == "userns" ? 1 : name == "clone3" ? 2 : name == "pidfd" ? 3 : name == "seccomp-actions" ? 4
            : name == "landlock" ? 5 : name == "mount-api" ? 6 : name == "overlay-userns" ? 7
            : name == "clone-into-cgroup" ? 8 : name == "nftables" ? 9 : name == "i386" ? 10 : 0;
  if (!which) return ThrowErrno(env, EINVAL, "doctor", "probe", name.c_str());
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "doctor", "pipe2");
  UniqueFd rd(p[0]), wr(p[1]);
  const char* a = arg.c_str();
  pid_t pid = fork();
  if (pid < 0) return ThrowErrno(env, errno, "doctor", "fork");
  if (pid == 0) {
    ProbeResult r{0, 0, 0};
    switch (which) {
      case 1: r = ProbeUserns(); break;
      case 2: r = ProbeClone3(); break;
      case 3: r = ProbePidfd(); break;
      case 4: r = ProbeSeccompActions(); break;
      case 5: r = ProbeLandlock(); break;
      case 6: r = ProbeMountApi(); break;
      case 7: r = ProbeOverlayUserns(); break;
      case 8: r = ProbeCloneIntoCgroup(a); break;
      case 9: r = ProbeNftables(); break;
      case 10: r = ProbeI386(); break;
    }
    ssize_t w = write(wr.get(), &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
  }
  wr.reset();
  ProbeResult r{0, EIO, 0};
  ssize_t n;
  do n = read(rd.get(), &r, sizeof r); while (n < 0 && errno == EINTR);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (n != (ssize_t)sizeof r) r = {0, EIO, 0};
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", r.ok != 0);
  o.Set("errno", r.err);
  o.Set("value", (double)r.value);
  // a probe that died of a signal (int 0x80 on a host that faults it) says which
  if (n != (ssize_t)sizeof r && WIFSIGNALED(st)) o.Set("signal", WTERMSIG(st));
  return o;
}

// ---- the self-test battery --------------------------------------------------------------

struct AttackResult {
  int id;
  int err;     // errno of a failed call, 0 if it returned >= 0
  long ret;
  int signal;  // for attacks run in a grandchild: the signal that ended it
};

// Attack ids; lib/security/doctor.ts names them and knows what each must get.
enum Attack {
  kUnshareUser = 1, kUnshareMount, kSetns, kCloneNewUser, kClone3, kMount, kFsopen, kOpenTree, kBpf,
  kPerfEventOpen, kKeyctl, kUserfaultfd, kIoUringSetup, kSocketAlg, kSocketVsock, kTiocsti, kTiocstiHigh,
  kTioclinux, kOpenByHandle, kPtrace, kKexecLoad, kInitModule, kInt80, kX32, kAttackCount
};

long RunAttack(int id, int pty) {
  char c = 'x';
  switch (id) {
    case kUnshareUser: return syscall(SYS_unshare, CLONE_NEWUSER);
    case kUnshareMount: return syscall(SYS_unshare, CLONE_NEWNS);
    case kSetns: return syscall(SYS_setns, -1, 0);
    case kCloneNewUser: {
      long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
      if (r == 0) _exit(0);
      if (r > 0) { int st; waitpid((pid_t)r, &st, 0); }
      return r;
    }
    case kClone3: {
      struct clone_args ca;
      std::memset(&ca, 0, sizeof ca);
      ca.flags = CLONE_NEWUSER;
      ca.exit_signal = SIGCHLD;
      long r = syscall(SYS_clone3, &ca, sizeof ca);
      if (r == 0) _exit(0);
      if (r > 0) { int st; waitpid((pid_t)r, &st, 0); }
      return r;
    }
    case kMount: return syscall(SYS_mount, "none", "/nonexistent-nsbox-target", "tmpfs", 0, nullptr);
    case kFsopen: return syscall(SYS_fsopen, "nsbox-no-such-fs", 0);
    case kOpenTree: return syscall(SYS_open_tree, AT_FDCWD, "/nonexistent-nsbox-target", 0);
    case kBpf: return syscall(SYS_bpf, 5, nullptr, 0);
    case kPerfEventOpen: return syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0);
    case kKeyctl: return syscall(SYS_keyctl, 0, -3, 0);
    case kUserfaultfd: { long r = syscall(SYS_userfaultfd, O_CLOEXEC); if (r >= 0) close((int)r); return r; }
    case kIoUringSetup: {
      char params[120];
      std::memset(params, 0, sizeof params);
      long r = syscall(SYS_io_uring_setup, 1, params);
      if (r >= 0) close((int)r);
      return r;
    }
    case kSocketAlg: { long r = syscall(SYS_socket, 38, SOCK_SEQPACKET, 0); if (r >= 0) close((int)r); return r; }
    case kSocketVsock: { long r = syscall(SYS_socket, 40, SOCK_STREAM, 0); if (r >= 0) close((int)r); return r; }
    case kTiocsti: return pty < 0 ? -2 : syscall(SYS_ioctl, pty, TIOCSTI, &c);
    case kTiocstiHigh: return pty < 0 ? -2 : syscall(SYS_ioctl, pty, (unsigned long)TIOCSTI | (1UL << 32), &c);
    case kTioclinux: { char sel[2] = {3, 0}; return pty < 0 ? -2 : syscall(SYS_ioctl, pty, TIOCLINUX, sel); }
    case kOpenByHandle: return syscall(SYS_open_by_handle_at, -1, nullptr, 0);
    case kPtrace: return syscall(SYS_ptrace, 2 /* PEEKDATA */, 0x7ffffff0, 0, 0);
    case kKexecLoad: return syscall(SYS_kexec_load, 0, 0, nullptr, 0xdead0000UL);
    case kInitModule: return syscall(SYS_init_module, nullptr, 0, "");
#if defined(__x86_64__)
    case kInt80: {
      long ret;
      __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
      return ret;
    }
    case kX32: return syscall(0x40000000L | 39);
#endif
    default: return -2;
  }
}

Napi::Value SeccompSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<sock_filter> filter;
  bool haveFilter = info[0].IsBuffer();
  if (haveFilter) {
    Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
    filter.resize(b.Length() / sizeof(sock_filter));
    std::memcpy(filter.data(), b.Data(), filter.size() * sizeof(sock_filter));
  }
  struct sock_fprog prog{(unsigned short)filter.size(), filter.data()};
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "self-test", "pipe2");
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = fork();
  if (pid < 0) return ThrowErrno(env, errno, "self-test", "fork");
  if (pid == 0) {
    int w = wr.get();
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // a pty of our own for the terminal attacks (opened before the filter)
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int unlock = 0;
    int pty = -1;
    if (master >= 0 && ioctl(master, TIOCSPTLCK, &unlock) == 0) pty = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(3);
    if (haveFilter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
      AttackResult r{0, errno, -1, 0};
      ssize_t x = write(w, &r, sizeof r);
      (void)x;
      _exit(4);
    }
    for (int id = 1; id < kAttackCount; id++) {
      AttackResult r{id, 0, 0, 0};
      // every attack in a child of its own: a kill ends only that one
      pid_t c = fork();
      if (c == 0) {
        long ret = RunAttack(id, pty);
        AttackResult rr{id, ret < 0 ? errno : 0, ret, 0};
        if (ret == -2) rr.err = -1;  // not applicable here
        ssize_t x = write(w, &rr, sizeof rr);
        _exit(x == (ssize_t)sizeof rr ? 0 : 1);
      }
      if (c < 0) { r.err = errno; r.ret = -1; ssize_t x = write(w, &r, sizeof r); (void)x; continue; }
      int st = 0;
      while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
      }
      if (WIFSIGNALED(st)) {
        r.signal = WTERMSIG(st);
        ssize_t x = write(w, &r, sizeof r);
        (void)x;
      }
    }
    _exit(0);
  }
  wr.reset();
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  AttackResult r;
  for (;;) {
    ssize_t n = read(rd.get(), &r, sizeof r);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof r) break;
    if (r.id == 0) {
      int st;
      waitpid(pid, &st, 0);
      return ThrowErrno(env, r.err, "seccomp", "seccomp");
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", r.id);
    o.Set("errno", r.err);
    o.Set("ret", (double)r.ret);
    o.Set("signal", r.signal);
    out.Set(k++, o);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return out;
}

}  // namespace

void InitSeccomp(Napi::Env env, Napi::Object exports) {
  exports.Set("seccompTestRun", Napi::Function::New(env, SeccompTestRun, "seccompTestRun"));
  exports.Set("hostProbe", Napi::Function::New(env, HostProbe, "hostProbe"));
  exports.Set("seccompSelfTest", Napi::Function::New(env, SeccompSelfTest, "seccompSelfTest"));
}

}  // namespace nsbox

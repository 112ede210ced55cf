// nsbox-init: pid 1 of a sandbox when `init` is on (the default with a new pid namespace).
//
// A static program with no libc (raw system calls from ../src/sys.h), built with the addon and
// embedded in it; the child execs it from a sealed memfd, so no file of the host or of the
// rootfs is involved and /proc/1/exe cannot be written (CVE-2019-5736).
//
//   argv: nsbox-init ERRFD STATUSFD TTY N CANDIDATE_1 .. CANDIDATE_N ARGV0 ARGS...
//   (TTY 1: fd 0 is a terminal the program takes as its controlling terminal)
//   or:   nsbox-init ERRFD STATUSFD TTY 0 CTLFD      (serve: a prepared or a created sandbox)
//
// Serve mode holds the sandbox until one run request arrives on CTLFD (a SOCK_SEQPACKET
// socket): a message of counts and strings (see ServeRequest) with four fds (the error pipe
// of this run, stdin, stdout, stderr). The program is then forked and exec'd as above and the
// sandbox ends with it: single use, as a pool wants. If the socket's peer goes away first,
// init exits.
//
// A created sandbox (Sandbox.create with `program`, lib/runner/sandbox.ts) sends the same
// strings with two fds instead of four: RECORDFD (a file of the state directory) and LISTENFD
// (a listening unix stream socket bound in the state directory), then the caller's extra fds
// (`program.extraFds`, OCI `create --preserve-fds`), which the program gets as 3, 4, ... The
// header's fourth word says which: 0 for a run, 1 + 2 * (number of extra fds) for a created one. The program is not run yet:
// init waits for one connection on LISTENFD that sends a byte (the sandbox's start, from any
// process that may reach the socket), then runs the program with init's own fds 0..2 (the
// caller's, or the terminal's slave) and that connection as its error pipe (EOF once it has
// exec'd). While it waits, a signal that would end a program ends the sandbox (as runc's
// created container ends). RECORDFD gets "run\0" at offset 0 when the start comes, and the
// program's raw wait status (4 bytes) at offset 4 when it ends (or the signal that ended the
// sandbox before it started): what happened is on disk for whoever looks later, also when the
// creator has gone.
//
// It makes itself undumpable (so nothing in the sandbox reaches its fds through /proc/1),
// then starts the program (a vfork on a stack of its own: no page tables to copy; execve over
// the PATH candidates with execvp's rules; a failure goes to ERRFD exactly as the spawn core
// reports it, so the caller still gets an NsboxError with step 'exec'), then waits for signals with every signal blocked: SIGCHLD reaps every child,
// orphans included (so zombies never pile up), any other signal is forwarded to the program.
// When the program ends, init writes its raw wait status to STATUSFD (nsbox reports that: the
// exact code or signal); as pid 1 it then kills and reaps whatever is left in the pid
// namespace (so their CPU time counts in the rusage nsbox reads), and exits with the program's
// code, or 128+N after signal N (as `docker run --init` does). nsbox ends a running sandbox by
// queueing kInitKillSignal with kInitKillValue (msg.h) to init, which kills everything else
// and so ends the same way; a plain SIGKILL of init follows if it has not exited soon.
#include "../src/msg.h"
#include "../src/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

using nsbox::sys::call;

// clone(flags, stackTop) with the child calling fn(arg) and exiting with its result (asm at
// the end). clone, not clone3: the sandbox's seccomp filter refuses clone3.
extern "C" long init_clone_vm(unsigned long flags, void* stackTop, int (*fn)(void*), void* arg);

// the compiler may emit calls to these for struct copies and zeroing
extern "C" void* memset(void* d, int c, size_t n) {
  auto* p = static_cast<unsigned char*>(d);
  while (n--) *p++ = (unsigned char)c;
  return d;
}
extern "C" void* memcpy(void* d, const void* s, size_t n) {
  auto* p = static_cast<unsigned char*>(d);
  auto* q = static_cast<const unsigned char*>(s);
  while (n--) *p++ = *q++;
  return d;
}

namespace {

long ParseNum(const char* s) {
  long v = 0;
  if (!s || !*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

[[noreturn]] void Exit(int code) {
  call(SYS_exit_group, code);
  __builtin_unreachable();
}

// Reports a failure before the exec on the error pipe, as the spawn core does, and exits.
[[noreturn]] void Fail(int errFd, long err, const char* step, const char* syscall, const char* path) {
  nsbox::ChildMsg m;
  m.kind = 1;
  m.pid = 0;
  m.err.err = (int)-err;
  nsbox::CopyStr(m.err.step, sizeof m.err.step, step);
  nsbox::CopyStr(m.err.syscall, sizeof m.err.syscall, syscall);
  nsbox::CopyStr(m.err.path, sizeof m.err.path, path);
  call(SYS_write, errFd, &m, sizeof m);
  Exit(127);
}


[[noreturn]] void ExecProgram(int errFd, bool tty, char** cand, long n, char** argv, char** envp) {
  unsigned long none = 0;
  call(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
  // its own session and process group, as pid 1's program had before init existed
  call(SYS_setsid);
  if (tty) call(SYS_ioctl, 0, TIOCSCTTY, 0);
  long best = -ENOENT;
  const char* bestPath = n > 0 ? cand[0] : "";
  for (long i = 0; i < n; i++) {
    long r = call(SYS_execve, cand[i], argv, envp);
    if (r == -ENOENT || r == -ENOTDIR || r == -ESTALE || r == -ENODEV || r == -ETIMEDOUT) continue;
    if (r == -EACCES) { if (best != -EACCES) { best = r; bestPath = cand[i]; } continue; }
    best = r;
    bestPath = cand[i];
    break;
  }
  Fail(errFd, best, "exec", "execve", bestPath);
}

// A run request: u32 nCand, argc, envc, kind (0: a run; 1 + 2 * its extra fds: a created
// sandbox); then cwd, the candidates, argv and env, each NUL-terminated, back to back.
constexpr size_t kReqMax = 1 << 20;
char gReq[kReqMax];
constexpr long kMaxStrings = 32768;
// a created sandbox's extra fds: what one SCM_RIGHTS message can carry (SCM_MAX_FD, 253) with
// its two own
constexpr long kMaxExtraFds = 251;
int gExtra[kMaxExtraFds];
char* gPtrs[kMaxStrings + 3];

struct OpenHow { unsigned long long flags, mode, resolve; };

// Returns the number of fds received (4: a run; 2: a created sandbox's record and listening
// socket, its extra fds in gExtra and their number in *extra), or -1.
long ReceiveRun(int ctl, int fds[4], long* extra, char** cwd, char*** cand, long* n, char*** argv, char*** envp) {
  struct iovec iov{gReq, kReqMax - 1};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE((2 + kMaxExtraFds) * sizeof(int))];
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  long got;
  do { got = call(SYS_recvmsg, ctl, &msg, MSG_CMSG_CLOEXEC); } while (got == -EINTR);
  if (got <= 16 || (msg.msg_flags & MSG_CTRUNC)) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  unsigned* h = reinterpret_cast<unsigned*>(gReq);
  const bool created = h[3] & 1;
  const long more = created ? (long)(h[3] >> 1) : 0;
  if (more > kMaxExtraFds) return -1;
  const long nfds = created ? 2 : 4;
  if (c->cmsg_len != CMSG_LEN((nfds + more) * sizeof(int))) return -1;
  const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
  memcpy(fds, in, nfds * sizeof(int));
  memcpy(gExtra, in + nfds, more * sizeof(int));
  *extra = more;
  gReq[got] = 0;
  long nc = h[0], ac = h[1], ec = h[2];
  if (nc < 1 || ac < 1 || nc + ac + ec + 3 > kMaxStrings) return -1;
  char* p = gReq + 16;
  char* end = gReq + got;
  auto next = [&]() -> char* {
    char* s = p;
    while (p < end && *p) p++;
    if (p >= end) return nullptr;
    p++;
    return s;
  };
  if (!(*cwd = next())) return -1;
  long k = 0;
  *cand = gPtrs;
  for (long i = 0; i < nc; i++) if (!(gPtrs[k++] = next())) return -1;
  gPtrs[k++] = nullptr;
  *argv = gPtrs + k;
  for (long i = 0; i < ac; i++) if (!(gPtrs[k++] = next())) return -1;
  gPtrs[k++] = nullptr;
  *envp = gPtrs + k;
  for (long i = 0; i < ec; i++) if (!(gPtrs[k++] = next())) return -1;
  gPtrs[k++] = nullptr;
  *n = nc;
  return nfds;
}

// Signals whose default action is not to end a process: they do not end a created sandbox.
bool Harmless(long sig) {
  return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

// A created sandbox waits for its start: one connection on `listen` that sends a byte.
// Returns the connection (its start's error pipe), or -signal when a signal ends the sandbox
// first (nsbox's kill request counts as SIGKILL).
long WaitStart(int listen) {
  unsigned long all = ~0UL;
  long sfd = call(SYS_signalfd4, -1, &all, sizeof all, O_CLOEXEC);
  if (sfd < 0) return -SIGKILL;
  for (;;) {
    struct pollfd p[2] = {{listen, POLLIN, 0}, {(int)sfd, POLLIN, 0}};
    long r = call(SYS_ppoll, p, 2, nullptr, nullptr, 0);
    if (r < 0) {
      if (r == -EINTR) continue;
      call(SYS_close, sfd);
      return -SIGKILL;
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (call(SYS_read, sfd, &si, sizeof si) == (long)sizeof si) {
        long sig = (long)si.ssi_signo;
        if (sig == nsbox::kInitKillSignal && si.ssi_code == SI_QUEUE && si.ssi_int == nsbox::kInitKillValue) sig = SIGKILL;
        if (!Harmless(sig)) { call(SYS_close, sfd); return -sig; }
      }
    }
    if (p[0].revents & POLLIN) {
      long c = call(SYS_accept4, listen, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      char b;
      long got;
      do { got = call(SYS_read, c, &b, 1); } while (got == -EINTR);
      if (got == 1) { call(SYS_close, sfd); return c; }
      call(SYS_close, c);  // a connection that sent nothing starts nothing
    }
  }
}

}  // namespace

// The program's start, run by the vfork child on gStack (our memory, read only here).
struct ProgramStart {
  int errFd, statusFd;
  bool tty;
  const char* cwd;   // serve mode: the run's working directory, else null
  int* runFds;       // serve mode: the run's error pipe, stdin, stdout, stderr
  long nExtra;       // a created sandbox: gExtra's fds, the program's 3, 4, ...
  char** cand;
  long n;
  char** argv;
  char** envp;
};
alignas(16) char gStack[64 * 1024];

int ProgramChild(void* arg) {
  // our memory is init's (vfork): only locals and the stack change here
  const ProgramStart* s = static_cast<const ProgramStart*>(arg);
  int errFd = s->errFd;
  call(SYS_fcntl, errFd, F_SETFD, FD_CLOEXEC);
  call(SYS_close, s->statusFd);
  if (s->runFds[1] >= 0) {
    for (int i = 0; i < 3; i++) call(SYS_dup3, s->runFds[i + 1], i, 0);
    for (int i = 1; i < 4; i++) if (s->runFds[i] > 2) call(SYS_close, s->runFds[i]);
  }
  if (s->nExtra > 0) {
    // the extra fds onto 3, 4, ...: every source (and the error pipe) first moved above that
    // range, so that placing one never overwrites another still to be placed
    const int top = 3 + (int)s->nExtra;
    if (errFd < top) {
      long d = call(SYS_fcntl, errFd, F_DUPFD_CLOEXEC, top);
      if (d < 0) Exit(127);
      errFd = (int)d;
    }
    int moved[kMaxExtraFds];
    for (long i = 0; i < s->nExtra; i++) {
      long d = call(SYS_fcntl, gExtra[i], F_DUPFD_CLOEXEC, top);
      if (d < 0) Fail(errFd, d, "stdio", "fcntl", "extraFds");
      moved[i] = (int)d;
    }
    for (long i = 0; i < s->nExtra; i++) {
      long r = call(SYS_dup3, moved[i], 3 + (int)i, 0);
      if (r < 0) Fail(errFd, r, "stdio", "dup3", "extraFds");
    }
  }
  if (s->cwd) {
    // the working directory, looked up without magic links (as the spawn core does)
    OpenHow how{O_PATH | O_DIRECTORY | O_CLOEXEC, 0, 0x02};
    long d = call(SYS_openat2, AT_FDCWD, s->cwd, &how, sizeof how);
    long r = d < 0 ? d : call(SYS_fchdir, d);
    // A kernel without openat2, or the sandbox's seccomp profile refusing it (init runs under
    // the filter; Docker-like profiles lack openat2): plain chdir. No magic link can lead out
    // here: init holds no directory fd (only its pipes, sockets and the exit record file).
    const char* failed = d < 0 ? "openat2" : "chdir";
    if (d == -ENOSYS || d == -EPERM) { r = call(SYS_chdir, s->cwd); failed = "chdir"; }
    if (r < 0) Fail(errFd, r, "cwd", failed, s->cwd);
  }
  ExecProgram(errFd, s->tty, s->cand, s->n, s->argv, s->envp);
}

extern "C" [[noreturn]] void nsbox_init_main(long* sp) {
  long argc = sp[0];
  char** argv = reinterpret_cast<char**>(sp + 1);
  char** envp = argv + argc + 1;
  if (argc < 6) Exit(127);
  long errFd = ParseNum(argv[1]);
  long statusFd = ParseNum(argv[2]);
  long tty = ParseNum(argv[3]);
  long n = ParseNum(argv[4]);
  long ctl = n == 0 ? ParseNum(argv[5]) : -1;
  if (errFd < 0 || statusFd < 0 || tty < 0 || (n < 1 && ctl < 0) || (n >= 1 && 5 + n >= argc)) Exit(127);
  char** cand = argv + 5;
  char** progArgv = argv + 5 + n;
  const char* cwd = nullptr;
  int runFds[4] = {-1, -1, -1, -1};
  long nExtra = 0;
  long recordFd = -1;

  call(SYS_prctl, PR_SET_NAME, "nsbox-init", 0, 0, 0);
  call(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
  // orphans come here even when this is not pid 1 (a sandbox that shares a pid namespace)
  call(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  unsigned long all = ~0UL;
  call(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all);

  if (ctl >= 0) {
    // prepared: the spawn is complete once this is closed; then wait for the one run
    call(SYS_close, errFd);
    char* c;
    long got = ReceiveRun((int)ctl, runFds, &nExtra, &c, &cand, &n, &progArgv, &envp);
    if (got < 0) Exit(0);
    call(SYS_close, ctl);
    cwd = c;
    errFd = runFds[0];
    if (got == 2) {
      // created: wait for the start; the program keeps init's own stdio
      recordFd = runFds[0];
      long conn = WaitStart(runFds[1]);
      call(SYS_close, runFds[1]);
      runFds[0] = runFds[1] = -1;
      if (conn < 0) {
        // ended before it started: recorded as if the program had died of that signal
        int st = (int)-conn;
        call(SYS_write, statusFd, &st, sizeof st);
        call(SYS_pwrite64, recordFd, &st, sizeof st, 4);
        Exit(128 + (int)-conn);
      }
      errFd = conn;
      call(SYS_pwrite64, recordFd, "run", 4, 0);
    }
  }
  ProgramStart start{(int)errFd, (int)statusFd, tty == 1, cwd, runFds, nExtra, cand, n, progArgv, envp};
  // vfork: we sleep until the program has exec'd (or failed), sharing our memory meanwhile
  long prog = init_clone_vm(CLONE_VM | CLONE_VFORK | SIGCHLD, gStack + sizeof gStack, ProgramChild, &start);
  // EINVAL: we are not yet in the time namespace made for our children (timeOffsets on a
  // kernel whose exec does not enter it, before 6.2), which no child sharing our memory may
  // enter: a plain fork then (this program is small), and the program starts in it
  if (prog == -EINVAL) prog = init_clone_vm(SIGCHLD, gStack + sizeof gStack, ProgramChild, &start);
  call(SYS_close, errFd);
  for (int i = 1; i < 4; i++) if (runFds[i] >= 0) call(SYS_close, runFds[i]);
  for (long i = 0; i < nExtra; i++) call(SYS_close, gExtra[i]);
  if (prog < 0) Exit(127);

  // pid 1 of the sandbox's own pid namespace (not a sandbox that joined another's): then
  // kill(-1) reaches exactly the rest of the sandbox
  const bool pid1 = call(SYS_getpid) == 1;
  int progStatus = 0;
  for (bool ended = false; !ended;) {
    siginfo_t si;
    long sig = call(SYS_rt_sigtimedwait, &all, &si, nullptr, sizeof all);
    if (sig < 0) continue;
    if (sig == nsbox::kInitKillSignal && si.si_code == SI_QUEUE && si.si_value.sival_int == nsbox::kInitKillValue) {
      // nsbox ends the sandbox: everything dies now and is reaped below (anyone inside could
      // send this too; it can only end its own sandbox, which it could do anyway)
      call(SYS_kill, pid1 ? -1 : prog, SIGKILL);
      continue;
    }
    if (sig != SIGCHLD) {
      call(SYS_kill, prog, sig);
      continue;
    }
    for (;;) {
      int status = 0;
      long w = call(SYS_wait4, -1, &status, WNOHANG | __WALL, nullptr);
      if (w <= 0) break;
      if (w == prog) {
        progStatus = status;
        ended = true;
      }
    }
  }
  call(SYS_write, statusFd, &progStatus, sizeof progStatus);
  if (recordFd >= 0) call(SYS_pwrite64, recordFd, &progStatus, sizeof progStatus, 4);
  if (pid1) {
    // The rest of the sandbox ends here rather than in the kernel's teardown of the namespace
    // once this exits: that teardown reaps with SIGCHLD ignored, so the CPU time of whatever
    // was still running would reach nobody. Reaped here, it adds to this process's children's
    // times, which nsbox reads when it reaps pid 1 (result.usage). One kill reaches every
    // process (a fork under way fails or its child gets the signal too); orphans come here.
    call(SYS_kill, -1, SIGKILL);
    for (;;) {
      long w = call(SYS_wait4, -1, nullptr, __WALL, nullptr);
      if (w < 0 && w != -EINTR) break;  // ECHILD: no one left
    }
  }
  Exit(WIFEXITED(progStatus) ? WEXITSTATUS(progStatus) : 128 + WTERMSIG(progStatus));
}

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl init_clone_vm\n"
    "init_clone_vm:\n"             // rdi=flags rsi=stack rdx=fn rcx=arg
    "  mov %rdx, %r9\n"            // fn: r9 is no argument of clone and survives syscall
    "  mov %rcx, %r8\n"            // arg: r8 is clone's tls, unused without CLONE_SETTLS
    "  xor %edx, %edx\n"
    "  xor %r10d, %r10d\n"
    "  mov $56, %eax\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %rsp\n"
    "  mov %r8, %rdi\n"
    "  call *%r9\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n"
    "  syscall\n"
    "  hlt\n"
    "1: ret\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl init_clone_vm\n"
    "init_clone_vm:\n"             // x0=flags x1=stack x2=fn x3=arg
    "  mov x9, x2\n"
    "  mov x10, x3\n"
    "  mov x2, xzr\n"
    "  mov x3, xzr\n"
    "  mov x4, xzr\n"
    "  mov x8, #220\n"
    "  svc #0\n"
    "  cbnz x0, 1f\n"
    "  mov x29, xzr\n"
    "  mov x30, xzr\n"
    "  mov x0, x10\n"
    "  blr x9\n"
    "  mov x8, #93\n"
    "  svc #0\n"
    "  brk #0\n"
    "1: ret\n");
#endif

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call nsbox_init_main\n"
    "  hlt\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov x29, xzr\n"
    "  mov x30, xzr\n"
    "  mov x0, sp\n"
    "  bl nsbox_init_main\n"
    "  brk #0\n");
#else
#error "nsbox-init: x86_64 and aarch64 only"
#endif

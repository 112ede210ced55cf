// nsbox-init: pid 1 of a sandbox when `init` is on (the default with a new pid namespace).
//
// A static program with no libc (raw system calls from ../src/sys.h), built with the addon and
// embedded in it; the child execs it from a sealed memfd, so no file of the host or of the
// rootfs is involved and /proc/1/exe cannot be written (CVE-2019-5736).
//
//   argv: nsbox-init ERRFD STATUSFD TTY N CANDIDATE_1 .. CANDIDATE_N ARGV0 ARGS...
//   (TTY 1: fd 0 is a terminal the program takes as its controlling terminal)
//
// It forks the program (execve over the PATH candidates with execvp's rules; a failure goes
// to ERRFD exactly as the spawn core reports it, so the caller still gets an NsboxError with
// step 'exec'), then waits for signals with every signal blocked: SIGCHLD reaps every child,
// orphans included (so zombies never pile up), any other signal is forwarded to the program.
// When the program ends, init writes its raw wait status to STATUSFD (nsbox reports that: the
// exact code or signal) and exits with its code, or 128+N after signal N (as `docker run
// --init` does); the kernel then kills whatever is left in the pid namespace.
#include "../src/msg.h"
#include "../src/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

using nsbox::sys::call;

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
  nsbox::ChildMsg m;
  m.kind = 1;
  m.pid = 0;
  m.err.err = (int)-best;
  nsbox::CopyStr(m.err.step, sizeof m.err.step, "exec");
  nsbox::CopyStr(m.err.syscall, sizeof m.err.syscall, "execve");
  nsbox::CopyStr(m.err.path, sizeof m.err.path, bestPath);
  call(SYS_write, errFd, &m, sizeof m);
  Exit(127);
}

}  // namespace

extern "C" [[noreturn]] void nsbox_init_main(long* sp) {
  long argc = sp[0];
  char** argv = reinterpret_cast<char**>(sp + 1);
  char** envp = argv + argc + 1;
  if (argc < 6) Exit(127);
  long errFd = ParseNum(argv[1]);
  long statusFd = ParseNum(argv[2]);
  long tty = ParseNum(argv[3]);
  long n = ParseNum(argv[4]);
  if (errFd < 0 || statusFd < 0 || tty < 0 || n < 1 || 5 + n >= argc) Exit(127);
  char** cand = argv + 5;
  char** progArgv = argv + 5 + n;

  call(SYS_prctl, PR_SET_NAME, "nsbox-init", 0, 0, 0);
  call(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
  // orphans come here even when this is not pid 1 (a sandbox that shares a pid namespace)
  call(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  unsigned long all = ~0UL;
  call(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all);

  long prog = call(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (prog == 0) {
    call(SYS_fcntl, errFd, F_SETFD, FD_CLOEXEC);
    call(SYS_close, statusFd);
    ExecProgram((int)errFd, tty == 1, cand, n, progArgv, envp);
  }
  call(SYS_close, errFd);
  if (prog < 0) Exit(127);

  for (;;) {
    char info[128];
    long sig = call(SYS_rt_sigtimedwait, &all, info, nullptr, sizeof all);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      call(SYS_kill, prog, sig);
      continue;
    }
    for (;;) {
      int status = 0;
      long w = call(SYS_wait4, -1, &status, WNOHANG, nullptr);
      if (w <= 0) break;
      if (w == prog) {
        call(SYS_write, statusFd, &status, sizeof status);
        Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
    }
  }
}

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

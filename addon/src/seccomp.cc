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
#include "common.h"

#include <fcntl.h>
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

}  // namespace

void InitSeccomp(Napi::Env env, Napi::Object exports) {
  exports.Set("seccompTestRun", Napi::Function::New(env, SeccompTestRun, "seccompTestRun"));
}

}  // namespace nsbox

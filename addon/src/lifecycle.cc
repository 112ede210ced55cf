// Small kernel calls of a created sandbox's lifecycle (lib/runner/sandbox.ts, `program`):
// the listening socket its nsbox-init waits on for the start, and pidfds of processes this
// process did not make (a sandbox found again by id from another process).
#include "common.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

namespace nsbox {

namespace {

// unixListen(path, mode): a unix stream socket bound at `path` (which must not exist), with
// the file's mode set to `mode`, listening. Returns the fd (close-on-exec; the caller's).
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  unsigned mode = info[1].As<Napi::Number>().Uint32Value();
  struct sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path) return ThrowErrno(env, ENAMETOOLONG, "start-socket", "bind", path.c_str());
  memcpy(a.sun_path, path.data(), path.size());
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return ThrowErrno(env, errno, "start-socket", "socket", path.c_str());
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), (socklen_t)(offsetof(sockaddr_un, sun_path) + path.size() + 1)) < 0) {
    return ThrowErrno(env, errno, "start-socket", "bind", path.c_str());
  }
  if (chmod(path.c_str(), mode) < 0 || listen(s.get(), 8) < 0) {
    int er = errno;
    unlink(path.c_str());
    return ThrowErrno(env, er, "start-socket", "listen", path.c_str());
  }
  return Napi::Number::New(env, s.release());
}

// pidfdOpen(pid): a pidfd of `pid` (close-on-exec), or a negative errno (ESRCH: no such process).
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int pid = info[0].As<Napi::Number>().Int32Value();
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return Napi::Number::New(info.Env(), -(double)errno);
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(info.Env(), (double)fd);
}

}  // namespace

void InitLifecycle(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
}

}  // namespace nsbox

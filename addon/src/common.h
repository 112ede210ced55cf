// Shared by every part of the addon: the error struct carried up with context, the RAII fd,
// and per-environment data. C++ exceptions are off (NAPI_DISABLE_CPP_EXCEPTIONS): functions
// return -errno and fill an Err; it becomes a JS NsboxError exactly once, at the N-API edge.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "msg.h"

#include <time.h>
namespace nsbox {
// Timing probes for bench/breakdown.mjs, compiled in only with -DNSBOX_TRACE (see
// `npm run build:trace`): CLOCK_MONOTONIC stamps in a table shared with the CLONE_VM child.
#ifdef NSBOX_TRACE
inline unsigned long long g_probe[32];
inline unsigned long long g_ops[80];
inline void PROBE(int i) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); g_probe[i] = t.tv_sec * 1000000000ULL + t.tv_nsec; }
inline void PROBECPU(int i) { unsigned c = 0; syscall(309, &c, nullptr, nullptr); g_probe[i] = c; }
inline void PROBE_OP(size_t i) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); if (i < 80) g_ops[i] = t.tv_sec * 1000000000ULL + t.tv_nsec; }
#else
#define PROBE_OP(i) ((void)0)
#define PROBE(i) ((void)0)
#define PROBECPU(i) ((void)0)
#endif


// Records a failure and returns -err (so `return Fail(...)` reads naturally).
inline int Fail(Err* e, int err, const char* step, const char* syscall, const char* path = nullptr) {
  if (e) {
    e->err = err;
    CopyStr(e->step, sizeof e->step, step);
    CopyStr(e->syscall, sizeof e->syscall, syscall);
    CopyStr(e->path, sizeof e->path, path);
  }
  return -err;
}

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept { reset(o.release()); return *this; }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset(int fd = -1) { if (fd_ >= 0) { int s = errno; ::close(fd_); errno = s; } fd_ = fd; }
 private:
  int fd_ = -1;
};

// Per-environment state (the addon works in worker threads: no static mutable state).
struct Watch;
struct AddonData {
  Napi::FunctionReference errorClass;  // NsboxError, handed over from JS at init
  void* childStack = nullptr;          // spawn.cc: reused stack for CLONE_VM children
  size_t childStackSize = 0;
  void* netStack = nullptr;            // spawn.cc: stack of the helper that makes a network namespace
  Watch* watches = nullptr;            // exit_watch.cc: live pidfd watches (intrusive list)
  int initFd = -1;                     // init_blob.cc: sealed memfd holding nsbox-init
  ~AddonData();
};

// The sealed memfd of nsbox-init (made on first use), or -errno with `e` filled.
int InitProgramFd(Napi::Env env, Err* e);

// Builds an NsboxError (or a plain Error before setErrorClass was called).
Napi::Value MakeError(Napi::Env env, const Err& e);
// Throws it as a pending JS exception; returns undefined for `return ThrowErr(...)`.
Napi::Value ThrowErr(Napi::Env env, const Err& e);
// Shortcut for a failed call with errno already saved.
Napi::Value ThrowErrno(Napi::Env env, int err, const char* step, const char* syscall, const char* path = nullptr);
// Name of an errno value, "ENOENT" etc.
const char* ErrnoName(int err);

// One per kernel area; module.cc calls them all.
void InitErrors(Napi::Env env, Napi::Object exports);
void InitSpawn(Napi::Env env, Napi::Object exports);
void InitExitWatch(Napi::Env env, Napi::Object exports);
void InitNs(Napi::Env env, Napi::Object exports);
void InitCaps(Napi::Env env, Napi::Object exports);
void InitCgroup(Napi::Env env, Napi::Object exports);
void InitMount(Napi::Env env, Napi::Object exports);
void InitNetlink(Napi::Env env, Napi::Object exports);
void InitSeccomp(Napi::Env env, Napi::Object exports);
void InitFs(Napi::Env env, Napi::Object exports);

}  // namespace nsbox

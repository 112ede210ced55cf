// Shared by every part of the addon: the error struct carried up with context, the RAII fd,
// and per-environment data. C++ exceptions are off (NAPI_DISABLE_CPP_EXCEPTIONS): functions
// return -errno and fill an Err; it becomes a JS NsboxError exactly once, at the N-API edge.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unistd.h>

#include "msg.h"

#include <sys/syscall.h>
#include <time.h>
namespace nsbox {
// Timing probes for bench/breakdown.mjs, compiled in only with -DNSBOX_TRACE (`npm run
// build:trace`): CLOCK_MONOTONIC stamps (and a few CPU numbers) in a table shared with the
// CLONE_VM child and the network helper; the addon's trace() returns the last spawn's.
enum TracePoint : int {
  kTrSpawnEntry,
  kTrPlanDecoded,
  kTrClone,
  kTrCloned,
  kTrGo,
  kTrExecSeen,
  kTrSpawnReturn,
  kTrExitSeen,
  kTrChildEntry,
  kTrChildGo,
  kTrOpsStart,
  kTrOpsEnd,
  kTrExec,
  kTrNetWait,
  kTrNetJoined,
  kTrHelperClone,
  kTrHelperEntry,
  kTrNetUnshare,
  kTrNetUnshared,
  kTrNetSent,
  kTrHelperDone,
  kTrChildCpu,
  kTrHelperCpu,
  kTrParentCpu,
  kTrStdio,
  kTrLaunchEntry,
  kTrLaunchSetns,
  kTrLaunchCloned,
  kTrLaunchBack,
  kTrCount
};
#ifdef NSBOX_TRACE
}  // namespace nsbox
#include "sys.h"
namespace nsbox {
inline unsigned long long g_trace[kTrCount];
inline unsigned long long g_traceOps[80];  // after each plan op
inline unsigned long long TraceNow() { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ULL + t.tv_nsec; }
#define TRACE(p) (g_trace[p] = TraceNow())
#define TRACE_CPU(p) do { unsigned c_ = 0; sys::call(SYS_getcpu, &c_, nullptr, nullptr); g_trace[p] = c_; } while (0)
#define TRACE_OP(i) do { if ((i) < 80) g_traceOps[i] = TraceNow(); } while (0)
#else
#define TRACE(p) ((void)0)
#define TRACE_CPU(p) ((void)0)
#define TRACE_OP(i) ((void)0)
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

// Adds context to a failure on its way up: the caller often knows better than the call that
// failed which plan step it was part of or which name the user gave (the CIDR, not the
// message; "template", not "mount"). When r < 0, sets the fields given (non-null) and keeps
// the rest (errno, syscall, extended ack) as the failing call filled them; returns r, so
// `return Wrap(e, r, nullptr, name)` reads naturally. Async-signal-safe (CopyStr only, no
// allocation): usable between clone and exec.
inline int Wrap(Err* e, int r, const char* step, const char* path = nullptr) {
  if (r < 0 && e) {
    if (step) CopyStr(e->step, sizeof e->step, step);
    if (path) CopyStr(e->path, sizeof e->path, path);
  }
  return r;
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

// Stack of the short CLONE_VM helpers (network namespace, idmap user namespace).
constexpr size_t kHelperStackSize = 64 * 1024;

// The stacks one spawner thread's spawns run their CLONE_VM child and helpers on (helpers.cc):
// each thread has its own, made on first use and freed when the thread ends (spawner.cc), so
// spawns on different threads never share one.
struct SpawnStacks {
  void* child = nullptr;   // kChildStackSize (helpers.h)
  void* helper = nullptr;  // kHelperStackSize: net maker, launcher, template builder
};
void FreeSpawnStacks(SpawnStacks* s);

// Per-environment state (the addon works in worker threads: no static mutable state).
struct Watch;
struct AddonData {
  Napi::FunctionReference errorClass;  // NsboxError, handed over from JS at init
  void* socketsStack = nullptr;        // helpers.cc: stack of MakeNetnsSockets' helper, which runs on the event loop (kHelperStackSize)
  Watch* watches = nullptr;            // exit_watch.cc: live pidfd watches (intrusive list)
  int initFd = -1;                     // init_blob.cc: sealed memfd holding nsbox-init
  // helpers.cc: view templates (mount namespace fds) by the encoding of the ops that built
  // them, newest last, each with its namespace's mounts file (polled: a mount of it went, see
  // EnsureTemplate); /proc/self/mounts, polled to drop them when the host's mounts change
  struct ViewTemplate { std::string key; int nsFd; int watchFd; };
  std::vector<ViewTemplate> templates;
  int mountsFd = -1;
  // helpers.cc: nsbox's own user namespace (EnsureHolder), where an unprivileged caller's
  // templates, spares and sandboxes' user namespaces are made, and /proc, through which its
  // launcher writes their id maps; dropped with the templates
  int holderFd = -1, procFd = -1;
  // helpers.cc: a spare network namespace made ahead by a helper of ours (NetSpare)
  struct NetSpare* spare = nullptr;
  // helpers.cc: the templates, mountsFd and the spare are shared by the spawner threads
  // (spawner.cc): touched only under this lock
  std::mutex viewMu;
  // relay.cc: the egress proxy's splice relays (a thread and its epoll set), and how to stop them
  void* relay = nullptr;
  void (*relayFree)(void*) = nullptr;
  // spawner.cc: the thread that runs the blocking part of spawns (made by the first one)
  struct Spawner* spawner = nullptr;
  // exit_watch.cc: the environment's teardown (undo records), the addon's uv handles still
  // closing, and the async cleanup hook that waits for them
  struct Teardown* teardown = nullptr;
  int closingHandles = 0;
  napi_async_cleanup_hook_handle cleanupHook = nullptr;
  ~AddonData();
};

// Whether this environment can still run JS (false once a worker is being terminated or torn
// down). N-API calls that may run JS fail then, and node-addon-api's wrappers turn such a
// failure into napi_throw, which fails as well and aborts the process: a callback from the
// event loop (uv handle, async work) checks this first. The probe runs no JS.
inline bool CanRunJs(napi_env env) {
  napi_value o;
  bool has;
  return napi_create_object(env, &o) == napi_ok && napi_has_named_property(env, o, "x", &has) == napi_ok;
}

// A JS callback from the event loop (raw N-API: see exit_watch.cc): napi_make_callback, and a
// throw goes Node's uncaught-exception way, as for any callback.
inline void CallJs(napi_env env, napi_async_context async, napi_value fn, size_t argc, const napi_value* argv) {
  napi_value global, result;
  if (napi_get_global(env, &global) != napi_ok || napi_make_callback(env, async, global, fn, argc, argv, &result) != napi_pending_exception) return;
  napi_value ex;
  napi_valuetype t = napi_undefined;
  if (napi_get_and_clear_last_exception(env, &ex) == napi_ok && napi_typeof(env, ex, &t) == napi_ok && t != napi_undefined)
    napi_fatal_exception(env, ex);
}

// Drops a uv callback's JS reference and async context (either may be null already).
inline void ReleaseJs(napi_env env, napi_ref* cb, napi_async_context* async) {
  if (*cb) napi_delete_reference(env, *cb);
  *cb = nullptr;
  if (*async) napi_async_destroy(env, *async);
  *async = nullptr;
}

// Every uv handle of the addon counts its close (before uv_close, and at the end of its close
// callback): the environment's teardown waits for them all. exit_watch.cc.
void HandleClosing(AddonData* d);
void HandleClosed(AddonData* d);
void FreeTeardown(AddonData* d);

// Frees the spare network namespace (waiting for its maker if one runs). helpers.cc.
void FreeSpare(AddonData* d);

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
void InitNetlink(Napi::Env env, Napi::Object exports);
void InitNft(Napi::Env env, Napi::Object exports);
void InitSeccomp(Napi::Env env, Napi::Object exports);
void InitFs(Napi::Env env, Napi::Object exports);
void InitFdPass(Napi::Env env, Napi::Object exports);
void InitLifecycle(Napi::Env env, Napi::Object exports);
void InitRelay(Napi::Env env, Napi::Object exports);

}  // namespace nsbox

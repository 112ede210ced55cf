// Exit on the event loop: a pidfd watched with uv_poll, reaped with waitid(P_PIDFD) and its
// rusage. No SIGCHLD handler and no waitpid(-1), so child_process keeps its own children.
#include "common.h"
#include "sys.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <uv.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {

struct Watch {
  uv_poll_t poll;
  int pidfd;
  int statusFd = -1;  // nsbox-init writes the program's wait status here before it exits
  napi_env env;
  Napi::FunctionReference cb;
  Napi::AsyncContext* async;
  AddonData* data;
  Watch* next = nullptr;
  Watch** prev = nullptr;
  bool closing = false;
};

namespace {

void Unlink(Watch* w) {
  if (w->prev) { *w->prev = w->next; if (w->next) w->next->prev = w->prev; }
  w->prev = nullptr;
  w->next = nullptr;
}

void OnClosed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  close(w->pidfd);
  if (w->statusFd >= 0) close(w->statusFd);
  delete w->async;
  delete w;
}

void Stop(Watch* w) {
  if (w->closing) return;
  w->closing = true;
  Unlink(w);
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnClosed);
}

// The status nsbox-init wrote (it does so before it exits, so it is there by now), if any.
bool ReadStatus(int fd, int* st) {
  long n;
  do { n = sys::call(SYS_read, fd, st, sizeof *st); } while (n == -EINTR);
  return n == (long)sizeof *st;
}

void OnReadable(uv_poll_t* h, int status, int events) {
  Watch* w = static_cast<Watch*>(h->data);
  siginfo_t si{};
  struct rusage ru{};
  long r;
  do {
    r = sys::call(SYS_waitid, P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG | __WALL, &ru);
  } while (r == -EINTR);
  if (r == 0 && si.si_pid == 0) return;  // spurious: not exited yet
  TRACE(kTrExitSeen);
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  Napi::Object res = Napi::Object::New(env);
  if (r < 0) {
    res.Set("error", (double)-r);
  } else if (int st; w->statusFd >= 0 && ReadStatus(w->statusFd, &st)) {
    // pid 1 was nsbox-init: report the program's own end (init exits 128+N after signal N)
    if (WIFEXITED(st)) res.Set("exitCode", WEXITSTATUS(st));
    else {
      res.Set("signal", WTERMSIG(st));
      res.Set("coreDumped", (bool)WCOREDUMP(st));
    }
  } else if (si.si_code == CLD_EXITED) {
    res.Set("exitCode", si.si_status);
  } else {
    res.Set("signal", si.si_status);
    res.Set("coreDumped", si.si_code == CLD_DUMPED);
  }
  res.Set("utimeUs", (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec);
  res.Set("stimeUs", (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec);
  res.Set("maxRssKb", (double)ru.ru_maxrss);
  Napi::FunctionReference cb = std::move(w->cb);
  Napi::AsyncContext* async = w->async;
  w->async = nullptr;
  Stop(w);
  cb.MakeCallback(env.Global(), {res}, *async);
  delete async;
}

// watchExit(pidfd, callback, statusFd?): takes ownership of the pidfd and of statusFd (the
// read end of nsbox-init's status pipe), both closed after the reap.
Napi::Value WatchExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* d = env.GetInstanceData<AddonData>();
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  Watch* w = new Watch();
  w->pidfd = info[0].As<Napi::Number>().Int32Value();
  w->env = env;
  w->cb = Napi::Persistent(info[1].As<Napi::Function>());
  if (info.Length() > 2 && info[2].IsNumber()) w->statusFd = info[2].As<Napi::Number>().Int32Value();
  w->async = new Napi::AsyncContext(env, "nsbox:exit");
  w->data = d;
  w->poll.data = w;
  int r = uv_poll_init(loop, &w->poll, w->pidfd);
  if (r == 0) r = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  if (r != 0) {
    if (w->statusFd >= 0) close(w->statusFd);
    delete w->async;
    delete w;
    return ThrowErrno(env, -r, "watch", "uv_poll");
  }
  w->next = d->watches;
  if (w->next) w->next->prev = &w->next;
  w->prev = &d->watches;
  d->watches = w;
  return env.Undefined();
}

Watch* Find(AddonData* d, int pidfd) {
  for (Watch* w = d->watches; w; w = w->next) if (w->pidfd == pidfd) return w;
  return nullptr;
}

// ref(pidfd, bool): whether a running sandbox keeps the event loop alive.
Napi::Value RefWatch(const Napi::CallbackInfo& info) {
  AddonData* d = info.Env().GetInstanceData<AddonData>();
  Watch* w = Find(d, info[0].As<Napi::Number>().Int32Value());
  if (w) {
    if (info[1].ToBoolean()) uv_ref(reinterpret_cast<uv_handle_t*>(&w->poll));
    else uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
  }
  return info.Env().Undefined();
}

}  // namespace

void InitExitWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchExit", Napi::Function::New(env, WatchExit, "watchExit"));
  exports.Set("refWatch", Napi::Function::New(env, RefWatch, "refWatch"));
  napi_add_env_cleanup_hook(env, [](void* arg) {
    napi_env e = static_cast<napi_env>(arg);
    AddonData* d = Napi::Env(e).GetInstanceData<AddonData>();
    while (d && d->watches) {
      Watch* w = d->watches;
      w->cb.Reset();  // the environment is still valid here; not in the close callback
      delete w->async;
      w->async = nullptr;
      Stop(w);
    }
  }, static_cast<void*>(env));
}

}  // namespace nsbox

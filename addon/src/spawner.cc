// The spawner threads (see spawner.h): a queue in, a queue out, a uv_async_t to wake the loop.
#include "spawner.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <uv.h>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace nsbox {

struct Spawner {
  napi_env env = nullptr;
  AddonData* d = nullptr;
  std::vector<std::thread> threads;  // grown and joined on the loop thread only
  std::mutex mu;
  std::condition_variable cv;
  std::deque<SpawnerTask*> in, out;  // under mu
  bool stop = false;                 // under mu
  int idle = 0;                      // threads waiting for a task (under mu)
  uv_async_t* async = nullptr;       // closed by StopSpawner; freed in its close callback
  int pending = 0;                   // tasks submitted and not done (loop thread only)
};

namespace {

void ThreadMain(Spawner* s) {
  // every signal blocked: signals of the process go to its other threads (glibc keeps the one
  // it needs for setuid across threads); the children set their own mask before exec
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  prctl(PR_SET_NAME, "nsbox-spawner");
  // this thread's child and helper stacks: free once it ends, as every child it made has
  // exec'd or died by the end of its task
  SpawnStacks stacks;
  for (;;) {
    SpawnerTask* t;
    {
      std::unique_lock<std::mutex> lock(s->mu);
      s->idle++;
      s->cv.wait(lock, [s] { return s->stop || !s->in.empty(); });
      s->idle--;
      if (s->stop) break;
      t = s->in.front();
      s->in.pop_front();
    }
    t->Run(s->d, &stacks);
    t->ran = true;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      s->out.push_back(t);
    }
    uv_async_send(s->async);
  }
  FreeSpawnStacks(&stacks);
}

// Raw N-API (see exit_watch.cc): the environment may be on its way out.
void OnDone(uv_async_t* h) {
  Spawner* s = static_cast<Spawner*>(h->data);
  std::deque<SpawnerTask*> done;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    done.swap(s->out);
  }
  for (SpawnerTask* t : done) {
    s->pending--;
    napi_handle_scope scope;
    if (napi_open_handle_scope(s->env, &scope) != napi_ok) { t->Drop(); delete t; continue; }
    if (CanRunJs(s->env)) t->Done(s->env);
    else t->Drop();
    napi_close_handle_scope(s->env, scope);
    delete t;
  }
  // a Done may have submitted more (and StopSpawner may have run in it: then h is closing)
  if (s->pending == 0 && s->async) uv_unref(reinterpret_cast<uv_handle_t*>(s->async));
}

// kMaxSpawnerThreads; NSBOX_SPAWNER_THREADS=n (1..kMaxSpawnerThreads) when the addon loads
// sets another limit (bench/ compares them)
int MaxThreads() {
  static const int n = [] {
    const char* v = getenv("NSBOX_SPAWNER_THREADS");
    int k = v ? atoi(v) : 0;
    return k >= 1 && k <= kMaxSpawnerThreads ? k : kMaxSpawnerThreads;
  }();
  return n;
}

struct FnTask : SpawnerTask {
  void (*fn)(AddonData*);
  explicit FnTask(void (*f)(AddonData*)) : fn(f) {}
  void Run(AddonData* d, SpawnStacks*) override { fn(d); }
  void Done(napi_env) override {}
};

}  // namespace

void SpawnerSubmit(napi_env env, AddonData* d, SpawnerTask* t) {
  Spawner* s = d->spawner;
  if (!s) {
    s = new Spawner();
    s->env = env;
    s->d = d;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    s->async = new uv_async_t();
    uv_async_init(loop, s->async, OnDone);
    s->async->data = s;
    uv_unref(reinterpret_cast<uv_handle_t*>(s->async));
    d->spawner = s;
  }
  if (s->pending++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(s->async));
  bool more;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->in.push_back(t);
    // every thread busy (or none yet): one more, up to the limit
    more = s->idle < (int)s->in.size() && s->threads.size() < (size_t)MaxThreads();
  }
  if (more) s->threads.emplace_back(ThreadMain, s);
  s->cv.notify_one();
}

void OnSpawner(napi_env env, AddonData* d, void (*fn)(AddonData*)) {
  if (!d->spawner) { fn(d); return; }
  SpawnerSubmit(env, d, new FnTask(fn));
}

void StopSpawner(AddonData* d, bool closeHandle) {
  Spawner* s = d->spawner;
  if (!s) return;
  d->spawner = nullptr;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->stop = true;
  }
  s->cv.notify_all();
  for (std::thread& th : s->threads) if (th.joinable()) th.join();
  // the threads are gone (its sandboxes got their parent-death signal); what is left is dropped
  for (SpawnerTask* t : s->out) { t->Drop(); delete t; }
  for (SpawnerTask* t : s->in) { t->Drop(); delete t; }
  s->out.clear();
  s->in.clear();
  if (!closeHandle) { delete s; return; }  // ~AddonData: the loop is gone, and with it the handle
  HandleClosing(d);
  s->async->data = d;
  uv_close(reinterpret_cast<uv_handle_t*>(s->async), [](uv_handle_t* h) {
    AddonData* dd = static_cast<AddonData*>(h->data);
    delete reinterpret_cast<uv_async_t*>(h);
    HandleClosed(dd);
  });
  s->async = nullptr;
  delete s;
}

}  // namespace nsbox

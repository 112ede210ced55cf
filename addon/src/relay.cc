// Byte relays between two sockets in the kernel (splice(2) through a pipe per direction), for
// the egress proxy's tunnels (lib/net/egress/relay.ts): once a CONNECT or SOCKS5 tunnel is
// set up, its bytes never pass through JavaScript. One thread per environment waits on an
// epoll set (edge-triggered) and moves whatever is ready; a relay ends when both directions
// have seen EOF (each passed on with shutdown(SHUT_WR)), on the first error, or when
// cancelled; then both sockets are closed and the JS callback gets the byte counts.
#include "common.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace nsbox {
namespace {

struct Dir {
  int src = -1, dst = -1;
  int p[2] = {-1, -1};
  size_t inPipe = 0;
  bool eof = false, shut = false;
  bool grown = false;  // the pipe made larger (kChunk) once this direction filled it
  uint64_t bytes = 0;
};

struct Relay {
  uint32_t id;
  int a, b;
  Dir ab, ba;
};

struct Done {
  uint32_t id;
  uint64_t ab, ba;
  int err;
};

struct RelayLoop {
  int ep = -1, wake = -1;
  std::thread th;
  std::mutex mu;
  std::vector<Relay*> adds;      // under mu
  std::vector<uint32_t> cancels; // under mu
  bool stop = false;             // under mu
  std::unordered_map<uint32_t, Relay*> live;  // the thread's
  Napi::ThreadSafeFunction tsfn;
  std::unordered_map<uint32_t, Napi::FunctionReference> cbs;  // the JS thread's
  uint32_t next = 1;
};

constexpr size_t kChunk = 1 << 18;
// A new pipe's size (16 pages). A relay's pipes start so and are made kChunk only once a direction
// fills one: pipes count against the user's pipe-user-pages-soft (16384 pages by default, for a
// caller without CAP_SYS_RESOURCE/CAP_SYS_ADMIN), and past it every new pipe of that user, the
// relay's and anyone else's, gets a single page. Idle and small tunnels (most of them) now cost
// 32 pages each instead of 128.
constexpr size_t kDefaultPipe = 1 << 16;
constexpr uint64_t kTurn = 8u << 20;  // bytes one relay moves before the others get a turn

// Moves what is ready in one direction; 0 (would block, or done), 1 (its turn is over, more
// may be ready), or an errno.
int PumpDir(Dir& d, uint64_t* budget) {
  for (;;) {
    if (d.inPipe) {
      ssize_t n = splice(d.p[0], nullptr, d.dst, nullptr, d.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.inPipe -= (size_t)n;
        d.bytes += (uint64_t)n;
        if (*budget <= (uint64_t)n) { *budget = 0; return 1; }
        *budget -= (uint64_t)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return 0;
      return n < 0 ? errno : EPIPE;
    }
    if (d.eof) {
      if (!d.shut) { shutdown(d.dst, SHUT_WR); d.shut = true; }
      return 0;
    }
    ssize_t n = splice(d.src, nullptr, d.p[1], nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.inPipe += (size_t)n;
      if (!d.grown && (size_t)n >= kDefaultPipe) {
        d.grown = true;
        fcntl(d.p[1], F_SETPIPE_SZ, (int)kChunk);  // a bulk transfer: a larger pipe where allowed
      }
      continue;
    }
    if (n == 0) { d.eof = true; continue; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return errno;
  }
}

void Free(Relay* r) {
  close(r->a);
  close(r->b);
  for (Dir* d : {&r->ab, &r->ba}) { if (d->p[0] >= 0) close(d->p[0]); if (d->p[1] >= 0) close(d->p[1]); }
  delete r;
}

void Finish(RelayLoop* L, Relay* r, int err) {
  L->live.erase(r->id);
  Done* d = new Done{r->id, r->ab.bytes, r->ba.bytes, err};
  Free(r);
  auto call = [](Napi::Env env, Napi::Function, Done* x) {
    if (env) {
      RelayLoop* L = static_cast<RelayLoop*>(env.GetInstanceData<AddonData>()->relay);
      if (L) {
        auto it = L->cbs.find(x->id);
        if (it != L->cbs.end()) {
          Napi::FunctionReference cb = std::move(it->second);
          L->cbs.erase(it);
          cb.Call({Napi::Number::New(env, x->err), Napi::Number::New(env, (double)x->ab), Napi::Number::New(env, (double)x->ba)});
        }
      }
    }
    delete x;
  };
  if (L->tsfn.NonBlockingCall(d, call) != napi_ok) delete d;
}

// Returns true when the relay wants another turn (its budget ran out).
bool Pump(RelayLoop* L, Relay* r) {
  uint64_t budget = kTurn;
  int e = PumpDir(r->ab, &budget);
  if (e == 0 || e == 1) {
    int e2 = PumpDir(r->ba, &budget);
    if (e2 > 1) e = e2; else if (e2 == 1) e = 1;
  }
  if (e > 1) { Finish(L, r, e); return false; }
  if (r->ab.shut && r->ba.shut && !r->ab.inPipe && !r->ba.inPipe) { Finish(L, r, 0); return false; }
  return e == 1;
}

void Run(RelayLoop* L) {
  prctl(PR_SET_NAME, "nsbox-relay");  // its own name in /proc and top (the bench reads its CPU time by it)
  epoll_event evs[64];
  std::vector<uint32_t> again;
  for (;;) {
    int n = epoll_wait(L->ep, evs, 64, again.empty() ? -1 : 0);
    if (n < 0 && errno != EINTR) n = 0;
    std::vector<uint32_t> turn;
    turn.swap(again);
    for (int i = 0; i < n; i++) {
      uint32_t id = (uint32_t)evs[i].data.u64;
      if (id != 0) { turn.push_back(id); continue; }
      uint64_t x;
      (void)!read(L->wake, &x, sizeof x);
      std::vector<Relay*> adds;
      std::vector<uint32_t> cancels;
      bool stop;
      {
        std::lock_guard<std::mutex> g(L->mu);
        adds.swap(L->adds);
        cancels.swap(L->cancels);
        stop = L->stop;
      }
      if (stop) {
        for (Relay* r : adds) Free(r);
        for (auto& [_, r] : L->live) Free(r);
        L->live.clear();
        return;
      }
      for (Relay* r : adds) {
        L->live[r->id] = r;
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = r->id;
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, r->a, &ev) < 0 || epoll_ctl(L->ep, EPOLL_CTL_ADD, r->b, &ev) < 0) { Finish(L, r, errno); continue; }
        turn.push_back(r->id);
      }
      for (uint32_t id : cancels) {
        auto it = L->live.find(id);
        if (it != L->live.end()) Finish(L, it->second, ECANCELED);
      }
    }
    for (uint32_t id : turn) {
      auto it = L->live.find(id);
      if (it != L->live.end() && Pump(L, it->second)) again.push_back(id);
    }
  }
}

void StopLoop(void* arg) {
  RelayLoop* L = static_cast<RelayLoop*>(arg);
  {
    std::lock_guard<std::mutex> g(L->mu);
    L->stop = true;
  }
  uint64_t one = 1;
  (void)!write(L->wake, &one, sizeof one);
  if (L->th.joinable()) L->th.join();
  L->tsfn.Release();
  close(L->ep);
  close(L->wake);
  L->cbs.clear();
}

RelayLoop* LoopOf(Napi::Env env) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (d->relay) return static_cast<RelayLoop*>(d->relay);
  RelayLoop* L = new RelayLoop();
  L->ep = epoll_create1(EPOLL_CLOEXEC);
  L->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (L->ep < 0 || L->wake < 0) {
    int e = errno;
    const char* sc = L->ep < 0 ? "epoll_create1" : "eventfd";
    if (L->ep >= 0) close(L->ep);
    if (L->wake >= 0) close(L->wake);
    delete L;
    ThrowErrno(env, e, "egress", sc);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  epoll_ctl(L->ep, EPOLL_CTL_ADD, L->wake, &ev);
  L->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "nsbox:relay", 0, 1);
  L->tsfn.Unref(env);
  L->th = std::thread(Run, L);
  d->relay = L;
  d->relayFree = [](void* p) { StopLoop(p); delete static_cast<RelayLoop*>(p); };
  napi_add_env_cleanup_hook(env, [](void* arg) {
    AddonData* d = static_cast<AddonData*>(arg);
    if (d->relay) { d->relayFree(d->relay); d->relay = nullptr; }
  }, d);
  return L;
}

// relayStart(fdA, fdB, cb, oneWay) -> id: relays between copies of the two sockets (the
// caller's fds stay its own); cb(errno, bytesAtoB, bytesBtoA) once both are closed. With
// oneWay, only B to A: nothing A sends is read, and the relay ends once B's EOF is passed on.
Napi::Value RelayStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RelayLoop* L = LoopOf(env);
  if (!L) return env.Undefined();
  int fa = info[0].As<Napi::Number>().Int32Value(), fb = info[1].As<Napi::Number>().Int32Value();
  Relay* r = new Relay();
  r->a = fcntl(fa, F_DUPFD_CLOEXEC, 3);
  r->b = r->a < 0 ? -1 : fcntl(fb, F_DUPFD_CLOEXEC, 3);
  int e = 0;
  if (r->a < 0 || r->b < 0) e = errno;
  for (Dir* d : {&r->ab, &r->ba}) {
    if (!e && pipe2(d->p, O_CLOEXEC | O_NONBLOCK) < 0) e = errno;  // kDefaultPipe: grown on use
  }
  if (e) {
    if (r->a >= 0) close(r->a);
    if (r->b >= 0) close(r->b);
    for (Dir* d : {&r->ab, &r->ba}) { if (d->p[0] >= 0) close(d->p[0]); if (d->p[1] >= 0) close(d->p[1]); }
    delete r;
    return ThrowErrno(env, e, "egress", "relay");
  }
  // both sockets non-blocking: the thread never waits in splice
  for (int fd : {r->a, r->b}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  r->ab.src = r->a; r->ab.dst = r->b;
  if (info[3].ToBoolean().Value()) r->ab.eof = r->ab.shut = true;  // never pumped
  r->ba.src = r->b; r->ba.dst = r->a;
  r->id = L->next++;
  if (L->next == 0) L->next = 1;
  L->cbs[r->id] = Napi::Persistent(info[2].As<Napi::Function>());
  {
    std::lock_guard<std::mutex> g(L->mu);
    L->adds.push_back(r);
  }
  uint64_t one = 1;
  (void)!write(L->wake, &one, sizeof one);
  return Napi::Number::New(env, r->id);
}

// relayCancel(id): ends a relay (its callback gets ECANCELED); unknown ids are ignored.
Napi::Value RelayCancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!d->relay) return env.Undefined();
  RelayLoop* L = static_cast<RelayLoop*>(d->relay);
  {
    std::lock_guard<std::mutex> g(L->mu);
    L->cancels.push_back(info[0].As<Napi::Number>().Uint32Value());
  }
  uint64_t one = 1;
  (void)!write(L->wake, &one, sizeof one);
  return env.Undefined();
}

}  // namespace

void InitRelay(Napi::Env env, Napi::Object exports) {
  exports.Set("relayStart", Napi::Function::New(env, RelayStart, "relayStart"));
  exports.Set("relayCancel", Napi::Function::New(env, RelayCancel, "relayCancel"));
}

}  // namespace nsbox

// Exit on the event loop: a pidfd watched with uv_poll, reaped with waitid(P_PIDFD) and its
// rusage. No SIGCHLD handler and no waitpid(-1), so child_process keeps its own children.
//
// And the environment's teardown. A sandbox belongs to the thread whose event loop watches
// it: when that thread's environment ends (a worker ends or is terminated, process.exit, the
// loop runs out), its sandboxes are killed and reaped here, synchronously, and what nsbox made
// for them in JS (cgroup directories, overlay mounts and upper dirs, veth links, state files,
// fds) is undone from the undo records JS registered (teardownAdd) and drops once it releases
// them itself (teardownDrop). In a worker the addon's async cleanup hook runs this, where JS
// no longer can; on the main thread process.on('exit') calls teardownRun (process.exit runs
// no cleanup hooks there). The hook then waits for every uv handle of the addon to finish
// closing: the addon is unloaded after the environment, and a close callback left for later
// would jump into unmapped code.
#include "common.h"
#include "spawner.h"
#include "sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <time.h>
#include <uv.h>
#include <string>
#include <vector>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {

struct Watch {
  uv_poll_t poll;
  int pidfd;
  int statusFd = -1;  // nsbox-init writes the program's wait status here before it exits
  napi_env env;
  napi_ref cb = nullptr;
  napi_async_context async = nullptr;
  AddonData* data;
  Watch* next = nullptr;
  Watch** prev = nullptr;
  bool closing = false;
  bool keep = false;    // spawned with parentDeathSignal: false: outlives the thread (not killed)
};

// What JS registered for a sandbox, undone at teardown unless dropped first.
struct Undo {
  uint32_t id;
  std::vector<int> pidfds;  // sandboxes not watched yet (a prepared one before its run): killed, reaped, closed
  std::vector<int> fds;
  std::vector<std::string> cgroups, mounts, dirs, files, links;
};

struct Teardown {
  std::vector<Undo> undos;  // oldest first; undone newest first
  uint32_t nextId = 1;
  bool ran = false;
};

namespace {

void Unlink(Watch* w) {
  if (w->prev) { *w->prev = w->next; if (w->next) w->next->prev = w->prev; }
  w->prev = nullptr;
  w->next = nullptr;
}

// JS references go with the watch (ReleaseJs); the environment is alive wherever it is called.
void OnClosed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  AddonData* d = w->data;
  close(w->pidfd);
  if (w->statusFd >= 0) close(w->statusFd);
  ReleaseJs(w->env, &w->cb, &w->async);
  delete w;
  HandleClosed(d);
}

void Stop(Watch* w) {
  if (w->closing) return;
  w->closing = true;
  Unlink(w);
  uv_poll_stop(&w->poll);
  HandleClosing(w->data);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnClosed);
}

// The status nsbox-init wrote (it does so before it exits, so it is there by now), if any.
bool ReadStatus(int fd, int* st) {
  long n;
  do { n = sys::call(SYS_read, fd, st, sizeof *st); } while (n == -EINTR);
  return n == (long)sizeof *st;
}

// Raw N-API here, never node-addon-api's wrappers: in an environment that is being torn down
// (a terminated worker) every call into JS fails, and the wrappers turn a failure into
// napi_throw, which fails too and aborts the process.
void OnReadable(uv_poll_t* h, int status, int events) {
  Watch* w = static_cast<Watch*>(h->data);
  if (w->closing) return;
  siginfo_t si{};
  struct rusage ru{};
  long r;
  do {
    r = sys::call(SYS_waitid, P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG | __WALL, &ru);
  } while (r == -EINTR);
  if (r == 0 && si.si_pid == 0) return;  // spurious: not exited yet
  TRACE(kTrExitSeen);
  napi_env env = w->env;
  if (w->data->teardown && w->data->teardown->ran) { Stop(w); return; }
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) { Stop(w); return; }
  napi_value res = nullptr, fn = nullptr;
  bool ok = napi_create_object(env, &res) == napi_ok;
  auto num = [&](const char* k, double v) {
    napi_value x;
    ok = ok && napi_create_double(env, v, &x) == napi_ok && napi_set_named_property(env, res, k, x) == napi_ok;
  };
  auto flag = [&](const char* k, bool v) {
    napi_value x;
    ok = ok && napi_get_boolean(env, v, &x) == napi_ok && napi_set_named_property(env, res, k, x) == napi_ok;
  };
  if (r < 0) {
    num("error", (double)-r);
  } else if (int st; w->statusFd >= 0 && ReadStatus(w->statusFd, &st)) {
    // pid 1 was nsbox-init: report the program's own end (init exits 128+N after signal N)
    if (WIFEXITED(st)) num("exitCode", WEXITSTATUS(st));
    else {
      num("signal", WTERMSIG(st));
      flag("coreDumped", WCOREDUMP(st));
    }
  } else if (si.si_code == CLD_EXITED) {
    num("exitCode", si.si_status);
  } else {
    num("signal", si.si_status);
    flag("coreDumped", si.si_code == CLD_DUMPED);
  }
  num("utimeUs", (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec);
  num("stimeUs", (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec);
  num("maxRssKb", (double)ru.ru_maxrss);
  ok = ok && w->cb && napi_get_reference_value(env, w->cb, &fn) == napi_ok && fn;
  napi_async_context async = w->async;
  Stop(w);  // closes on a later turn of the loop: cb and async stay valid for this call
  if (ok) CallJs(env, async, fn, 1, &res);  // a throw: Node's uncaught-exception path
  napi_close_handle_scope(env, scope);
}

// watchExit(pidfd, callback, statusFd?, keep?): takes ownership of the pidfd and of statusFd
// (the read end of nsbox-init's status pipe), both closed after the reap. `keep`: the sandbox
// outlives this thread (parentDeathSignal: false): the teardown leaves it running.
Napi::Value WatchExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* d = env.GetInstanceData<AddonData>();
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  Watch* w = new Watch();
  w->pidfd = info[0].As<Napi::Number>().Int32Value();
  w->env = env;
  if (info.Length() > 2 && info[2].IsNumber()) w->statusFd = info[2].As<Napi::Number>().Int32Value();
  w->keep = info.Length() > 3 && info[3].ToBoolean();
  w->data = d;
  w->poll.data = w;
  napi_value name;
  napi_create_string_utf8(env, "nsbox:exit", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, info[1], 1, &w->cb);
  napi_async_init(env, nullptr, name, &w->async);
  int r = uv_poll_init(loop, &w->poll, w->pidfd);
  if (r == 0) r = uv_poll_start(&w->poll, UV_READABLE, OnReadable);
  if (r != 0) {
    if (w->statusFd >= 0) close(w->statusFd);
    ReleaseJs(w->env, &w->cb, &w->async);
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

Teardown* TeardownOf(AddonData* d) {
  if (!d->teardown) d->teardown = new Teardown();
  return d->teardown;
}

void SleepMs(long ms) {
  struct timespec t{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) < 0 && errno == EINTR) {}
}

bool WriteSmall(const std::string& path, const char* s) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd.valid() && write(fd.get(), s, strlen(s)) == (ssize_t)strlen(s);
}

// SIGKILLs every task of a cgroup directory (v2 cgroup.kill; else each pid of cgroup.procs,
// never our own; RunTeardown thawed it) and removes it, waiting at most ~1 s for the tasks to go.
void RemoveCgroup(const std::string& dir) {
  const pid_t self = getpid();
  for (int i = 0; i < 100; i++) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) return;
    if (!WriteSmall(dir + "/cgroup.kill", "1")) {
      UniqueFd fd(open((dir + "/cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return;
      std::string s;
      char buf[4096];
      ssize_t n;
      while ((n = read(fd.get(), buf, sizeof buf)) > 0) s.append(buf, (size_t)n);
      for (size_t p = 0; p < s.size();) {
        size_t e = s.find('\n', p);
        if (e == std::string::npos) e = s.size();
        pid_t pid = (pid_t)atol(s.c_str() + p);
        if (pid > 0 && pid != self) kill(pid, SIGKILL);
        p = e + 1;
      }
    }
    SleepMs(i < 10 ? 1 : 10);
  }
}

// Removes a directory tree without following symlinks or leaving its filesystem.
void RemoveTreeAt(int dirfd, const char* name, dev_t dev, int depth) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT || depth > 256) return;
  UniqueFd d(openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.valid()) return;
  struct stat st;
  if (fstat(d.get(), &st) < 0 || st.st_dev != dev) return;  // a mount: not ours to empty
  int dup = fcntl(d.get(), F_DUPFD_CLOEXEC, 0);
  DIR* dir = dup >= 0 ? fdopendir(dup) : nullptr;
  if (!dir) { if (dup >= 0) close(dup); return; }
  std::vector<std::string> names;
  while (struct dirent* de = readdir(dir)) {
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) names.push_back(de->d_name);
  }
  closedir(dir);
  for (auto& n : names) RemoveTreeAt(d.get(), n.c_str(), dev, depth + 1);
  unlinkat(dirfd, name, AT_REMOVEDIR);
}

void RemoveTree(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 >= path.size()) return;
  std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  UniqueFd p(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!p.valid()) return;
  struct stat st;
  if (fstatat(p.get(), path.c_str() + slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) return;
  RemoveTreeAt(p.get(), path.c_str() + slash + 1, st.st_dev, 0);
}

// Deletes a link of the caller's network namespace by name (its veth peer goes with it).
void DeleteLink(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return;
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd.valid()) return;
  struct {
    struct nlmsghdr h;
    struct ifinfomsg i;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = RTM_DELLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.h.nlmsg_seq = 1;
  req.i.ifi_family = AF_UNSPEC;
  req.i.ifi_index = (int)idx;
  struct sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (sendto(fd.get(), &req, sizeof req, 0, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) return;
  char buf[1024];
  while (recv(fd.get(), buf, sizeof buf, 0) < 0 && errno == EINTR) {}  // the ack: the link is gone
}

// Waits for a killed process behind a pidfd and reaps it. At most 5 s: a task stuck in the
// kernel (a dead NFS or FUSE server) must not hold the thread's end forever.
void ReapPidfd(int pidfd) {
  // uv_poll makes a watched pidfd non-blocking (waitid would say EAGAIN): wait until readable
  struct pollfd pf{pidfd, POLLIN, 0};
  int n;
  while ((n = poll(&pf, 1, 5000)) < 0 && errno == EINTR) {}
  if (n <= 0) return;
  siginfo_t si;
  long r;
  do { r = sys::call(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED | __WALL, nullptr); } while (r == -EINTR);
}

void RunUndo(const Undo& u) {
  for (int fd : u.pidfds) sys::call(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
  for (int fd : u.pidfds) { ReapPidfd(fd); close(fd); }
  for (int fd : u.fds) close(fd);
  for (const auto& c : u.cgroups) RemoveCgroup(c);
  for (const auto& m : u.mounts) umount2(m.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  for (const auto& d : u.dirs) RemoveTree(d);
  for (const auto& f : u.files) unlink(f.c_str());
  for (const auto& l : u.links) DeleteLink(l);
}

// Kills and reaps this environment's sandboxes (all but those meant to outlive it), then
// undoes every registered record, newest first. Synchronous; runs once.
void RunTeardown(AddonData* d) {
  Teardown* t = TeardownOf(d);
  if (t->ran) return;
  t->ran = true;
  for (Watch* w = d->watches; w; w = w->next)
    if (!w->keep) sys::call(SYS_pidfd_send_signal, w->pidfd, SIGKILL, nullptr, 0);
  // a paused sandbox (a frozen cgroup) dies only once thawed on cgroup v1
  for (const Undo& u : t->undos)
    for (const auto& c : u.cgroups) {
      WriteSmall(c + "/freezer.state", "THAWED");
      WriteSmall(c + "/cgroup.freeze", "0");
    }
  for (Watch* w = d->watches; w; w = w->next)
    if (!w->keep) ReapPidfd(w->pidfd);
  std::vector<Undo> undos = std::move(t->undos);
  t->undos.clear();
  for (auto it = undos.rbegin(); it != undos.rend(); ++it) RunUndo(*it);
}

void StopAll(AddonData* d) {
  while (d->watches) Stop(d->watches);
}

std::vector<std::string> Strings(Napi::Object o, const char* key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (x.IsString()) out.push_back(x.As<Napi::String>().Utf8Value());
  }
  return out;
}

// teardownAdd({ pidfds?, fds?, cgroups?, mounts?, dirs?, files?, links? }) -> id
Napi::Value TeardownAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "teardownAdd(record): record must be an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  Teardown* t = TeardownOf(env.GetInstanceData<AddonData>());
  Undo u;
  u.id = t->nextId++;
  for (auto [key, out] : {std::pair{"pidfds", &u.pidfds}, std::pair{"fds", &u.fds}}) {
    Napi::Value v = o.Get(key);
    if (!v.IsArray()) continue;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++)
      if (Napi::Value x = a.Get(i); x.IsNumber() && x.As<Napi::Number>().Int32Value() >= 0) out->push_back(x.As<Napi::Number>().Int32Value());
  }
  u.cgroups = Strings(o, "cgroups");
  u.mounts = Strings(o, "mounts");
  u.dirs = Strings(o, "dirs");
  u.files = Strings(o, "files");
  u.links = Strings(o, "links");
  t->undos.push_back(std::move(u));
  return Napi::Number::New(env, t->undos.back().id);
}

// teardownDrop(id): the record's owner released it itself.
Napi::Value TeardownDrop(const Napi::CallbackInfo& info) {
  Teardown* t = TeardownOf(info.Env().GetInstanceData<AddonData>());
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  for (auto it = t->undos.begin(); it != t->undos.end(); ++it)
    if (it->id == id) { t->undos.erase(it); break; }
  return info.Env().Undefined();
}

// teardownRun(): the teardown now (process.on('exit') on the main thread). The watches stop
// with it: no exit callback runs after this.
Napi::Value TeardownRun(const Napi::CallbackInfo& info) {
  AddonData* d = info.Env().GetInstanceData<AddonData>();
  RunTeardown(d);
  StopAll(d);
  return info.Env().Undefined();
}

void OnAsyncCleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  AddonData* d = static_cast<AddonData*>(arg);
  // no spawn finishes after this: the spawner's thread ends (its sandboxes' parent-death
  // signal fires), and a spawn it finished that JS never saw is killed (spawner.h)
  StopSpawner(d);
  RunTeardown(d);
  StopAll(d);
  d->cleanupHook = handle;
  if (d->closingHandles == 0) {
    d->cleanupHook = nullptr;
    napi_remove_async_cleanup_hook(handle);
  }
}

}  // namespace

void HandleClosing(AddonData* d) { d->closingHandles++; }

void HandleClosed(AddonData* d) {
  if (--d->closingHandles == 0 && d->cleanupHook) {
    napi_async_cleanup_hook_handle h = d->cleanupHook;
    d->cleanupHook = nullptr;
    napi_remove_async_cleanup_hook(h);
  }
}

void FreeTeardown(AddonData* d) {
  delete d->teardown;
  d->teardown = nullptr;
}

void InitExitWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchExit", Napi::Function::New(env, WatchExit, "watchExit"));
  exports.Set("refWatch", Napi::Function::New(env, RefWatch, "refWatch"));
  exports.Set("teardownAdd", Napi::Function::New(env, TeardownAdd, "teardownAdd"));
  exports.Set("teardownDrop", Napi::Function::New(env, TeardownDrop, "teardownDrop"));
  exports.Set("teardownRun", Napi::Function::New(env, TeardownRun, "teardownRun"));
  napi_add_async_cleanup_hook(env, OnAsyncCleanup, env.GetInstanceData<AddonData>(), nullptr);
}

}  // namespace nsbox

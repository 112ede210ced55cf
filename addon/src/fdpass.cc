// Passing fds over unix sockets with SCM_RIGHTS (Node has no API for it): N-API fdSend and
// fdRecv behind lib/net/fdpass.ts, and the plain calls spawn.cc uses to hand a terminal's
// master to an OCI console socket.
//
// On the event loop, never blocking it and holding no thread of the pool: each call works on
// its own dup of the socket and tries at once with MSG_DONTWAIT; only when that would block
// does a uv_poll wait for the dup to become readable (writable), and the call is tried again.
// The dup is what lets the poll live beside the uv handle Node may have on the same socket:
// libuv keeps one watcher per fd number, epoll registers (fd, file) pairs. A thread blocked in
// recvmsg would instead hold a pool thread for as long as the peer stays silent, and could not
// be called off when the environment ends.
#include "common.h"
#include "fdpass.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>
#include <string>
#include <vector>

namespace nsbox {

int UnixConnect(const char* path, const char* step, Err* e) {
  struct sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n == 0) return Fail(e, ENOENT, step, "connect", path);
  if (n >= sizeof a.sun_path) return Fail(e, ENAMETOOLONG, step, "connect", path);
  memcpy(a.sun_path, path, n);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return Fail(e, errno, step, "socket", path);
  int r;
  do { r = connect(s, reinterpret_cast<sockaddr*>(&a), (socklen_t)(offsetof(sockaddr_un, sun_path) + n + 1)); } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(s);
    return Fail(e, err, step, "connect", path);
  }
  return s;
}

long SendFdsOnce(int sock, const int* fds, size_t nfds, const void* data, size_t len, const char* step, Err* e) {
  struct iovec iov{const_cast<void*>(data), len};
  struct msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> ctl;
  if (nfds) {
    ctl.assign(CMSG_SPACE(nfds * sizeof(int)), 0);
    m.msg_control = ctl.data();
    m.msg_controllen = ctl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t r;
  do { r = sendmsg(sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
  if (r < 0) return Fail(e, errno, step, "sendmsg");
  return r;
}

namespace {

// One sendFds or recvFds call. Owns its socket (a dup of the caller's, or one it connected)
// and, for a send, dups of the fds to send (so the caller may close its own at once).
struct FdOp {
  uv_poll_t poll;
  bool recv = false;
  UniqueFd sock;
  std::string path;          // the console/peer path when we connected, for errors
  // send
  std::vector<int> fds;      // closed once they are on their way
  std::vector<char> out;
  size_t off = 0;
  // recv
  unsigned maxFds = 0;
  size_t maxData = 0;
  std::vector<int> got;
  std::vector<char> in;
  Err err;
  // while waiting
  napi_env env = nullptr;
  AddonData* data = nullptr;
  napi_ref cb = nullptr;
  napi_async_context async = nullptr;
  bool polling = false, closing = false, hooked = false;

  ~FdOp() {
    for (int fd : fds) close(fd);
    for (int fd : got) close(fd);
  }
};

// Moves the call on: 1 done, 0 would block, -errno failed (op->err filled).
int Step(FdOp* op) {
  const char* step = op->recv ? "recvFds" : "sendFds";
  if (!op->recv) {
    while (op->off < op->out.size()) {
      long r = SendFdsOnce(op->sock.get(), op->fds.data(), op->fds.size(), op->out.data() + op->off, op->out.size() - op->off, step, &op->err);
      if (r == -EAGAIN || r == -EWOULDBLOCK) { op->err = Err(); return 0; }
      if (r < 0) return Wrap(&op->err, (int)r, nullptr, op->path.empty() ? nullptr : op->path.c_str());
      // the fds went with the first byte; the rest of the data goes without them
      for (int fd : op->fds) close(fd);
      op->fds.clear();
      op->off += (size_t)r;
    }
    return 1;
  }
  op->in.assign(op->maxData, 0);
  std::vector<char> ctl(CMSG_SPACE(op->maxFds * sizeof(int)), 0);
  struct iovec iov{op->in.data(), op->in.size()};
  struct msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.data();
  m.msg_controllen = ctl.size();
  ssize_t r;
  do { r = recvmsg(op->sock.get(), &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  if (r < 0) return Fail(&op->err, errno, step, "recvmsg");
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, p + i * sizeof(int), sizeof fd);
      op->got.push_back(fd);
    }
  }
  if (m.msg_flags & MSG_CTRUNC) {
    // the kernel closed the fds that did not fit; ours go too (FdOp's destructor)
    Fail(&op->err, EMSGSIZE, step, "recvmsg");
    CopyStr(op->err.message, sizeof op->err.message, "more fds came than maxFds: all of them were closed");
    return -EMSGSIZE;
  }
  op->in.resize((size_t)r);
  return 1;
}

// The result for JS: bytes sent, or { fds, data } (the fds are JS's from here on).
napi_status Result(napi_env env, FdOp* op, napi_value* out) {
  if (!op->recv) return napi_create_double(env, (double)op->off, out);
  napi_value fds, buf, x;
  napi_status s = napi_create_object(env, out);
  if (s == napi_ok) s = napi_create_array_with_length(env, op->got.size(), &fds);
  for (size_t i = 0; s == napi_ok && i < op->got.size(); i++) {
    s = napi_create_int32(env, op->got[i], &x);
    if (s == napi_ok) s = napi_set_element(env, fds, (uint32_t)i, x);
  }
  if (s == napi_ok) s = napi_create_buffer_copy(env, op->in.size(), op->in.data(), nullptr, &buf);
  if (s == napi_ok) s = napi_set_named_property(env, *out, "fds", fds);
  if (s == napi_ok) s = napi_set_named_property(env, *out, "data", buf);
  if (s == napi_ok) op->got.clear();
  return s;
}

void OnClosed(uv_handle_t* h) {
  FdOp* op = static_cast<FdOp*>(h->data);
  AddonData* d = op->data;
  delete op;
  HandleClosed(d);  // the environment's teardown waits for this (exit_watch.cc)
}

void CleanupHook(void* arg);

void Stop(FdOp* op, bool fromHook) {
  if (op->closing) return;
  op->closing = true;
  if (op->hooked && !fromHook) napi_remove_env_cleanup_hook(op->env, CleanupHook, op);
  op->hooked = false;
  ReleaseJs(op->env, &op->cb, &op->async);
  uv_poll_stop(&op->poll);  // out of epoll now: our socket may close at once
  op->sock.reset();
  HandleClosing(op->data);
  uv_close(reinterpret_cast<uv_handle_t*>(&op->poll), OnClosed);
}

void CleanupHook(void* arg) { Stop(static_cast<FdOp*>(arg), true); }

// Raw N-API here (see exit_watch.cc): in an environment being torn down, node-addon-api's
// wrappers would turn a failed call into napi_throw, which aborts.
void OnReady(uv_poll_t* h, int status, int events) {
  FdOp* op = static_cast<FdOp*>(h->data);
  if (op->closing) return;
  int r = status < 0 ? Fail(&op->err, -status, op->recv ? "recvFds" : "sendFds", "uv_poll") : Step(op);
  if (r == 0) return;
  napi_env env = op->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) { Stop(op, false); return; }
  if (!CanRunJs(env)) { Stop(op, false); napi_close_handle_scope(env, scope); return; }
  napi_value args[2] = {nullptr, nullptr}, fn = nullptr;
  bool ok;
  if (r < 0) {
    args[0] = MakeError(Napi::Env(env), op->err);
    ok = args[0] && napi_get_undefined(env, &args[1]) == napi_ok;
  } else {
    ok = napi_get_null(env, &args[0]) == napi_ok && Result(env, op, &args[1]) == napi_ok;
  }
  ok = ok && op->cb && op->async && napi_get_reference_value(env, op->cb, &fn) == napi_ok && fn;
  napi_async_context async = op->async;
  op->async = nullptr;  // kept alive for the call below, destroyed after it
  Stop(op, false);      // the callback may start another call on the same socket
  if (ok) CallJs(env, async, fn, 2, args);
  if (async) napi_async_destroy(env, async);
  napi_close_handle_scope(env, scope);
}

// Tries the call now; if it would block, polls. Returns the result, or null when `cb` will
// get it (cb(err, result)); throws NsboxError on failure now.
Napi::Value Run(Napi::Env env, FdOp* op, Napi::Value cb) {
  int r = Step(op);
  if (r < 0) {
    Err e = op->err;
    delete op;
    return ThrowErr(env, e);
  }
  if (r == 1) {
    napi_value out;
    napi_status s = Result(env, op, &out);
    bool recv = op->recv;
    delete op;
    if (s != napi_ok) return ThrowErrno(env, ENOMEM, recv ? "recvFds" : "sendFds", "napi");
    return Napi::Value(env, out);
  }
  // would block: wait for the socket on the event loop. uv_poll_init sets O_NONBLOCK on the
  // open file, which the caller's fd shares: put its mode back (our calls use MSG_DONTWAIT)
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int fl = fcntl(op->sock.get(), F_GETFL);
  op->env = env;
  op->data = env.GetInstanceData<AddonData>();
  op->poll.data = op;
  int u = uv_poll_init(loop, &op->poll, op->sock.get());
  if (u != 0) {
    bool recv = op->recv;
    delete op;
    return ThrowErrno(env, -u, recv ? "recvFds" : "sendFds", "uv_poll_init");
  }
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(op->sock.get(), F_SETFL, fl);
  napi_value name;
  napi_create_string_utf8(env, op->recv ? "nsbox:recvFds" : "nsbox:sendFds", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, cb, 1, &op->cb);
  napi_async_init(env, nullptr, name, &op->async);
  napi_add_env_cleanup_hook(env, CleanupHook, op);
  op->hooked = true;
  if ((u = uv_poll_start(&op->poll, op->recv ? UV_READABLE : UV_WRITABLE, OnReady)) != 0) {
    bool recv = op->recv;
    Stop(op, false);
    return ThrowErrno(env, -u, recv ? "recvFds" : "sendFds", "uv_poll_start");
  }
  return env.Null();
}

// Our own copy of the caller's fd (close-on-exec), or -errno with `e` filled.
int Dup(int fd, const char* step, Err* e) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return d < 0 ? Fail(e, errno, step, "fcntl(F_DUPFD_CLOEXEC)") : d;
}

// fdSend(socket: fd | path, fds: number[], data: Buffer (non-empty), cb): bytes sent, or null
// and cb(err, bytes) later. The public wrapper validated the arguments.
Napi::Value FdSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto op = new FdOp();
  int s = info[0].IsString() ? UnixConnect(info[0].As<Napi::String>().Utf8Value().c_str(), "sendFds", &op->err)
                             : Dup(info[0].As<Napi::Number>().Int32Value(), "sendFds", &op->err);
  if (info[0].IsString()) op->path = info[0].As<Napi::String>().Utf8Value();
  if (s < 0) { Err e = op->err; delete op; return ThrowErr(env, e); }
  op->sock.reset(s);
  Napi::Array fds = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < fds.Length(); i++) {
    int d = Dup(fds.Get(i).As<Napi::Number>().Int32Value(), "sendFds", &op->err);
    if (d < 0) { Err e = op->err; delete op; return ThrowErr(env, e); }
    op->fds.push_back(d);
  }
  Napi::Buffer<char> b = info[2].As<Napi::Buffer<char>>();
  op->out.assign(b.Data(), b.Data() + b.Length());
  return Run(env, op, info[3]);
}

// fdRecv(socketFd, maxFds, maxData, cb): { fds, data }, or null and cb(err, result) later.
Napi::Value FdRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto op = new FdOp();
  op->recv = true;
  int s = Dup(info[0].As<Napi::Number>().Int32Value(), "recvFds", &op->err);
  if (s < 0) { Err e = op->err; delete op; return ThrowErr(env, e); }
  op->sock.reset(s);
  op->maxFds = info[1].As<Napi::Number>().Uint32Value();
  op->maxData = info[2].As<Napi::Number>().Uint32Value();
  return Run(env, op, info[3]);
}

}  // namespace

int SendConsole(const char* path, int master, Err* e) {
  int s = UnixConnect(path, "console-socket", e);
  if (s < 0) return s;
  // runc sends the master with its file's name (containerd/console's pty.Name())
  static const char kName[] = "/dev/ptmx";
  long r = SendFdsOnce(s, &master, 1, kName, sizeof kName - 1, "console-socket", e);
  close(s);
  if (r >= 0 && (size_t)r != sizeof kName - 1) r = Fail(e, EAGAIN, "console-socket", "sendmsg");
  return r < 0 ? Wrap(e, (int)r, nullptr, path) : 0;
}

void InitFdPass(Napi::Env env, Napi::Object exports) {
  exports.Set("fdSend", Napi::Function::New(env, FdSend, "fdSend"));
  exports.Set("fdRecv", Napi::Function::New(env, FdRecv, "fdRecv"));
}

}  // namespace nsbox

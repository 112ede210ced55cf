// cgroup events on the event loop. Everything else about cgroups (mkdir, limits, stats) is
// plain file I/O done in TypeScript; the addon supplies what Node's fs cannot:
//  - cgroupBatch: a spare cgroup's mkdirs and writes as one job on the thread pool
//  - v1: an eventfd registered through cgroup.event_control for memory.oom_control
//  - v2: an inotify descriptor on memory.events / cgroup.events (kernfs_notify -> IN_MODIFY)
//  - CgroupWatch: a uv_poll on such a descriptor that drains it and calls back
// No static mutable state: each watch is owned by its JS object and an env cleanup hook.
#include "common.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <linux/bpf.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include <string>
#include <vector>

namespace nsbox {
namespace {

// cgroupPageSize(): the page size, the smallest meaningful memory limit.
Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), (double)sysconf(_SC_PAGESIZE));
}

// cgroupEventfd(controlPath, targetPath, args): v1 notification registration.
// Writes "<eventfd> <fd of targetPath> [args]" to controlPath (cgroup.event_control) and
// returns the non-blocking, close-on-exec eventfd. The target fd is only needed while
// registering; the kernel keeps its own reference.
Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "cgroupEventfd(controlPath, targetPath, args?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string control = info[0].As<Napi::String>().Utf8Value();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  std::string args = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  UniqueFd efd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!efd.valid()) return ThrowErrno(env, errno, "cgroup-event", "eventfd");
  UniqueFd tfd(open(target.c_str(), O_RDONLY | O_CLOEXEC));
  if (!tfd.valid()) return ThrowErrno(env, errno, "cgroup-event", "open", target.c_str());
  UniqueFd cfd(open(control.c_str(), O_WRONLY | O_CLOEXEC));
  if (!cfd.valid()) return ThrowErrno(env, errno, "cgroup-event", "open", control.c_str());
  std::string line = std::to_string(efd.get()) + " " + std::to_string(tfd.get());
  if (!args.empty()) line += " " + args;
  ssize_t n;
  do n = write(cfd.get(), line.data(), line.size()); while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowErrno(env, errno, "cgroup-event", "write", control.c_str());
  return Napi::Number::New(env, efd.release());
}

// cgroupInotify(paths): an inotify fd (non-blocking, close-on-exec) watching each path
// for IN_MODIFY (cgroup v2 notifies memory.events, cgroup.events, pids.events this way).
Napi::Value Inotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "cgroupInotify(paths: string[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array paths = info[0].As<Napi::Array>();
  UniqueFd fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd.valid()) return ThrowErrno(env, errno, "cgroup-event", "inotify_init1");
  for (uint32_t i = 0; i < paths.Length(); i++) {
    std::string p = paths.Get(i).ToString().Utf8Value();
    if (inotify_add_watch(fd.get(), p.c_str(), IN_MODIFY) < 0) {
      return ThrowErrno(env, errno, "cgroup-event", "inotify_add_watch", p.c_str());
    }
  }
  return Napi::Number::New(env, fd.release());
}

// The poll state lives apart from the JS wrapper: uv_close finishes asynchronously, and
// the wrapper may be collected first.
struct PollState {
  uv_poll_t poll;
  int fd = -1;
  napi_env env = nullptr;
  AddonData* data = nullptr;
  napi_ref cb = nullptr;
  napi_async_context async = nullptr;
  bool closing = false;
  bool hooked = false;
  PollState** ownerSlot = nullptr;  // the wrapper's pointer to us, cleared when we stop
};

void OnPollClosed(uv_handle_t* h) {
  PollState* s = static_cast<PollState*>(h->data);
  AddonData* d = s->data;
  if (s->fd >= 0) close(s->fd);
  delete s;
  HandleClosed(d);  // the environment's teardown waits for this (exit_watch.cc)
}

void CleanupHook(void* arg);

// Stops the poll and releases JS references; safe to call more than once.
void StopPoll(PollState* s, bool fromHook) {
  if (!s || s->closing) return;
  s->closing = true;
  if (s->ownerSlot) *s->ownerSlot = nullptr;
  s->ownerSlot = nullptr;
  if (s->hooked && !fromHook) napi_remove_env_cleanup_hook(s->env, CleanupHook, s);
  s->hooked = false;
  ReleaseJs(s->env, &s->cb, &s->async);
  uv_poll_stop(&s->poll);
  HandleClosing(s->data);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), OnPollClosed);
}

void CleanupHook(void* arg) { StopPoll(static_cast<PollState*>(arg), true); }

void OnPollReadable(uv_poll_t* h, int status, int events) {
  PollState* s = static_cast<PollState*>(h->data);
  if (s->closing) return;
  // drain: eventfd gives 8 bytes, inotify a batch of events; the callback re-reads files
  char buf[4096];
  ssize_t n;
  int rerr = 0;
  for (;;) {
    n = read(s->fd, buf, sizeof buf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) rerr = errno;
    break;
  }
  // raw N-API: in an environment being torn down the calls fail, and node-addon-api's
  // wrappers would turn that into napi_throw, which aborts (see exit_watch.cc)
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value arg = nullptr, fn = nullptr;
    int code = status < 0 ? -status : rerr;
    bool ok = code ? napi_create_int32(env, code, &arg) == napi_ok : napi_get_null(env, &arg) == napi_ok;
    ok = ok && s->cb && s->async && napi_get_reference_value(env, s->cb, &fn) == napi_ok && fn;
    if (ok) CallJs(env, s->async, fn, 1, &arg);
    napi_close_handle_scope(env, scope);
  }
  // a read error other than EAGAIN will repeat forever: stop after reporting it
  if ((status < 0 || rerr) && !s->closing) StopPoll(s, false);
}

class CgroupWatch : public Napi::ObjectWrap<CgroupWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CgroupWatch",
                       {InstanceMethod("close", &CgroupWatch::Close), InstanceMethod("ref", &CgroupWatch::Ref)});
  }

  // new CgroupWatch(fd, callback(errnoOrNull)): takes ownership of fd; unref'd by default
  // (a forgotten cgroup must not keep the process alive).
  explicit CgroupWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CgroupWatch>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new CgroupWatch(fd, callback)").ThrowAsJavaScriptException();
      return;
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    int fd = info[0].As<Napi::Number>().Int32Value();
    PollState* s = new PollState();
    s->fd = fd;
    s->env = env;
    s->data = env.GetInstanceData<AddonData>();
    s->poll.data = s;
    int r = uv_poll_init(loop, &s->poll, fd);
    if (r != 0) {
      close(fd);
      delete s;
      ThrowErrno(env, -r, "cgroup-event", "uv_poll_init");
      return;
    }
    r = uv_poll_start(&s->poll, UV_READABLE, OnPollReadable);
    if (r != 0) {
      s->closing = true;
      HandleClosing(s->data);
      uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), OnPollClosed);
      ThrowErrno(env, -r, "cgroup-event", "uv_poll_start");
      return;
    }
    napi_value name;
    napi_create_string_utf8(env, "nsbox:cgroup-event", NAPI_AUTO_LENGTH, &name);
    napi_create_reference(env, info[1], 1, &s->cb);
    napi_async_init(env, nullptr, name, &s->async);
    uv_unref(reinterpret_cast<uv_handle_t*>(&s->poll));
    napi_add_env_cleanup_hook(env, CleanupHook, s);
    s->hooked = true;
    state_ = s;
    s->ownerSlot = &state_;
  }

  ~CgroupWatch() override {
    // collected without close(): stop polling (the callback reference dies with us)
    StopPoll(state_, false);
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopPoll(state_, false);
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (state_ && !state_->closing) {
      uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&state_->poll);
      if (info.Length() > 0 && info[0].ToBoolean()) uv_ref(h); else uv_unref(h);
    }
    return info.Env().Undefined();
  }

  PollState* state_ = nullptr;
};

}  // namespace

// --- cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program, written here as
// bytecode (no libbpf), loaded and attached to the cgroup in place of the ones attached there.

long Bpf(int cmd, union bpf_attr* attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst;
  i.src_reg = src;
  i.off = off;
  i.imm = imm;
  return i;
}

// One rule: allow (0/1), type (0 any, BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR), major and
// minor (-1: any), access (BPF_DEVCG_ACC_MKNOD|READ|WRITE). OCI's order: a later rule that
// matches wins, so the program tests them last to first and returns at the first match; no
// match: denied.
std::vector<bpf_insn> DeviceProgram(const std::vector<int32_t>& rules) {
  std::vector<bpf_insn> p;
  // r2 = type, r3 = access (from access_type), r4 = major, r5 = minor
  p.push_back(Insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0));
  p.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_X, 3, 2, 0, 0));
  p.push_back(Insn(BPF_ALU64 | BPF_AND | BPF_K, 2, 0, 0, 0xffff));
  p.push_back(Insn(BPF_ALU64 | BPF_RSH | BPF_K, 3, 0, 0, 16));
  p.push_back(Insn(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0));
  p.push_back(Insn(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0));
  for (size_t n = rules.size() / 5; n-- > 0;) {
    const int32_t* r = &rules[n * 5];
    std::vector<bpf_insn> b;
    std::vector<size_t> jumps;
    if (r[1] != 0) { jumps.push_back(b.size()); b.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 0, r[1])); }
    if ((r[4] & 7) != 7) {
      // every access asked must be in the rule's
      b.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 3, 0, 0));
      b.push_back(Insn(BPF_ALU64 | BPF_AND | BPF_K, 1, 0, 0, ~r[4] & 7));
      jumps.push_back(b.size());
      b.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 1, 0, 0, 0));
    }
    if (r[2] >= 0) { jumps.push_back(b.size()); b.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, 0, r[2])); }
    if (r[3] >= 0) { jumps.push_back(b.size()); b.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 0, r[3])); }
    b.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, r[0] ? 1 : 0));
    b.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    for (size_t j : jumps) b[j].off = (int16_t)(b.size() - (j + 1));
    p.insert(p.end(), b.begin(), b.end());
    // a rule matching every access ends the program: what came before it can never be
    // reached, and the verifier refuses unreachable instructions
    if (jumps.empty()) return p;
  }
  p.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
  p.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  return p;
}

// The ids of the device programs attached to the cgroup open at cgfd (at most 64), in *n.
static int QueryDevicePrograms(int cgfd, uint32_t* ids, uint32_t* n) {
  union bpf_attr q{};
  q.query.target_fd = (uint32_t)cgfd;
  q.query.attach_type = BPF_CGROUP_DEVICE;
  q.query.prog_ids = (uint64_t)(uintptr_t)ids;
  q.query.prog_cnt = 64;
  if (Bpf(BPF_PROG_QUERY, &q) != 0) return -1;
  *n = q.query.prog_cnt < 64 ? q.query.prog_cnt : 64;
  return 0;
}

// cgroupDevices(dir, rules): rules flat, five numbers each (see DeviceProgram). The new
// program is attached (BPF_F_ALLOW_MULTI) before the ones attached to `dir` before it are
// detached, so no moment allows more than either list.
Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "cgroupDevices(dir, rules)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int32_t> rules;
  for (uint32_t i = 0; i < a.Length(); i++) rules.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  if (rules.size() % 5 != 0) {
    Napi::TypeError::New(env, "cgroupDevices: rules must be five numbers each").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<bpf_insn> prog = DeviceProgram(rules);
  UniqueFd cg(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg.valid()) return ThrowErrno(env, errno, "cgroup-devices", "open", dir.c_str());
  // the programs attached here now (their ids, then fds), detached once the new one is on
  uint32_t ids[64] = {};
  uint32_t n = 0;
  std::vector<UniqueFd> old;
  if (QueryDevicePrograms(cg.get(), ids, &n) == 0) {
    for (uint32_t i = 0; i < n; i++) {
      union bpf_attr g{};
      g.prog_id = ids[i];
      int fd = (int)Bpf(BPF_PROG_GET_FD_BY_ID, &g);
      if (fd < 0) return ThrowErrno(env, errno, "cgroup-devices", "bpf(BPF_PROG_GET_FD_BY_ID)", dir.c_str());
      old.emplace_back(fd);
    }
  }
  static const char kLicense[] = "MIT";
  union bpf_attr l{};
  l.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  l.insns = (uint64_t)(uintptr_t)prog.data();
  l.insn_cnt = (uint32_t)prog.size();
  l.license = (uint64_t)(uintptr_t)kLicense;
  UniqueFd pfd((int)Bpf(BPF_PROG_LOAD, &l));
  if (!pfd.valid()) return ThrowErrno(env, errno, "cgroup-devices", "bpf(BPF_PROG_LOAD)", dir.c_str());
  union bpf_attr at{};
  at.target_fd = (uint32_t)cg.get();
  at.attach_bpf_fd = (uint32_t)pfd.get();
  at.attach_type = BPF_CGROUP_DEVICE;
  at.attach_flags = BPF_F_ALLOW_MULTI;
  if (Bpf(BPF_PROG_ATTACH, &at) != 0) return ThrowErrno(env, errno, "cgroup-devices", "bpf(BPF_PROG_ATTACH)", dir.c_str());
  for (UniqueFd& o : old) {
    union bpf_attr d{};
    d.target_fd = (uint32_t)cg.get();
    d.attach_bpf_fd = (uint32_t)o.get();
    d.attach_type = BPF_CGROUP_DEVICE;
    if (Bpf(BPF_PROG_DETACH, &d) != 0 && errno != ENOENT) return ThrowErrno(env, errno, "cgroup-devices", "bpf(BPF_PROG_DETACH)", dir.c_str());
  }
  return env.Undefined();
}

// cgroupDeviceProgramIds(dir): the ids of the device programs attached to dir (tests).
Napi::Value DeviceProgramIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  UniqueFd cg(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg.valid()) return ThrowErrno(env, errno, "cgroup-devices", "open", dir.c_str());
  uint32_t ids[64] = {};
  uint32_t n = 0;
  if (QueryDevicePrograms(cg.get(), ids, &n) != 0) return ThrowErrno(env, errno, "cgroup-devices", "bpf(BPF_PROG_QUERY)", dir.c_str());
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < n; i++) out.Set(i, Napi::Number::New(env, ids[i]));
  return out;
}

// cgroupBatch(ops): a spare cgroup made and filled off the event loop (lib/cgroup/spares.ts).
// `ops` is a flat list of [kind, path, value] triples run in order on a libuv worker thread:
//   'm' mkdir(path)   'w' write value to path   'c' copy: the file `value` (trimmed) to path,
//   when not empty (a v1 cpuset's cpus and mems from its parent)
// Stops at the first failure. Resolves to [index of the failed op or -1, errno]. Like Node's fs
// requests, the work finishes before the environment's cleanup hooks run (the teardown record
// of the directories, registered before, then removes them).
namespace {
struct BatchOp {
  char kind;
  std::string path;
  std::string value;
};

int WriteAll(const std::string& path, const char* data, size_t len) {
  int fd;
  do fd = open(path.c_str(), O_WRONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
  ssize_t n;
  do n = write(fd, data, len); while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : (size_t)n != len ? EIO : 0;
  close(fd);
  return err;
}

int RunOp(const BatchOp& op) {
  switch (op.kind) {
    case 'm':
      return mkdir(op.path.c_str(), 0777) < 0 ? errno : 0;  // as Node's fs.mkdir: the umask applies
    case 'w':
      return WriteAll(op.path, op.value.data(), op.value.size());
    case 'c': {
      int fd;
      do fd = open(op.value.c_str(), O_RDONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
      if (fd < 0) return errno;
      char buf[4096];
      ssize_t n;
      do n = read(fd, buf, sizeof buf - 1); while (n < 0 && errno == EINTR);
      int err = n < 0 ? errno : 0;
      close(fd);
      if (err) return err;
      size_t len = (size_t)n;
      while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t')) len--;
      return len == 0 ? 0 : WriteAll(op.path, buf, len);
    }
    default:
      return EINVAL;
  }
}

class BatchWorker : public Napi::AsyncWorker {
 public:
  BatchWorker(Napi::Env env, std::vector<BatchOp> ops)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ops_(std::move(ops)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    for (size_t i = 0; i < ops_.size(); i++) {
      int err = RunOp(ops_[i]);
      if (err) { failed_ = (int)i; errno_ = err; return; }
    }
  }
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    // a worker that is being torn down: nobody waits for the promise any more
    if (status != napi_cancelled && !CanRunJs(env)) { Destroy(); return; }
    Napi::AsyncWorker::OnWorkComplete(env, status);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, failed_));
    out.Set(1u, Napi::Number::New(env, errno_));
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<BatchOp> ops_;
  int failed_ = -1;
  int errno_ = 0;
};

Napi::Value Batch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "cgroupBatch(ops: string[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = info[0].As<Napi::Array>();
  uint32_t n = a.Length();
  if (n % 3 != 0) {
    Napi::TypeError::New(env, "cgroupBatch: ops are [kind, path, value] triples").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<BatchOp> ops;
  ops.reserve(n / 3);
  for (uint32_t i = 0; i < n; i += 3) {
    Napi::Value k = a.Get(i), p = a.Get(i + 1), v = a.Get(i + 2);
    if (!k.IsString() || !p.IsString() || !v.IsString()) {
      Napi::TypeError::New(env, "cgroupBatch: ops must be strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string kind = k.As<Napi::String>().Utf8Value();
    if (kind.size() != 1 || (kind[0] != 'm' && kind[0] != 'w' && kind[0] != 'c')) {
      Napi::TypeError::New(env, "cgroupBatch: kind must be 'm', 'w' or 'c'").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ops.push_back(BatchOp{kind[0], p.As<Napi::String>().Utf8Value(), v.As<Napi::String>().Utf8Value()});
  }
  auto* w = new BatchWorker(env, std::move(ops));
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}
}  // namespace

void InitCgroup(Napi::Env env, Napi::Object exports) {
  exports.Set("cgroupDevices", Napi::Function::New(env, Devices, "cgroupDevices"));
  exports.Set("cgroupDeviceProgramIds", Napi::Function::New(env, DeviceProgramIds, "cgroupDeviceProgramIds"));
  exports.Set("cgroupBatch", Napi::Function::New(env, Batch, "cgroupBatch"));
  exports.Set("cgroupPageSize", Napi::Function::New(env, PageSize, "cgroupPageSize"));
  exports.Set("cgroupEventfd", Napi::Function::New(env, Eventfd, "cgroupEventfd"));
  exports.Set("cgroupInotify", Napi::Function::New(env, Inotify, "cgroupInotify"));
  exports.Set("CgroupWatch", CgroupWatch::Define(env));
}

}  // namespace nsbox

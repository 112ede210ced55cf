// Decodes the JS plan object (built and validated by lib/plan/build.ts) into a Plan.
// Shape errors here mean a bug in the planner, so they are TypeErrors, not NsboxErrors.
#include "plan.h"

namespace nsbox {

namespace {
struct Reader {
  Napi::Env env;
  bool ok = true;
  std::string bad;

  void Fail(const std::string& what) {
    if (ok) { ok = false; bad = what; }
  }
  bool Has(Napi::Object o, const char* k) {
    Napi::Value v = o.Get(k);
    return !v.IsUndefined() && !v.IsNull();
  }
  double Num(Napi::Object o, const char* k, double def) {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return def;
    if (!v.IsNumber()) { Fail(std::string("plan.") + k + " must be a number"); return def; }
    return v.As<Napi::Number>().DoubleValue();
  }
  bool Bool(Napi::Object o, const char* k, bool def) {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return def;
    if (!v.IsBoolean()) { Fail(std::string("plan.") + k + " must be a boolean"); return def; }
    return v.As<Napi::Boolean>().Value();
  }
  // Returns nullptr when absent.
  const char* Str(Plan* p, Napi::Object o, const char* k) {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    if (!v.IsString()) { Fail(std::string("plan.") + k + " must be a string"); return nullptr; }
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) { Fail(std::string("plan.") + k + " contains a NUL byte"); return nullptr; }
    return p->Keep(std::move(s));
  }
  Napi::Array Arr(Napi::Object o, const char* k) {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) return Napi::Array::New(env, 0);
    if (!v.IsArray()) { Fail(std::string("plan.") + k + " must be an array"); return Napi::Array::New(env, 0); }
    return v.As<Napi::Array>();
  }
  void Strings(Plan* p, Napi::Object o, const char* k, std::vector<const char*>* out) {
    Napi::Array a = Arr(o, k);
    for (uint32_t i = 0; i < a.Length() && ok; i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsString()) { Fail(std::string("plan.") + k + " must hold strings"); return; }
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.find('\0') != std::string::npos) { Fail(std::string("plan.") + k + " holds a NUL byte"); return; }
      out->push_back(p->Keep(std::move(s)));
    }
    out->push_back(nullptr);
  }
};
}  // namespace

namespace {
// The binary ops of encodeOps (lib/plan/encode.ts, which says which named field of an op goes in which slot). False on a malformed buffer.
bool DecodeOps(const uint8_t* b, size_t n, Plan* p, std::vector<Op>* ops, std::string* bad) {
  size_t off = 0;
  auto u32 = [&](uint32_t* v) {
    if (n - off < 4) return false;
    std::memcpy(v, b + off, 4);
    off += 4;
    return true;
  };
  auto str = [&](const char** out, size_t* len, bool binary) {
    uint32_t l;
    if (!u32(&l)) return false;
    if ((int32_t)l == -1) { *out = nullptr; if (len) *len = 0; return true; }
    if (l > n - off) return false;
    if (!binary && std::memchr(b + off, 0, l)) { *bad = "plan.ops holds a NUL byte"; return false; }
    *out = p->Keep(std::string(reinterpret_cast<const char*>(b + off), l));
    if (len) *len = l;
    off += l;
    return true;
  };
  uint32_t count;
  if (!u32(&count)) return false;
  ops->reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    if (n - off < 12) return false;
    uint8_t kind = b[off], bits = b[off + 1];
    off += 4;
    uint32_t flags = 0, mode = 0;
    u32(&flags);  // room checked above
    u32(&mode);
    Op op{(OpKind)kind};
    op.flags = flags;
    op.mode = mode;
    op.readonly = bits & 1;
    op.file = bits & 2;
    op.recursive = bits & 4;
    op.real = bits & 8;
    op.trusted = bits & 16;
    op.netSysfs = bits & 32;
    op.copyUp = bits & 64;
    op.present = bits & 128;
    if (!str(&op.a, nullptr, false) || !str(&op.b, nullptr, false) || !str(&op.c, nullptr, false) || !str(&op.d, &op.dlen, true)) return false;
    ops->push_back(op);
  }
  return off == n;
}
}  // namespace

bool DecodeTemplateOps(Plan* p, std::vector<Op>* ops) {
  std::string bad;
  return DecodeOps(p->templateBuf, p->templateLen, p, ops, &bad);
}

bool DecodePlan(Napi::Env env, Napi::Object o, Plan* p, Napi::Value opsBuf, Napi::Value templateBuf, Napi::Value bindingsVal) {
  Reader r{env};
  p->cloneFlags = (unsigned long long)r.Num(o, "cloneFlags", 0);
  p->netPremade = r.Bool(o, "netPremade", false);
  p->holder = r.Bool(o, "holder", false);
  p->netOwnerFirst = r.Bool(o, "netOwnerFirst", false);
  p->unshareFlags = (unsigned long long)r.Num(o, "unshareFlags", 0);
  p->lateUnshare = (unsigned long long)r.Num(o, "lateUnshare", 0);
  p->twoStage = r.Bool(o, "twoStage", false);
  p->newPidAtStage2 = r.Bool(o, "newPidAtStage2", false);
  Napi::Array joins = r.Arr(o, "joins");
  for (uint32_t i = 0; i < joins.Length() && r.ok; i++) {
    Napi::Object j = joins.Get(i).As<Napi::Object>();
    p->joins.push_back({(int)r.Num(j, "fd", -1), (int)r.Num(j, "nstype", 0)});
  }
  if (const char* s = r.Str(p, o, "uidMap")) p->uidMap = s;
  if (const char* s = r.Str(p, o, "gidMap")) p->gidMap = s;
  p->setgroupsDeny = r.Bool(o, "setgroupsDeny", false);
  if (Napi::Value h = o.Get("idMapHelpers"); h.IsObject()) {
    if (const char* s = r.Str(p, h.As<Napi::Object>(), "uid")) p->newUidMap = s;
    if (const char* s = r.Str(p, h.As<Napi::Object>(), "gid")) p->newGidMap = s;
  }
  // what the layers acquired for the plan: beside it (the spawn's bindings), or in it
  Napi::Object b = bindingsVal.IsObject() ? bindingsVal.As<Napi::Object>() : o;
  p->cgroupFd = (int)r.Num(b, "cgroupFd", -1);
  std::vector<const char*> procs;
  r.Strings(p, b, "cgroupProcs", &procs);
  for (const char* s : procs) if (s) p->cgroupProcs.emplace_back(s);
  std::vector<const char*> tasks;
  r.Strings(p, b, "cgroupTasks", &tasks);
  for (const char* s : tasks) if (s) p->cgroupTasks.emplace_back(s);

  Napi::Array net = r.Arr(b, "net");
  for (uint32_t i = 0; i < net.Length() && r.ok; i++) {
    Napi::Object n = net.Get(i).As<Napi::Object>();
    NetHandoffSpec h;
    h.ifindex = (int)r.Num(n, "ifindex", 0);
    if (const char* s = r.Str(p, n, "name")) h.name = s;
    h.mtu = (unsigned)r.Num(n, "mtu", 0);
    std::vector<const char*> addrs;
    r.Strings(p, n, "addresses", &addrs);
    for (const char* a : addrs) if (a) h.addresses.emplace_back(a);
    if (const char* s = r.Str(p, n, "gateway4")) h.gateway4 = s;
    if (const char* s = r.Str(p, n, "gateway6")) h.gateway6 = s;
    if (const char* s = r.Str(p, n, "hostName")) h.hostName = s;
    h.master = (int)r.Num(n, "master", 0);
    p->net.push_back(std::move(h));
  }
  Napi::Array stdio = r.Arr(o, "stdio");
  for (uint32_t i = 0; i < 3 && i < stdio.Length() && r.ok; i++) {
    Napi::Object s = stdio.Get(i).As<Napi::Object>();
    p->stdioKind[i] = (StdioKind)(int)r.Num(s, "kind", 0);
    p->stdioFd[i] = (int)r.Num(s, "fd", -1);
  }

  if (opsBuf.IsBuffer()) {
    Napi::Buffer<uint8_t> b = opsBuf.As<Napi::Buffer<uint8_t>>();
    std::string bad;
    if (!DecodeOps(b.Data(), b.Length(), p, &p->ops, &bad)) r.Fail(bad.empty() ? "plan.ops buffer is malformed" : bad);
  }
  if (templateBuf.IsBuffer() && r.ok) {
    Napi::Buffer<uint8_t> b = templateBuf.As<Napi::Buffer<uint8_t>>();
    p->templateBuf = b.Data();
    p->templateLen = b.Length();
  }
  Napi::Array ops = opsBuf.IsBuffer() ? Napi::Array::New(env, 0) : r.Arr(o, "ops");
  for (uint32_t i = 0; i < ops.Length() && r.ok; i++) {
    Napi::Value ov = ops.Get(i);
    if (!ov.IsObject()) { r.Fail("plan.ops must hold objects"); break; }
    Napi::Object so = ov.As<Napi::Object>();
    Op op{(OpKind)(int)r.Num(so, "op", 0)};
    op.a = r.Str(p, so, "a");
    op.b = r.Str(p, so, "b");
    op.c = r.Str(p, so, "c");
    Napi::Value dv = so.Get("d");
    if (dv.IsBuffer()) {
      Napi::Buffer<char> b = dv.As<Napi::Buffer<char>>();
      op.d = p->Keep(std::string(b.Data(), b.Length()));
      op.dlen = b.Length();
    } else if (dv.IsString()) {
      op.d = p->Keep(dv.As<Napi::String>().Utf8Value());
      op.dlen = std::strlen(op.d);
    }
    op.flags = (unsigned long)r.Num(so, "flags", 0);
    op.mode = (unsigned)r.Num(so, "mode", 0755);
    op.readonly = r.Bool(so, "readonly", false);
    op.file = r.Bool(so, "file", false);
    op.recursive = r.Bool(so, "recursive", true);
    op.real = r.Bool(so, "real", false);
    op.trusted = r.Bool(so, "trusted", false);
    p->ops.push_back(op);
  }
  p->hostname = r.Str(p, o, "hostname");
  p->domainname = r.Str(p, o, "domainname");
  p->timeOffsets = r.Str(p, o, "timeOffsets");
  Napi::Array rl = r.Arr(o, "rlimits");
  for (uint32_t i = 0; i < rl.Length() && r.ok; i++) {
    Napi::Object x = rl.Get(i).As<Napi::Object>();
    double soft = r.Num(x, "soft", -1), hard = r.Num(x, "hard", -1);
    p->rlimits.push_back({(int)r.Num(x, "resource", -1),
                          soft < 0 ? ~0ULL : (unsigned long long)soft,
                          hard < 0 ? ~0ULL : (unsigned long long)hard});
  }
  p->earlyIds = r.Bool(o, "earlyIds", false);
  p->earlyUid = (unsigned)r.Num(o, "earlyUid", 0);
  p->earlyGid = (unsigned)r.Num(o, "earlyGid", 0);
  p->setIds = r.Bool(o, "setIds", true);
  p->uid = (unsigned)r.Num(o, "uid", 0);
  p->gid = (unsigned)r.Num(o, "gid", 0);
  p->setGroups = r.Bool(o, "setGroups", true);
  Napi::Array groups = r.Arr(o, "groups");
  for (uint32_t i = 0; i < groups.Length(); i++) p->groups.push_back(groups.Get(i).As<Napi::Number>().Uint32Value());
  p->dropCaps = r.Bool(o, "dropCaps", true);
  p->lastCap = (int)r.Num(o, "lastCap", 40);
  auto mask = [&](const char* key) -> unsigned long long {
    Napi::Array a = r.Arr(o, key);  // [bits 0-31, bits 32-63]; absent: empty
    if (a.Length() == 0) return 0;
    if (a.Length() != 2 || !a.Get(0u).IsNumber() || !a.Get(1u).IsNumber()) { r.Fail(std::string("plan.") + key + " must be [lo, hi]"); return 0; }
    return (unsigned long long)a.Get(0u).As<Napi::Number>().Uint32Value() | ((unsigned long long)a.Get(1u).As<Napi::Number>().Uint32Value() << 32);
  };
  p->capsBounding = mask("capsBounding");
  p->capsEffective = mask("capsEffective");
  p->capsPermitted = mask("capsPermitted");
  p->capsInheritable = mask("capsInheritable");
  p->capsAmbient = mask("capsAmbient");
  p->noNewPrivs = r.Bool(o, "noNewPrivs", true);
  Napi::Value sc = o.Get("seccomp");
  if (sc.IsBuffer()) {
    Napi::Buffer<uint8_t> b = sc.As<Napi::Buffer<uint8_t>>();
    if (b.Length() % sizeof(sock_filter) != 0 || b.Length() == 0) r.Fail("plan.seccomp must be a non-empty array of sock_filter (8 bytes each)");
    else {
      p->seccomp.resize(b.Length() / sizeof(sock_filter));
      std::memcpy(p->seccomp.data(), b.Data(), b.Length());
    }
  }
  p->pdeathsig = (int)r.Num(o, "pdeathsig", 9);
  p->umask = (int)r.Num(o, "umask", -1);
  Napi::Array extra = r.Arr(o, "extraFds");
  for (uint32_t i = 0; i < extra.Length(); i++) p->extraFds.push_back(extra.Get(i).As<Napi::Number>().Int32Value());
  p->setOomScoreAdj = r.Has(o, "oomScoreAdj");
  p->oomScoreAdj = (int)r.Num(o, "oomScoreAdj", 0);
  if (const char* c = r.Str(p, o, "cwd")) p->cwd = c;
  r.Strings(p, o, "argv", &p->argv);
  r.Strings(p, o, "envp", &p->envp);
  r.Strings(p, o, "exec", &p->exec);
  p->init = r.Bool(o, "init", false);
  p->tty = r.Bool(o, "tty", false);
  p->serve = r.Bool(o, "serve", false);
  p->ttyRows = (unsigned)r.Num(o, "ttyRows", 24);
  p->ttyCols = (unsigned)r.Num(o, "ttyCols", 80);
  if (const char* s = r.Str(p, o, "consoleSocket")) p->consoleSocket = s;
  if (r.ok && (p->argv.size() < 2 || p->exec.size() < 2)) r.Fail("plan.argv and plan.exec must not be empty");
  if (!r.ok) {
    Napi::TypeError::New(env, "nsbox internal: bad plan: " + r.bad).ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

}  // namespace nsbox

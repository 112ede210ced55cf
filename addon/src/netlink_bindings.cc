// The JS functions over rtnetlink (netlink_socket.h): links, addresses, routes in this or
// another network namespace, the spawn hand-off exposed for tests (net_handoff.cc), and the
// IPAM file lock. Arguments are read here; the work is done by netlink_socket.cc.
#include "netlink_socket.h"
#include "plan.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <sys/file.h>

#include <string>

namespace nsbox {
namespace {
using namespace netlink;

// ---------------------------------------------------------------------------------------------
// N-API helpers

struct Target {
  UniqueFd owned;
  int fd = -1;
};

// Reads an optional target namespace: { fd } | { path } | { pid }.
bool ReadTarget(Napi::Env env, Napi::Value v, Target* t) {
  if (v.IsUndefined() || v.IsNull()) return true;
  if (!v.IsObject()) { Napi::TypeError::New(env, "netns target must be an object").ThrowAsJavaScriptException(); return false; }
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value fd = o.Get("fd"), path = o.Get("path"), pid = o.Get("pid");
  if (fd.IsNumber()) { t->fd = fd.As<Napi::Number>().Int32Value(); return true; }
  std::string p;
  if (path.IsString()) p = path.As<Napi::String>().Utf8Value();
  else if (pid.IsNumber()) p = "/proc/" + std::to_string(pid.As<Napi::Number>().Int32Value()) + "/ns/net";
  else return true;
  int f = open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) { ThrowErrno(env, errno, kStep, "open", p.c_str()); return false; }
  t->owned.reset(f);
  t->fd = f;
  return true;
}

std::string Str(Napi::Object o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}
long Num(Napi::Object o, const char* k, long def) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? (long)v.As<Napi::Number>().Int64Value() : def;
}
int Tri(Napi::Object o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() ? (v.As<Napi::Boolean>().Value() ? 1 : 0) : -1;
}

bool ParseMac(const std::string& s, std::string* out) {
  unsigned b[6];
  if (sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) return false;
  out->clear();
  for (unsigned x : b) out->push_back((char)x);
  return true;
}

bool OpenTarget(Napi::Env env, Napi::Value tv, Nl* nl) {
  Target t;
  if (!ReadTarget(env, tv, &t)) return false;
  Err e;
  if (OpenSock(t.fd, nl, &e) < 0) { ThrowErr(env, e); return false; }
  return true;
}

// Resolves a link given as ifindex (number) or name (string) within `nl`'s namespace.
bool ResolveLink(Napi::Env env, Nl& nl, Napi::Value v, int* ifindex, std::string* name) {
  if (v.IsNumber()) { *ifindex = v.As<Napi::Number>().Int32Value(); return true; }
  if (!v.IsString()) { Napi::TypeError::New(env, "link must be an ifindex or a name").ThrowAsJavaScriptException(); return false; }
  *name = v.As<Napi::String>().Utf8Value();
  Err e;
  if (LinkIndex(nl, *name, ifindex, &e) < 0) { ThrowErr(env, e); return false; }
  return true;
}

// netlinkLinks(target?) -> [{ ifindex, name, kind, mtu, mac, up, running, master, link, linkNetnsid, alias }]
Napi::Value Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[0], &nl)) return env.Undefined();
  Msg m(RTM_GETLINK, NLM_F_DUMP);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  m.U32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  Err e;
  int r = nl.Talk(m, "RTM_GETLINK", &e, [&](nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWLINK) return;
    ifinfomsg* li = static_cast<ifinfomsg*>(NLMSG_DATA(h));
    Napi::Object o = Napi::Object::New(env);
    o.Set("ifindex", li->ifi_index);
    o.Set("up", (li->ifi_flags & IFF_UP) != 0);
    o.Set("running", (li->ifi_flags & IFF_RUNNING) != 0);
    o.Set("flags", li->ifi_flags);
    ForAttrs(IFLA_RTA(li), IFLA_PAYLOAD(h), [&](rtattr* a) {
      switch (a->rta_type) {
        case IFLA_IFNAME: o.Set("name", static_cast<const char*>(RTA_DATA(a))); break;
        case IFLA_MTU: o.Set("mtu", *static_cast<uint32_t*>(RTA_DATA(a))); break;
        case IFLA_MASTER: o.Set("master", *static_cast<uint32_t*>(RTA_DATA(a))); break;
        case IFLA_LINK: o.Set("link", *static_cast<uint32_t*>(RTA_DATA(a))); break;
        case IFLA_LINK_NETNSID: o.Set("linkNetnsid", *static_cast<int32_t*>(RTA_DATA(a))); break;
        case IFLA_IFALIAS: o.Set("alias", std::string(static_cast<const char*>(RTA_DATA(a)), strnlen(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)))); break;
        case IFLA_ADDRESS: {
          if (RTA_PAYLOAD(a) == 6) {
            const unsigned char* b = static_cast<const unsigned char*>(RTA_DATA(a));
            char s[18];
            snprintf(s, sizeof s, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
            o.Set("mac", s);
          }
          break;
        }
        case IFLA_LINKINFO:
          ForAttrs(static_cast<rtattr*>(RTA_DATA(a)), RTA_PAYLOAD(a), [&](rtattr* b) {
            if (b->rta_type == IFLA_INFO_KIND) o.Set("kind", static_cast<const char*>(RTA_DATA(b)));
          });
          break;
      }
    });
    out.Set(n++, o);
  });
  if (r < 0) return ThrowErr(env, e);
  return out;
}

// netlinkLinkIndex(name, target?) -> ifindex (0 when absent)
Napi::Value LinkIndexJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[1], &nl)) return env.Undefined();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int idx = 0;
  Err e;
  int r = LinkIndex(nl, name, &idx, &e);
  if (r == -ENODEV) return Napi::Number::New(env, 0);
  if (r < 0) return ThrowErr(env, e);
  return Napi::Number::New(env, idx);
}

// netlinkLinkAdd(spec, target?) -> { ifindex, peerIfindex? }
Napi::Value LinkAddJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  Nl nl;
  if (!OpenTarget(env, info[1], &nl)) return env.Undefined();
  LinkAdd a;
  a.kind = Str(o, "kind");
  a.name = Str(o, "name");
  a.mtu = (unsigned)Num(o, "mtu", 0);
  if (!Str(o, "mac").empty() && !ParseMac(Str(o, "mac"), &a.mac)) { Napi::TypeError::New(env, "bad mac").ThrowAsJavaScriptException(); return env.Undefined(); }
  a.master = (int)Num(o, "master", 0);
  a.up = Tri(o, "up") == 1;
  Target peerNs;
  if (o.Get("peer").IsObject()) {
    Napi::Object p = o.Get("peer").As<Napi::Object>();
    a.peerName = Str(p, "name");
    a.peerMtu = (unsigned)Num(p, "mtu", 0);
    if (!ReadTarget(env, p.Get("netns"), &peerNs)) return env.Undefined();
    a.peerNsFd = peerNs.fd;
  }
  if (o.Get("vxlan").IsObject()) {
    Napi::Object v = o.Get("vxlan").As<Napi::Object>();
    a.vni = (uint32_t)Num(v, "id", 0);
    a.vxLink = (int)Num(v, "link", 0);
    a.vxPort = (unsigned)Num(v, "port", 4789);
    a.vxLearning = Tri(v, "learning") != 0;
    if (!Str(v, "local").empty()) ParseCidr(Str(v, "local"), &a.vxLocal, true);
    if (!Str(v, "remote").empty()) ParseCidr(Str(v, "remote"), &a.vxRemote, true);
    if (!Str(v, "group").empty()) ParseCidr(Str(v, "group"), &a.vxGroup, true);
  }
  Err e;
  if (LinkAddDo(nl, a, &e) < 0) return ThrowErr(env, e);
  Napi::Object res = Napi::Object::New(env);
  int idx = 0;
  if (!a.name.empty()) {
    if (LinkIndex(nl, a.name, &idx, &e) < 0) return ThrowErr(env, e);
    res.Set("ifindex", idx);
  }
  if (!a.peerName.empty() && a.peerNsFd < 0) {
    int pidx = 0;
    if (LinkIndex(nl, a.peerName, &pidx, &e) < 0) return ThrowErr(env, e);
    res.Set("peerIfindex", pidx);
  }
  return res;
}

// netlinkLinkSet(link, { name?, mtu?, mac?, up?, master?, netns?, alias? }, target?)
Napi::Value LinkSetJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[2], &nl)) return env.Undefined();
  LinkSet s;
  if (!ResolveLink(env, nl, info[0], &s.ifindex, &s.byName)) return env.Undefined();
  Napi::Object o = info[1].As<Napi::Object>();
  s.name = Str(o, "name");
  s.mtu = (unsigned)Num(o, "mtu", 0);
  if (!Str(o, "mac").empty() && !ParseMac(Str(o, "mac"), &s.mac)) { Napi::TypeError::New(env, "bad mac").ThrowAsJavaScriptException(); return env.Undefined(); }
  s.up = Tri(o, "up");
  s.master = (int)Num(o, "master", -1);
  if (o.Get("alias").IsString()) { s.alias = Str(o, "alias"); s.hasAlias = true; }
  Target ns;
  Napi::Value nsv = o.Get("netns");
  if (nsv.IsObject()) {
    Napi::Object no = nsv.As<Napi::Object>();
    if (no.Get("pid").IsNumber() && !no.Get("fd").IsNumber() && !no.Get("path").IsString()) s.nsPid = (int)Num(no, "pid", -1);
    else { if (!ReadTarget(env, nsv, &ns)) return env.Undefined(); s.nsFd = ns.fd; }
  }
  Err e;
  if (LinkSetDo(nl, s, &e) < 0) return ThrowErr(env, e);
  return env.Undefined();
}

// netlinkLinkDel(link, target?)  (missing link: ENODEV NsboxError)
Napi::Value LinkDelJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[1], &nl)) return env.Undefined();
  int idx = 0;
  std::string name;
  if (info[0].IsNumber()) idx = info[0].As<Napi::Number>().Int32Value();
  else name = info[0].As<Napi::String>().Utf8Value();
  Err e;
  if (LinkDelDo(nl, idx, name, &e) < 0) return ThrowErr(env, e);
  return env.Undefined();
}

// Deleting a link waits for the kernel (RCU, 10+ ms): done on a libuv worker thread.
class LinkDelWorker : public Napi::AsyncWorker {
 public:
  LinkDelWorker(Napi::Env env, int nsfd, int idx, std::string name)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), nsfd_(nsfd), idx_(idx), name_(std::move(name)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    Nl nl;
    if (OpenSock(nsfd_.get(), &nl, &err_) < 0) return;
    int r = LinkDelDo(nl, idx_, name_, &err_);
    if (r == -ENODEV && ignoreMissing) { err_ = Err(); gone_ = true; }
  }
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    // a worker that is being torn down: nobody waits for the promise any more
    if (status != napi_cancelled && !CanRunJs(env)) { Destroy(); return; }
    Napi::AsyncWorker::OnWorkComplete(env, status);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_.err) deferred_.Reject(MakeError(env, err_));
    else deferred_.Resolve(Napi::Boolean::New(env, !gone_));
  }
  bool ignoreMissing = false;
 private:
  Napi::Promise::Deferred deferred_;
  UniqueFd nsfd_;
  int idx_;
  std::string name_;
  Err err_;
  bool gone_ = false;
};

// netlinkLinkDelAsync(link, target?, ignoreMissing?) -> Promise<boolean deleted>
Napi::Value LinkDelAsyncJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ReadTarget(env, info[1], &t)) return env.Undefined();
  int fd = -1;
  if (t.fd >= 0) {
    fd = fcntl(t.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return ThrowErrno(env, errno, kStep, "fcntl(F_DUPFD_CLOEXEC)");
  }
  int idx = 0;
  std::string name;
  if (info[0].IsNumber()) idx = info[0].As<Napi::Number>().Int32Value();
  else name = info[0].As<Napi::String>().Utf8Value();
  LinkDelWorker* w = new LinkDelWorker(env, fd, idx, name);
  w->ignoreMissing = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// netlinkAddr(add: boolean, link, cidr, target?)
Napi::Value AddrJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool add = info[0].As<Napi::Boolean>().Value();
  Nl nl;
  if (!OpenTarget(env, info[3], &nl)) return env.Undefined();
  int idx = 0;
  std::string name;
  if (!ResolveLink(env, nl, info[1], &idx, &name)) return env.Undefined();
  std::string cidr = info[2].As<Napi::String>().Utf8Value();
  Cidr c;
  if (!ParseCidr(cidr, &c, true)) { Napi::TypeError::New(env, "bad address: " + cidr).ThrowAsJavaScriptException(); return env.Undefined(); }
  Err e;
  if (Wrap(&e, AddrChange(nl, add, idx, c, &e), nullptr, cidr.c_str()) < 0) return ThrowErr(env, e);
  return env.Undefined();
}

// netlinkAddrs(target?) -> [{ ifindex, family: 4|6, address, prefixlen, scope }]
Napi::Value AddrsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[0], &nl)) return env.Undefined();
  Msg m(RTM_GETADDR, NLM_F_DUMP);
  ifaddrmsg* ifa = m.Header<ifaddrmsg>();
  ifa->ifa_family = AF_UNSPEC;
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  Err e;
  int r = nl.Talk(m, "RTM_GETADDR", &e, [&](nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWADDR) return;
    ifaddrmsg* a = static_cast<ifaddrmsg*>(NLMSG_DATA(h));
    Napi::Object o = Napi::Object::New(env);
    o.Set("ifindex", a->ifa_index);
    o.Set("family", a->ifa_family == AF_INET ? 4 : 6);
    o.Set("prefixlen", a->ifa_prefixlen);
    o.Set("scope", a->ifa_scope);
    std::string local, address;
    ForAttrs(IFA_RTA(a), IFA_PAYLOAD(h), [&](rtattr* t) {
      if (t->rta_type == IFA_LOCAL) local = FormatAddr(a->ifa_family, RTA_DATA(t));
      if (t->rta_type == IFA_ADDRESS) address = FormatAddr(a->ifa_family, RTA_DATA(t));
    });
    o.Set("address", local.empty() ? address : local);
    out.Set(n++, o);
  });
  if (r < 0) return ThrowErr(env, e);
  return out;
}

// netlinkRoute(add: boolean, { dst?, gateway?, link?, table?, metric? }, target?)
Napi::Value RouteJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool add = info[0].As<Napi::Boolean>().Value();
  Napi::Object o = info[1].As<Napi::Object>();
  Nl nl;
  if (!OpenTarget(env, info[2], &nl)) return env.Undefined();
  RouteSpec s;
  std::string dst = Str(o, "dst"), gw = Str(o, "gateway");
  if (!dst.empty() && dst != "default" && !ParseCidr(dst, &s.dst, false)) { Napi::TypeError::New(env, "bad dst: " + dst).ThrowAsJavaScriptException(); return env.Undefined(); }
  if (!gw.empty() && !ParseCidr(gw, &s.gw, true)) { Napi::TypeError::New(env, "bad gateway: " + gw).ThrowAsJavaScriptException(); return env.Undefined(); }
  std::string src = Str(o, "src");
  if (!src.empty() && !ParseCidr(src, &s.src, true)) { Napi::TypeError::New(env, "bad src: " + src).ThrowAsJavaScriptException(); return env.Undefined(); }
  std::string name;
  if (!o.Get("link").IsUndefined() && !ResolveLink(env, nl, o.Get("link"), &s.oif, &name)) return env.Undefined();
  s.table = (uint32_t)Num(o, "table", RT_TABLE_MAIN);
  s.metric = (uint32_t)Num(o, "metric", 0);
  Err e;
  if (Wrap(&e, RouteChange(nl, add, s, &e), nullptr, dst.empty() ? "default" : dst.c_str()) < 0) return ThrowErr(env, e);
  return env.Undefined();
}

// netlinkRoutes(target?) -> [{ family, dst, gateway?, ifindex?, table, scope, protocol }]
Napi::Value RoutesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nl nl;
  if (!OpenTarget(env, info[0], &nl)) return env.Undefined();
  Msg m(RTM_GETROUTE, NLM_F_DUMP);
  rtmsg* rt = m.Header<rtmsg>();
  rt->rtm_family = AF_UNSPEC;
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  Err e;
  int r = nl.Talk(m, "RTM_GETROUTE", &e, [&](nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWROUTE) return;
    rtmsg* rm = static_cast<rtmsg*>(NLMSG_DATA(h));
    if (rm->rtm_family != AF_INET && rm->rtm_family != AF_INET6) return;
    Napi::Object o = Napi::Object::New(env);
    uint32_t table = rm->rtm_table;
    std::string dst = "default";
    ForAttrs(RTM_RTA(rm), RTM_PAYLOAD(h), [&](rtattr* t) {
      switch (t->rta_type) {
        case RTA_DST: dst = FormatAddr(rm->rtm_family, RTA_DATA(t)) + "/" + std::to_string(rm->rtm_dst_len); break;
        case RTA_GATEWAY: o.Set("gateway", FormatAddr(rm->rtm_family, RTA_DATA(t))); break;
        case RTA_OIF: o.Set("ifindex", *static_cast<uint32_t*>(RTA_DATA(t))); break;
        case RTA_TABLE: table = *static_cast<uint32_t*>(RTA_DATA(t)); break;
      }
    });
    o.Set("family", rm->rtm_family == AF_INET ? 4 : 6);
    o.Set("dst", dst);
    o.Set("table", table);
    o.Set("scope", rm->rtm_scope);
    o.Set("protocol", rm->rtm_protocol);
    o.Set("type", rm->rtm_type);
    out.Set(n++, o);
  });
  if (r < 0) return ThrowErr(env, e);
  return out;
}

// netlinkHandoff({ ifindex, name, mtu, addresses, gateway4, gateway6, hostName?, master? }, pid):
// the spawn-path hand-off, exposed for tests and for giving a running sandbox a link. With
// hostName: create the veth pair now (peer born in the child's namespace) instead of moving.
Napi::Value HandoffJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  NetHandoffSpec s;
  s.ifindex = (int)Num(o, "ifindex", 0);
  if (!Str(o, "name").empty()) s.name = Str(o, "name");
  s.mtu = (unsigned)Num(o, "mtu", 0);
  Napi::Value av = o.Get("addresses");
  if (av.IsArray()) {
    Napi::Array arr = av.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) s.addresses.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  }
  s.gateway4 = Str(o, "gateway4");
  s.gateway6 = Str(o, "gateway6");
  Err e;
  pid_t pid = info[1].As<Napi::Number>().Int32Value();
  std::string hostName = Str(o, "hostName");
  int r = hostName.empty() ? NetHandoff(s, pid, &e) : NetHandoffCreate(s, hostName, (int)Num(o, "master", 0), pid, &e);
  if (r < 0) return ThrowErr(env, e);
  return env.Undefined();
}

// fileLock(fd, exclusive, wait) -> true when taken (false: would block and wait was false)
Napi::Value FileLockJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH;
  if (!info[2].As<Napi::Boolean>().Value()) op |= LOCK_NB;
  for (;;) {
    if (flock(fd, op) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, errno, "ipam", "flock");
  }
}

}  // namespace

void InitNetlink(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
  add("netlinkLinks", Links);
  add("netlinkLinkIndex", LinkIndexJs);
  add("netlinkLinkAdd", LinkAddJs);
  add("netlinkLinkSet", LinkSetJs);
  add("netlinkLinkDel", LinkDelJs);
  add("netlinkLinkDelAsync", LinkDelAsyncJs);
  add("netlinkAddr", AddrJs);
  add("netlinkAddrs", AddrsJs);
  add("netlinkRoute", RouteJs);
  add("netlinkRoutes", RoutesJs);
  add("netlinkHandoff", HandoffJs);
  add("fileLock", FileLockJs);
}

}  // namespace nsbox

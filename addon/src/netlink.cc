// rtnetlink: links (veth, bridge, vxlan), addresses, routes, moving a link into a sandbox's
// network namespace (NetHandoff, on the spawn path), and nftables through libnftables loaded
// with dlopen at run time. Raw NETLINK_ROUTE messages, no library, no CLI.
//
// Network namespaces are per thread. Work "inside" another namespace uses a netlink socket
// opened by a short-lived native thread that setns()es into it: a socket stays bound to the
// namespace it was created in, so the calling thread (Node's) never changes namespace.
#include "plan.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <pthread.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace nsbox {
int NetHandoffCreate(const NetHandoffSpec& spec, const std::string& hostName, int master, pid_t childPid, Err* e);
namespace {

constexpr const char* kStep = "network";

// ---------------------------------------------------------------------------------------------
// Sockets

struct NsSockArg {
  int nsfd;
  int fd = -1;
  int err = 0;
  const char* syscall = "";
};

void* NsSockThread(void* p) {
  NsSockArg* a = static_cast<NsSockArg*>(p);
  if (setns(a->nsfd, CLONE_NEWNET) < 0) { a->err = errno; a->syscall = "setns"; return nullptr; }
  a->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (a->fd < 0) { a->err = errno; a->syscall = "socket(NETLINK_ROUTE)"; }
  return nullptr;
}

int ConfigureSock(int fd, Err* e) {
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);  // best effort (older kernels)
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  return 0;
}

// Opens a NETLINK_ROUTE socket in the current namespace (nsfd < 0) or in namespace `nsfd`
// (through a thread that enters it and exits).
int OpenNl(int nsfd, UniqueFd* out, Err* e) {
  if (nsfd < 0) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return Fail(e, errno, kStep, "socket(NETLINK_ROUTE)");
    out->reset(fd);
    return ConfigureSock(fd, e);
  }
  NsSockArg a{nsfd};
  pthread_t t;
  int r = pthread_create(&t, nullptr, NsSockThread, &a);
  if (r != 0) return Fail(e, r, kStep, "pthread_create");
  pthread_join(t, nullptr);
  if (a.err) return Fail(e, a.err, kStep, a.syscall);
  out->reset(a.fd);
  return ConfigureSock(a.fd, e);
}

// Same, started in the background so the caller can do other work meanwhile.
struct PendingNsSock {
  NsSockArg arg{-1};
  pthread_t thread{};
  bool started = false;
  int Start(int nsfd, Err* e) {
    arg.nsfd = nsfd;
    int r = pthread_create(&thread, nullptr, NsSockThread, &arg);
    if (r != 0) return Fail(e, r, kStep, "pthread_create");
    started = true;
    return 0;
  }
  int Finish(UniqueFd* out, Err* e) {
    if (!started) return Fail(e, EINVAL, kStep, "pthread_join");
    pthread_join(thread, nullptr);
    started = false;
    if (arg.err) return Fail(e, arg.err, kStep, arg.syscall);
    out->reset(arg.fd);
    arg.fd = -1;
    return ConfigureSock(out->get(), e);
  }
  ~PendingNsSock() {
    if (started) { pthread_join(thread, nullptr); if (arg.fd >= 0) close(arg.fd); }
  }
};

// ---------------------------------------------------------------------------------------------
// Messages

struct Msg {
  alignas(NLMSG_ALIGNTO) char buf[2048];
  nlmsghdr* h() { return reinterpret_cast<nlmsghdr*>(buf); }
  bool overflow = false;

  Msg(uint16_t type, uint16_t flags) {
    memset(buf, 0, sizeof buf);
    h()->nlmsg_len = NLMSG_LENGTH(0);
    h()->nlmsg_type = type;
    h()->nlmsg_flags = NLM_F_REQUEST | flags;
  }
  void* Put(size_t len) {
    size_t off = NLMSG_ALIGN(h()->nlmsg_len);
    if (off + NLMSG_ALIGN(len) > sizeof buf) { overflow = true; return buf + sizeof buf - 64; }
    h()->nlmsg_len = off + len;
    return buf + off;
  }
  template <typename T> T* Header() { return static_cast<T*>(Put(sizeof(T))); }
  rtattr* Attr(unsigned short type, const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(h()->nlmsg_len);
    size_t total = RTA_LENGTH(len);
    if (off + RTA_ALIGN(total) > sizeof buf) { overflow = true; return reinterpret_cast<rtattr*>(buf); }
    rtattr* a = reinterpret_cast<rtattr*>(buf + off);
    a->rta_type = type;
    a->rta_len = total;
    if (len) memcpy(RTA_DATA(a), data, len);
    h()->nlmsg_len = off + RTA_ALIGN(total);
    return a;
  }
  rtattr* U32(unsigned short type, uint32_t v) { return Attr(type, &v, sizeof v); }
  rtattr* U8(unsigned short type, uint8_t v) { return Attr(type, &v, sizeof v); }
  rtattr* Str(unsigned short type, const std::string& s) { return Attr(type, s.c_str(), s.size() + 1); }
  rtattr* Nest(unsigned short type) { return Attr(type | NLA_F_NESTED, nullptr, 0); }
  void End(rtattr* a) { a->rta_len = buf + h()->nlmsg_len - reinterpret_cast<char*>(a); }
};

// Reads the extended ack message (NLMSGERR_ATTR_MSG) of an error reply, if any.
void ExtAck(const nlmsghdr* h, Err* e) {
  if (!e || !(h->nlmsg_flags & NLM_F_ACK_TLVS)) return;
  const nlmsgerr* er = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += er->msg.nlmsg_len - NLMSG_HDRLEN;
  if (off >= h->nlmsg_len) return;
  const char* p = reinterpret_cast<const char*>(h) + NLMSG_ALIGN(off);
  int len = (int)h->nlmsg_len - (int)NLMSG_ALIGN(off);
  for (const nlattr* a = reinterpret_cast<const nlattr*>(p); len >= (int)NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
       len -= NLA_ALIGN(a->nla_len), a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + NLA_ALIGN(a->nla_len))) {
    if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG)
      CopyStr(e->message, sizeof e->message, reinterpret_cast<const char*>(a) + NLA_HDRLEN);
  }
}

struct Nl {
  UniqueFd fd;
  uint32_t seq = 1;

  int Send(Msg& m, const char* what, Err* e) {
    if (m.overflow) return Fail(e, EMSGSIZE, kStep, what);
    m.h()->nlmsg_seq = seq++;
    for (;;) {
      ssize_t n = send(fd.get(), m.buf, m.h()->nlmsg_len, 0);
      if (n >= 0) return 0;
      if (errno != EINTR) return Fail(e, errno, kStep, "sendto(netlink)");
    }
  }

  // Sends a request and waits for its ack (or, with NLM_F_DUMP, calls `each` per message
  // until NLMSG_DONE). `each` returns false to ignore the message silently.
  template <typename F>
  int Talk(Msg& m, const char* what, Err* e, F&& each) {
    // rtnetlink GET types are 2 mod 4; for NEW/DEL, NLM_F_EXCL shares a bit with NLM_F_DUMP
    bool dump = (m.h()->nlmsg_type & 3) == 2 && (m.h()->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    if (!dump) m.h()->nlmsg_flags |= NLM_F_ACK;
    if (int r = Send(m, what, e); r < 0) return r;
    uint32_t want = m.h()->nlmsg_seq;
    std::vector<char> big;
    alignas(NLMSG_ALIGNTO) char small[8192];
    char* buf = small;
    size_t cap = sizeof small;
    if (dump) { big.resize(65536); buf = big.data(); cap = big.size(); }
    for (;;) {
      ssize_t n = recv(fd.get(), buf, cap, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(e, errno, kStep, "recvfrom(netlink)");
      }
      int len = (int)n;
      for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != want) continue;
        if (h->nlmsg_type == NLMSG_DONE) return 0;
        if (h->nlmsg_type == NLMSG_ERROR) {
          const nlmsgerr* er = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
          if (er->error == 0) return 0;
          int r = Fail(e, -er->error, kStep, what);
          ExtAck(h, e);
          return r;
        }
        each(h);
      }
    }
  }
  int Talk(Msg& m, const char* what, Err* e) { return Talk(m, what, e, [](nlmsghdr*) {}); }
};

int OpenSock(int nsfd, Nl* nl, Err* e) { return OpenNl(nsfd, &nl->fd, e); }

template <typename F>
void ForAttrs(rtattr* a, int len, F&& f) {
  for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) f(a);
}

// ---------------------------------------------------------------------------------------------
// Addresses

struct Cidr {
  int family = 0;
  unsigned char addr[16] = {0};
  int prefix = -1;
  size_t Len() const { return family == AF_INET ? 4 : 16; }
};

// "10.0.0.2/24", "fd00::2/64"; without "/", the prefix is the full length when allowBare.
bool ParseCidr(const std::string& s, Cidr* c, bool allowBare) {
  std::string ip = s;
  size_t slash = s.find('/');
  c->prefix = -1;
  if (slash != std::string::npos) {
    ip = s.substr(0, slash);
    std::string p = s.substr(slash + 1);
    if (p.empty() || p.size() > 3) return false;
    int v = 0;
    for (char ch : p) { if (ch < '0' || ch > '9') return false; v = v * 10 + (ch - '0'); }
    c->prefix = v;
  } else if (!allowBare) {
    return false;
  }
  if (inet_pton(AF_INET, ip.c_str(), c->addr) == 1) c->family = AF_INET;
  else if (inet_pton(AF_INET6, ip.c_str(), c->addr) == 1) c->family = AF_INET6;
  else return false;
  int max = c->family == AF_INET ? 32 : 128;
  if (c->prefix < 0) c->prefix = max;
  return c->prefix <= max;
}

std::string FormatAddr(int family, const void* data) {
  char b[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family, data, b, sizeof b);
  return b;
}

int AddrChange(Nl& nl, bool add, int ifindex, const Cidr& c, Err* e) {
  Msg m(add ? RTM_NEWADDR : RTM_DELADDR, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0);
  ifaddrmsg* ifa = m.Header<ifaddrmsg>();
  ifa->ifa_family = c.family;
  ifa->ifa_prefixlen = c.prefix;
  ifa->ifa_index = ifindex;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  m.Attr(IFA_LOCAL, c.addr, c.Len());
  m.Attr(IFA_ADDRESS, c.addr, c.Len());
  if (c.family == AF_INET && add && c.prefix < 31) {
    uint32_t a;
    memcpy(&a, c.addr, 4);
    uint32_t mask = c.prefix == 0 ? 0 : htonl(~0u << (32 - c.prefix));
    uint32_t brd = a | ~mask;
    m.Attr(IFA_BROADCAST, &brd, 4);
  }
  if (c.family == AF_INET6 && add) {
    ifa->ifa_flags = IFA_F_NODAD;
    m.U32(IFA_FLAGS, IFA_F_NODAD);
  }
  return nl.Talk(m, add ? "RTM_NEWADDR" : "RTM_DELADDR", e);
}

// ---------------------------------------------------------------------------------------------
// Links

int LinkIndex(Nl& nl, const std::string& name, int* out, Err* e) {
  Msg m(RTM_GETLINK, 0);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  m.U32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  m.Str(IFLA_IFNAME, name);
  *out = 0;
  // A get request is answered with one RTM_NEWLINK message and no ack.
  if (int r = nl.Send(m, "RTM_GETLINK", e); r < 0) return r;
  uint32_t want = m.h()->nlmsg_seq;
  alignas(NLMSG_ALIGNTO) char buf[16384];
  for (;;) {
    ssize_t n = recv(nl.fd.get(), buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; return Fail(e, errno, kStep, "recvfrom(netlink)", name.c_str()); }
    int len = (int)n;
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != want) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const nlmsgerr* er = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (er->error == 0) return 0;
        int r = Fail(e, -er->error, kStep, "RTM_GETLINK", name.c_str());
        ExtAck(h, e);
        return r;
      }
      if (h->nlmsg_type == RTM_NEWLINK) {
        *out = static_cast<ifinfomsg*>(NLMSG_DATA(h))->ifi_index;
        return 0;
      }
    }
  }
}

struct LinkSet {
  int ifindex = 0;
  std::string byName;          // when ifindex is 0
  std::string name;            // rename
  unsigned mtu = 0;
  std::string mac;             // 6 raw bytes
  int up = -1;                 // -1 keep, 0 down, 1 up
  int master = -1;             // -1 keep, 0 nomaster, else ifindex
  int nsFd = -1, nsPid = -1;   // move
  std::string alias;
  bool hasAlias = false;
};

void PutLinkCommon(Msg& m, ifinfomsg* ifi, const LinkSet& s) {
  if (!s.name.empty()) m.Str(IFLA_IFNAME, s.name);
  if (s.mtu) m.U32(IFLA_MTU, s.mtu);
  if (!s.mac.empty()) m.Attr(IFLA_ADDRESS, s.mac.data(), s.mac.size());
  if (s.master >= 0) m.U32(IFLA_MASTER, s.master);
  if (s.hasAlias) m.Attr(IFLA_IFALIAS, s.alias.c_str(), s.alias.size());
  if (s.up >= 0) {
    ifi->ifi_change |= IFF_UP;
    if (s.up) ifi->ifi_flags |= IFF_UP;
  }
}

int LinkSetDo(Nl& nl, const LinkSet& s, Err* e) {
  Msg m(RTM_NEWLINK, 0);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = s.ifindex;
  if (!s.ifindex && !s.byName.empty()) m.Str(IFLA_IFNAME, s.byName);
  if (s.nsFd >= 0) m.U32(IFLA_NET_NS_FD, s.nsFd);
  if (s.nsPid > 0) m.U32(IFLA_NET_NS_PID, s.nsPid);
  LinkSet t = s;
  if (!s.ifindex && !s.byName.empty() && !s.name.empty()) {
    // rename by name is not possible in one message (IFLA_IFNAME is the selector)
    return Fail(e, EINVAL, kStep, "RTM_NEWLINK", s.byName.c_str());
  }
  PutLinkCommon(m, ifi, t);
  int r = nl.Talk(m, "RTM_NEWLINK", e);
  if (r < 0 && e && !e->path[0]) CopyStr(e->path, sizeof e->path, s.byName.empty() ? s.name.c_str() : s.byName.c_str());
  return r;
}

// Kinds we create: veth (with a peer), bridge, vxlan, dummy.
struct LinkAdd {
  std::string kind, name;
  unsigned mtu = 0;
  std::string mac;
  int master = 0;
  bool up = false;
  // veth peer
  std::string peerName;
  unsigned peerMtu = 0;
  int peerNsFd = -1;
  // vxlan
  uint32_t vni = 0;
  int vxLink = 0;
  Cidr vxLocal, vxRemote, vxGroup;
  unsigned vxPort = 4789;
  bool vxLearning = true;
};

int LinkAddDo(Nl& nl, const LinkAdd& a, Err* e) {
  Msg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  if (!a.name.empty()) m.Str(IFLA_IFNAME, a.name);
  if (a.mtu) m.U32(IFLA_MTU, a.mtu);
  if (!a.mac.empty()) m.Attr(IFLA_ADDRESS, a.mac.data(), a.mac.size());
  if (a.master > 0) m.U32(IFLA_MASTER, a.master);
  if (a.up) { ifi->ifi_change = IFF_UP; ifi->ifi_flags = IFF_UP; }
  rtattr* info = m.Nest(IFLA_LINKINFO);
  m.Str(IFLA_INFO_KIND, a.kind);
  if (a.kind == "veth") {
    rtattr* data = m.Nest(IFLA_INFO_DATA);
    rtattr* peer = m.Nest(VETH_INFO_PEER);
    ifinfomsg* pi = m.Header<ifinfomsg>();
    pi->ifi_family = AF_UNSPEC;
    // The peer's attributes follow its ifinfomsg, inside the VETH_INFO_PEER nest.
    if (!a.peerName.empty()) m.Str(IFLA_IFNAME, a.peerName);
    if (a.peerMtu) m.U32(IFLA_MTU, a.peerMtu);
    if (a.peerNsFd >= 0) m.U32(IFLA_NET_NS_FD, a.peerNsFd);
    m.End(peer);
    m.End(data);
  } else if (a.kind == "vxlan") {
    rtattr* data = m.Nest(IFLA_INFO_DATA);
    m.U32(IFLA_VXLAN_ID, a.vni);
    if (a.vxLink) m.U32(IFLA_VXLAN_LINK, a.vxLink);
    if (a.vxLocal.family == AF_INET) m.Attr(IFLA_VXLAN_LOCAL, a.vxLocal.addr, 4);
    if (a.vxLocal.family == AF_INET6) m.Attr(IFLA_VXLAN_LOCAL6, a.vxLocal.addr, 16);
    const Cidr& g = a.vxGroup.family ? a.vxGroup : a.vxRemote;
    if (g.family == AF_INET) m.Attr(IFLA_VXLAN_GROUP, g.addr, 4);
    if (g.family == AF_INET6) m.Attr(IFLA_VXLAN_GROUP6, g.addr, 16);
    uint16_t port = htons(a.vxPort);
    m.Attr(IFLA_VXLAN_PORT, &port, 2);
    m.U8(IFLA_VXLAN_LEARNING, a.vxLearning ? 1 : 0);
    m.End(data);
  }
  m.End(info);
  int r = nl.Talk(m, "RTM_NEWLINK", e);
  if (r < 0 && e && !e->path[0]) CopyStr(e->path, sizeof e->path, a.name.c_str());
  return r;
}

int LinkDelDo(Nl& nl, int ifindex, const std::string& name, Err* e) {
  Msg m(RTM_DELLINK, 0);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  if (!ifindex) m.Str(IFLA_IFNAME, name);
  int r = nl.Talk(m, "RTM_DELLINK", e);
  if (r < 0 && e && !name.empty()) CopyStr(e->path, sizeof e->path, name.c_str());
  return r;
}

// ---------------------------------------------------------------------------------------------
// Routes

struct RouteSpec {
  Cidr dst;          // family 0 = default route (family taken from the gateway)
  Cidr gw;
  int oif = 0;
  uint32_t table = RT_TABLE_MAIN;
  uint32_t metric = 0;
};

int RouteChange(Nl& nl, bool add, const RouteSpec& s, Err* e) {
  int family = s.dst.family ? s.dst.family : s.gw.family;
  if (!family) return Fail(e, EINVAL, kStep, add ? "RTM_NEWROUTE" : "RTM_DELROUTE");
  Msg m(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0);
  rtmsg* rt = m.Header<rtmsg>();
  rt->rtm_family = family;
  rt->rtm_dst_len = s.dst.family ? s.dst.prefix : 0;
  rt->rtm_table = s.table < 256 ? s.table : RT_TABLE_UNSPEC;
  rt->rtm_protocol = RTPROT_STATIC;
  rt->rtm_scope = s.gw.family ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  rt->rtm_type = RTN_UNICAST;
  if (!add) rt->rtm_scope = RT_SCOPE_NOWHERE;
  if (s.table >= 256) m.U32(RTA_TABLE, s.table);
  if (s.dst.family) m.Attr(RTA_DST, s.dst.addr, s.dst.Len());
  if (s.gw.family) m.Attr(RTA_GATEWAY, s.gw.addr, s.gw.Len());
  if (s.oif) m.U32(RTA_OIF, s.oif);
  if (s.metric) m.U32(RTA_PRIORITY, s.metric);
  return nl.Talk(m, add ? "RTM_NEWROUTE" : "RTM_DELROUTE", e);
}

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
  if (AddrChange(nl, add, idx, c, &e) < 0) {
    CopyStr(e.path, sizeof e.path, cidr.c_str());
    return ThrowErr(env, e);
  }
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
  std::string name;
  if (!o.Get("link").IsUndefined() && !ResolveLink(env, nl, o.Get("link"), &s.oif, &name)) return env.Undefined();
  s.table = (uint32_t)Num(o, "table", RT_TABLE_MAIN);
  s.metric = (uint32_t)Num(o, "metric", 0);
  Err e;
  if (RouteChange(nl, add, s, &e) < 0) {
    CopyStr(e.path, sizeof e.path, dst.empty() ? "default" : dst.c_str());
    return ThrowErr(env, e);
  }
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

// ---------------------------------------------------------------------------------------------
// nftables through libnftables (dlopen at run time: the addon loads without it).

struct NftApi {
  void* lib = nullptr;
  void* (*ctx_new)(uint32_t) = nullptr;
  void (*ctx_free)(void*) = nullptr;
  int (*buffer_output)(void*) = nullptr;
  int (*buffer_error)(void*) = nullptr;
  const char* (*get_output)(void*) = nullptr;
  const char* (*get_error)(void*) = nullptr;
  void (*set_flags)(void*, unsigned) = nullptr;
  int (*run)(void*, const char*) = nullptr;
  std::string loadError;
};

// Per-environment state of this file, handed to the functions as their data pointer.
struct NetState {
  NftApi nft;
  bool tried = false;
};

bool LoadNft(NetState* st) {
  if (st->tried) return st->nft.lib != nullptr;
  st->tried = true;
  NftApi& n = st->nft;
  n.lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!n.lib) {
    const char* d = dlerror();
    n.loadError = d ? d : "dlopen failed";
    return false;
  }
  n.ctx_new = reinterpret_cast<void* (*)(uint32_t)>(dlsym(n.lib, "nft_ctx_new"));
  n.ctx_free = reinterpret_cast<void (*)(void*)>(dlsym(n.lib, "nft_ctx_free"));
  n.buffer_output = reinterpret_cast<int (*)(void*)>(dlsym(n.lib, "nft_ctx_buffer_output"));
  n.buffer_error = reinterpret_cast<int (*)(void*)>(dlsym(n.lib, "nft_ctx_buffer_error"));
  n.get_output = reinterpret_cast<const char* (*)(void*)>(dlsym(n.lib, "nft_ctx_get_output_buffer"));
  n.get_error = reinterpret_cast<const char* (*)(void*)>(dlsym(n.lib, "nft_ctx_get_error_buffer"));
  n.set_flags = reinterpret_cast<void (*)(void*, unsigned)>(dlsym(n.lib, "nft_ctx_output_set_flags"));
  n.run = reinterpret_cast<int (*)(void*, const char*)>(dlsym(n.lib, "nft_run_cmd_from_buffer"));
  if (!n.ctx_new || !n.ctx_free || !n.buffer_output || !n.buffer_error || !n.get_output || !n.get_error || !n.set_flags || !n.run) {
    n.loadError = "libnftables.so.1 lacks an expected symbol";
    dlclose(n.lib);
    n.lib = nullptr;
    return false;
  }
  return true;
}

// nftAvailable() -> null when usable, else the reason
Napi::Value NftAvailableJs(const Napi::CallbackInfo& info) {
  NetState* st = static_cast<NetState*>(info.Data());
  if (LoadNft(st)) return info.Env().Null();
  return Napi::String::New(info.Env(), st->nft.loadError);
}

// nftRun(commands, { json?, handles?, echo? }) -> output text. Runs one atomic batch.
Napi::Value NftRunJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetState* st = static_cast<NetState*>(info.Data());
  if (!LoadNft(st)) {
    Err e;
    Fail(&e, ENOENT, "nftables", "dlopen", "libnftables.so.1");
    CopyStr(e.message, sizeof e.message, ("libnftables is not installed (apt-get install libnftables1): " + st->nft.loadError).c_str());
    return ThrowErr(env, e);
  }
  std::string cmds = info[0].As<Napi::String>().Utf8Value();
  unsigned flags = 0;
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (Tri(o, "handles") == 1) flags |= 1u << 0;   // NFT_CTX_OUTPUT_HANDLE
    if (Tri(o, "json") == 1) flags |= 1u << 4;      // NFT_CTX_OUTPUT_JSON
    if (Tri(o, "echo") == 1) flags |= 1u << 5;      // NFT_CTX_OUTPUT_ECHO
  }
  NftApi& n = st->nft;
  void* ctx = n.ctx_new(0);
  if (!ctx) return ThrowErrno(env, ENOMEM, "nftables", "nft_ctx_new");
  n.buffer_output(ctx);
  n.buffer_error(ctx);
  n.set_flags(ctx, flags);
  int r = n.run(ctx, cmds.c_str());
  // each get_*_buffer call hands over the text and empties the buffer: call once
  const char* o = n.get_output(ctx);
  const char* er = n.get_error(ctx);
  std::string out = o ? o : "";
  std::string err = er ? er : "";
  n.ctx_free(ctx);
  if (r != 0) {
    Err e;
    // libnftables reports text, not errno; map the usual kernel answers.
    int code = EINVAL;
    if (err.find("File exists") != std::string::npos) code = EEXIST;
    else if (err.find("No such file") != std::string::npos) code = ENOENT;
    else if (err.find("Operation not permitted") != std::string::npos) code = EPERM;
    else if (err.find("Device or resource busy") != std::string::npos) code = EBUSY;
    Fail(&e, code, "nftables", "nft_run_cmd_from_buffer");
    // keep the first error line: the kernel's or the parser's words
    std::string first = err.substr(0, err.find('\n'));
    CopyStr(e.message, sizeof e.message, first.c_str());
    Napi::Value v = MakeError(env, e);
    if (v.IsObject()) v.As<Napi::Object>().Set("nftError", err);
    napi_throw(env, v);
    return env.Undefined();
  }
  return Napi::String::New(env, out);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Spawn path: parent, between clone and "go".

namespace {
// Both hand-off flavours. createHost empty: move host link spec.ifindex into the child's
// namespace (one message: move, rename, mtu, up). createHost set: create a veth pair now, the
// host end `createHost` on bridge `master` and up, the peer born inside the child's namespace
// as spec.name and up. Moving a device between namespaces waits for an RCU grace period in
// the kernel (15-50 ms measured here); creating the peer in place does not (~0.5 ms).
int HandoffImpl(const NetHandoffSpec& spec, pid_t childPid, const std::string& createHost, int master, Err* e) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)childPid);
  UniqueFd ns(open(path, O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Fail(e, errno, kStep, "open", path);
  // Parse everything first: a bad address must not leave a half-configured link.
  std::vector<Cidr> addrs(spec.addresses.size());
  for (size_t i = 0; i < addrs.size(); i++)
    if (!ParseCidr(spec.addresses[i], &addrs[i], false)) return Fail(e, EINVAL, kStep, "inet_pton", spec.addresses[i].c_str());
  Cidr gw4, gw6;
  if (!spec.gateway4.empty() && (!ParseCidr(spec.gateway4, &gw4, true) || gw4.family != AF_INET))
    return Fail(e, EINVAL, kStep, "inet_pton", spec.gateway4.c_str());
  if (!spec.gateway6.empty() && (!ParseCidr(spec.gateway6, &gw6, true) || gw6.family != AF_INET6))
    return Fail(e, EINVAL, kStep, "inet_pton", spec.gateway6.c_str());
  if (spec.name.empty() || spec.name.size() >= IFNAMSIZ) return Fail(e, EINVAL, kStep, "RTM_NEWLINK", spec.name.c_str());
  if (!createHost.empty() && createHost.size() >= IFNAMSIZ) return Fail(e, EINVAL, kStep, "RTM_NEWLINK", createHost.c_str());
  bool needInside = !createHost.empty() || !addrs.empty() || gw4.family || gw6.family;

  // Open the socket inside the child's namespace on a helper thread while this thread works
  // on the host side: the two overlap.
  PendingNsSock pending;
  if (needInside)
    if (int r = pending.Start(ns.get(), e); r < 0) return r;

  Nl host;
  if (int r = OpenSock(-1, &host, e); r < 0) return r;
  if (createHost.empty()) {
    LinkSet mv;
    mv.ifindex = spec.ifindex;
    mv.nsFd = ns.get();
    mv.name = spec.name;
    mv.mtu = spec.mtu;
    mv.up = 1;
    if (int r = LinkSetDo(host, mv, e); r < 0) {
      char idx[24];
      snprintf(idx, sizeof idx, "ifindex %d", spec.ifindex);
      CopyStr(e->path, sizeof e->path, idx);
      return r;
    }
  } else {
    Msg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    ifinfomsg* ifi = m.Header<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_change = IFF_UP;
    ifi->ifi_flags = IFF_UP;
    m.Str(IFLA_IFNAME, createHost);
    if (spec.mtu) m.U32(IFLA_MTU, spec.mtu);
    if (master > 0) m.U32(IFLA_MASTER, master);
    rtattr* info = m.Nest(IFLA_LINKINFO);
    m.Str(IFLA_INFO_KIND, "veth");
    rtattr* data = m.Nest(IFLA_INFO_DATA);
    rtattr* peer = m.Nest(VETH_INFO_PEER);
    ifinfomsg* pi = m.Header<ifinfomsg>();
    pi->ifi_family = AF_UNSPEC;
    // (the peer cannot come up inside this message: veth_open refuses, ENOTCONN, until the
    // pair is linked; it is brought up from inside below)
    m.Str(IFLA_IFNAME, spec.name);
    if (spec.mtu) m.U32(IFLA_MTU, spec.mtu);
    m.U32(IFLA_NET_NS_FD, ns.get());
    m.End(peer);
    m.End(data);
    m.End(info);
    if (int r = host.Talk(m, "RTM_NEWLINK", e); r < 0) {
      if (!e->path[0]) CopyStr(e->path, sizeof e->path, createHost.c_str());
      return r;
    }
  }
  if (!needInside) return 0;

  Nl in;
  int r = pending.Finish(&in.fd, e);
  int idx = 0;
  if (r == 0) r = LinkIndex(in, spec.name, &idx, e);
  if (r == 0 && !createHost.empty()) {
    LinkSet up;
    up.ifindex = idx;
    up.up = 1;
    r = LinkSetDo(in, up, e);
  }
  for (size_t i = 0; r == 0 && i < addrs.size(); i++)
    if ((r = AddrChange(in, true, idx, addrs[i], e)) < 0) CopyStr(e->path, sizeof e->path, spec.addresses[i].c_str());
  for (const Cidr* g : {&gw4, &gw6}) {
    if (r < 0 || !g->family) continue;
    RouteSpec rs;
    rs.gw = *g;
    rs.oif = idx;
    if ((r = RouteChange(in, true, rs, e)) < 0) CopyStr(e->path, sizeof e->path, (g == &gw4 ? spec.gateway4 : spec.gateway6).c_str());
  }
  if (r < 0 && !createHost.empty()) {
    Err ignored;
    LinkDelDo(host, 0, createHost, &ignored);  // nothing half-made survives: the pair goes
  }
  return r;
}
}  // namespace

// Spawn path: parent, between clone and "go".
int NetHandoff(const NetHandoffSpec& spec, pid_t childPid, Err* e) {
  return HandoffImpl(spec, childPid, std::string(), 0, e);
}

// Faster flavour (see HandoffImpl): the veth is created here with its peer born inside the
// child's namespace. Wants NetHandoffSpec to carry the host end name and the bridge ifindex.
int NetHandoffCreate(const NetHandoffSpec& spec, const std::string& hostName, int master, pid_t childPid, Err* e) {
  return HandoffImpl(spec, childPid, hostName, master, e);
}

void InitNetlink(Napi::Env env, Napi::Object exports) {
  NetState* st = new NetState();
  env.AddCleanupHook([st]() {
    if (st->nft.lib) dlclose(st->nft.lib);
    delete st;
  });
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name, st));
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
  add("nftAvailable", NftAvailableJs);
  add("nftRun", NftRunJs);
}

}  // namespace nsbox

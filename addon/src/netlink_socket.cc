// rtnetlink: the socket, messages and the link/address/route operations (netlink_socket.h).
#include "netlink_socket.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <sched.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace nsbox::netlink {
namespace {

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

}  // namespace

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

int PendingNsSock::Start(int nsfd, Err* e) {
  arg.nsfd = nsfd;
  int r = pthread_create(&thread, nullptr, NsSockThread, &arg);
  if (r != 0) return Fail(e, r, kStep, "pthread_create");
  started = true;
  return 0;
}

int PendingNsSock::Finish(UniqueFd* out, Err* e) {
  if (!started) return Fail(e, EINVAL, kStep, "pthread_join");
  pthread_join(thread, nullptr);
  started = false;
  if (arg.err) return Fail(e, arg.err, kStep, arg.syscall);
  out->reset(arg.fd);
  arg.fd = -1;
  return ConfigureSock(out->get(), e);
}

PendingNsSock::~PendingNsSock() {
  if (started) { pthread_join(thread, nullptr); if (arg.fd >= 0) close(arg.fd); }
}

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

int OpenSock(int nsfd, Nl* nl, Err* e) { return OpenNl(nsfd, &nl->fd, e); }

// ---------------------------------------------------------------------------------------------
// Addresses

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

namespace {
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
}  // namespace

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
  return Wrap(e, nl.Talk(m, "RTM_NEWLINK", e), nullptr, s.byName.empty() ? s.name.c_str() : s.byName.c_str());
}

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
  return Wrap(e, nl.Talk(m, "RTM_NEWLINK", e), nullptr, a.name.c_str());
}

int LinkDelDo(Nl& nl, int ifindex, const std::string& name, Err* e) {
  Msg m(RTM_DELLINK, 0);
  ifinfomsg* ifi = m.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  if (!ifindex) m.Str(IFLA_IFNAME, name);
  return Wrap(e, nl.Talk(m, "RTM_DELLINK", e), nullptr, name.empty() ? nullptr : name.c_str());
}

// ---------------------------------------------------------------------------------------------
// Routes

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
  if (s.src.family) m.Attr(RTA_PREFSRC, s.src.addr, s.src.Len());
  if (s.oif) m.U32(RTA_OIF, s.oif);
  if (s.metric) m.U32(RTA_PRIORITY, s.metric);
  return nl.Talk(m, add ? "RTM_NEWROUTE" : "RTM_DELROUTE", e);
}

}  // namespace nsbox::netlink

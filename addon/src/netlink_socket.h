// rtnetlink through raw NETLINK_ROUTE messages (no library, no CLI): the socket, opened in
// this thread's network namespace or in another one, the message builder, and the
// operations on links, addresses and routes the bindings (netlink_bindings.cc) and the spawn
// hand-off (net_handoff.cc) are made of. No N-API here.
//
// Network namespaces are per thread. Work "inside" another namespace uses a netlink socket
// opened by a short-lived native thread that setns()es into it: a socket stays bound to the
// namespace it was created in, so the calling thread (Node's) never changes namespace.
#pragma once
#include "common.h"

#include <pthread.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <string>
#include <vector>

namespace nsbox::netlink {

inline constexpr const char* kStep = "network";

// ---------------------------------------------------------------------------------------------
// Sockets

struct NsSockArg {
  int nsfd;
  int fd = -1;
  int err = 0;
  const char* syscall = "";
};

// Opens a NETLINK_ROUTE socket in the current namespace (nsfd < 0) or in namespace `nsfd`
// (through a thread that enters it and exits).
int OpenNl(int nsfd, UniqueFd* out, Err* e);

// Same, started in the background so the caller can do other work meanwhile.
struct PendingNsSock {
  NsSockArg arg{-1};
  pthread_t thread{};
  bool started = false;
  int Start(int nsfd, Err* e);
  int Finish(UniqueFd* out, Err* e);
  ~PendingNsSock();
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
void ExtAck(const nlmsghdr* h, Err* e);

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

int OpenSock(int nsfd, Nl* nl, Err* e);

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
// lib/net/addr.ts (parseCidr, checkIp) is where addresses are validated, with errors naming
// the option; every caller in lib/ passes its normalized text, so this only turns it into
// bytes (a refusal here, EINVAL or TypeError, is a caller's bug, not user input).
bool ParseCidr(const std::string& s, Cidr* c, bool allowBare);
std::string FormatAddr(int family, const void* data);
int AddrChange(Nl& nl, bool add, int ifindex, const Cidr& c, Err* e);

// ---------------------------------------------------------------------------------------------
// Links

// The ifindex of link `name` (ENODEV when there is none).
int LinkIndex(Nl& nl, const std::string& name, int* out, Err* e);

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

int LinkSetDo(Nl& nl, const LinkSet& s, Err* e);

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

int LinkAddDo(Nl& nl, const LinkAdd& a, Err* e);
int LinkDelDo(Nl& nl, int ifindex, const std::string& name, Err* e);

// ---------------------------------------------------------------------------------------------
// Routes

struct RouteSpec {
  Cidr dst;          // family 0 = default route (family taken from the gateway)
  Cidr gw;
  Cidr src;          // preferred source (RTA_PREFSRC); family 0 = none
  int oif = 0;
  uint32_t table = RT_TABLE_MAIN;
  uint32_t metric = 0;
};

int RouteChange(Nl& nl, bool add, const RouteSpec& s, Err* e);

}  // namespace nsbox::netlink

// The spawn path's network hand-off (parent side, between clone and "go"): a link moved into
// the child's network namespace, or a veth pair made with its peer born there; then the
// addresses and default routes inside. Also reached from JS as netlinkHandoff.
#include "netlink_socket.h"
#include "plan.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/veth.h>

#include <string>
#include <vector>

namespace nsbox {
namespace {
using namespace netlink;

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
      return Wrap(e, r, nullptr, idx);
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
    if (int r = host.Talk(m, "RTM_NEWLINK", e); r < 0) return Wrap(e, r, nullptr, createHost.c_str());
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
    r = Wrap(e, AddrChange(in, true, idx, addrs[i], e), nullptr, spec.addresses[i].c_str());
  for (const Cidr* g : {&gw4, &gw6}) {
    if (r < 0 || !g->family) continue;
    RouteSpec rs;
    rs.gw = *g;
    rs.oif = idx;
    r = Wrap(e, RouteChange(in, true, rs, e), nullptr, (g == &gw4 ? spec.gateway4 : spec.gateway6).c_str());
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

}  // namespace nsbox

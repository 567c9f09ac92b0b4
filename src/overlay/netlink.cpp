#include "overlay/netlink.hpp"

#include <arpa/inet.h>
#include <net/if.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>

namespace kr::overlay {

namespace {

struct LinkFree {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrFree {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
struct RtAddrFree {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct RouteFree {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkFree>;
using AddrPtr = std::unique_ptr<nl_addr, AddrFree>;
using CachePtr = std::unique_ptr<nl_cache, CacheFree>;

std::string nl_reason(int err) { return nl_geterror(err < 0 ? -err : err); }

[[noreturn]] void fail(const std::string& what, int err) {
  throw NetlinkError(what + ": " + nl_reason(err));
}

AddrPtr make_addr(uint32_t host_order, int prefix = 32) {
  uint32_t be = htonl(host_order);
  AddrPtr a(nl_addr_build(AF_INET, &be, sizeof be));
  if (!a) throw NetlinkError("out of memory building a netlink address");
  nl_addr_set_prefixlen(a.get(), prefix);
  return a;
}

uint32_t addr_value(nl_addr* a) {
  if (!a || nl_addr_get_family(a) != AF_INET || nl_addr_get_len(a) != 4) return 0;
  uint32_t be = 0;
  std::memcpy(&be, nl_addr_get_binary_addr(a), 4);
  return ntohl(be);
}

// nullptr when absent; throws on other errors.
LinkPtr get_link(nl_sock* sk, const std::string& name) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &link);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return nullptr;
  if (err < 0) fail("cannot read link " + name, err);
  return LinkPtr(link);
}

void delete_link(nl_sock* sk, rtnl_link* link, const std::string& name) {
  int err = rtnl_link_delete(sk, link);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV) fail("cannot delete link " + name, err);
}

// Sets MTU, up and (when master > 0) the master of an existing link, each
// only when it differs. Appends to `changes`.
void ensure_link_state(nl_sock* sk, rtnl_link* link, const std::string& name, int mtu, int master,
                       std::vector<std::string>& changes) {
  LinkPtr want(rtnl_link_alloc());
  bool any = false;
  if (static_cast<int>(rtnl_link_get_mtu(link)) != mtu) {
    rtnl_link_set_mtu(want.get(), mtu);
    changes.push_back(name + ": MTU " + std::to_string(rtnl_link_get_mtu(link)) + " -> " + std::to_string(mtu));
    any = true;
  }
  if (master > 0 && rtnl_link_get_master(link) != master) {
    rtnl_link_set_master(want.get(), master);
    changes.push_back(name + ": attached to " + kBridgeName);
    any = true;
  }
  if (!(rtnl_link_get_flags(link) & IFF_UP)) {
    rtnl_link_set_flags(want.get(), IFF_UP);
    changes.push_back(name + ": set up");
    any = true;
  }
  if (!any) return;
  int err = rtnl_link_change(sk, link, want.get(), 0);
  if (err < 0) fail("cannot configure link " + name, err);
}

VxlanAttrs read_vxlan(rtnl_link* link) {
  VxlanAttrs v;
  uint32_t id = 0, port = 0;
  if (rtnl_link_vxlan_get_id(link, &id) == 0) v.vni = id;
  nl_addr* a = nullptr;
  if (rtnl_link_vxlan_get_local(link, &a) == 0 && a) {
    v.local = addr_value(a);
    nl_addr_put(a);
  }
  a = nullptr;
  if (rtnl_link_vxlan_get_group(link, &a) == 0 && a) {
    v.remote = addr_value(a);
    nl_addr_put(a);
  }
  if (rtnl_link_vxlan_get_port(link, &port) == 0) v.port = static_cast<uint16_t>(port);
  v.learning = rtnl_link_vxlan_get_learning(link) > 0;
  return v;
}

void create_vxlan(nl_sock* sk, const VxlanAttrs& v, int mtu) {
  LinkPtr link(rtnl_link_vxlan_alloc());
  if (!link) throw NetlinkError("out of memory allocating a VXLAN link");
  rtnl_link_set_name(link.get(), kVxlanName);
  rtnl_link_vxlan_set_id(link.get(), v.vni);
  auto remote = make_addr(v.remote), local = make_addr(v.local);
  // A unicast "group" is the remote end (IFLA_VXLAN_GROUP): the kernel then
  // installs the all-zero FDB entry toward the host, nothing else.
  rtnl_link_vxlan_set_group(link.get(), remote.get());
  rtnl_link_vxlan_set_local(link.get(), local.get());
  rtnl_link_vxlan_set_port(link.get(), v.port);  // always explicit: the kernel default is 8472
  rtnl_link_vxlan_set_learning(link.get(), v.learning ? 1 : 0);
  rtnl_link_set_mtu(link.get(), mtu);
  int err = rtnl_link_add(sk, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == -NLE_OPNOTSUPP || err == -NLE_NOATTR)
    throw NetlinkError(
        "cannot create VXLAN device vxlan0: this kernel has no VXLAN support (load the 'vxlan' module, "
        "e.g. `modprobe vxlan`, or use a kernel built with CONFIG_VXLAN)");
  if (err < 0) fail("cannot create VXLAN device vxlan0", err);
}

std::vector<IfAddr> bridge_addresses(nl_sock* sk, int ifindex, std::vector<CachePtr>& keep,
                                     std::vector<rtnl_addr*>* objects) {
  nl_cache* raw = nullptr;
  int err = rtnl_addr_alloc_cache(sk, &raw);
  if (err < 0) fail("cannot list addresses", err);
  keep.emplace_back(raw);
  std::vector<IfAddr> out;
  for (nl_object* o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET) continue;
    out.push_back(IfAddr{addr_value(rtnl_addr_get_local(a)), rtnl_addr_get_prefixlen(a)});
    if (objects) objects->push_back(a);
  }
  return out;
}

struct RouteObj {
  RouteEntry entry;
  rtnl_route* obj;
};

// Main-table IPv4 routes that leave through `ifindex` (not the connected
// ones) or whose destination is one of `dsts`.
std::vector<RouteObj> relevant_routes(nl_sock* sk, int ifindex, const std::vector<Ipv4Net>& dsts,
                                      std::vector<CachePtr>& keep) {
  nl_cache* raw = nullptr;
  int err = rtnl_route_alloc_cache(sk, AF_INET, 0, &raw);
  if (err < 0) fail("cannot list routes", err);
  keep.emplace_back(raw);
  std::vector<RouteObj> out;
  for (nl_object* o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST) continue;
    nl_addr* dst = rtnl_route_get_dst(r);
    RouteEntry e;
    e.dst = Ipv4Net{addr_value(dst), dst ? static_cast<int>(nl_addr_get_prefixlen(dst)) : 0};
    bool via_bridge = false;
    if (rtnl_route_get_nnexthops(r) >= 1) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
      e.gateway = addr_value(rtnl_route_nh_get_gateway(nh));
      via_bridge = ifindex > 0 && rtnl_route_nh_get_ifindex(nh) == ifindex;
    }
    bool named = false;
    for (const auto& d : dsts)
      if (d == e.dst) named = true;
    if ((via_bridge && rtnl_route_get_protocol(r) != RTPROT_KERNEL) || named) out.push_back(RouteObj{e, r});
  }
  return out;
}

}  // namespace

Netlink::Netlink() {
  sk_ = nl_socket_alloc();
  if (!sk_) throw NetlinkError("cannot allocate a netlink socket");
  int err = nl_connect(sk_, NETLINK_ROUTE);
  if (err < 0) {
    nl_socket_free(sk_);
    sk_ = nullptr;
    fail("cannot open the rtnetlink socket", err);
  }
}

Netlink::~Netlink() {
  if (sk_) nl_socket_free(sk_);
}

bool Netlink::link_exists(const std::string& name) { return get_link(sk_, name) != nullptr; }

std::vector<std::string> Netlink::apply(const DesiredOverlay& d) {
  std::vector<std::string> changes;
  const std::string bridge_name = kBridgeName, vxlan_name = kVxlanName;

  // 1. Bridge (ours by name; anything else under that name is replaced).
  LinkPtr bridge = get_link(sk_, bridge_name);
  if (bridge) {
    const char* type = rtnl_link_get_type(bridge.get());
    if (!type || std::string(type) != "bridge") {
      delete_link(sk_, bridge.get(), bridge_name);
      changes.push_back(bridge_name + ": was a '" + std::string(type ? type : "?") + "' link, recreated as bridge");
      bridge.reset();
    }
  }
  if (!bridge) {
    LinkPtr link(rtnl_link_alloc());
    rtnl_link_set_name(link.get(), kBridgeName);
    int err = rtnl_link_set_type(link.get(), "bridge");
    if (err < 0) fail("cannot prepare bridge " + bridge_name, err);
    rtnl_link_set_mtu(link.get(), d.mtu);
    err = rtnl_link_add(sk_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (err == -NLE_OPNOTSUPP) throw NetlinkError("cannot create bridge " + bridge_name + ": no bridge support in this kernel");
    if (err < 0) fail("cannot create bridge " + bridge_name, err);
    changes.push_back(bridge_name + ": created");
    bridge = get_link(sk_, bridge_name);
    if (!bridge) throw NetlinkError("bridge " + bridge_name + " vanished right after creation");
  }
  ensure_link_state(sk_, bridge.get(), bridge_name, d.mtu, 0, changes);
  const int bridge_index = rtnl_link_get_ifindex(bridge.get());

  // 2. Bridge address: exactly the gateway/prefix (an old gateway is removed).
  {
    std::vector<CachePtr> keep;
    std::vector<rtnl_addr*> objects;
    IfAddr want{d.alloc.gateway, d.alloc.subnet.prefix};
    auto have = bridge_addresses(sk_, bridge_index, keep, &objects);
    auto plan = plan_bridge_addresses(have, want);
    for (size_t i = 0; i < have.size(); ++i) {
      if (have[i] == want) continue;
      int err = rtnl_addr_delete(sk_, objects[i], 0);
      if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND)
        fail("cannot remove address " + have[i].str() + " from " + bridge_name, err);
      changes.push_back(bridge_name + ": removed stale address " + have[i].str());
    }
    if (plan.add) {
      std::unique_ptr<rtnl_addr, RtAddrFree> addr(rtnl_addr_alloc());
      rtnl_addr_set_ifindex(addr.get(), bridge_index);
      rtnl_addr_set_family(addr.get(), AF_INET);
      auto local = make_addr(want.addr, want.prefix);
      rtnl_addr_set_local(addr.get(), local.get());
      rtnl_addr_set_prefixlen(addr.get(), want.prefix);
      int err = rtnl_addr_add(sk_, addr.get(), 0);
      if (err < 0 && err != -NLE_EXIST) fail("cannot add " + want.str() + " to " + bridge_name, err);
      changes.push_back(bridge_name + ": address " + want.str());
    }
  }

  // 3. VXLAN toward the host (attributes are fixed at creation: recreate on any difference).
  const VxlanAttrs want_vx = desired_vxlan(d);
  LinkPtr vx = get_link(sk_, vxlan_name);
  if (vx) {
    std::vector<std::string> diffs;
    if (!rtnl_link_is_vxlan(vx.get()))
      diffs.push_back("not a VXLAN device");
    else
      diffs = vxlan_differences(read_vxlan(vx.get()), want_vx);
    if (!diffs.empty()) {
      delete_link(sk_, vx.get(), vxlan_name);
      std::string why;
      for (const auto& s : diffs) why += (why.empty() ? "" : ", ") + s;
      changes.push_back(vxlan_name + ": recreated (" + why + ")");
      vx.reset();
    }
  }
  if (!vx) {
    create_vxlan(sk_, want_vx, d.mtu);
    changes.push_back(vxlan_name + ": created (VNI " + std::to_string(want_vx.vni) + ", " +
                      format_ipv4(want_vx.local) + " -> " + format_ipv4(want_vx.remote) + ":" +
                      std::to_string(want_vx.port) + ")");
    vx = get_link(sk_, vxlan_name);
    if (!vx) throw NetlinkError("vxlan0 vanished right after creation");
  }
  ensure_link_state(sk_, vx.get(), vxlan_name, d.mtu, bridge_index, changes);

  // 4. Route to the whole overlay via the host's address on our subnet.
  {
    std::vector<CachePtr> keep;
    const RouteEntry want = desired_route(d);
    auto routes = relevant_routes(sk_, bridge_index, {want.dst}, keep);
    std::vector<RouteEntry> have;
    for (const auto& r : routes) have.push_back(r.entry);
    auto plan = plan_routes(have, want);
    for (const auto& r : routes) {
      if (r.entry == want) continue;
      int err = rtnl_route_delete(sk_, r.obj, 0);
      if (err < 0 && err != -NLE_OBJ_NOTFOUND) fail("cannot remove stale route " + r.entry.str(), err);
      changes.push_back("route " + r.entry.str() + " removed");
    }
    if (plan.add) {
      std::unique_ptr<rtnl_route, RouteFree> route(rtnl_route_alloc());
      rtnl_route_set_family(route.get(), AF_INET);
      rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
      rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
      rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
      rtnl_route_set_type(route.get(), RTN_UNICAST);
      auto dst = make_addr(want.dst.addr, want.dst.prefix);
      rtnl_route_set_dst(route.get(), dst.get());
      rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
      auto gw = make_addr(want.gateway);
      rtnl_route_nh_set_gateway(nh, gw.get());
      rtnl_route_nh_set_ifindex(nh, bridge_index);
      rtnl_route_add_nexthop(route.get(), nh);
      int err = rtnl_route_add(sk_, route.get(), NLM_F_CREATE | NLM_F_REPLACE);
      if (err < 0) fail("cannot add route " + want.str(), err);
      changes.push_back("route " + want.str() + " added");
    }
  }
  return changes;
}

std::vector<std::string> Netlink::remove_all(const std::vector<Ipv4Net>& cidrs) {
  std::vector<std::string> removed;
  LinkPtr bridge = get_link(sk_, kBridgeName);
  {
    std::vector<CachePtr> keep;
    auto routes = relevant_routes(sk_, bridge ? rtnl_link_get_ifindex(bridge.get()) : 0, cidrs, keep);
    for (const auto& r : routes) {
      int err = rtnl_route_delete(sk_, r.obj, 0);
      if (err < 0 && err != -NLE_OBJ_NOTFOUND) fail("cannot remove route " + r.entry.str(), err);
      removed.push_back("route " + r.entry.str());
    }
  }
  if (LinkPtr vx = get_link(sk_, kVxlanName)) {
    delete_link(sk_, vx.get(), kVxlanName);
    removed.push_back(std::string("link ") + kVxlanName);
  }
  if (bridge) {
    delete_link(sk_, bridge.get(), kBridgeName);
    removed.push_back(std::string("link ") + kBridgeName);
  }
  return removed;
}

std::vector<std::string> Netlink::ensure_bridge(const std::string& name, const IfAddr& address) {
  std::vector<std::string> changes;
  LinkPtr bridge = get_link(sk_, name);
  if (bridge) {
    const char* type = rtnl_link_get_type(bridge.get());
    if (!type || std::string(type) != "bridge")
      throw NetlinkError("link " + name + " exists but is a '" + std::string(type ? type : "?") +
                         "' device, not a bridge (rename it or set VM_BRIDGE_NAME)");
  } else {
    LinkPtr link(rtnl_link_alloc());
    rtnl_link_set_name(link.get(), name.c_str());
    int err = rtnl_link_set_type(link.get(), "bridge");
    if (err < 0) fail("cannot prepare bridge " + name, err);
    err = rtnl_link_add(sk_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (err == -NLE_OPNOTSUPP) throw NetlinkError("cannot create bridge " + name + ": no bridge support in this kernel");
    if (err < 0 && err != -NLE_EXIST) fail("cannot create bridge " + name, err);
    changes.push_back(name + ": created");
    bridge = get_link(sk_, name);
    if (!bridge) throw NetlinkError("bridge " + name + " vanished right after creation");
  }
  if (!(rtnl_link_get_flags(bridge.get()) & IFF_UP)) {
    LinkPtr want(rtnl_link_alloc());
    rtnl_link_set_flags(want.get(), IFF_UP);
    int err = rtnl_link_change(sk_, bridge.get(), want.get(), 0);
    if (err < 0) fail("cannot set " + name + " up", err);
    changes.push_back(name + ": set up");
  }
  const int index = rtnl_link_get_ifindex(bridge.get());
  std::vector<CachePtr> keep;
  auto have = bridge_addresses(sk_, index, keep, nullptr);
  bool present = false;
  for (const auto& a : have) present |= a == address;
  if (!present) {
    std::unique_ptr<rtnl_addr, RtAddrFree> addr(rtnl_addr_alloc());
    rtnl_addr_set_ifindex(addr.get(), index);
    rtnl_addr_set_family(addr.get(), AF_INET);
    auto local = make_addr(address.addr, address.prefix);
    rtnl_addr_set_local(addr.get(), local.get());
    rtnl_addr_set_prefixlen(addr.get(), address.prefix);
    int err = rtnl_addr_add(sk_, addr.get(), 0);
    if (err < 0 && err != -NLE_EXIST) fail("cannot add " + address.str() + " to " + name, err);
    changes.push_back(name + ": address " + address.str());
  }
  return changes;
}

void Netlink::attach_to_bridge(const std::string& name, const std::string& master, int mtu) {
  LinkPtr link = get_link(sk_, name);
  if (!link) throw NetlinkError("link " + name + " does not exist");
  LinkPtr bridge = get_link(sk_, master);
  if (!bridge) throw NetlinkError("bridge " + master + " does not exist");
  LinkPtr want(rtnl_link_alloc());
  rtnl_link_set_master(want.get(), rtnl_link_get_ifindex(bridge.get()));
  if (mtu > 0) rtnl_link_set_mtu(want.get(), static_cast<unsigned>(mtu));
  rtnl_link_set_flags(want.get(), IFF_UP);
  int err = rtnl_link_change(sk_, link.get(), want.get(), 0);
  if (err < 0) fail("cannot attach " + name + " to " + master, err);
}

bool Netlink::delete_link_named(const std::string& name) {
  LinkPtr link = get_link(sk_, name);
  if (!link) return false;
  delete_link(sk_, link.get(), name);
  return true;
}

std::string Netlink::master_of(const std::string& name) {
  LinkPtr link = get_link(sk_, name);
  if (!link) return "";
  const int master = rtnl_link_get_master(link.get());
  if (master <= 0) return "";
  char buf[IF_NAMESIZE + 1] = {};
  return ::if_indextoname(static_cast<unsigned>(master), buf) ? std::string(buf) : std::string();
}

std::vector<IfAddr> Netlink::addresses_of(const std::string& name) {
  LinkPtr link = get_link(sk_, name);
  if (!link) return {};
  std::vector<CachePtr> keep;
  return bridge_addresses(sk_, rtnl_link_get_ifindex(link.get()), keep, nullptr);
}

bool ensure_ip_forward() {
  const char* path = "/proc/sys/net/ipv4/ip_forward";
  std::string value;
  {
    std::ifstream in(path);
    if (!in) throw NetlinkError(std::string("cannot read ") + path + ": " + std::strerror(errno));
    in >> value;
  }
  if (value == "1") return false;
  std::ofstream out(path);
  out << "1\n";
  out.flush();
  if (!out) throw NetlinkError(std::string("cannot enable IPv4 forwarding (") + path + "): " + std::strerror(errno));
  return true;
}

}  // namespace kr::overlay

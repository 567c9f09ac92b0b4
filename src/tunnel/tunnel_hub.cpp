#include "tunnel/tunnel_hub.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "common/log_rate_limiter.hpp"
#include "tunnel/id_allocator.hpp"
#include "tunnel/relay_rules.hpp"

namespace kr::tunnel {

namespace asio = boost::asio;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// One WebSocket plus the number of coroutines inside send() on it: the
// handler that owns the socket must not return (destroying it) while
// another coroutine still uses it.
struct Peer {
  api::WebSocket* ws = nullptr;
  int inflight = 0;
  bool gone = false;

  asio::awaitable<bool> send(std::string message, bool binary = true) {
    if (gone || !ws->is_open()) co_return false;
    struct Guard {
      int& n;
      explicit Guard(int& c) : n(c) { ++n; }
      ~Guard() { --n; }
    } guard(inflight);
    bool ok = co_await ws->send(std::move(message), binary);
    co_return ok;
  }
};

// Waits until no other coroutine is inside send() on `peer` (aborting the
// socket so that they finish at once).
asio::awaitable<void> retire(Peer& peer) {
  peer.gone = true;
  if (peer.inflight > 0) peer.ws->abort();
  auto ex = co_await asio::this_coro::executor;
  while (peer.inflight > 0) {
    asio::steady_timer t(ex, std::chrono::milliseconds(2));
    co_await t.async_wait(use_nothrow);
  }
}

std::string normalize_ip(std::string ip) {
  if (ip.rfind("::ffff:", 0) == 0 && ip.find('.') != std::string::npos) ip = ip.substr(7);
  return ip;
}

}  // namespace

struct Forward;

struct Tunnel {
  std::string container_id;
  Peer peer;
  IdAllocator ids;
  struct Route {
    std::shared_ptr<Forward> forward;
    std::uint32_t user_id;
  };
  std::unordered_map<std::uint32_t, Route> routes;  // runner id → user side
  bool dead = false;
};

struct Forward {
  std::string container_id;
  std::uint16_t port = 0;
  Proto proto = Proto::Tcp;
  Peer peer;
  struct Link {
    std::weak_ptr<Tunnel> tunnel;
    std::uint32_t tunnel_id;
  };
  std::unordered_map<std::uint32_t, Link> active;  // user id → tunnel side
};

struct TunnelHub::Impl {
  asio::any_io_executor ex;
  HubOptions options;
  std::unordered_map<std::string, std::shared_ptr<Tunnel>> tunnels;
  std::multimap<std::string, asio::steady_timer*> waiters;
  std::size_t forwards = 0;
  bool stopping = false;
  std::vector<api::WebSocket*> open_sockets;
  // Lines a tenant can trigger at will (malformed frames, refused tunnel
  // connections): rate-limited per source (issue 16 item 7).
  common::LogRateLimiter tenant_log;

  void track(api::WebSocket* ws) { open_sockets.push_back(ws); }
  void untrack(api::WebSocket* ws) { std::erase(open_sockets, ws); }

  std::shared_ptr<Tunnel> live_tunnel(const std::string& id) {
    auto it = tunnels.find(id);
    if (it == tunnels.end() || it->second->dead) return nullptr;
    return it->second;
  }

  void wake(const std::string& id) {
    auto [b, e] = waiters.equal_range(id);
    for (auto it = b; it != e; ++it) it->second->cancel();
  }

  // The container's tunnel, waiting up to options.tunnel_wait for it (T4).
  asio::awaitable<std::shared_ptr<Tunnel>> wait_tunnel(std::string id) {
    const auto deadline = std::chrono::steady_clock::now() + options.tunnel_wait;
    while (!stopping) {
      if (auto t = live_tunnel(id)) co_return t;
      if (std::chrono::steady_clock::now() >= deadline) break;
      asio::steady_timer timer(ex, deadline);
      auto entry = waiters.emplace(id, &timer);
      co_await timer.async_wait(use_nothrow);
      waiters.erase(entry);
    }
    co_return nullptr;
  }

  // Removes one route (both directions) and frees the runner id.
  static void unroute(Tunnel& t, std::uint32_t tunnel_id) {
    auto it = t.routes.find(tunnel_id);
    if (it == t.routes.end()) return;
    auto& fwd = *it->second.forward;
    auto link = fwd.active.find(it->second.user_id);
    if (link != fwd.active.end() && link->second.tunnel_id == tunnel_id) fwd.active.erase(link);
    t.routes.erase(it);
    t.ids.release(tunnel_id);
  }

  asio::awaitable<void> relay_from_container(Tunnel& t, std::string message) {
    auto kind = classify_from_container(message);
    if (kind == FromContainer::Ignore) co_return;
    auto h = parse_header(message);
    if (kind == FromContainer::Drop) {
      if (auto n = tenant_log.admit("tunnel " + t.container_id))
        spdlog::warn("tunnel {}: dropping {} (0x{:02x}) from the container{}", t.container_id, type_name(h->type),
                     h->type, common::LogRateLimiter::suppressed_note(*n));
      co_return;
    }
    auto it = t.routes.find(h->client_id);
    if (it == t.routes.end()) {
      // Late messages for a closed id are normal (the client sends CLOSE
      // after the service ends even when the user closed first).
      spdlog::debug("tunnel {}: {} for unknown id {}", t.container_id, type_name(h->type), h->client_id);
      co_return;
    }
    Tunnel::Route route = it->second;
    if (kind == FromContainer::RouteForget) {
      if (h->type == static_cast<std::uint8_t>(MsgType::Error))
        spdlog::info("tunnel {}: connection {} failed in the container: {}", t.container_id, h->client_id,
                     std::string(payload_of(message)));
      unroute(t, h->client_id);
    }
    set_client_id(message, route.user_id);
    auto parts = split_data(std::move(message));
    for (auto& part : parts) {
      // Suspends while the user's send queue is full: the tunnel is not
      // read meanwhile (T6 back-pressure, nothing dropped, memory bounded).
      bool ok = co_await route.forward->peer.send(std::move(part));
      if (!ok) break;
    }
  }

  asio::awaitable<void> close_tunnel_routes(Tunnel& t) {
    auto routes = std::move(t.routes);
    t.routes.clear();
    for (auto& [tid, route] : routes) {
      t.ids.release(tid);
      auto link = route.forward->active.find(route.user_id);
      if (link != route.forward->active.end() && link->second.tunnel_id == tid) route.forward->active.erase(link);
      // The user's connection cannot continue on another tunnel: close it.
      co_await route.forward->peer.send(encode(MsgType::Close, route.forward->proto, route.user_id));
    }
  }

  asio::awaitable<bool> source_allowed(api::WebSocket& ws, const std::string& container_id) {
    if (!options.container_addresses) co_return true;
    std::string remote = normalize_ip(ws.request().remote_ip);
    std::vector<std::string> addrs;
    try {
      addrs = co_await options.container_addresses(container_id);
    } catch (const std::exception& e) {
      spdlog::warn("tunnel {}: cannot look up the container's address: {}", container_id, e.what());
    }
    for (auto& a : addrs)
      if (normalize_ip(a) == remote) co_return true;
    if (auto n = tenant_log.admit(remote))
      spdlog::warn("tunnel {}: refused: connection from {} is not from that container (its addresses: {}){}",
                   container_id, remote, addrs.empty() ? std::string("none") : fmt::format("{}", fmt::join(addrs, ", ")),
                   common::LogRateLimiter::suppressed_note(*n));
    co_return false;
  }
};

TunnelHub::TunnelHub(asio::any_io_executor ex, HubOptions options) : impl_(std::make_shared<Impl>()) {
  impl_->ex = std::move(ex);
  impl_->options = std::move(options);
}

TunnelHub::~TunnelHub() = default;

std::size_t TunnelHub::tunnel_count() const { return impl_->tunnels.size(); }
std::size_t TunnelHub::forward_count() const { return impl_->forwards; }

void TunnelHub::stop() {
  impl_->stopping = true;
  for (auto& [id, timer] : impl_->waiters) timer->cancel();
  for (auto* ws : impl_->open_sockets) ws->abort();
}

asio::awaitable<void> TunnelHub::serve_tunnel(api::WebSocket& ws, std::string container_id) {
  auto impl = impl_;
  bool allowed = co_await impl->source_allowed(ws, container_id);
  if (!allowed) {
    co_await ws.close(api::ws_close::kPolicy, "tunnel not from this container");
    co_return;
  }
  if (impl->stopping) co_return;
  auto t = std::make_shared<Tunnel>();
  t->container_id = container_id;
  t->peer.ws = &ws;
  impl->track(&ws);
  if (auto old = impl->tunnels[container_id]; old) {
    // T3: the old socket is closed, its ids are closed toward their users,
    // and its handler will not unregister this new tunnel.
    spdlog::info("tunnel {}: replacing the existing tunnel", container_id);
    old->dead = true;
    old->peer.ws->abort();
  }
  impl->tunnels[container_id] = t;
  spdlog::info("tunnel {}: connected from {}", container_id, ws.request().remote_ip);
  impl->wake(container_id);

  while (true) {
    auto msg = co_await ws.read();
    if (!msg) break;
    if (!msg->binary) {
      spdlog::debug("tunnel {}: ignoring a text message (T9)", container_id);
      continue;
    }
    if (t->dead) break;
    co_await impl->relay_from_container(*t, std::move(msg->data));
  }
  t->dead = true;
  if (auto it = impl->tunnels.find(container_id); it != impl->tunnels.end() && it->second == t)
    impl->tunnels.erase(it);
  spdlog::info("tunnel {}: disconnected ({} open connection(s) closed)", container_id, t->routes.size());
  co_await impl->close_tunnel_routes(*t);
  co_await retire(t->peer);
  impl->untrack(&ws);
}

asio::awaitable<void> TunnelHub::serve_forward(api::WebSocket& ws, std::string container_id, std::uint16_t port,
                                               Proto proto) {
  auto impl = impl_;
  if (container_id.rfind("vm-", 0) == 0 && impl->options.vm_forward) {
    co_await impl->options.vm_forward(ws, container_id, port, proto);
    co_return;
  }
  auto tunnel = co_await impl->wait_tunnel(container_id);
  if (!tunnel) {
    spdlog::info("forward {}:{}: no tunnel from that container", container_id, port);
    co_await ws.send("Error: Container tunnel not connected (container=" + container_id + ")", false);
    co_await ws.close(api::ws_close::kInternalError);
    co_return;
  }
  bool ok = co_await ws.send("CONNECTED", false);
  if (!ok) co_return;
  auto f = std::make_shared<Forward>();
  f->container_id = container_id;
  f->port = port;
  f->proto = proto;
  f->peer.ws = &ws;
  impl->track(&ws);
  ++impl->forwards;
  spdlog::info("forward {}:{}/{}: session open", container_id, port, proto == Proto::Udp ? "udp" : "tcp");

  while (true) {
    auto msg = co_await ws.read();
    if (!msg) break;
    if (!msg->binary) {
      spdlog::debug("forward {}: ignoring a text message (T9)", container_id);
      continue;
    }
    std::string& m = msg->data;
    auto kind = classify_from_user(m);
    if (kind == FromUser::Ignore) continue;
    auto h = parse_header(m);
    if (kind == FromUser::Drop) {
      if (auto n = impl->tenant_log.admit("forward " + container_id))
        spdlog::warn("forward {}: dropping {} (0x{:02x}) from the user{}", container_id, type_name(h->type), h->type,
                     common::LogRateLimiter::suppressed_note(*n));
      continue;
    }
    const std::uint32_t uid = h->client_id;
    if (kind == FromUser::Connect) {
      if (f->active.count(uid)) {
        if (auto n = impl->tenant_log.admit("forward " + container_id))
          spdlog::warn("forward {}: duplicate CONNECT for id {} ignored{}", container_id, uid,
                       common::LogRateLimiter::suppressed_note(*n));
        continue;
      }
      // The current tunnel (a restarted client may have replaced the one
      // this session started with).
      std::shared_ptr<Tunnel> t = impl->live_tunnel(container_id);
      if (!t) t = co_await impl->wait_tunnel(container_id);
      std::optional<std::uint32_t> tid;
      if (t) tid = t->ids.allocate();
      if (!t || !tid) {
        co_await f->peer.send(encode(MsgType::Error, f->proto, uid, 0, "Tunnel send failed"));
        continue;
      }
      // T2: the user side is routed before CONNECT leaves, so the first
      // reply from the service cannot be lost. T1: runner-allocated id.
      t->routes[*tid] = Tunnel::Route{f, uid};
      f->active[uid] = Forward::Link{t, *tid};
      set_client_id(m, *tid);
      bool sent = co_await t->peer.send(std::move(m));
      if (!sent) {
        Impl::unroute(*t, *tid);
        co_await f->peer.send(encode(MsgType::Error, f->proto, uid, 0, "Tunnel send failed"));
      }
      continue;
    }
    auto link = f->active.find(uid);
    if (link == f->active.end()) {
      spdlog::debug("forward {}: {} for inactive id {} ignored", container_id, type_name(h->type), uid);
      continue;
    }
    auto t = link->second.tunnel.lock();
    const std::uint32_t tid = link->second.tunnel_id;
    if (kind == FromUser::Close) {
      if (t) Impl::unroute(*t, tid);
      f->active.erase(uid);
    }
    if (!t || t->dead) continue;
    set_client_id(m, tid);
    // Suspends while the tunnel's send queue is full (T6).
    co_await t->peer.send(std::move(m));
  }

  // Session end: every id still open is closed in the container.
  auto links = std::move(f->active);
  f->active.clear();
  for (auto& [uid, link] : links) {
    auto t = link.tunnel.lock();
    if (!t) continue;
    Impl::unroute(*t, link.tunnel_id);
    if (!t->dead) co_await t->peer.send(encode(MsgType::Close, f->proto, link.tunnel_id));
  }
  --impl->forwards;
  spdlog::info("forward {}:{}: session closed", container_id, port);
  co_await retire(f->peer);
  impl->untrack(&ws);
}

}  // namespace kr::tunnel

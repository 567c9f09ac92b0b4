#include "overlay/overlay_manager.hpp"

#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "overlay/iptables.hpp"
#include "overlay/netlink.hpp"

namespace kr::overlay {

namespace asio = boost::asio;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* to_string(OverlayManager::State s) {
  switch (s) {
    case OverlayManager::State::Pending: return "pending";
    case OverlayManager::State::Disabled: return "disabled";
    case OverlayManager::State::Configuring: return "configuring";
    case OverlayManager::State::Ready: return "ready";
    case OverlayManager::State::Failed: return "failed";
  }
  return "?";
}

namespace {

// Plain functions for JSON with nested braces (GCC 12 coroutine workaround,
// docs/decisions.md).
json disconnect_body(const std::string& id) { return json{{"Container", id}, {"Force", true}}; }

json connect_body(const std::string& id, const std::string& ip) {
  json body{{"Container", id}};
  if (!ip.empty()) body["EndpointConfig"] = json{{"IPAMConfig", json{{"IPv4Address", ip}}}};
  return body;
}

struct Attached {
  std::string id, name, ip;  // ip without prefix, "" when unknown
};

std::vector<Attached> attached_containers(const json& inspect) {
  std::vector<Attached> out;
  if (!inspect.contains("Containers") || !inspect["Containers"].is_object()) return out;
  for (const auto& [id, c] : inspect["Containers"].items()) {
    Attached a{id, c.value("Name", id), c.value("IPv4Address", "")};
    if (auto slash = a.ip.find('/'); slash != std::string::npos) a.ip.resize(slash);
    out.push_back(a);
  }
  return out;
}

std::string url_ip(const std::string& url) {
  std::string s = url;
  if (auto p = s.find("://"); p != std::string::npos) s = s.substr(p + 3);
  if (auto p = s.rfind(':'); p != std::string::npos) s.resize(p);
  return s;
}

std::vector<std::string> apply_host_side(const DesiredOverlay& d) {
  std::vector<std::string> changes;
  {
    Netlink nl;
    auto c = nl.apply(d);
    changes.insert(changes.end(), c.begin(), c.end());
  }
  if (ensure_ip_forward()) changes.push_back("net.ipv4.ip_forward set to 1");
  Iptables ipt;
  auto rules = desired_rules(d, ipt.chain_exists("filter", "DOCKER-USER"));
  auto c = ipt.apply(rules);
  changes.insert(changes.end(), c.begin(), c.end());
  return changes;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
  return s;
}

}  // namespace

OverlayManager::OverlayManager(asio::any_io_executor ex, const config::RunnerConfig& cfg,
                               docker::DockerClient& docker, RunnerUrl runner_url)
    : ex_(ex), cfg_(cfg), docker_(docker), runner_url_(std::move(runner_url)), stop_(ex) {}

void OverlayManager::on_registration(const json& reply) {
  json overlay = reply.is_object() && reply.contains("overlay") ? reply["overlay"] : json(nullptr);
  pending_ = std::move(overlay);
  if (worker_running_ || stop_.stopped()) return;
  worker_running_ = true;
  asio::co_spawn(ex_, worker(), [this](std::exception_ptr e) {
    worker_running_ = false;
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      state_ = State::Failed;
      error_ = std::string("internal error: ") + ex.what();
      spdlog::error("Overlay worker ended unexpectedly: {}", ex.what());
    }
  });
}

void OverlayManager::stop() { stop_.stop(); }

asio::awaitable<void> OverlayManager::worker() {
  while (!stop_.stopped()) {
    if (pending_) {
      json next = std::move(*pending_);
      pending_.reset();
      co_await apply(std::move(next));
      continue;
    }
    if (state_ != State::Failed || !last_overlay_) break;
    // A failed setup is retried every 30 s (a new registration reply is
    // taken at once): a missing module loaded or iptables installed later
    // then heals without a runner restart.
    for (int i = 0; i < 30 && !pending_; ++i)
      if (!co_await stop_.sleep_for(std::chrono::seconds(1))) co_return;
    if (!pending_) pending_ = *last_overlay_;
  }
}

asio::awaitable<void> OverlayManager::apply(json overlay) {
  const auto t0 = Clock::now();
  if (overlay.is_null()) {
    if (state_ == State::Ready || state_ == State::Failed)
      spdlog::warn("The host sent no overlay allocation; new containers use {} (the overlay devices are left in "
                   "place; `kohakuriver overlay cleanup` removes them)",
                   cfg_.docker_network_name);
    state_ = State::Disabled;
    applied_.reset();
    error_.clear();
    last_overlay_.reset();
    co_return;
  }
  last_overlay_ = overlay;

  std::string failure;
  DesiredOverlay d;
  std::optional<Ipv4Net> fallback;
  try {
    fallback = parse_subnet_config(cfg_.overlay_subnet).overlay_cidr();
  } catch (const std::invalid_argument&) {
  }
  try {
    d.alloc = parse_allocation(overlay, cfg_.overlay_vxlan_id, fallback);
  } catch (const AllocationError& e) {
    failure = e.what();
  }
  if (failure.empty()) {
    std::string url = co_await runner_url_();
    auto ip = parse_ipv4(url_ip(url));
    if (!ip || *ip == 0 || is_loopback(*ip))
      failure = "this node's own address toward the host is " + url_ip(url) +
                ", which cannot carry VXLAN to another machine (check HOST_ADDRESS / RUNNER_BIND_IP)";
    else
      d.local_ip = *ip;
  }
  if (!failure.empty()) {
    state_ = State::Failed;
    applied_.reset();
    error_ = failure;
    spdlog::error("VXLAN overlay NOT configured: {}. Containers use {}; tasks that need an overlay address fail.",
                  failure, cfg_.docker_network_name);
    co_return;
  }
  d.port = static_cast<uint16_t>(cfg_.overlay_vxlan_port);
  d.mtu = cfg_.overlay_mtu;
  d.network_name = cfg_.overlay_network_name;

  const bool changed = !(state_ == State::Ready && applied_ && *applied_ == d.alloc);
  if (changed) {
    // Tasks arriving now wait for the result instead of racing the setup.
    state_ = State::Configuring;
    spdlog::info("Configuring VXLAN overlay: runner id {}, subnet {}, gateway {}, VNI {}, host {}", d.alloc.runner_id,
                 d.alloc.subnet.str(), format_ipv4(d.alloc.gateway), d.alloc.vni,
                 format_ipv4(d.alloc.host_physical_ip));
  }

  std::vector<std::string> changes;
  try {
    auto host_side = [d] { return apply_host_side(d); };
    changes = co_await run_blocking(host_side);
    auto docker_changes = co_await ensure_docker_network(d);
    changes.insert(changes.end(), docker_changes.begin(), docker_changes.end());
  } catch (const std::exception& e) {
    failure = e.what();
  }
  last_apply_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  last_changes_ = changes;
  if (!failure.empty()) {
    state_ = State::Failed;
    applied_.reset();
    error_ = failure;
    spdlog::error("VXLAN overlay NOT configured: {}. Containers use {}; tasks that need an overlay address fail. "
                  "Retrying in 30 s.",
                  failure, cfg_.docker_network_name);
    co_return;
  }
  state_ = State::Ready;
  applied_ = d.alloc;
  error_.clear();
  if (changes.empty())
    spdlog::info("VXLAN overlay verified, nothing to change ({} ms)", last_apply_ms_);
  else
    spdlog::info("VXLAN overlay ready in {} ms ({} change(s): {})", last_apply_ms_, changes.size(), joined(changes));
}

asio::awaitable<std::vector<std::string>> OverlayManager::ensure_docker_network(const DesiredOverlay& d) {
  std::vector<std::string> changes;
  auto existing = co_await docker_.inspect_network(d.network_name);
  std::vector<Attached> attached;
  if (existing) {
    auto diffs = overlay_network_differences(*existing, d);
    if (diffs.empty()) co_return changes;
    attached = attached_containers(*existing);
    if (!attached.empty() && lacks_only_host_reservation(*existing, d)) {
      // The Python runner's network, in use: its containers keep running
      // undisturbed; it is rebuilt at a later apply that finds it unused.
      spdlog::warn("Docker network {} (as the Python runner made it) does not keep {} out of its IPAM; kept as it "
                   "is while {} container(s) use it, rebuilt when the runner finds it unused (a restart with no "
                   "container on it, or `kohakuriver overlay cleanup`)",
                   d.network_name, format_ipv4(d.alloc.host_ip_on_subnet), attached.size());
      co_return changes;
    }
    // O2: the network no longer matches the allocation. Containers are
    // detached, the network is recreated and they are attached again
    // (keeping their address when it is still inside the new subnet).
    spdlog::warn("Docker network {} differs from the allocation ({}); recreating it ({} container(s) reattached)",
                 d.network_name, joined(diffs), attached.size());
    for (const auto& c : attached) {
      json body = disconnect_body(c.id);
      co_await docker_.call(docker::Method::Post, "/networks/" + d.network_name + "/disconnect", std::move(body));
    }
    co_await docker_.remove_network(d.network_name);
    changes.push_back("docker network " + d.network_name + " removed (" + joined(diffs) + ")");
  }
  json body = overlay_network_create_body(d);
  co_await docker_.create_network(std::move(body));
  changes.push_back("docker network " + d.network_name + " created (" + d.alloc.subnet.str() + ")");
  for (const auto& c : attached) {
    auto ip = parse_ipv4(c.ip);
    bool keep_ip = ip && d.alloc.subnet.contains(*ip) && *ip != d.alloc.gateway && *ip != d.alloc.host_ip_on_subnet;
    json cb = connect_body(c.id, keep_ip ? c.ip : std::string());
    std::string err;
    try {
      co_await docker_.call(docker::Method::Post, "/networks/" + d.network_name + "/connect", std::move(cb));
    } catch (const docker::DockerError& e) {
      err = e.message;
    }
    if (!err.empty())
      spdlog::error("Container {} could not rejoin {}: {}", c.name, d.network_name, err);
    else
      changes.push_back("container " + c.name + " reattached");
  }
  co_return changes;
}

asio::awaitable<ContainerNetwork> OverlayManager::container_network(std::optional<std::string> reserved_ip,
                                                                    std::chrono::milliseconds wait) {
  const auto until = Clock::now() + wait;
  // Before the first registration reply (a task resumed at start-up) only a
  // short wait: an unreachable host must not hold work back for long.
  const auto pending_until = Clock::now() + std::min<std::chrono::milliseconds>(wait, std::chrono::seconds(10));
  while (((state_ == State::Configuring && Clock::now() < until) ||
          (state_ == State::Pending && Clock::now() < pending_until)))
    if (!co_await stop_.sleep_for(std::chrono::milliseconds(100))) break;
  std::string reason = state_ == State::Configuring ? "the overlay is still being configured"
                       : state_ == State::Pending   ? "the runner is not registered with the host yet"
                       : state_ == State::Disabled  ? "the host sent no overlay allocation"
                                                    : error_;
  co_return choose_container_network(state_ == State::Ready ? applied_ : std::nullopt, cfg_.overlay_network_name,
                                     reason, reserved_ip);
}

json OverlayManager::status() const {
  json s{{"state", to_string(state_)}};
  if (applied_) s["allocation"] = applied_->to_json();
  if (!error_.empty()) s["error"] = error_;
  if (last_apply_ms_ >= 0) s["last_apply_ms"] = last_apply_ms_;
  s["last_changes"] = last_changes_;
  return s;
}

}  // namespace kr::overlay

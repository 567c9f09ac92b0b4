#include "host_link/host_link.hpp"

#include <unistd.h>

#include <cctype>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace kr::host_link {

namespace asio = boost::asio;
using json = nlohmann::json;

std::string local_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string encode_path_segment(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

HostLink::HostLink(asio::any_io_executor ex, HostLinkOptions opts, NodeReporter& reporter,
                   RunningTasks running_tasks)
    : ex_(ex),
      opts_(std::move(opts)),
      reporter_(reporter),
      running_tasks_(std::move(running_tasks)),
      client_(ex, opts_.host_address, opts_.host_port),
      stop_(ex),
      hostname_(local_hostname()) {}

std::chrono::seconds HostLink::registration_backoff(int attempt) {
  return std::chrono::seconds(std::min(5 * std::max(attempt, 1), 30));
}

asio::awaitable<std::string> HostLink::runner_url() {
  std::string ip = opts_.bind_ip;
  if (ip == "0.0.0.0" || ip == "::") {
    // The address the kernel would use to reach the host: connect() on a
    // UDP socket picks a source address without sending a packet.
    ip = "127.0.0.1";
    try {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address_v4(opts_.host_address, ec);
      if (ec) {
        asio::ip::udp::resolver resolver(ex_);
        auto [rec, results] = co_await resolver.async_resolve(asio::ip::udp::v4(), opts_.host_address,
                                                              std::to_string(opts_.host_port),
                                                              asio::as_tuple(asio::use_awaitable));
        if (rec || results.empty()) throw std::runtime_error("resolve failed");
        addr = results.begin()->endpoint().address().to_v4();
      }
      asio::ip::udp::socket sock(ex_);
      sock.open(asio::ip::udp::v4());
      sock.connect(asio::ip::udp::endpoint(addr, opts_.host_port));
      ip = sock.local_endpoint().address().to_string();
    } catch (const std::exception& e) {
      spdlog::warn("Could not determine the runner's IP towards {} ({}); using 127.0.0.1", opts_.host_address,
                   e.what());
    }
  }
  co_return "http://" + ip + ":" + std::to_string(opts_.runner_port);
}

void HostLink::start() {
  asio::co_spawn(ex_, run(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      // A bug, not an environment error: the loop itself catches those.
      spdlog::critical("host link loop died: {}", ex.what());
      std::abort();
    }
  });
}

void HostLink::stop() { stop_.stop(); }

asio::awaitable<bool> HostLink::register_once() {
  try {
    json body = co_await reporter_.registration_fields();
    body["hostname"] = hostname_;
    body["url"] = co_await runner_url();
    auto res = co_await client_.request("POST", "/api/register", body.dump(), opts_.register_timeout);
    if (!res.ok()) {
      spdlog::warn("Registration with host rejected: HTTP {} {}", res.status, res.body.substr(0, 300));
      co_return false;
    }
    json reply = json::parse(res.body, nullptr, false);
    if (reply.is_discarded() || !reply.is_object()) {
      spdlog::warn("Registration reply from host is not a JSON object; will retry");
      co_return false;
    }
    spdlog::info("Registered with host {}:{} as {} ({})", opts_.host_address, opts_.host_port, hostname_,
                 body["url"].get<std::string>());
    const bool initial = !registered_;
    if (on_registered_) on_registered_(reply, initial);
    registered_ = true;
    link_lost_ = false;
    if (!initial && on_reconnected_) on_reconnected_();
    co_return true;
  } catch (const std::exception& e) {
    spdlog::warn("Registration with host failed: {}", e.what());
  }
  co_return false;
}

asio::awaitable<void> HostLink::heartbeat_once() {
  json body = co_await reporter_.heartbeat_fields();
  body["running_tasks"] = running_tasks_ ? running_tasks_() : std::vector<int64_t>{};
  // Upstream never reports runner-initiated kills here (decision D11: final
  // statuses go through /api/update), so this stays empty.
  body["killed_tasks"] = json::array();
  try {
    auto res = co_await client_.request("PUT", "/api/heartbeat/" + encode_path_segment(hostname_), body.dump(),
                                        opts_.heartbeat_timeout);
    if (res.status == 404) {
      spdlog::warn("Host does not know this node (heartbeat 404); registering again");
      if (!co_await register_once()) link_lost_ = true;
    } else if (!res.ok()) {
      spdlog::warn("Heartbeat rejected: HTTP {} {}", res.status, res.body.substr(0, 300));
      link_lost_ = true;
    } else {
      last_heartbeat_ok_ = std::chrono::system_clock::now();
      spdlog::debug("Heartbeat sent ({} running)", body["running_tasks"].size());
      if (link_lost_) {
        link_lost_ = false;
        spdlog::info("Host reachable again after failed heartbeats; re-reporting running work");
        if (on_reconnected_) on_reconnected_();
      }
    }
  } catch (const HostUnreachable& e) {
    spdlog::warn("Heartbeat failed: {}", e.what());
    link_lost_ = true;
  }
}

asio::awaitable<void> HostLink::run() {
  for (int attempt = 1; !stop_.stopped(); ++attempt) {
    if (co_await register_once()) break;
    auto wait = registration_backoff(attempt);
    spdlog::info("Retrying registration in {} s (attempt {} failed)", wait.count(), attempt);
    if (!co_await stop_.sleep_for(wait)) co_return;
  }
  while (co_await stop_.sleep_for(opts_.heartbeat_interval)) {
    try {
      co_await heartbeat_once();
    } catch (const std::exception& e) {
      // A metrics reader failing must not end the heartbeat loop.
      spdlog::error("Heartbeat cycle failed: {}", e.what());
    }
  }
}

}  // namespace kr::host_link

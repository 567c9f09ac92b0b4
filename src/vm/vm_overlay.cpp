// Overlay mode for VMs (vm.md §13.2, tunnel-overlay.md §3.8, decisions
// O5/V20): the runner reserves each VM's address at the host, releases it on
// stop, and renews it when it expires (the host never marks VM reservations
// used, so an unrenewed address could be handed to someone else).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "docker/wire.hpp"
#include "vm/vm_service.hpp"

namespace kr::vm {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {
constexpr int kReservationTtl = 1800;  // the host's maximum
constexpr auto kReserveTimeout = std::chrono::seconds(15);
constexpr auto kReleaseTimeout = std::chrono::seconds(10);
constexpr int kRenewRetrySeconds = 60;
// Renew this long after the reservation's expiry (it must have expired for
// the host to hand the same address out again).
constexpr int kRenewAfterExpiry = 5;
}  // namespace

OverlayReservation parse_overlay_reservation(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) throw std::invalid_argument("reservation reply is not a JSON object");
  OverlayReservation r;
  if (!j.contains("ip") || !j["ip"].is_string() || j["ip"].get<std::string>().empty())
    throw std::invalid_argument("reservation reply has no ip");
  if (!j.contains("token") || !j["token"].is_string() || j["token"].get<std::string>().empty())
    throw std::invalid_argument("reservation reply has no token");
  r.ip = j["ip"].get<std::string>();
  r.token = j["token"].get<std::string>();
  if (j.contains("ttl_seconds") && j["ttl_seconds"].is_number_integer())
    r.ttl_seconds = std::max(60, j["ttl_seconds"].get<int>());
  return r;
}

asio::awaitable<std::optional<OverlayReservation>> VmService::reserve_overlay_ip(std::optional<std::string> ip,
                                                                                std::string& error, int& status) {
  status = 0;
  if (!deps_.host) {
    error = "no host connection";
    co_return std::nullopt;
  }
  std::string target = "/api/overlay/ip/reserve?runner=" + docker::wire::percent_encode(deps_.hostname) +
                       "&ttl=" + std::to_string(kReservationTtl);
  if (ip) target += "&ip=" + docker::wire::percent_encode(*ip);
  host_link::HostResponse res;
  try {
    res = co_await deps_.host->request("POST", target, std::nullopt, kReserveTimeout);
  } catch (const std::exception& e) {
    error = std::string("host unreachable: ") + e.what();
    co_return std::nullopt;
  }
  status = res.status;
  if (!res.ok()) {
    std::string detail = res.body;
    json j = json::parse(res.body, nullptr, false);
    if (j.is_object() && j.contains("detail") && j["detail"].is_string()) detail = j["detail"].get<std::string>();
    error = "host answered " + std::to_string(res.status) + ": " + detail.substr(0, 300);
    co_return std::nullopt;
  }
  try {
    co_return parse_overlay_reservation(res.body);
  } catch (const std::exception& e) {
    error = e.what();
    co_return std::nullopt;
  }
}

asio::awaitable<void> VmService::release_overlay_ip(std::string token) {
  if (!deps_.host || token.empty()) co_return;
  try {
    auto res = co_await deps_.host->request("POST", "/api/overlay/ip/release?token=" + docker::wire::percent_encode(token),
                                            std::nullopt, kReleaseTimeout);
    if (!res.ok()) spdlog::warn("Overlay IP release: host answered {}: {}", res.status, res.body.substr(0, 200));
  } catch (const std::exception& e) {
    spdlog::warn("Overlay IP release failed: {}", e.what());
  }
}

asio::awaitable<void> VmService::renew_overlay(VmPtr vm, int first_wait_seconds) {
  const int64_t id = vm->state.task_id;
  int wait = first_wait_seconds;
  int refused_for = 0;  // seconds of consecutive 409s
  for (;;) {
    if (!co_await stop_.sleep_for(std::chrono::seconds(wait))) co_return;
    if (vm->gone || vm->state.network_mode != "overlay") co_return;
    std::string error;
    int status = 0;
    auto r = co_await reserve_overlay_ip(vm->state.vm_ip, error, status);
    if (vm->gone) {
      if (r) co_await release_overlay_ip(r->token);
      co_return;
    }
    if (r) {
      vm->state.overlay_token = r->token;
      refused_for = 0;
      try {
        co_await persist(vm);
      } catch (const std::exception& e) {
        spdlog::error("VM {}: cannot save the renewed overlay reservation: {}", id, e.what());
      }
      spdlog::info("VM {}: overlay address {} reserved again for {} s", id, vm->state.vm_ip, r->ttl_seconds);
      wait = r->ttl_seconds + kRenewAfterExpiry;
      continue;
    }
    wait = kRenewRetrySeconds;
    if (status == 409) {
      refused_for += kRenewRetrySeconds;
      // Right after a runner restart the previous reservation may still be
      // live (its expiry is not kept); past one TTL someone else holds it.
      if (refused_for > kReservationTtl)
        spdlog::error("VM {}: its overlay address {} is reserved by someone else at the host ({}); the VM keeps "
                      "using it, so an address conflict is possible",
                      id, vm->state.vm_ip, error);
      else
        spdlog::info("VM {}: overlay address {} not yet free for renewal ({}); retrying in {} s", id,
                     vm->state.vm_ip, error, kRenewRetrySeconds);
    } else {
      spdlog::warn("VM {}: renewing the overlay reservation of {} failed: {}; retrying in {} s", id, vm->state.vm_ip,
                   error, kRenewRetrySeconds);
    }
  }
}

}  // namespace kr::vm

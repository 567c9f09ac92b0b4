#pragma once
// access/: the source-address policy set-up that the runner (runner/) and
// `doctor` (cli/) both need, below both of them; it reads the configuration
// and asks Docker, so it cannot live in api/ (which knows neither).
//
// Builds the source-address policy from the configuration and keeps it in
// step with Docker's view of this runner's networks.
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "api/access_policy.hpp"
#include "config/config.hpp"
#include "docker/docker_client.hpp"
#include "service/stop_signal.hpp"

namespace kr::access {

// The configured container/VM networks (DOCKER_NETWORK_SUBNET,
// VM_BRIDGE_SUBNET, OVERLAY_SUBNET's base network when the overlay is
// enabled) and the operator's client lists (already validated by the
// config loader). Throws std::invalid_argument on an unusable list entry.
api::AccessRules access_rules_from_config(const config::RunnerConfig& cfg);

// The bridge interface of a `GET /networks/{name}` answer of a bridge
// network ("br-<id[:12]>" unless named by an option); "" for other drivers.
std::string bridge_interface(const nlohmann::json& network_inspect);

// IPAM.Config[].Subnet of a `GET /networks/{name}` answer.
std::vector<api::WorkloadNetwork> ipam_networks(const nlohmann::json& network_inspect, const std::string& source);

// Asks Docker for the IPAM subnets of kohakuriver-net (and the overlay
// network when enabled) now and every minute (the network may be created
// or re-created later), adding them to `policy`, until `stop`.
boost::asio::awaitable<void> follow_docker_networks(docker::DockerClient& docker, api::AccessPolicy& policy,
                                                    const config::RunnerConfig& cfg, StopSignal& stop);

}  // namespace kr::access

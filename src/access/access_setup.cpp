#include "access/access_setup.hpp"

#include <spdlog/spdlog.h>

#include "overlay/plan.hpp"

namespace kr::access {

namespace {
void add_configured(std::vector<api::WorkloadNetwork>& out, const std::string& text, const char* key) {
  auto n = net::parse_network(text);
  if (!n) {
    spdlog::warn("{} = \"{}\" is not a network; it is left out of the source-address policy", key, text);
    return;
  }
  out.push_back({*n, key});
}
}  // namespace

api::AccessRules access_rules_from_config(const config::RunnerConfig& cfg) {
  api::AccessRules rules;
  add_configured(rules.workload_networks, cfg.docker_network_subnet, "DOCKER_NETWORK_SUBNET");
  add_configured(rules.workload_networks, cfg.vm_bridge_subnet, "VM_BRIDGE_SUBNET");
  if (cfg.overlay_enabled) {
    // "10.128.0.0/12/6/14": base network, then the host's split of it.
    const std::string& s = cfg.overlay_subnet;
    auto first = s.find('/');
    auto second = first == std::string::npos ? std::string::npos : s.find('/', first + 1);
    add_configured(rules.workload_networks, s.substr(0, second), "OVERLAY_SUBNET");
  }
  if (!cfg.vm_bridge_name.empty()) rules.bridge_names.push_back(cfg.vm_bridge_name);
  if (cfg.overlay_enabled) rules.bridge_names.push_back(overlay::kBridgeName);
  rules.api_allowed = api::parse_client_list(cfg.api_allowed_clients, "API_ALLOWED_CLIENTS");
  rules.metrics_allowed = api::parse_client_list(cfg.metrics_allowed_clients, "METRICS_ALLOWED_CLIENTS");
  return rules;
}

std::string bridge_interface(const nlohmann::json& inspect) {
  if (!inspect.is_object() || inspect.value("Driver", "") != "bridge") return {};
  if (auto o = inspect.find("Options"); o != inspect.end() && o->is_object()) {
    auto name = o->find("com.docker.network.bridge.name");
    if (name != o->end() && name->is_string() && !name->get<std::string>().empty()) return name->get<std::string>();
  }
  // Docker's default name for a user-defined bridge network.
  const std::string id = inspect.value("Id", "");
  return id.size() >= 12 ? "br-" + id.substr(0, 12) : std::string();
}

std::vector<api::WorkloadNetwork> ipam_networks(const nlohmann::json& inspect, const std::string& source) {
  std::vector<api::WorkloadNetwork> out;
  if (!inspect.is_object()) return out;
  auto ipam = inspect.find("IPAM");
  if (ipam == inspect.end() || !ipam->is_object()) return out;
  auto config = ipam->find("Config");
  if (config == ipam->end() || !config->is_array()) return out;
  for (const auto& pool : *config) {
    if (!pool.is_object() || !pool.contains("Subnet") || !pool["Subnet"].is_string()) continue;
    if (auto n = net::parse_network(pool["Subnet"].get<std::string>())) out.push_back({*n, source});
  }
  return out;
}

boost::asio::awaitable<void> follow_docker_networks(docker::DockerClient& docker, api::AccessPolicy& policy,
                                                    const config::RunnerConfig& cfg, StopSignal& stop) {
  std::vector<std::string> names = {cfg.docker_network_name};
  if (cfg.overlay_enabled) names.push_back(cfg.overlay_network_name);
  do {
    for (const auto& name : names) {
      try {
        auto info = co_await docker.inspect_network(name, std::chrono::seconds(10));
        if (info) {
          policy.add_workload_networks(ipam_networks(*info, "Docker network " + name));
          policy.add_bridge_name(bridge_interface(*info));
        }
      } catch (const std::exception& e) {
        spdlog::debug("Source-address policy: cannot inspect Docker network {}: {}", name, e.what());
      }
    }
  } while (co_await stop.sleep_for(std::chrono::seconds(60)));
}

}  // namespace kr::access

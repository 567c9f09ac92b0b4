#include "tunnel/container_addresses.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "docker/docker_client.hpp"

namespace kr::tunnel {

std::vector<std::string> addresses_from_inspect(const nlohmann::json& j) {
  std::vector<std::string> out;
  auto add = [&](const nlohmann::json& obj, const char* key) {
    if (obj.is_object() && obj.contains(key) && obj[key].is_string()) {
      std::string v = obj[key].get<std::string>();
      if (!v.empty() && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    }
  };
  if (!j.is_object() || !j.contains("NetworkSettings")) return out;
  const auto& ns = j["NetworkSettings"];
  add(ns, "IPAddress");
  add(ns, "GlobalIPv6Address");
  if (ns.is_object() && ns.contains("Networks") && ns["Networks"].is_object())
    for (const auto& [name, net] : ns["Networks"].items()) {
      add(net, "IPAddress");
      add(net, "GlobalIPv6Address");
    }
  return out;
}

boost::asio::awaitable<std::vector<std::string>> container_addresses(docker::DockerClient& docker,
                                                                     std::string container) {
  std::vector<std::string> out;
  try {
    auto j = co_await docker.inspect_container(container);
    out = addresses_from_inspect(j);
  } catch (const std::exception& e) {
    spdlog::debug("tunnel {}: inspect failed: {}", container, e.what());
  }
  co_return out;
}

}  // namespace kr::tunnel

#pragma once
// The addresses a container has on its Docker networks (ruling T10: a
// /ws/tunnel/X connection must come from one of container X's addresses).
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

namespace kr::docker {
class DockerClient;
}

namespace kr::tunnel {

// IPv4 and IPv6 addresses under NetworkSettings (per network and the
// legacy top-level fields) of a container inspect document.
std::vector<std::string> addresses_from_inspect(const nlohmann::json& inspect);

// Empty when the container does not exist or is not running (a stopped
// container has no address), or Docker cannot be reached.
boost::asio::awaitable<std::vector<std::string>> container_addresses(docker::DockerClient& docker,
                                                                     std::string container);

}  // namespace kr::tunnel

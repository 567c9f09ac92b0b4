#include "overlay/cleanup.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "docker/docker_client.hpp"
#include "overlay/iptables.hpp"
#include "overlay/netlink.hpp"
#include "overlay/plan.hpp"

namespace kr::overlay {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

json disconnect_body(const std::string& id) { return json{{"Container", id}, {"Force", true}}; }

asio::awaitable<void> remove_docker_network(docker::DockerClient& docker, std::string name,
                                            std::vector<std::string>& removed) {
  auto net = co_await docker.inspect_network(name);
  if (!net) co_return;
  if (net->contains("Containers") && (*net)["Containers"].is_object()) {
    for (const auto& [id, c] : (*net)["Containers"].items()) {
      json body = disconnect_body(id);
      co_await docker.call(docker::Method::Post, "/networks/" + name + "/disconnect", std::move(body));
      removed.push_back("container " + c.value("Name", id) + " disconnected from " + name);
    }
  }
  co_await docker.remove_network(name);
  removed.push_back("docker network " + name);
}

}  // namespace

int cleanup_command(const config::RunnerConfig& cfg, std::ostream& out, std::ostream& err) {
  int rc = 0;
  std::vector<std::string> removed;
  std::vector<Ipv4Net> cidrs;
  try {
    cidrs.push_back(parse_subnet_config(cfg.overlay_subnet).overlay_cidr());
  } catch (const std::invalid_argument& e) {
    err << "ERROR: OVERLAY_SUBNET: " << e.what() << " (routes and upstream rules by CIDR are left alone)\n";
    rc = 1;
  }

  // 1. Docker network first: Docker must let go of the bridge.
  {
    asio::io_context io;
    docker::ClientOptions opts;
    opts.socket_path = cfg.docker_socket;
    docker::DockerClient docker(io.get_executor(), opts);
    std::string failure;
    asio::co_spawn(io, remove_docker_network(docker, cfg.overlay_network_name, removed),
                   [&](std::exception_ptr e) {
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       failure = ex.what();
                     }
                   });
    io.run();
    if (!failure.empty()) {
      err << "ERROR: cannot remove Docker network " << cfg.overlay_network_name << ": " << failure << "\n";
      rc = 1;
    }
  }
  // 2. Devices and routes.
  try {
    Netlink nl;
    auto r = nl.remove_all(cidrs);
    removed.insert(removed.end(), r.begin(), r.end());
  } catch (const std::exception& e) {
    err << "ERROR: " << e.what() << "\n";
    rc = 1;
  }
  // 3. Firewall rules.
  try {
    Iptables ipt;
    auto r = ipt.remove_ours();
    removed.insert(removed.end(), r.begin(), r.end());
    for (const auto& c : cidrs) {
      auto u = ipt.remove_upstream(c);
      removed.insert(removed.end(), u.begin(), u.end());
    }
  } catch (const std::exception& e) {
    err << "ERROR: " << e.what() << "\n";
    rc = 1;
  }

  for (const auto& r : removed) out << "removed " << r << "\n";
  if (removed.empty() && rc == 0) out << "Nothing to remove: no overlay network, devices, routes or rules found.\n";
  return rc;
}

}  // namespace kr::overlay

#include "monitor/numa.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <system_error>

#include "monitor/sysfs.hpp"

namespace kr::monitor {

namespace fs = std::filesystem;

std::vector<int> parse_cpu_list(std::string_view list) {
  std::vector<int> cpus;
  list = detail::trim(list);
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view piece = detail::trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (piece.empty()) continue;
    auto dash = piece.find('-');
    auto lo = detail::parse_int(piece.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : detail::parse_int(piece.substr(dash + 1));
    // The upper bound guards against a corrupt range allocating gigabytes.
    if (!lo || !hi || *lo < 0 || *hi < *lo || *hi > (1 << 20)) continue;
    for (auto c = *lo; c <= *hi; ++c) cpus.push_back(static_cast<int>(c));
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

namespace {

// "Node 0 MemTotal:  4550128 kB" -> 4550128.
std::optional<std::uint64_t> node_memtotal_kb(const fs::path& meminfo) {
  auto text = detail::read_small_file(meminfo, 16 * 1024);
  if (!text) return std::nullopt;
  auto pos = text->find("MemTotal:");
  if (pos == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(*text).substr(pos + 9);
  rest = rest.substr(0, rest.find('\n'));
  rest = detail::trim(rest);
  if (rest.ends_with("kB")) rest.remove_suffix(2);
  auto kb = detail::parse_int(rest);
  if (!kb || *kb < 0) return std::nullopt;
  return static_cast<std::uint64_t>(*kb);
}

}  // namespace

std::optional<std::vector<NumaNode>> read_numa_topology(const fs::path& root) {
  const fs::path base = detail::under(root, "/sys/devices/system/node");
  std::vector<NumaNode> nodes;
  std::error_code ec;
  fs::directory_iterator it(base, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with("node")) continue;  // skips "online", "possible", "has_cpu", ...
    auto id = detail::parse_int(std::string_view(name).substr(4));
    if (!id || *id < 0 || name.size() == 4 || name[4] < '0' || name[4] > '9') continue;

    auto cpulist = detail::read_small_file(it->path() / "cpulist");
    if (!cpulist) continue;
    NumaNode node;
    node.id = static_cast<int>(*id);
    node.cores = parse_cpu_list(*cpulist);
    if (node.cores.empty()) continue;  // memory-only node: numactl lists no cpus, upstream skips it
    if (auto kb = node_memtotal_kb(it->path() / "meminfo"))
      node.memory_bytes = (*kb / 1024) << 20;
    nodes.push_back(std::move(node));
  }
  if (nodes.empty()) return std::nullopt;
  std::sort(nodes.begin(), nodes.end(), [](auto& a, auto& b) { return a.id < b.id; });
  return nodes;
}

nlohmann::json numa_topology_json(const std::optional<std::vector<NumaNode>>& topology) {
  if (!topology) return nullptr;
  nlohmann::json out = nlohmann::json::object();
  for (const auto& node : *topology) {
    nlohmann::json memory = nullptr;
    if (node.memory_bytes) memory = *node.memory_bytes;
    out[std::to_string(node.id)] = {{"cores", node.cores}, {"memory_bytes", memory}};
  }
  return out;
}

}  // namespace kr::monitor

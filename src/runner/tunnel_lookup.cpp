#include "runner/tunnel_lookup.hpp"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/paths.hpp"

namespace kr::runner {

namespace fs = std::filesystem;

std::optional<std::string> find_tunnel_client(const config::RunnerConfig& cfg) {
  if (!cfg.tunnel_enabled) return std::nullopt;
  auto regular = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
  };
  auto absolute = [](const fs::path& p) {
    std::error_code ec;
    auto a = fs::absolute(p, ec);
    return ec ? p.string() : a.lexically_normal().string();
  };
  if (!cfg.tunnel_client_path.empty()) {
    if (regular(cfg.tunnel_client_path)) return absolute(cfg.tunnel_client_path);
    spdlog::warn("TUNNEL_CLIENT_PATH {} is not a file; port forwarding into containers is disabled",
                 cfg.tunnel_client_path);
    return std::nullopt;
  }
  // T14: upstream's places first (tunnel-overlay.md §2.5 items 1-5), then
  // ours: beside the runner binary (the build tree, `cmake --install`'s
  // bin/) and the install prefix's libexec/lib.
  std::vector<fs::path> candidates{"tunnel-client"};
  if (const char* home = std::getenv("HOME"); home && fs::is_directory(home))
    candidates.push_back(fs::path(home) / ".kohakuriver" / "tunnel-client");
  for (const char* p : {"/usr/local/bin/tunnel-client", "/usr/bin/tunnel-client"}) candidates.emplace_back(p);
  candidates.push_back(fs::path(cfg.shared_dir) / "bin" / "tunnel-client");
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path prefix = exe.parent_path().parent_path();
    candidates.push_back(exe.parent_path() / "tunnel-client");
    for (const char* dir : {"libexec", "lib"}) {
      candidates.push_back(prefix / dir / "kohakuriver" / "tunnel-client");
      candidates.push_back(prefix / dir / "tunnel-client");
    }
  }
  for (const auto& c : candidates)
    if (regular(c)) return absolute(c);
  if (auto on_path = find_in_path("tunnel-client")) return absolute(*on_path);
  spdlog::info("tunnel-client not found; containers get the tunnel variables but no client");
  return std::nullopt;
}

}  // namespace kr::runner

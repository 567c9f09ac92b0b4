// tunnel-client: in-container end of KohakuRiver port forwarding. A static,
// dependency-free replacement for the upstream Rust client with its CLI.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tunnel/client_options.hpp"
#include "tunnel_client/client.hpp"
#include "tunnel_client/log.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = kr::tunnel::parse_client_args(args, [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (!v) return std::nullopt;
    return std::string(v);
  });
  using Action = kr::tunnel::ClientParse::Action;
  if (parsed.action == Action::Help || parsed.action == Action::Version) {
    std::fputs(parsed.message.c_str(), stdout);
    return 0;
  }
  if (parsed.action == Action::Error) {
    std::fputs(parsed.message.c_str(), stderr);
    return parsed.exit_code;
  }
  std::signal(SIGPIPE, SIG_IGN);
  using kr::tunnel_client::Level;
  Level level = kr::tunnel_client::parse_level(parsed.options.log_level, Level::Info);
  if (const char* rust_log = std::getenv("RUST_LOG"); rust_log && *rust_log)
    level = kr::tunnel_client::parse_level(rust_log, level);
  kr::tunnel_client::set_level(level);
  return kr::tunnel_client::run_client(parsed.options);
}

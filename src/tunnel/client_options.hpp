#pragma once
// Command line of the in-container tunnel-client: the upstream Rust client's
// flags and environment variables (tunnel-overlay.md §2.6), parsed the way
// clap does (`-r X`, `-rX`, `--runner-url X`, `--runner-url=X`; a flag wins
// over its environment variable; usage errors exit 2).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kr::tunnel {

struct ClientOptions {
  std::string runner_url;
  std::string container_id;
  std::uint64_t reconnect_delay_s = 5;
  std::uint32_t max_reconnect = 0;  // 0 = forever
  std::string log_level = "info";
};

struct ClientParse {
  enum class Action { Run, Help, Version, Error } action = Action::Run;
  ClientOptions options;
  std::string message;  // help/version text or the error text
  int exit_code = 0;    // for Help/Version (0) and Error (2)
};

using EnvLookup = std::function<std::optional<std::string>(const char*)>;

ClientParse parse_client_args(const std::vector<std::string>& args, const EnvLookup& env);

inline constexpr const char* kClientVersion = "0.1.0";

}  // namespace kr::tunnel

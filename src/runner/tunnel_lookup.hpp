#pragma once
// Where the tunnel-client binary that is bind-mounted into containers lives
// (execution.md §1.8, decision T14).
#include <optional>
#include <string>

#include "config/config.hpp"

namespace kr::runner {

// TUNNEL_ENABLED false → none; TUNNEL_CLIENT_PATH set → it if a regular
// file (no fallback); else (T14) ./tunnel-client,
// $HOME/.kohakuriver/tunnel-client, /usr/local/bin, /usr/bin,
// <SHARED_DIR>/bin, beside the runner binary,
// <prefix>/libexec|lib/[kohakuriver/]tunnel-client, then PATH. Absolute path.
std::optional<std::string> find_tunnel_client(const config::RunnerConfig& cfg);

}  // namespace kr::runner

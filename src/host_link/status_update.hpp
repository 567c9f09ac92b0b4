#pragma once
// The body of POST /api/update (protocol.md), one shape for tasks, Docker
// VPS and VMs: every key present, absent values as null.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/datetime.hpp"

namespace kr::host_link {

inline nlohmann::json status_update_body(std::int64_t id, const std::string& status,
                                         const std::optional<std::int64_t>& exit_code,
                                         const std::optional<std::string>& message,
                                         const std::optional<std::string>& started_at, bool completed,
                                         const std::optional<int>& ssh_port = std::nullopt) {
  using nlohmann::json;
  auto opt = [](const auto& o) -> json { return o ? json(*o) : json(nullptr); };
  return json{{"task_id", id},
              {"status", status},
              {"exit_code", opt(exit_code)},
              {"message", opt(message)},
              {"started_at", opt(started_at)},
              {"completed_at", completed ? json(naive_local_now()) : json(nullptr)},
              {"ssh_port", opt(ssh_port)}};
}

}  // namespace kr::host_link

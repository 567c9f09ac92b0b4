#pragma once
// Wire shape of the command-task request bodies (execution.md §1.1 and §2,
// protocol.md §2.3.1) with pydantic-lax validation producing FastAPI's 422
// body. Only wire-shape checks live here; semantic checks (log paths, image
// references, IP literals) are done when the container spec is built.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::api {
class BodyFields;
}

namespace kr::tasks {

// env_vars keeps the request's key order: the variables reach the container
// in that order (§1.6), so a sorted std::map would be observable. It is a
// vector of pairs with std::map's interface (operator[], find, at, count,
// emplace, iteration), duplicate JSON keys resolved as Python's dict does
// (first position, last value).
using EnvVars = nlohmann::ordered_map<std::string, std::string>;

// upstream: kohakuriver.models.requests.TaskExecuteRequest
struct TaskRequest {
  int64_t task_id = 0;
  std::string command;
  std::vector<std::string> arguments;  // null → []
  EnvVars env_vars;                    // null → {}
  int64_t required_cores = 1;
  std::vector<int64_t> required_gpus;  // null → []
  std::optional<int64_t> required_memory_bytes, target_numa_node_id;
  // nullopt only when registry_image is a non-empty string (decision D13).
  std::optional<std::string> container_name, registry_image, reserved_ip;
  std::string working_dir = "/shared";  // "" on the wire also → "/shared"
  std::string stdout_path, stderr_path;
};

// upstream: kohakuriver.models.requests.TaskControlRequest (kill/pause/resume)
struct TaskControl {
  int64_t task_id = 0;
  std::string container_name;
};

// Parses a POST /api/execute body. On error the alternative holds the 422
// body {"detail": [...]} with one item per problem, in the model's field
// order, as FastAPI reports them.
std::variant<TaskRequest, nlohmann::json> parse_task_request(std::string_view body);

// The `container_name` field shared by task and VPS bodies: required string,
// or null when a non-empty registry_image is given (D13).
std::optional<std::string> container_name_field(const nlohmann::json& obj, api::BodyFields& f);

// Parses a POST /api/kill|pause|resume body {task_id: int, container_name: str}.
std::variant<TaskControl, nlohmann::json> parse_task_control(std::string_view body);

}  // namespace kr::tasks

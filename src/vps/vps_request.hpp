#pragma once
// Wire shape of POST /api/vps/create (execution.md §3.1, upstream's
// VPSCreateRequest) with pydantic-lax validation producing FastAPI's 422
// body, and the SSH key mode check of D18 (a bad mode is a 400, not a
// plain-text 500). Pure functions, no I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::vps {

enum class SshKeyMode { Disabled, None, Upload, Generate };

struct VpsRequest {
  int64_t task_id = 0;
  int64_t required_cores = 1;
  std::vector<int64_t> required_gpus;  // null → []
  std::optional<int64_t> required_memory_bytes, target_numa_node_id;
  // "" and null both mean "no environment" when registry_image is set (D13).
  std::optional<std::string> container_name, registry_image;
  std::string ssh_key_mode = "disabled";  // as sent; "" → "upload" (§3.1 step 4)
  std::optional<std::string> ssh_public_key;
  int64_t ssh_port = 0;  // required on the wire, unused by the Docker path
  std::optional<std::string> reserved_ip;
  std::string vps_backend = "docker";
  std::optional<std::string> vm_image, vm_disk_size;
  std::optional<int64_t> memory_mb;
};

// Parses the body. On error the alternative holds the 422 body.
std::variant<VpsRequest, nlohmann::json> parse_vps_request(std::string_view body);

// The effective key mode, or an error text for the 400 and the failed
// report: an unknown mode, or upload/generate without a non-empty key.
std::variant<SshKeyMode, std::string> resolve_key_mode(const VpsRequest& rq);

std::string to_string(SshKeyMode m);
std::optional<SshKeyMode> parse_key_mode(std::string_view s);

}  // namespace kr::vps

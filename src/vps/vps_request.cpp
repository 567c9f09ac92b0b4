#include "vps/vps_request.hpp"

#include "api/validation.hpp"
#include "tasks/task_request.hpp"

namespace kr::vps {

using api::BodyFields;
using api::Validation;
using nlohmann::json;

std::variant<VpsRequest, json> parse_vps_request(std::string_view body) {
  Validation v;
  auto obj = api::parse_body_object(body, v);
  if (!obj) return v.body();
  BodyFields f(*obj, v);
  VpsRequest r;
  // Model field order, so the 422 items come out as FastAPI lists them.
  auto id = f.req_int("task_id");
  r.required_cores = f.int_or("required_cores", 1);
  r.required_gpus = f.int_list("required_gpus");
  r.required_memory_bytes = f.opt_int("required_memory_bytes");
  r.target_numa_node_id = f.opt_int("target_numa_node_id");
  r.container_name = tasks::container_name_field(*obj, f);  // D13
  r.registry_image = f.opt_str("registry_image");
  r.ssh_key_mode = f.str_or("ssh_key_mode", "disabled");
  r.ssh_public_key = f.opt_str("ssh_public_key");
  auto port = f.req_int("ssh_port");
  r.reserved_ip = f.opt_str("reserved_ip");
  r.vps_backend = f.str_or("vps_backend", "docker");
  r.vm_image = f.opt_str("vm_image");
  r.vm_disk_size = f.opt_str("vm_disk_size");
  r.memory_mb = f.opt_int("memory_mb");
  if (!v.ok()) return v.body();
  r.task_id = *id;
  r.ssh_port = *port;
  return r;
}

std::string to_string(SshKeyMode m) {
  switch (m) {
    case SshKeyMode::Disabled: return "disabled";
    case SshKeyMode::None: return "none";
    case SshKeyMode::Upload: return "upload";
    case SshKeyMode::Generate: return "generate";
  }
  return "disabled";
}

std::optional<SshKeyMode> parse_key_mode(std::string_view s) {
  if (s == "disabled") return SshKeyMode::Disabled;
  if (s == "none") return SshKeyMode::None;
  if (s == "upload") return SshKeyMode::Upload;
  if (s == "generate") return SshKeyMode::Generate;
  return std::nullopt;
}

std::variant<SshKeyMode, std::string> resolve_key_mode(const VpsRequest& rq) {
  const std::string mode = rq.ssh_key_mode.empty() ? "upload" : rq.ssh_key_mode;
  auto m = parse_key_mode(mode);
  if (!m) return "Invalid ssh_key_mode '" + mode + "' (expected disabled, none, upload or generate).";
  if ((*m == SshKeyMode::Upload || *m == SshKeyMode::Generate) &&
      (!rq.ssh_public_key || rq.ssh_public_key->find_first_not_of(" \t\r\n") == std::string::npos))
    return "ssh_public_key is required for ssh_key_mode '" + mode + "'.";
  return *m;
}

}  // namespace kr::vps

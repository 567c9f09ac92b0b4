#include "tasks/task_request.hpp"

#include "api/validation.hpp"

namespace kr::tasks {
namespace {

using api::BodyFields;
using api::Validation;
using nlohmann::json;

// The env_vars object again, from an order-preserving parse of the same
// (already validated) body: nlohmann::json sorts object keys.
EnvVars ordered_env(std::string_view body) {
  EnvVars out;
  auto doc = nlohmann::ordered_json::parse(body.begin(), body.end());
  auto it = doc.find("env_vars");
  if (it == doc.end() || !it->is_object()) return out;
  for (auto e = it->begin(); e != it->end(); ++e) out[e.key()] = e->get<std::string>();
  return out;
}

}  // namespace

std::optional<std::string> container_name_field(const nlohmann::json& obj, api::BodyFields& f) {
  // container_name is `str` (required, non-null) upstream; D13 also accepts
  // null when a registry image is given, because the host sends exactly that
  // for registry-image tasks and VPS. An empty registry_image means "none".
  auto reg = obj.find("registry_image");
  const bool has_registry = reg != obj.end() && reg->is_string() && !reg->get_ref<const std::string&>().empty();
  auto cn = obj.find("container_name");
  if (cn != obj.end() && cn->is_null() && has_registry) return std::nullopt;
  return f.req_str("container_name");
}

std::variant<TaskRequest, json> parse_task_request(std::string_view body) {
  Validation v;
  auto obj = api::parse_body_object(body, v);
  if (!obj) return v.body();
  BodyFields f(*obj, v);
  TaskRequest r;

  // Field order of the pydantic model, so that the 422 items come out in the
  // order FastAPI lists them.
  auto id = f.req_int("task_id");
  auto command = f.req_str("command");
  r.arguments = f.str_list("arguments");
  f.str_dict("env_vars");  // validation only; the order-preserving copy is taken below
  r.required_cores = f.int_or("required_cores", 1);
  r.required_gpus = f.int_list("required_gpus");
  r.required_memory_bytes = f.opt_int("required_memory_bytes");
  r.target_numa_node_id = f.opt_int("target_numa_node_id");

  r.container_name = container_name_field(*obj, f);

  r.registry_image = f.opt_str("registry_image");
  // `working_dir: str = "/shared"`: explicit null is a string_type error;
  // the endpoint then replaces an empty string by the default.
  r.working_dir = f.str_or("working_dir", "/shared");
  if (r.working_dir.empty()) r.working_dir = "/shared";
  auto out = f.req_str("stdout_path");
  auto err = f.req_str("stderr_path");
  r.reserved_ip = f.opt_str("reserved_ip");

  if (!v.ok()) return v.body();
  r.task_id = *id;
  r.command = *command;
  r.stdout_path = *out;
  r.stderr_path = *err;
  r.env_vars = ordered_env(body);
  return r;
}

std::variant<TaskControl, json> parse_task_control(std::string_view body) {
  Validation v;
  auto obj = api::parse_body_object(body, v);
  if (!obj) return v.body();
  BodyFields f(*obj, v);
  auto id = f.req_int("task_id");
  auto name = f.req_str("container_name");
  if (!v.ok()) return v.body();
  return TaskControl{*id, *name};
}

}  // namespace kr::tasks

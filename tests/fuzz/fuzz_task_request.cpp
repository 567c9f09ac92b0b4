// libFuzzer target: the task request model. Bytes as a POST /api/execute
// body → pydantic-lax validation (422 body serialised) → when valid, the
// Docker create body built from it (image reference, environment, mounts,
// CPU/NUMA/GPU fields), as the task manager does before calling Docker.
// Also the control body (kill/pause/resume). SpecError is an expected
// rejection; anything else escaping is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "api/http_types.hpp"
#include "config/config.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/task_request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = kr::tasks::parse_task_request(body);
  if (auto* err = std::get_if<nlohmann::json>(&parsed)) {
    (void)kr::api::HttpResponse::json(422, *err);
  } else {
    const auto& req = std::get<kr::tasks::TaskRequest>(parsed);
    static const kr::config::RunnerConfig cfg = [] {
      kr::config::RunnerConfig c;
      c.additional_mounts = {"/opt/tools:/tools:ro", "/data:/data"};
      return c;
    }();
    kr::tasks::TaskContainerContext ctx;
    ctx.hostname = "node1";
    ctx.numa_cpus = {{0, {0, 1}}, {1, {2, 3}}};
    ctx.tunnel_client_path = "/usr/local/bin/tunnel-client";
    std::vector<std::string> warnings;
    try {
      auto create = kr::tasks::build_task_create_body(req, cfg, ctx, &warnings);
      (void)create.dump();
    } catch (const kr::tasks::SpecError&) {
    }
  }
  auto ctl = kr::tasks::parse_task_control(body);
  if (auto* err = std::get_if<nlohmann::json>(&ctl)) (void)kr::api::HttpResponse::json(422, *err);
  return 0;
}

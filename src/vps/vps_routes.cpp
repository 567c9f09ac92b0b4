// HTTP routes of Docker VPS (protocol.md, execution.md §3.1, §3.6).
#include "vps/vps_manager.hpp"

namespace kr::vps {

using api::HttpRequest;

void VpsManager::add_routes(api::Router& r) {
  r.add("POST", "/api/vps/create", [this](HttpRequest& q) { return create(q); });
  r.add("POST", "/api/vps/stop/{task_id}", [this](HttpRequest& q) { return stop_vps(q); });
  r.add("POST", "/api/vps/pause/{task_id}", [this](HttpRequest& q) { return pause_vps(q, true); });
  r.add("POST", "/api/vps/resume/{task_id}", [this](HttpRequest& q) { return pause_vps(q, false); });
  r.add("GET", "/api/vps/snapshots/{task_id}", [this](HttpRequest& q) { return list_snapshots_route(q); });
  r.add("POST", "/api/vps/snapshots/{task_id}", [this](HttpRequest& q) { return create_snapshot_route(q); });
  r.add("DELETE", "/api/vps/snapshots/{task_id}", [this](HttpRequest& q) { return delete_all_snapshots_route(q); });
  r.add("GET", "/api/vps/snapshots/{task_id}/latest", [this](HttpRequest& q) { return latest_snapshot_route(q); });
  r.add("DELETE", "/api/vps/snapshots/{task_id}/{timestamp}",
        [this](HttpRequest& q) { return delete_snapshot_route(q); });
  // The host sends /api/kill|pause|resume for VPS too (§2).
  r.add("POST", "/api/kill", [this](HttpRequest& q) { return control(q, "kill"); });
  r.add("POST", "/api/pause", [this](HttpRequest& q) { return control(q, "pause"); });
  r.add("POST", "/api/resume", [this](HttpRequest& q) { return control(q, "resume"); });
}

}  // namespace kr::vps

#include "vm/vm_ending.hpp"

namespace kr::vm {

VmEnding stop_ending() { return VmEnding{"stopped", "VM stopped by request; its QEMU process has exited.", true}; }
VmEnding kill_ending() { return VmEnding{"killed", "VM killed by request; its QEMU process has exited.", true}; }
VmEnding failure_ending(std::string message) { return VmEnding{"failed", std::move(message), false}; }

bool ending_replaces(const std::optional<VmEnding>& current, const VmEnding& next) {
  if (!current) return true;
  return next.by_host && !current->by_host;
}

nlohmann::ordered_json with_ending(nlohmann::ordered_json extra, const VmEnding& ending) {
  if (!extra.is_object()) extra = nlohmann::ordered_json::object();
  extra["ending"] = {{"status", ending.status}, {"message", ending.message}, {"by_host", ending.by_host}};
  return extra;
}

std::optional<VmEnding> ending_from_extra(const nlohmann::json& extra) {
  if (!extra.is_object()) return std::nullopt;
  auto it = extra.find("ending");
  if (it == extra.end() || !it->is_object()) return std::nullopt;
  const auto& e = *it;
  auto status = e.find("status");
  if (status == e.end() || !status->is_string()) return std::nullopt;
  const std::string s = status->get<std::string>();
  if (s != "stopped" && s != "killed" && s != "failed") return std::nullopt;
  VmEnding out;
  out.status = s;
  if (auto m = e.find("message"); m != e.end() && m->is_string()) out.message = m->get<std::string>();
  if (auto b = e.find("by_host"); b != e.end() && b->is_boolean()) out.by_host = b->get<bool>();
  return out;
}

}  // namespace kr::vm

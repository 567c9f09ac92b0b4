// How a VM ends (issue 16 point 5): a stop, a kill or a runner-side failure
// (cloud-init watchdog, failed restart) is accepted first and recorded in the
// VM's store row; the VM stays tracked (IP, TAP, VFIO, state file, listed in
// running_tasks) until its QEMU process is really gone, and only then is the
// one final report sent. Pure helpers; the flow is vm_stop.cpp.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace kr::vm {

// A QEMU that outlived its SIGKILL is killed again after these pauses
// (doubling) until it is gone.
inline constexpr std::chrono::milliseconds kEndRetryFirst{1000};
inline constexpr std::chrono::milliseconds kEndRetryMax{10000};

struct VmEnding {
  std::string status;   // final status reported once QEMU is gone: stopped | killed | failed
  std::string message;  // its message
  bool by_host = false; // a stop or kill the host asked for

  bool operator==(const VmEnding&) const = default;
};

VmEnding stop_ending();
VmEnding kill_ending();
VmEnding failure_ending(std::string message);

// Whether `next` replaces the ending already accepted. The first one
// stands, except that a host stop/kill replaces a runner-side failure that
// is still waiting for QEMU to go: the host already shows what it asked for,
// and a later `failed` would overwrite it there.
bool ending_replaces(const std::optional<VmEnding>& current, const VmEnding& next);

// The VM row's extra_json carries the VM state plus, once an ending was
// accepted, {"ending": {"status", "message", "by_host"}} so that a restarted
// runner finishes it instead of re-adopting the VM as running.
nlohmann::ordered_json with_ending(nlohmann::ordered_json extra, const VmEnding& ending);
// nullopt when absent; malformed entries count as absent.
std::optional<VmEnding> ending_from_extra(const nlohmann::json& extra);

}  // namespace kr::vm

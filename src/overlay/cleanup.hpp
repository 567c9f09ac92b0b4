#pragma once
// `kohakuriver overlay cleanup` (decision O13): removes what the runner
// created for the overlay — the Docker network (containers detached first),
// vxlan0, the kohaku-overlay bridge, routes to the configured overlay CIDR
// or through the bridge, and the firewall rules (ours, found by comment, and
// upstream's uncommented ones for the configured CIDR). Meant for root with
// the runner stopped. The VM bridge and TAP devices are not touched.
#include <ostream>

#include "config/config.hpp"

namespace kr::overlay {

// Returns the process exit code: 0 when everything present was removed,
// 1 when a step failed (each failure is printed).
int cleanup_command(const config::RunnerConfig& cfg, std::ostream& out, std::ostream& err);

}  // namespace kr::overlay

#pragma once
// systemd readiness notification (Type=notify units). The protocol is one
// datagram to $NOTIFY_SOCKET; it is written here instead of linking
// libsystemd, whose mapped pages (with libgcrypt, liblz4, libzstd, …) cost
// about 0.8 MiB of RSS for this one call — a tenth of the idle budget.
#include <string_view>

namespace kr::runner {

// Sends `state` (e.g. "READY=1") when running under systemd; returns false
// when NOTIFY_SOCKET is unset or the send failed (never fatal).
bool notify_systemd(std::string_view state);

}  // namespace kr::runner

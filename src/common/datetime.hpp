#pragma once
// Timestamps the host stores verbatim: naive local time, ISO-8601 with a 'T',
// microseconds only when non-zero (protocol.md §0.3, decision D2).
#include <chrono>
#include <string>

namespace kr {

std::string naive_local_iso(std::chrono::system_clock::time_point tp);
inline std::string naive_local_now() { return naive_local_iso(std::chrono::system_clock::now()); }

}  // namespace kr

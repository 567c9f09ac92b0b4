#pragma once
// Resource bounds of the HTTP API (issue 6 item 6, docs/decisions.md
// "Request limits"). One place, so the routes, the server and the tests agree.
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kr::api::limits {

// Request bodies, per route (Router::add). 413 beyond the limit.
inline constexpr std::uint64_t kKiB = 1024, kMiB = 1024 * kKiB;
// Routes that do not name a limit (and unknown paths, answered 404).
inline constexpr std::uint64_t kDefaultBody = 1 * kMiB;
// {task_id, container_name} bodies: kill, pause, resume.
inline constexpr std::uint64_t kControlBody = 64 * kKiB;
// Task and VPS creation: one `sh -c` argument alone may be 128 KiB and the
// kernel takes up to 2 MiB of argv+environment; room for JSON escaping.
inline constexpr std::uint64_t kCreateBody = 8 * kMiB;
// The filesystem write (issue 16 item 6): files of at most 50 MiB, the
// limit upstream documents and checks on the decoded bytes (base64-decoded,
// or the UTF-8 text). The body carries the file inside JSON: base64 is
// 4 * ceil(n / 3) bytes (69,905,068 for 50 MiB); UTF-8 text is escaped,
// worst case 6 bytes per byte (control characters as \u00XX). The body cap
// admits any permitted file however it is encoded, plus 1 MiB for the path
// and the other fields; the memory bodies hold together is bounded by
// MAX_BUFFERED_REQUEST_BYTES (kDefaultBufferedBodies), not by this cap.
inline constexpr std::uint64_t kFsWriteFileBytes = 50 * kMiB;
inline constexpr std::uint64_t kFsWriteBase64Bytes = (kFsWriteFileBytes + 2) / 3 * 4;
inline constexpr std::uint64_t kMaxJsonEscapeRatio = 6;
inline constexpr std::uint64_t kFilesystemBody = kMaxJsonEscapeRatio * kFsWriteFileBytes + kMiB;

// All request bodies held in memory at once, over every connection
// (MAX_BUFFERED_REQUEST_BYTES). A body that does not fit waits for room at
// most kBufferedBodyWait, then gets 503. One body larger than the whole
// budget is admitted when it is the only one held.
inline constexpr std::uint64_t kDefaultBufferedBodies = 256 * kMiB;
inline constexpr auto kBufferedBodyWait = std::chrono::seconds(10);

// JSON request bodies nest at most this deep (arrays and objects); deeper
// input is rejected before it is parsed, so nothing recursive ever sees it.
inline constexpr std::size_t kMaxJsonDepth = 64;
// A 422 item echoes at most this much of its `input`.
inline constexpr std::size_t kMaxEchoedInputBytes = 2048;
// A 422 body lists at most this many items (a list of 100,000 bad elements
// gets the first ones, not a 50 MB answer).
inline constexpr std::size_t kMaxValidationItems = 64;

// Connections.
// Waiting for the first byte of a request (new or kept-alive connection).
// Longer than the host's HTTP client keeps idle connections (5 s), so the
// client, not the runner, normally closes them.
inline constexpr auto kIdleTimeout = std::chrono::seconds(30);
// From the first byte of a request to the end of its header (slowloris).
inline constexpr auto kHeaderTimeout = std::chrono::seconds(15);
// A body must arrive within this base plus size / kMinBodyRate.
inline constexpr auto kBodyTimeoutBase = std::chrono::seconds(30);
inline constexpr std::uint64_t kMinBodyBytesPerSecond = 256 * kKiB;
// Writing a response.
inline constexpr auto kWriteTimeout = std::chrono::seconds(60);

}  // namespace kr::api::limits

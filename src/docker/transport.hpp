#pragma once
// Internal: HTTP/1.1 over dockerd's UNIX socket. The only interface to the
// Beast code in transport.cpp, so no other translation unit includes Beast
// (it is the slowest header set in the build). Not for use outside
// src/docker/.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "docker/docker_client.hpp"  // Method, ClientStats, CancelToken, DockerError

namespace kr::docker::detail {

struct HttpRequest {
  Method method = Method::Get;
  std::string target;  // full target, version prefix and query included
  std::string body;    // sent with content_type when non-empty
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // Streamed request body (image load); takes precedence over `body`.
  std::optional<std::filesystem::path> upload_file;
  // Streamed request body made in pieces (archive upload), for stream():
  // `upload_size` bytes announced as Content-Length, produced by calls of
  // `upload_next` (each piece is written before the next call; an empty
  // piece before `upload_size` is reached, or an exception, abandons the
  // call with the connection closed mid-body).
  std::function<std::string_view()> upload_next;
  std::uint64_t upload_size = 0;
  // Deadline for the whole call; nullopt = none (event streams only).
  std::optional<std::chrono::milliseconds> deadline;
  // Safe to resend when a pooled connection turns out to be dead.
  bool idempotent = false;
  CancelToken cancel;
};

struct HttpResponse {
  int status = 0;
  std::string body;  // buffered calls; for streams only an error body (>= 400)
  std::vector<std::pair<std::string, std::string>> headers;
  // Case-insensitive header lookup; empty when absent.
  std::string header(std::string_view name) const;
};

class Transport {
 public:
  Transport(boost::asio::any_io_executor ex, std::string socket_path,
            std::size_t max_idle_connections);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Buffered request/response on a pooled keep-alive connection.
  boost::asio::awaitable<HttpResponse> request(HttpRequest req);
  // Long-lived call on its own connection: body bytes of a < 400 response
  // go to `on_data` as they arrive (chunked framing already removed).
  boost::asio::awaitable<HttpResponse> stream(HttpRequest req,
                                              std::function<void(std::string_view)> on_data);

  void cancel_all();
  ClientStats stats() const;
  const std::string& socket_path() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with in-flight coroutines
};

}  // namespace kr::docker::detail

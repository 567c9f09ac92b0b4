#pragma once
// Minimal HTTP/1.1 client for runner → host calls. Like upstream's httpx use,
// every call opens a fresh connection, sends JSON and never follows
// redirects; unlike upstream, the deadline covers the whole exchange
// (resolve, connect, write, read) so a stuck host cannot stall a caller.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace kr::host_link {

struct HostResponse {
  int status = 0;
  std::string body;
  bool ok() const { return status >= 200 && status < 300; }
};

// Network error, timeout or malformed response.
struct HostUnreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class HostClient {
 public:
  HostClient(boost::asio::any_io_executor ex, std::string host, uint16_t port);
  boost::asio::awaitable<HostResponse> request(std::string method, std::string target,
                                               std::optional<std::string> json_body,
                                               std::chrono::milliseconds timeout);
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }

 private:
  boost::asio::any_io_executor ex_;
  std::string host_;
  uint16_t port_;
};

}  // namespace kr::host_link

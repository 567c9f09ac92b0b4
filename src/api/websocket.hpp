#pragma once
// WebSocket endpoints on the HTTP server's port (transport-neutral: no Beast
// here; the implementation is src/api/websocket_server.cpp). See
// src/api/README.md for how to add an endpoint.
//
// A route is registered on the Router with a path pattern ("{id}" segments
// like HTTP routes) and a coroutine handler that receives a WebSocket. The
// handshake is accepted before the handler runs, unless the route's
// `precheck` refuses it with an HTTP response (e.g. 403 for a non-integer
// id, as FastAPI does). When the handler returns, the connection is closed
// with 1000 unless the handler already closed it.
//
// Threading: everything runs on the server's single I/O thread. One
// coroutine may read while others send: read() and send() are independent.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "api/http_types.hpp"

namespace kr::api {

// Close codes used by the endpoints (RFC 6455 §7.4.1).
namespace ws_close {
inline constexpr std::uint16_t kNormal = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;
inline constexpr std::uint16_t kUnsupportedData = 1003;
inline constexpr std::uint16_t kPolicy = 1008;
inline constexpr std::uint16_t kTooBig = 1009;
inline constexpr std::uint16_t kInternalError = 1011;
}  // namespace ws_close

struct WsMessage {
  std::string data;
  bool binary = false;
};

struct WsOptions {
  // A larger incoming message closes the connection with 1009.
  std::size_t max_message_bytes = 1u << 20;
  // send() suspends while this many bytes wait to be written (back-pressure:
  // a slow peer slows the producer down instead of growing memory). One
  // message larger than the limit is still accepted when the queue is empty.
  std::size_t send_queue_bytes = 1u << 20;
  // Nothing received for half of this: we ping; nothing for all of it: the
  // connection is dropped (dead peers never pin a session). Pings from the
  // peer are answered automatically.
  std::chrono::seconds idle_timeout{60};
  // Refuses the handshake with this HTTP response when it returns one.
  std::function<std::optional<HttpResponse>(const HttpRequest&)> precheck;
};

class WebSocket {
 public:
  virtual ~WebSocket() = default;
  // The upgrade request: path_params, query_params, remote_ip, ...
  virtual const HttpRequest& request() const = 0;
  // The next data message. nullopt once the peer closed, the connection
  // broke, a message exceeded max_message_bytes, or abort() was called.
  virtual boost::asio::awaitable<std::optional<WsMessage>> read() = 0;
  // Queues one message (text unless `binary`). Suspends while the send
  // queue is full. false when the connection is closing or gone (the
  // message is dropped then).
  virtual boost::asio::awaitable<bool> send(std::string data, bool binary = false) = 0;
  // Sends what is queued, then the close frame; waits (bounded) for the
  // closing handshake. Idempotent; later send() calls return false.
  virtual boost::asio::awaitable<void> close(std::uint16_t code = ws_close::kNormal,
                                             std::string reason = {}) = 0;
  // Closes the socket now: pending read()/send() complete at once.
  virtual void abort() = 0;
  // false once closing started or the connection broke.
  virtual bool is_open() const = 0;
  // Bytes queued but not yet written (for back-pressure decisions).
  virtual std::size_t queued_bytes() const = 0;
};

using WsHandler = std::function<boost::asio::awaitable<void>(WebSocket&)>;

struct WsRoute {
  WsHandler handler;
  WsOptions options;
};

}  // namespace kr::api

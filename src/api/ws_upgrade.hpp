#pragma once
// Internal to src/api: the HTTP server hands an upgrade request over to the
// WebSocket implementation (websocket_server.cpp, the one translation unit
// that compiles Beast's websocket headers).
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/http_types.hpp"
#include "api/websocket.hpp"

namespace kr::api::detail {

// Runs the handshake (or the route's refusal) and then the route's handler
// on `stream`. `registered` points at the server's record of open streams
// (for stop()); it is redirected to the WebSocket's own stream while the
// session runs.
boost::asio::awaitable<void> serve_websocket(boost::beast::tcp_stream stream,
                                             boost::beast::http::request<boost::beast::http::string_body> req,
                                             HttpRequest hreq, const WsRoute& route,
                                             boost::beast::tcp_stream*& registered);

}  // namespace kr::api::detail

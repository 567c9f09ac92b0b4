// The two WebSocket routes of the tunnel server (tunnel-overlay.md §2.1).
#include <charconv>

#include "api/router.hpp"
#include "tunnel/relay_rules.hpp"
#include "tunnel/tunnel_hub.hpp"

namespace kr::tunnel {

namespace {

bool parse_int(const std::string& s, long long* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace

api::WsOptions tunnel_ws_options() {
  api::WsOptions o;
  // uvicorn's incoming limit; DATA toward the host is cut to 1 MiB (T7).
  o.max_message_bytes = 16u << 20;
  o.send_queue_bytes = 1u << 20;
  // Ping after 20 s without traffic, drop 20 s later without a pong (T5).
  o.idle_timeout = std::chrono::seconds(40);
  return o;
}

api::WsOptions forward_ws_options() {
  api::WsOptions o = tunnel_ws_options();
  // {port} must be an integer, like FastAPI's int path parameter (403 on
  // the upgrade otherwise).
  o.precheck = [](const api::HttpRequest& req) -> std::optional<api::HttpResponse> {
    long long port = 0;
    auto it = req.path_params.find("port");
    if (it == req.path_params.end() || !parse_int(it->second, &port)) {
      api::HttpResponse r;
      r.status = 403;
      return r;
    }
    return std::nullopt;
  };
  return o;
}

void add_container_tunnel_route(api::Router& router, TunnelHub& hub) {
  router.add_websocket(
      "/ws/tunnel/{container_id}",
      [&hub](api::WebSocket& ws) { return hub.serve_tunnel(ws, ws.request().path_params.at("container_id")); },
      tunnel_ws_options());
}

void add_tunnel_routes(api::Router& router, TunnelHub& hub) {
  add_container_tunnel_route(router, hub);
  router.add_websocket(
      "/ws/forward/{container_id}/{port}",
      [&hub](api::WebSocket& ws) {
        const auto& req = ws.request();
        long long port = 0;
        parse_int(req.path_params.at("port"), &port);
        auto q = req.query_params.find("proto");
        Proto proto = q != req.query_params.end() && lower(q->second) == "udp" ? Proto::Udp : Proto::Tcp;
        return hub.serve_forward(ws, req.path_params.at("container_id"), static_cast<std::uint16_t>(port), proto);
      },
      forward_ws_options());
}

}  // namespace kr::tunnel

#pragma once
// Transport-neutral request/response types so routes and their tests never
// include Beast (which is compiled in exactly one translation unit).
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw request target, e.g. "/api/fs/1/list?path=/"
  std::string path;    // percent-decoded path without query
  std::string query;   // raw query string (after '?')
  std::map<std::string, std::string> query_params;  // decoded; last value wins
  std::map<std::string, std::string> path_params;   // filled by the router
  std::string host_header;
  std::string content_type;
  std::string body;
  std::string remote_ip;  // without a "%scope" suffix; IPv4-mapped IPv6 as IPv4
  // Where the connection arrived: the peer's IPv6 scope (the interface
  // index of a link-local peer, else 0) and the local address it reached.
  std::uint32_t remote_scope_id = 0;
  std::string local_ip;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;

  static HttpResponse json(int status, const nlohmann::json& j) {
    return HttpResponse{status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json", {}};
  }
  static HttpResponse detail(int status, const std::string& message) {
    return json(status, nlohmann::json{{"detail", message}});
  }
  static HttpResponse internal_error() {
    return HttpResponse{500, "Internal Server Error", "text/plain; charset=utf-8", {}};
  }
};

}  // namespace kr::api

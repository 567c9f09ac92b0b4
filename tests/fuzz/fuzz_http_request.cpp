// libFuzzer target: the request path as the runner runs it, minus sockets.
// Bytes → Beast's HTTP/1.1 request parser (header, then the route's body
// limit, as api/http_server.cpp does) → path decoding, query parsing, route
// matching → the JSON validation of every body-taking route → the 422 body
// serialised. Any crash, sanitizer report or leak is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/router.hpp"
#include "tasks/task_request.hpp"

namespace http = boost::beast::http;

namespace {

const kr::api::Router& routes() {
  static const kr::api::Router r = [] {
    kr::api::Router r;
    auto none = [](kr::api::HttpRequest&) -> boost::asio::awaitable<kr::api::HttpResponse> {
      co_return kr::api::HttpResponse{};
    };
    namespace lim = kr::api::limits;
    r.add("POST", "/api/execute", none, lim::kCreateBody);
    r.add("POST", "/api/kill", none, lim::kControlBody);
    r.add("POST", "/api/pause", none, lim::kControlBody);
    r.add("POST", "/api/resume", none, lim::kControlBody);
    r.add("GET", "/api/docker/images", none);
    r.add("POST", "/api/docker/sync/{container_name}", none);
    r.add("GET", "/api/fs/{task_id}/list", none);
    r.add("GET", "/healthz", none);
    return r;
  }();
  return r;
}

void validate_body(const std::string& path, const std::string& body) {
  if (path == "/api/execute") {
    auto r = kr::tasks::parse_task_request(body);
    if (auto* err = std::get_if<nlohmann::json>(&r))
      (void)kr::api::HttpResponse::json(422, *err);
  } else {
    auto r = kr::tasks::parse_task_control(body);
    if (auto* err = std::get_if<nlohmann::json>(&r))
      (void)kr::api::HttpResponse::json(422, *err);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  std::string_view in(p, size);
  http::request_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  parser.eager(false);
  boost::system::error_code ec;
  // Header first.
  std::size_t used = 0;
  while (!parser.is_header_done() && used < in.size()) {
    std::size_t n = parser.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
    if (ec == http::error::need_more) break;
    if (ec) return 0;
    if (n == 0) break;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& hdr = parser.get();
  std::string target(hdr.target());
  const std::string raw_path = target.substr(0, target.find('?'));
  const std::string path = kr::api::percent_decode(raw_path, false);
  if (auto q = target.find('?'); q != std::string::npos) (void)kr::api::parse_query(target.substr(q + 1));
  const std::string method(hdr.method_string());
  const std::uint64_t limit = routes().body_limit(method, path);
  if (auto len = parser.content_length(); len && *len > limit) return 0;
  parser.body_limit(limit);
  parser.eager(true);
  while (!parser.is_done() && used < in.size()) {
    std::size_t n = parser.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
    if (ec == http::error::need_more) break;
    if (ec) return 0;
    if (n == 0) break;
    used += n;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec) return 0;
  }
  auto m = routes().match(method, path);
  if (m.kind == kr::api::Router::Match::Kind::Found && method == "POST") validate_body(path, parser.get().body());
  return 0;
}

#pragma once
// Route table with Starlette's routing semantics (protocol.md §0.4, D34):
// unknown path → 404 {"detail":"Not Found"}; known path, other method → 405
// with Allow; a path that only matches without its trailing slash → 307.
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "api/http_types.hpp"
#include "api/limits.hpp"
#include "api/websocket.hpp"

namespace kr::api {

using RouteHandler = std::function<boost::asio::awaitable<HttpResponse>(HttpRequest&)>;

class Router {
 public:
  // `pattern` segments like "{task_id}" capture one path segment.
  // `body_limit`: the largest request body this route reads (413 beyond);
  // the filesystem API passes limits::kFilesystemBody.
  // `too_large_detail`: the 413's detail when a body is over the limit
  // (empty: "Request body too large: this route accepts at most N bytes").
  void add(std::string method, std::string pattern, RouteHandler handler,
           std::uint64_t body_limit = limits::kDefaultBody, std::string too_large_detail = {});

  // Body limit for a request, known from its header alone: the matched
  // route's, else limits::kDefaultBody (404/405/307 answers).
  std::uint64_t body_limit(const std::string& method, const std::string& path) const;
  struct BodyRule {
    std::uint64_t limit = limits::kDefaultBody;
    std::string too_large_detail;  // never empty
  };
  BodyRule body_rule(const std::string& method, const std::string& path) const;

  struct Match {
    enum class Kind { Found, NotFound, MethodNotAllowed, RedirectSlash } kind = Kind::NotFound;
    const RouteHandler* handler = nullptr;
    std::uint64_t body_limit = limits::kDefaultBody;
    std::map<std::string, std::string> params;
    std::string allow;          // for 405
    std::string redirect_path;  // for 307
  };
  Match match(const std::string& method, const std::string& path) const;

  // Resolves and runs the handler, producing the framework error responses.
  boost::asio::awaitable<HttpResponse> dispatch(HttpRequest& req) const;

  // WebSocket endpoints (api/websocket.hpp). An upgrade request whose path
  // matches one is served as a WebSocket; any other request goes to the
  // HTTP routes as usual.
  void add_websocket(std::string pattern, WsHandler handler, WsOptions options = {});
  // The route for `path` (fills `params`), or nullptr.
  const WsRoute* match_websocket(const std::string& path, std::map<std::string, std::string>& params) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    RouteHandler handler;
    std::uint64_t body_limit = limits::kDefaultBody;
    std::string too_large_detail;
  };
  static std::vector<std::string> split(const std::string& path);
  static bool match_segments(const Route& r, const std::vector<std::string>& segs,
                             std::map<std::string, std::string>* params);
  std::vector<Route> routes_;
  struct WsEntry {
    std::vector<std::string> segments;
    WsRoute route;
  };
  std::vector<WsEntry> ws_routes_;
};

std::string percent_decode(std::string_view s, bool plus_is_space);
std::map<std::string, std::string> parse_query(std::string_view query);

}  // namespace kr::api

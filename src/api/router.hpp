#pragma once
// Route table with Starlette's routing semantics (protocol.md §0.4, D34):
// unknown path → 404 {"detail":"Not Found"}; known path, other method → 405
// with Allow; a path that only matches without its trailing slash → 307.
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "api/http_types.hpp"

namespace kr::api {

using RouteHandler = std::function<boost::asio::awaitable<HttpResponse>(HttpRequest&)>;

class Router {
 public:
  // `pattern` segments like "{task_id}" capture one path segment.
  void add(std::string method, std::string pattern, RouteHandler handler);

  struct Match {
    enum class Kind { Found, NotFound, MethodNotAllowed, RedirectSlash } kind = Kind::NotFound;
    const RouteHandler* handler = nullptr;
    std::map<std::string, std::string> params;
    std::string allow;          // for 405
    std::string redirect_path;  // for 307
  };
  Match match(const std::string& method, const std::string& path) const;

  // Resolves and runs the handler, producing the framework error responses.
  boost::asio::awaitable<HttpResponse> dispatch(HttpRequest& req) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  static std::vector<std::string> split(const std::string& path);
  static bool match_segments(const Route& r, const std::vector<std::string>& segs,
                             std::map<std::string, std::string>* params);
  std::vector<Route> routes_;
};

std::string percent_decode(std::string_view s, bool plus_is_space);
std::map<std::string, std::string> parse_query(std::string_view query);

}  // namespace kr::api

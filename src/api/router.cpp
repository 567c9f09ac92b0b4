#include "api/router.hpp"

#include <spdlog/spdlog.h>

namespace kr::api {

void Router::add(std::string method, std::string pattern, RouteHandler handler, std::uint64_t body_limit,
                 std::string too_large_detail) {
  routes_.push_back(
      Route{std::move(method), split(pattern), std::move(handler), body_limit, std::move(too_large_detail)});
}

Router::BodyRule Router::body_rule(const std::string& method, const std::string& path) const {
  BodyRule rule;
  auto segs = split(path);
  for (const auto& r : routes_) {
    if (r.method != method || !match_segments(r, segs, nullptr)) continue;
    rule.limit = r.body_limit;
    rule.too_large_detail = r.too_large_detail;
    break;
  }
  if (rule.too_large_detail.empty())
    rule.too_large_detail =
        "Request body too large: this route accepts at most " + std::to_string(rule.limit) + " bytes";
  return rule;
}

std::uint64_t Router::body_limit(const std::string& method, const std::string& path) const {
  Match m = match(method, path);
  return m.kind == Match::Kind::Found ? m.body_limit : limits::kDefaultBody;
}

void Router::add_websocket(std::string pattern, WsHandler handler, WsOptions options) {
  ws_routes_.push_back(WsEntry{split(pattern), WsRoute{std::move(handler), std::move(options)}});
}

const WsRoute* Router::match_websocket(const std::string& path, std::map<std::string, std::string>& params) const {
  auto segs = split(path);
  for (const auto& e : ws_routes_) {
    Route probe{"", e.segments, {}};
    params.clear();
    if (match_segments(probe, segs, &params)) return &e.route;
  }
  params.clear();
  return nullptr;
}

std::vector<std::string> Router::split(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  if (!path.empty() && path[0] == '/') i = 1;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool Router::match_segments(const Route& r, const std::vector<std::string>& segs,
                            std::map<std::string, std::string>* params) {
  if (r.segments.size() != segs.size()) return false;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& p = r.segments[i];
    if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
      if (segs[i].empty()) return false;  // Starlette's str converter needs ≥1 char
      if (params) (*params)[p.substr(1, p.size() - 2)] = segs[i];
    } else if (p != segs[i]) {
      return false;
    }
  }
  return true;
}

Router::Match Router::match(const std::string& method, const std::string& path) const {
  Match m;
  auto segs = split(path);
  std::string allow;
  for (const auto& r : routes_) {
    std::map<std::string, std::string> params;
    if (!match_segments(r, segs, &params)) continue;
    if (r.method == method) {
      m.kind = Match::Kind::Found;
      m.handler = &r.handler;
      m.body_limit = r.body_limit;
      m.params = std::move(params);
      return m;
    }
    if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
  }
  if (!allow.empty()) {
    m.kind = Match::Kind::MethodNotAllowed;
    m.allow = allow;
    return m;
  }
  if (path.size() > 1 && path.back() == '/') {
    std::string trimmed = path.substr(0, path.size() - 1);
    auto tsegs = split(trimmed);
    for (const auto& r : routes_) {
      if (match_segments(r, tsegs, nullptr)) {
        m.kind = Match::Kind::RedirectSlash;
        m.redirect_path = trimmed;
        return m;
      }
    }
  }
  m.kind = Match::Kind::NotFound;
  return m;
}

boost::asio::awaitable<HttpResponse> Router::dispatch(HttpRequest& req) const {
  Match m = match(req.method, req.path);
  switch (m.kind) {
    case Match::Kind::NotFound:
      co_return HttpResponse::detail(404, "Not Found");
    case Match::Kind::MethodNotAllowed: {
      auto r = HttpResponse::detail(405, "Method Not Allowed");
      r.headers.emplace_back("allow", m.allow);
      co_return r;
    }
    case Match::Kind::RedirectSlash: {
      HttpResponse r{307, "", "", {}};
      std::string loc = req.host_header.empty() ? m.redirect_path : "http://" + req.host_header + m.redirect_path;
      if (!req.query.empty()) loc += "?" + req.query;
      r.headers.emplace_back("location", loc);
      co_return r;
    }
    case Match::Kind::Found:
      break;
  }
  req.path_params = std::move(m.params);
  try {
    co_return co_await (*m.handler)(req);
  } catch (const std::exception& e) {
    spdlog::error("Unhandled error in {} {}: {}", req.method, req.path, e.what());
  }
  co_return HttpResponse::internal_error();
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < query.size()) {
    size_t j = query.find('&', i);
    if (j == std::string_view::npos) j = query.size();
    std::string_view pair = query.substr(i, j - i);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string key = percent_decode(pair.substr(0, eq), true);
      std::string val = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
      out[std::move(key)] = std::move(val);  // last value wins, like Starlette's QueryParams
    }
    i = j + 1;
  }
  return out;
}

}  // namespace kr::api

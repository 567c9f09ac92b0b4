#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "api/router.hpp"
#include "common/datetime.hpp"

namespace asio = boost::asio;
using kr::api::HttpRequest;
using kr::api::HttpResponse;
using kr::api::Router;

namespace {

Router make_router() {
  Router r;
  auto echo = [](HttpRequest& req) -> asio::awaitable<HttpResponse> {
    nlohmann::json params = req.path_params;
    co_return HttpResponse::json(200, params);
  };
  r.add("GET", "/api/fs/{task_id}/list", echo);
  r.add("POST", "/api/fs/{task_id}/write", echo);
  r.add("DELETE", "/api/vps/snapshots/{task_id}", echo);
  r.add("GET", "/api/vps/snapshots/{task_id}", echo);
  r.add("POST", "/api/boom", [](HttpRequest&) -> asio::awaitable<HttpResponse> {
    throw std::runtime_error("bug");
    co_return HttpResponse{};
  });
  return r;
}

HttpResponse run(const Router& r, std::string method, std::string path, std::string query = "") {
  asio::io_context io;
  HttpRequest req;
  req.method = std::move(method);
  req.path = std::move(path);
  req.query = std::move(query);
  req.host_header = "10.0.0.5:8001";
  auto fut = asio::co_spawn(io, r.dispatch(req), asio::use_future);
  io.run();
  return fut.get();
}

std::string header(const HttpResponse& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

}  // namespace

TEST(Router, CapturesPathParams) {
  auto r = make_router();
  auto res = run(r, "GET", "/api/fs/123/list");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(nlohmann::json::parse(res.body)["task_id"], "123");
}

TEST(Router, UnknownPathIs404Json) {
  auto res = run(make_router(), "GET", "/api/nope");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.body, R"({"detail":"Not Found"})");
  EXPECT_EQ(res.content_type, "application/json");
}

TEST(Router, WrongMethodIs405WithAllow) {
  auto r = make_router();
  auto res = run(r, "PUT", "/api/vps/snapshots/5");
  EXPECT_EQ(res.status, 405);
  EXPECT_EQ(res.body, R"({"detail":"Method Not Allowed"})");
  EXPECT_EQ(header(res, "allow"), "DELETE, GET");
  // FastAPI does not add HEAD to GET routes.
  EXPECT_EQ(run(r, "HEAD", "/api/fs/1/list").status, 405);
}

TEST(Router, TrailingSlashRedirects) {
  auto res = run(make_router(), "GET", "/api/fs/1/list/", "path=/x");
  EXPECT_EQ(res.status, 307);
  EXPECT_EQ(header(res, "location"), "http://10.0.0.5:8001/api/fs/1/list?path=/x");
}

TEST(Router, EmptySegmentDoesNotMatchParam) {
  EXPECT_EQ(run(make_router(), "GET", "/api/fs//list").status, 404);
}

TEST(Router, HandlerExceptionIsPlain500) {
  auto res = run(make_router(), "POST", "/api/boom");
  EXPECT_EQ(res.status, 500);
  EXPECT_EQ(res.body, "Internal Server Error");
  EXPECT_EQ(res.content_type, "text/plain; charset=utf-8");
}

TEST(Query, DecodesAndLastValueWins) {
  auto q = kr::api::parse_query("path=%2Fa%20b&x=1&x=2&flag&plus=a+b");
  EXPECT_EQ(q["path"], "/a b");
  EXPECT_EQ(q["x"], "2");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["plus"], "a b");
  EXPECT_EQ(kr::api::percent_decode("%zz%4", false), "%zz%4");
}

TEST(Datetime, NaiveLocalIsoFormat) {
  setenv("TZ", "UTC", 1);
  tzset();
  using namespace std::chrono;
  system_clock::time_point tp{seconds(1735787045)};  // 2025-01-02T03:04:05Z
  EXPECT_EQ(kr::naive_local_iso(tp), "2025-01-02T03:04:05");
  EXPECT_EQ(kr::naive_local_iso(tp + microseconds(120)), "2025-01-02T03:04:05.000120");
  setenv("TZ", "CST-8", 1);  // POSIX form: UTC+8 without tzdata
  tzset();
  EXPECT_EQ(kr::naive_local_iso(tp), "2025-01-02T11:04:05");  // local, no offset suffix
  unsetenv("TZ");
  tzset();
}

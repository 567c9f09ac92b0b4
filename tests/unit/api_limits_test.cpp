// Request-path bounds (issue 6 items 1 and 6): nesting depth, what a 422
// echoes, per-route body limits and per-source connection accounting.
#include <gtest/gtest.h>

#include <string>

#include "api/connection_limiter.hpp"
#include "api/limits.hpp"
#include "api/router.hpp"
#include "api/validation.hpp"
#include "tasks/task_request.hpp"

namespace lim = kr::api::limits;
using kr::api::ConnectionLimiter;
using kr::api::ConnectionLimits;
using kr::api::json;
using kr::api::Validation;

namespace {
std::string nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}
}  // namespace

TEST(JsonDepth, PreScanFindsTheFirstTooDeepBracket) {
  EXPECT_FALSE(kr::api::json_too_deep("{}", 1));
  EXPECT_FALSE(kr::api::json_too_deep(nested(64), 64));
  EXPECT_EQ(kr::api::json_too_deep(nested(65), 64), 64u);
  EXPECT_EQ(kr::api::json_too_deep(R"({"a":[{"b":[]}]})", 3), 11u);
  // Brackets inside strings (escaped quotes included) do not count.
  EXPECT_FALSE(kr::api::json_too_deep(R"({"a":"[[[[[[\"[[[[[["})", 2));
  // Closing brackets never make the depth negative.
  EXPECT_FALSE(kr::api::json_too_deep("]]]]][", 1));
}

// The defect: ~100,000 '[' reached the recursive 422 echo and overflowed
// the stack. Now it is a short json_invalid item, before any parsing.
TEST(JsonDepth, HugeNestingIsAShort422) {
  for (const std::string& body : {std::string(100000, '['), nested(100000), "{\"task_id\":" + nested(100000) + "}"}) {
    Validation v;
    EXPECT_FALSE(kr::api::parse_body_object(body, v));
    json b = v.body();
    ASSERT_EQ(b["detail"].size(), 1u);
    EXPECT_EQ(b["detail"][0]["type"], "json_invalid");
    EXPECT_LT(b.dump().size(), 400u);
    auto r = kr::tasks::parse_task_request(body);
    ASSERT_TRUE(std::holds_alternative<json>(r));
    auto c = kr::tasks::parse_task_control(body);
    ASSERT_TRUE(std::holds_alternative<json>(c));
  }
  // At the limit it still parses (and fails only as a non-object).
  Validation v;
  EXPECT_FALSE(kr::api::parse_body_object(nested(lim::kMaxJsonDepth), v));
  EXPECT_EQ(v.body()["detail"][0]["type"], "model_attributes_type");
}

TEST(EchoedInput, SmallValuesAreEchoedWhole) {
  json small = {{"a", {1, 2, 3}}, {"b", "text"}};
  EXPECT_EQ(kr::api::echoed_input(small, 2048), small);
  EXPECT_EQ(kr::api::echoed_input(json("x"), 2048), json("x"));
}

TEST(EchoedInput, LargeValuesAreCutOrDescribed) {
  std::string big(100000, 'a');
  big += "\xc3\xa9";  // a two-byte character right at the end
  json s = kr::api::echoed_input(json(big), 100);
  ASSERT_TRUE(s.is_string());
  EXPECT_LT(s.get<std::string>().size(), 160u);
  EXPECT_EQ(s.get<std::string>().substr(0, 100), std::string(100, 'a'));
  // A cut never splits a UTF-8 sequence.
  json e = kr::api::echoed_input(json(std::string(99, 'a') + "\xc3\xa9" + std::string(50, 'b')), 100);
  EXPECT_EQ(e.get<std::string>().substr(0, 102), std::string(99, 'a') + "...");
  json arr = json::array();
  for (int i = 0; i < 10000; ++i) arr.push_back(i);
  json d = kr::api::echoed_input(arr, 100);
  ASSERT_TRUE(d.is_string());
  EXPECT_NE(d.get<std::string>().find("array of 10000 items"), std::string::npos);
}

TEST(ValidationBounds, AHugeBadListGivesABoundedAnswer) {
  // 100,000 non-string arguments: one error each, upstream. Bounded here.
  std::string args = "[";
  for (int i = 0; i < 100000; ++i) args += i ? ",1" : "1";
  args += "]";
  std::string body = R"({"task_id":1,"command":"x","container_name":"e","stdout_path":"/s/a","stderr_path":"/s/b",)"
                     R"("arguments":)" + args + "}";
  auto r = kr::tasks::parse_task_request(body);
  ASSERT_TRUE(std::holds_alternative<json>(r));
  const json& detail = std::get<json>(r)["detail"];
  EXPECT_EQ(detail.size(), lim::kMaxValidationItems);
  EXPECT_EQ(detail[0]["loc"], json::array({"body", "arguments", 0}));
  EXPECT_LT(std::get<json>(r).dump().size(), 64u * 1024);
}

TEST(ValidationBounds, MissingFieldEchoOfAHugeBodyIsBounded) {
  std::string body = R"({"command":")" + std::string(1 << 20, 'x') + R"("})";
  auto r = kr::tasks::parse_task_request(body);
  ASSERT_TRUE(std::holds_alternative<json>(r));
  const json& detail = std::get<json>(r)["detail"];
  ASSERT_GE(detail.size(), 1u);
  EXPECT_EQ(detail[0]["type"], "missing");
  EXPECT_LT(std::get<json>(r).dump().size(), 16u * 1024);
}

TEST(RouterBodyLimit, PerRouteWithADefault) {
  kr::api::Router r;
  auto h = [](kr::api::HttpRequest&) -> boost::asio::awaitable<kr::api::HttpResponse> {
    co_return kr::api::HttpResponse{};
  };
  r.add("POST", "/api/kill", h, lim::kControlBody);
  r.add("POST", "/api/fs/{task_id}/write", h, lim::kFilesystemBody);
  r.add("GET", "/healthz", h);
  EXPECT_EQ(r.body_limit("POST", "/api/kill"), lim::kControlBody);
  EXPECT_EQ(r.body_limit("POST", "/api/fs/7/write"), lim::kFilesystemBody);
  EXPECT_EQ(r.body_limit("GET", "/healthz"), lim::kDefaultBody);
  EXPECT_EQ(r.body_limit("POST", "/nowhere"), lim::kDefaultBody);
  EXPECT_EQ(r.body_limit("GET", "/api/kill"), lim::kDefaultBody);  // 405
  EXPECT_GE(lim::kCreateBody, lim::kMiB);
  // A route's own 413 text, else the generic one.
  r.add("POST", "/api/big", h, 10, "files of at most 3 bytes");
  EXPECT_EQ(r.body_rule("POST", "/api/big").too_large_detail, "files of at most 3 bytes");
  EXPECT_EQ(r.body_rule("POST", "/api/big").limit, 10u);
  EXPECT_EQ(r.body_rule("POST", "/api/kill").too_large_detail,
            "Request body too large: this route accepts at most 65536 bytes");
  EXPECT_EQ(r.body_rule("POST", "/nowhere").limit, lim::kDefaultBody);
}

// Issue 16 item 6: the write accepts the documented 50 MiB file however it
// is encoded, and the body cap is derived from that file size.
TEST(FilesystemWriteLimit, BodyCapAdmitsEveryPermittedFile) {
  EXPECT_EQ(lim::kFsWriteFileBytes, 52'428'800u);
  EXPECT_EQ(lim::kFsWriteBase64Bytes, 69'905'068u);
  // Base64 of the largest file, inside the JSON a client sends.
  const std::string envelope = R"({"path":"/tmp/x","content":"","encoding":"base64","create_parents":true})";
  EXPECT_LE(lim::kFsWriteBase64Bytes + envelope.size(), lim::kFilesystemBody);
  // UTF-8 text: the limit counts the decoded bytes; JSON escapes a control
  // character as \u00XX (6 bytes), the worst case per file byte (a 2-byte
  // character as \uXXXX: 3 per byte; a 4-byte one as a surrogate pair: 3).
  EXPECT_EQ(json(std::string(1000, '\x01')).dump().size(), 6 * 1000u + 2);
  EXPECT_EQ(json(std::string(500, '\x7f')).dump().size(), 500u + 2);
  EXPECT_LE(lim::kMaxJsonEscapeRatio * lim::kFsWriteFileBytes + 2 + envelope.size() + 4096 * 6,
            lim::kFilesystemBody);
  // The old cap (50 MB decimal, 67,715,240 bytes) refused the 50 MiB file.
  EXPECT_GT(lim::kFsWriteBase64Bytes, 67'715'240u);
}

TEST(ConnectionLimiter, PerAddressCap) {
  ConnectionLimiter l(ConnectionLimits{10, 2, 3});
  std::vector<ConnectionLimiter::Slot> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(l.try_acquire("10.0.0.2", false));
    ASSERT_TRUE(held.back());
  }
  EXPECT_FALSE(l.try_acquire("10.0.0.2", false));
  EXPECT_TRUE(l.try_acquire("10.0.0.3", false));  // released at once (temporary)
  EXPECT_EQ(l.count("10.0.0.3"), 0u);
  held.pop_back();
  EXPECT_TRUE(l.try_acquire("10.0.0.2", false));
}

TEST(ConnectionLimiter, ReserveKeepsPrivilegedSourcesIn) {
  ConnectionLimiter l(ConnectionLimits{10, 3, 2});
  std::vector<ConnectionLimiter::Slot> held;
  // Four "containers" with two connections each fill the 7 ordinary slots.
  for (int c = 0; c < 4; ++c)
    for (int i = 0; i < 2; ++i)
      if (auto s = l.try_acquire("172.17.0." + std::to_string(c + 2), false)) held.push_back(std::move(s));
  EXPECT_EQ(held.size(), 7u);
  EXPECT_FALSE(l.try_acquire("172.17.0.9", false));
  // The host still gets in, up to the total.
  for (int i = 0; i < 3; ++i) {
    held.push_back(l.try_acquire("10.0.0.1", true));
    EXPECT_TRUE(held.back());
  }
  EXPECT_FALSE(l.try_acquire("10.0.0.1", true));
  EXPECT_EQ(l.total(), 10u);
  held.clear();
  EXPECT_EQ(l.total(), 0u);
  EXPECT_EQ(l.tracked_addresses(), 0u);  // the map shrinks back: no growth from addresses
}

TEST(ConnectionLimiter, SlotMoveKeepsOneCount) {
  ConnectionLimiter l(ConnectionLimits{4, 0, 4});
  auto a = l.try_acquire("a", false);
  ConnectionLimiter::Slot b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(l.count("a"), 1u);
  ConnectionLimiter::Slot c;
  c = std::move(b);
  EXPECT_EQ(l.count("a"), 1u);
  c = ConnectionLimiter::Slot();
  EXPECT_EQ(l.total(), 0u);
}

TEST(ConnectionLimiter, AddressForms) {
  EXPECT_TRUE(kr::api::is_loopback_address("127.0.0.1"));
  EXPECT_TRUE(kr::api::is_loopback_address("127.3.2.1"));
  EXPECT_TRUE(kr::api::is_loopback_address("::1"));
  EXPECT_TRUE(kr::api::is_loopback_address("::ffff:127.0.0.1"));
  EXPECT_FALSE(kr::api::is_loopback_address("10.127.0.1"));
  EXPECT_FALSE(kr::api::is_loopback_address("::ffff:10.0.0.1"));
  EXPECT_EQ(kr::api::normalize_address("::ffff:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(kr::api::normalize_address("fe80::1"), "fe80::1");
}

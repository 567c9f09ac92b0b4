// Pure tests of src/docker/wire.{hpp,cpp}: JSON stream splitting (Docker's
// progress/event streams), query encoding, version negotiation, error bodies.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker/wire.hpp"

using namespace kr::docker::wire;

namespace {

std::vector<std::string> split_in_pieces(const std::string& text, std::size_t piece) {
  JsonStreamSplitter s;
  std::vector<std::string> out;
  auto sink = [&](std::string_view v) { out.emplace_back(v); };
  for (std::size_t i = 0; i < text.size(); i += piece) s.feed(std::string_view(text).substr(i, piece), sink);
  EXPECT_TRUE(s.finish(sink));
  return out;
}

}  // namespace

TEST(DockerWire, SplitsNewlineDelimitedObjectsAtAnyBoundary) {
  const std::string text =
      "{\"status\":\"Pulling\",\"id\":\"a\"}\n"
      "{\"status\":\"x}{\\\"y\\\\\",\"progressDetail\":{\"current\":1,\"total\":[2,{}]}}\r\n"
      "\n"
      "{\"stream\":\"Loaded image: kr-test/busybox:latest\\n\"}\n";
  for (std::size_t piece : {1u, 2u, 3u, 7u, 64u, 4096u}) {
    auto values = split_in_pieces(text, piece);
    ASSERT_EQ(values.size(), 3u) << "piece " << piece;
    EXPECT_EQ(nlohmann::json::parse(values[0])["id"], "a");
    EXPECT_EQ(nlohmann::json::parse(values[1])["status"], "x}{\"y\\");
    EXPECT_EQ(nlohmann::json::parse(values[1])["progressDetail"]["total"][0], 2);
    EXPECT_EQ(nlohmann::json::parse(values[2])["stream"], "Loaded image: kr-test/busybox:latest\n");
  }
}

TEST(DockerWire, SplitsConcatenatedValuesWithoutNewlines) {
  auto values = split_in_pieces("{\"a\":1}{\"b\":2}[3]", 5);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(values[0], "{\"a\":1}");
  EXPECT_EQ(values[1], "{\"b\":2}");
  EXPECT_EQ(values[2], "[3]");
}

TEST(DockerWire, NonJsonTextIsDeliveredPerLine) {
  auto values = split_in_pieces("garbage here\r\n{\"a\":1}\ntrailing", 4);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(values[0], "garbage here");
  EXPECT_EQ(values[1], "{\"a\":1}");
  EXPECT_EQ(values[2], "trailing");
}

TEST(DockerWire, TruncatedValueIsReportedAtFinish) {
  JsonStreamSplitter s;
  int n = 0;
  auto sink = [&](std::string_view) { ++n; };
  s.feed("{\"a\":1}{\"b\":", sink);
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(s.finish(sink));
}

TEST(DockerWire, OversizedValueThrows) {
  JsonStreamSplitter s(16);
  auto sink = [](std::string_view) {};
  EXPECT_NO_THROW(s.feed("{\"a\":\"123456\"}", sink));
  EXPECT_THROW(s.feed("{\"a\":\"12345678901234567890\"}", sink), std::length_error);
}

TEST(DockerWire, PercentEncoding) {
  EXPECT_EQ(percent_encode("abcXYZ019-._~"), "abcXYZ019-._~");
  EXPECT_EQ(percent_encode("a b/c?d=e&f#g%"), "a%20b%2Fc%3Fd%3De%26f%23g%25");
  EXPECT_EQ(percent_encode("{\"label\":[\"k=v\"]}"), "%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D");
  EXPECT_EQ(percent_encode("\xc3\xa9"), "%C3%A9");
}

TEST(DockerWire, QueryBuilder) {
  EXPECT_EQ(Query().str(), "");
  EXPECT_EQ(Query().add("name", "krtest-1").str(), "?name=krtest-1");
  EXPECT_EQ(Query().add("all", true).add("t", 10).add("sig", "SIGTERM").str(),
            "?all=1&t=10&sig=SIGTERM");
  EXPECT_EQ(Query().add("repo", "a/b:c").str(), "?repo=a%2Fb%3Ac");
}

TEST(DockerWire, ApiVersionNegotiation) {
  EXPECT_EQ(parse_api_version("1.41"), (std::pair{1, 41}));
  EXPECT_FALSE(parse_api_version("1"));
  EXPECT_FALSE(parse_api_version("1."));
  EXPECT_FALSE(parse_api_version("x.41"));
  EXPECT_FALSE(parse_api_version("1.41a"));
  EXPECT_EQ(negotiate_api_version("1.41", "1.44", "1.41"), "1.41");
  EXPECT_EQ(negotiate_api_version("1.51", "1.44", "1.41"), "1.44");
  EXPECT_EQ(negotiate_api_version("1.9", "1.44", "1.41"), "1.9");  // numeric, not lexical
  EXPECT_EQ(negotiate_api_version("", "1.44", "1.41"), "1.41");
  EXPECT_EQ(negotiate_api_version("2.0", "1.44", "1.41"), "1.44");
}

TEST(DockerWire, ErrorMessages) {
  EXPECT_EQ(error_message_from_body(R"({"message":"No such container: x"})", 404),
            "No such container: x");
  EXPECT_EQ(error_message_from_body("  plain text\n", 500), "plain text");
  EXPECT_EQ(error_message_from_body("", 502), "HTTP status 502");
  EXPECT_EQ(error_message_from_body(R"({"other":1})", 400), R"({"other":1})");
  EXPECT_EQ(error_message_from_body(std::string(5000, 'x'), 500).size(), 1000u);
}

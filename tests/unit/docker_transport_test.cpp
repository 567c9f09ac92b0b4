// DockerClient against a scripted fake dockerd (tests/fixtures/docker/
// fake_dockerd.hpp): chunk boundaries anywhere, version negotiation, the
// keep-alive pool with dead connections, error mapping, deadlines, daemon
// absent then back, streamed uploads. Needs no real daemon.

#include <gtest/gtest.h>

#include <cstdio>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../fixtures/docker/docker_test_support.hpp"
#include "../fixtures/docker/fake_dockerd.hpp"
#include "docker/docker_client.hpp"

using namespace kr::docker;
using namespace kr::docker::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

class DockerFakeDaemonTest : public ::testing::Test {
 protected:
  DockerFakeDaemonTest()
      : path_("/tmp/krtest-fake-" + std::to_string(::getpid()) + ".sock"),
        fake_(ioc_, path_, [this](const FakeRequest& r) { return dispatch(r); }) {}

  void SetUp() override {
    fake_.start();
    client_ = std::make_unique<DockerClient>(ioc_.get_executor(), path_);
  }
  void TearDown() override {
    client_.reset();
    fake_.stop();
  }

  // /_ping is answered here; everything else by `handler`.
  FakeReply dispatch(const FakeRequest& r) {
    if (r.target == "/_ping") {
      FakeReply reply;
      std::string hdr = ping_version.empty() ? "" : "API-Version: " + ping_version + "\r\n";
      reply.then("HTTP/1.1 200 OK\r\n" + hdr + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK");
      return reply;
    }
    return handler(r);
  }

  static FakeReply ok_json(const std::string& body) {
    return FakeReply().then(http_response(200, body));
  }

  boost::asio::io_context ioc_;
  std::string path_;
  FakeDockerd fake_;
  std::unique_ptr<DockerClient> client_;
  std::string ping_version = "1.41";
  std::function<FakeReply(const FakeRequest&)> handler = [](const FakeRequest&) {
    return ok_json("{}");
  };
};

}  // namespace

TEST_F(DockerFakeDaemonTest, ChunkedEventsSplitAtEveryByte) {
  std::string events;
  for (int i = 0; i < 5; ++i)
    events += R"({"Type":"container","Action":"die","Actor":{"Attributes":{"exitCode":")" +
              std::to_string(i) + R"("}},"time":)" + std::to_string(1700000000 + i) + "}\n";
  // Chunk sizes 1..17 bytes, and the encoded stream written one byte at a
  // time: boundaries fall inside chunk-size lines, CRLFs and JSON values.
  std::string encoded;
  for (std::size_t pos = 0, n = 1; pos < events.size(); pos += n, n = n % 17 + 1)
    encoded += chunk(events.substr(pos, n));
  encoded += "0\r\n\r\n";
  handler = [&](const FakeRequest& r) {
    EXPECT_EQ(r.method, "GET");
    EXPECT_EQ(r.target.rfind("/v1.41/events?since=1700000000&filters=", 0), 0u) << r.target;
    FakeReply reply;
    reply.then(chunked_head());
    for (char c : encoded) reply.then(std::string(1, c));
    return reply;
  };
  std::vector<json> seen;
  run(ioc_, client_->stream_events(json{{"type", {"container"}}},
                                   [&](const json& ev) { seen.push_back(ev); }, 1700000000LL));
  ASSERT_EQ(seen.size(), 5u);  // the stream ended: returned normally
  for (int i = 0; i < 5; ++i) EXPECT_EQ(seen[i]["Actor"]["Attributes"]["exitCode"], std::to_string(i));
}

TEST_F(DockerFakeDaemonTest, VersionNegotiation) {
  std::vector<std::string> targets;
  handler = [&](const FakeRequest& r) {
    targets.push_back(r.target);
    return ok_json("[]");
  };
  ping_version = "1.47";  // newer daemon: capped at what this client knows
  run(ioc_, client_->list_images());
  EXPECT_EQ(targets.back(), "/v1.44/images/json");

  for (auto [server, used] : {std::pair{"1.40", "1.40"}, std::pair{"", "1.41"}}) {
    ping_version = server;
    DockerClient c(ioc_.get_executor(), path_);
    run(ioc_, c.list_images());
    EXPECT_EQ(targets.back(), std::string("/v") + used + "/images/json") << server;
  }

  ClientOptions pinned;
  pinned.socket_path = path_;
  pinned.api_version = "1.41";
  DockerClient c(ioc_.get_executor(), pinned);
  const auto before = fake_.requests.size();
  run(ioc_, c.list_images());
  EXPECT_EQ(fake_.requests.size(), before + 1);  // no /_ping when pinned
  EXPECT_EQ(targets.back(), "/v1.41/images/json");
}

TEST_F(DockerFakeDaemonTest, KeepAliveReuseAndDeadPooledConnections) {
  handler = [](const FakeRequest&) { return ok_json(R"({"Id":"x"})"); };
  for (int i = 0; i < 3; ++i) run(ioc_, client_->inspect_container("a"));
  EXPECT_EQ(fake_.connections, 1);  // /_ping and three GETs on one connection

  // The daemon restarts: pooled connections are dead. Detected before use.
  fake_.drop_connections();
  EXPECT_EQ(run(ioc_, client_->inspect_container("a"))["Id"], "x");
  EXPECT_EQ(fake_.connections, 2);

  // The daemon closes a reused connection right after reading a request,
  // without answering. A GET is resent once on a fresh connection ...
  handler = [](const FakeRequest& r) {
    return r.index_on_connection > 1 ? FakeReply::close() : ok_json(R"({"Id":"y"})");
  };
  EXPECT_EQ(run(ioc_, client_->inspect_container("a"))["Id"], "y");
  EXPECT_EQ(fake_.connections, 3);
  // ... a POST is not (it may have been executed): Kind::Transport.
  const auto posts_before = fake_.requests.size();
  try {
    run(ioc_, client_->start_container("a"));
    FAIL() << "expected a transport error";
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::Transport) << e.message;
    EXPECT_TRUE(e.daemon_unavailable());
  }
  EXPECT_EQ(fake_.requests.size(), posts_before + 1);
}

TEST_F(DockerFakeDaemonTest, ErrorMapping) {
  handler = [](const FakeRequest& r) {
    if (r.target.find("/containers/c409/") != std::string::npos)
      return FakeReply().then(http_response(409, R"({"message":"is already paused"})"));
    if (r.target.find("/images/") != std::string::npos)
      return FakeReply().then(http_response(404, R"({"message":"No such image: x"})"));
    return FakeReply().then(http_response(500, "boom: plain text\n", "", "text/plain"));
  };
  try {
    run(ioc_, client_->pause_container("c409"));
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.conflict());
    EXPECT_EQ(e.message, "is already paused");
    EXPECT_STREQ(e.what(), "is already paused");
  }
  EXPECT_FALSE(run(ioc_, client_->inspect_image("x")));
  try {
    run(ioc_, client_->pause_container("other"));
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_EQ(e.status, 500);
    EXPECT_EQ(e.message, "boom: plain text");
  }
  EXPECT_EQ(fake_.connections, 1);  // error responses keep the connection
}

TEST_F(DockerFakeDaemonTest, BodyWithoutLengthUntilClose) {
  handler = [](const FakeRequest&) {
    return FakeReply()
        .then("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"a\":")
        .then("1}", 5ms)
        .close_after_reply();
  };
  EXPECT_EQ(run(ioc_, client_->call(Method::Get, "/x"))["a"], 1);
  EXPECT_EQ(client_->stats().idle_connections, 0u);  // not reusable
}

TEST_F(DockerFakeDaemonTest, DeadlineOnHungDaemonThenRecovery) {
  bool hang = true;
  handler = [&](const FakeRequest&) { return hang ? FakeReply::never() : ok_json("[]"); };
  auto t0 = std::chrono::steady_clock::now();
  try {
    run(ioc_, client_->list_containers(false, json::object(), 200ms));
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.timed_out());
    // The client passes on what is left of its 200 ms when the request
    // starts (a few ms less under ASan), and the message names that.
    int ms = -1;
    EXPECT_EQ(std::sscanf(e.message.c_str(), "Docker API call timed out after %dms", &ms), 1) << e.message;
    EXPECT_GT(ms, 0) << e.message;
    EXPECT_LE(ms, 200) << e.message;
  }
  EXPECT_LT(seconds_since(t0), 1.0);
  hang = false;
  EXPECT_TRUE(run(ioc_, client_->list_containers()).is_array());

  // cancel_all aborts a hung call as well.
  hang = true;
  boost::asio::steady_timer t(ioc_, 100ms);
  t.async_wait([&](auto) { client_->cancel_all(); });
  try {
    run(ioc_, client_->list_containers());
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.cancelled()) << e.message;
  }
  EXPECT_EQ(client_->stats().active_calls, 0u);
}

TEST_F(DockerFakeDaemonTest, DaemonAbsentThenBack) {
  fake_.stop();
  try {
    run(ioc_, client_->ping());
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::Unreachable);
    EXPECT_NE(e.message.find("Docker daemon not reachable at " + path_), std::string::npos);
  }
  fake_.start();
  fake_.stop(/*keep_socket_file=*/true);  // crashed daemon: ECONNREFUSED
  try {
    run(ioc_, client_->ping());
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::Unreachable);
    EXPECT_NE(e.message.find("Connection refused"), std::string::npos) << e.message;
  }
  fake_.start();
  ping_version = "1.40";
  EXPECT_EQ(run(ioc_, client_->ping())["negotiated_version"], "1.40");
  // Down again mid-life (a restart): calls fail cleanly, then recover and
  // renegotiate, because the new daemon may be another version.
  fake_.stop();
  EXPECT_THROW(run(ioc_, client_->list_images()), DockerError);
  ping_version = "1.43";
  fake_.start();
  std::string target;
  handler = [&](const FakeRequest& r) {
    target = r.target;
    return ok_json("[]");
  };
  run(ioc_, client_->list_images());
  EXPECT_EQ(target, "/v1.43/images/json");
}

TEST_F(DockerFakeDaemonTest, StreamsReportErrorsAndResults) {
  handler = [](const FakeRequest& r) {
    if (r.target.find("/images/create") != std::string::npos)
      return FakeReply()
          .then(chunked_head())
          .then(chunk("{\"status\":\"Pulling from x\"}\r\n{\"status\":\"Down"))
          .then(chunk("loading\"}\r\n{\"errorDetail\":{\"message\":\"manifest unknown\"},"
                      "\"error\":\"manifest unknown\"}\r\n"),
                5ms)
          .then("0\r\n\r\n");
    return FakeReply()
        .then(chunked_head())
        .then(chunk("{\"Error\":{\"Message\":\"driver failed\"},\"StatusCode\":-1}\n"))
        .then("0\r\n\r\n");
  };
  try {
    run(ioc_, client_->pull_image("ghcr.io/x/y@sha256:" + std::string(64, 'a'), 5s));
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::Stream);
    EXPECT_NE(e.message.find("manifest unknown"), std::string::npos) << e.message;
  }
  EXPECT_EQ(fake_.requests.back().target,
            "/v1.41/images/create?fromImage=ghcr.io%2Fx%2Fy&tag=sha256%3A" + std::string(64, 'a'));
  auto w = run(ioc_, client_->wait_container("kohakuriver-task-1", 5s));
  EXPECT_EQ(w.status_code, -1);
  EXPECT_EQ(w.error, "driver failed");
  EXPECT_EQ(fake_.requests.back().target, "/v1.41/containers/kohakuriver-task-1/wait?condition=not-running");
}

TEST_F(DockerFakeDaemonTest, LoadStreamsTheFileUnchanged) {
  const auto file = std::filesystem::temp_directory_path() / ("krtest-upload-" + std::to_string(::getpid()));
  std::string content;
  for (int i = 0; content.size() < (1u << 20) + 12345; ++i) content += std::to_string(i * 7919) + ",";
  std::ofstream(file, std::ios::binary) << content;
  handler = [](const FakeRequest&) {
    return FakeReply()
        .then(chunked_head())
        .then(chunk("{\"stream\":\"Loaded image: a/b:c\\n\"}\n{\"stream\":\"Loaded image ID: sha256:" +
                    std::string(64, 'b') + "\\n\"}\n"))
        .then("0\r\n\r\n");
  };
  auto loaded = run(ioc_, client_->load_image(file, 10s));
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0], "a/b:c");
  EXPECT_EQ(loaded[1], "sha256:" + std::string(64, 'b'));
  const auto& req = fake_.requests.back();
  EXPECT_EQ(req.target, "/v1.41/images/load?quiet=1");
  EXPECT_EQ(req.headers.at("content-type"), "application/x-tar");
  EXPECT_EQ(req.body.size(), content.size());
  EXPECT_TRUE(req.body == content);

  // A daemon that rejects the upload at once: its answer is what we report.
  handler = [](const FakeRequest&) {
    FakeReply r = FakeReply().then(http_response(500, R"({"message":"no space left"})"));
    r.skip_body = true;
    r.close_after = true;
    return r;
  };
  try {
    run(ioc_, client_->load_image(file, 10s));
    FAIL();
  } catch (const DockerError& e) {
    EXPECT_EQ(e.status, 500) << e.message;
    EXPECT_EQ(e.message, "no space left");
  }
  std::filesystem::remove(file);
}

// The runner's tunnel relay (TunnelHub) driven through fake WebSockets on a
// real io_context: handshake texts, T1 id rewriting, T2/T3/T4, close
// propagation, text frames ignored (T9).
#include <gtest/gtest.h>

#include <deque>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnel/frame.hpp"
#include "tunnel/tunnel_hub.hpp"

namespace asio = boost::asio;
using namespace kr::tunnel;

namespace {

class FakeWs : public kr::api::WebSocket {
 public:
  explicit FakeWs(asio::io_context& io) : wake_(io) { wake_.expires_at(asio::steady_timer::time_point::max()); }
  const kr::api::HttpRequest& request() const override { return req_; }
  asio::awaitable<std::optional<kr::api::WsMessage>> read() override {
    while (inbox_.empty() && open_) {
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (inbox_.empty()) co_return std::nullopt;
    auto m = std::move(inbox_.front());
    inbox_.pop_front();
    co_return m;
  }
  asio::awaitable<bool> send(std::string data, bool binary) override {
    if (!open_) co_return false;
    sent.push_back({std::move(data), binary});
    co_return true;
  }
  asio::awaitable<void> close(std::uint16_t code, std::string) override {
    close_code = code;
    abort();
    co_return;
  }
  void abort() override {
    open_ = false;
    wake_.cancel();
  }
  bool is_open() const override { return open_; }
  std::size_t queued_bytes() const override { return 0; }

  void push(std::string data, bool binary = true) {
    inbox_.push_back(kr::api::WsMessage{std::move(data), binary});
    wake_.cancel();
  }
  // Binary messages sent to this socket, decoded.
  std::vector<std::pair<Header, std::string>> binaries() const {
    std::vector<std::pair<Header, std::string>> out;
    for (auto& m : sent)
      if (m.binary) out.push_back({*parse_header(m.data), std::string(payload_of(m.data))});
    return out;
  }
  std::vector<kr::api::WsMessage> sent;
  int close_code = 0;
  kr::api::HttpRequest req_;

 private:
  asio::steady_timer wake_;
  std::deque<kr::api::WsMessage> inbox_;
  bool open_ = true;
};

struct HubTest : ::testing::Test {
  asio::io_context io;
  HubOptions opts;
  std::unique_ptr<TunnelHub> hub;
  void SetUp() override {
    opts.tunnel_wait = std::chrono::milliseconds(300);
    hub = std::make_unique<TunnelHub>(io.get_executor(), opts);
  }
  void run_for(int ms) {
    io.restart();
    io.run_for(std::chrono::milliseconds(ms));
  }
  void tunnel(FakeWs& ws, const std::string& id) {
    asio::co_spawn(io, hub->serve_tunnel(ws, id), asio::detached);
  }
  void forward(FakeWs& ws, const std::string& id, Proto p = Proto::Tcp) {
    asio::co_spawn(io, hub->serve_forward(ws, id, 80, p), asio::detached);
  }
};

std::uint8_t T(MsgType t) { return static_cast<std::uint8_t>(t); }

}  // namespace

TEST_F(HubTest, NoTunnelAnswersErrorTextAndCloses1011AfterWaiting) {
  FakeWs user(io);
  forward(user, "kohakuriver-task-1");
  run_for(100);
  EXPECT_TRUE(user.sent.empty());  // still waiting (T4)
  run_for(400);
  ASSERT_EQ(user.sent.size(), 1u);
  EXPECT_FALSE(user.sent[0].binary);
  EXPECT_EQ(user.sent[0].data, "Error: Container tunnel not connected (container=kohakuriver-task-1)");
  EXPECT_EQ(user.close_code, 1011);
}

TEST_F(HubTest, ForwardWaitsForALateTunnel) {
  FakeWs user(io), client(io);
  forward(user, "c");
  run_for(100);
  tunnel(client, "c");
  run_for(50);
  ASSERT_EQ(user.sent.size(), 1u);
  EXPECT_EQ(user.sent[0].data, "CONNECTED");
  EXPECT_FALSE(user.sent[0].binary);
  EXPECT_EQ(hub->tunnel_count(), 1u);
}

TEST_F(HubTest, TwoUsersWithTheSameIdAreKeptApart) {
  FakeWs a(io), b(io), client(io);
  tunnel(client, "c");
  forward(a, "c");
  forward(b, "c");
  run_for(20);
  a.push(encode(MsgType::Connect, Proto::Tcp, 1, 8080));
  b.push(encode(MsgType::Connect, Proto::Tcp, 1, 8080));
  a.push(encode(MsgType::Data, Proto::Tcp, 1, 0, "from-a"));
  b.push(encode(MsgType::Data, Proto::Tcp, 1, 0, "from-b"));
  run_for(20);
  auto seen = client.binaries();
  ASSERT_EQ(seen.size(), 4u);
  // Runner-allocated ids (T1), CONNECT keeps its port.
  std::uint32_t ida = 0, idb = 0;
  for (auto& [h, p] : seen) {
    if (h.type == T(MsgType::Connect)) EXPECT_EQ(h.port, 8080);
    if (p == "from-a") ida = h.client_id;
    if (p == "from-b") idb = h.client_id;
  }
  EXPECT_NE(ida, 0u);
  EXPECT_NE(idb, 0u);
  EXPECT_NE(ida, idb);
  client.push(encode(MsgType::Connected, Proto::Tcp, idb));
  client.push(encode(MsgType::Data, Proto::Tcp, idb, 0, "to-b"));
  client.push(encode(MsgType::Data, Proto::Tcp, ida, 0, "to-a"));
  client.push(encode(MsgType::Close, Proto::Tcp, ida));
  run_for(20);
  auto ga = a.binaries(), gb = b.binaries();
  ASSERT_EQ(ga.size(), 2u);
  EXPECT_EQ(ga[0].first.client_id, 1u);
  EXPECT_EQ(ga[0].second, "to-a");
  EXPECT_EQ(ga[1].first.type, T(MsgType::Close));
  ASSERT_EQ(gb.size(), 2u);
  EXPECT_EQ(gb[0].first.type, T(MsgType::Connected));
  EXPECT_EQ(gb[1].second, "to-b");
  EXPECT_EQ(gb[1].first.client_id, 1u);
  // After the container's CLOSE, DATA from user a for id 1 is not relayed.
  a.push(encode(MsgType::Data, Proto::Tcp, 1, 0, "late"));
  run_for(20);
  EXPECT_EQ(client.binaries().size(), 4u);
}

TEST_F(HubTest, SessionEndClosesItsIdsInTheContainer) {
  FakeWs user(io), client(io);
  tunnel(client, "c");
  forward(user, "c", Proto::Udp);
  run_for(20);
  user.push(encode(MsgType::Connect, Proto::Udp, 7, 53));
  user.push(encode(MsgType::Connect, Proto::Udp, 8, 53));
  run_for(20);
  user.abort();
  run_for(20);
  auto seen = client.binaries();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[2].first.type, T(MsgType::Close));
  EXPECT_EQ(seen[3].first.type, T(MsgType::Close));
  EXPECT_EQ(seen[2].first.proto, 1);  // the session's proto
  EXPECT_NE(seen[2].first.client_id, seen[3].first.client_id);
  EXPECT_EQ(hub->forward_count(), 0u);
}

TEST_F(HubTest, ReplacingTunnelClosesTheOldOneAndItsConnections) {
  FakeWs user(io), old_client(io), new_client(io);
  tunnel(old_client, "c");
  forward(user, "c");
  run_for(20);
  user.push(encode(MsgType::Connect, Proto::Tcp, 1, 22));
  run_for(20);
  tunnel(new_client, "c");
  run_for(20);
  EXPECT_FALSE(old_client.is_open());
  EXPECT_EQ(hub->tunnel_count(), 1u);
  auto got = user.binaries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first.type, T(MsgType::Close));
  EXPECT_EQ(got[0].first.client_id, 1u);
  // The same session's next connection goes to the new tunnel.
  user.push(encode(MsgType::Connect, Proto::Tcp, 2, 22));
  run_for(20);
  ASSERT_EQ(new_client.binaries().size(), 1u);
  EXPECT_EQ(new_client.binaries()[0].first.type, T(MsgType::Connect));
}

TEST_F(HubTest, TextAndUnknownMessagesAreIgnored) {
  FakeWs user(io), client(io);
  tunnel(client, "c");
  forward(user, "c");
  run_for(20);
  user.push("hello", false);
  std::string unknown = encode(MsgType::Data, Proto::Tcp, 1);
  unknown[0] = 0x42;
  user.push(unknown);
  user.push("short");
  user.push(encode(MsgType::Data, Proto::Tcp, 99, 0, "never connected"));
  client.push("text from client", false);
  client.push(encode(MsgType::Connect, Proto::Tcp, 1, 1));
  run_for(20);
  EXPECT_TRUE(client.binaries().empty());
  EXPECT_EQ(user.sent.size(), 1u);  // only "CONNECTED"
  EXPECT_TRUE(client.is_open());
  EXPECT_TRUE(user.is_open());
}

TEST_F(HubTest, ConnectWithoutLiveTunnelReportsTunnelSendFailed) {
  FakeWs user(io), client(io);
  tunnel(client, "c");
  forward(user, "c");
  run_for(20);
  client.abort();
  run_for(20);
  user.push(encode(MsgType::Connect, Proto::Tcp, 4, 80));
  run_for(500);  // waits tunnel_wait for a new client first
  auto got = user.binaries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first.type, T(MsgType::Error));
  EXPECT_EQ(got[0].first.client_id, 4u);
  EXPECT_EQ(got[0].second, "Tunnel send failed");
}

#include "tunnel/gateway_listener.hpp"

TEST(TunnelGatewayListener, OnlyWhenTheBindAddressIsSpecific) {
  EXPECT_FALSE(needs_gateway_listener("0.0.0.0", "172.30.0.1"));
  EXPECT_FALSE(needs_gateway_listener("::", "172.30.0.1"));
  EXPECT_FALSE(needs_gateway_listener("172.30.0.1", "172.30.0.1"));
  EXPECT_FALSE(needs_gateway_listener("10.0.0.5", ""));
  EXPECT_TRUE(needs_gateway_listener("10.0.0.5", "172.30.0.1"));
  EXPECT_TRUE(needs_gateway_listener("127.0.0.1", "172.30.0.1"));
}

TEST(TunnelHubVm, VmNamesGoToTheVmHandlerWhenSet) {
  asio::io_context io;
  HubOptions o;
  std::string seen;
  o.vm_forward = [&seen](kr::api::WebSocket& ws, std::string id, std::uint16_t port,
                         Proto) -> asio::awaitable<void> {
    seen = id + ":" + std::to_string(port);
    co_await ws.send("CONNECTED", false);
  };
  TunnelHub hub(io.get_executor(), o);
  FakeWs user(io);
  asio::co_spawn(io, hub.serve_forward(user, "vm-42", 8080, Proto::Tcp), asio::detached);
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(seen, "vm-42:8080");
  ASSERT_EQ(user.sent.size(), 1u);
  EXPECT_EQ(user.sent[0].data, "CONNECTED");
}

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

// Issue 16 item 7: a container that floods the tunnel with frames the runner
// drops cannot flood the log; the suppressed lines are counted.
TEST_F(HubTest, DroppedFramesAreLoggedAtALimitedRate) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  spdlog::set_default_logger(logger);
  FakeWs user(io), client(io);
  tunnel(client, "c");
  forward(user, "c");
  run_for(20);
  for (int i = 0; i < 1000; ++i) client.push(encode(MsgType::Connect, Proto::Tcp, 1, 1));  // not from a container
  run_for(50);
  spdlog::set_default_logger(previous);
  const std::string log = captured.str();
  std::size_t lines = 0;
  for (std::size_t at = log.find("dropping"); at != std::string::npos; at = log.find("dropping", at + 1)) ++lines;
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, 5u) << log.substr(0, 2000);
  EXPECT_TRUE(client.is_open());
}

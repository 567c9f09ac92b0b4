// Runner-side id allocation (T1) and relay rules (T7, T9).
#include <gtest/gtest.h>

#include <set>

#include "tunnel/id_allocator.hpp"
#include "tunnel/relay_rules.hpp"

using namespace kr::tunnel;

TEST(TunnelIdAllocator, StartsAtOneAndNeverReusesAnIdInUse) {
  IdAllocator ids;
  EXPECT_EQ(*ids.allocate(), 1u);
  EXPECT_EQ(*ids.allocate(), 2u);
  EXPECT_EQ(*ids.allocate(), 3u);
  ids.release(2);
  // Monotonic: a released id is not handed out again right away.
  EXPECT_EQ(*ids.allocate(), 4u);
  EXPECT_TRUE(ids.in_use(1));
  EXPECT_FALSE(ids.in_use(2));
  EXPECT_EQ(ids.size(), 3u);
}

TEST(TunnelIdAllocator, WrapsSkippingZeroAndLiveIds) {
  IdAllocator ids(0xFFFFFFFEu);
  EXPECT_EQ(*ids.allocate(), 0xFFFFFFFEu);
  EXPECT_EQ(*ids.allocate(), 0xFFFFFFFFu);
  EXPECT_EQ(*ids.allocate(), 1u);  // 0 is never used
  IdAllocator again(0xFFFFFFFFu);
  EXPECT_EQ(*again.allocate(), 0xFFFFFFFFu);
  // After the wrap an id still in use is skipped.
  IdAllocator live(0xFFFFFFFFu);
  EXPECT_EQ(*live.allocate(), 0xFFFFFFFFu);
  EXPECT_EQ(*live.allocate(), 1u);
  EXPECT_EQ(*live.allocate(), 2u);
  live.release(0xFFFFFFFFu);
  EXPECT_EQ(*live.allocate(), 3u);
}

TEST(TunnelIdAllocator, TwoUsersWithTheSameClientIdGetDistinctIds) {
  // Both CLIs number their connections 1, 2, ...; the runner maps each
  // (session, id) to its own tunnel id.
  IdAllocator ids;
  std::set<std::uint32_t> seen;
  for (int user = 0; user < 2; ++user)
    for (int cli_id = 1; cli_id <= 50; ++cli_id) seen.insert(*ids.allocate());
  EXPECT_EQ(seen.size(), 100u);
}

TEST(TunnelRelayRules, FromContainer) {
  EXPECT_EQ(classify_from_container("short"), FromContainer::Ignore);
  EXPECT_EQ(classify_from_container(encode(MsgType::Connected, Proto::Tcp, 1)), FromContainer::RouteKeep);
  EXPECT_EQ(classify_from_container(encode(MsgType::Data, Proto::Tcp, 1, 0, "x")), FromContainer::RouteKeep);
  EXPECT_EQ(classify_from_container(encode(MsgType::Close, Proto::Tcp, 1)), FromContainer::RouteForget);
  EXPECT_EQ(classify_from_container(encode(MsgType::Error, Proto::Tcp, 1, 0, "e")), FromContainer::RouteForget);
  EXPECT_EQ(classify_from_container(encode(MsgType::Pong, Proto::Tcp, 1)), FromContainer::Ignore);
  EXPECT_EQ(classify_from_container(encode(MsgType::Connect, Proto::Tcp, 1, 80)), FromContainer::Drop);
  EXPECT_EQ(classify_from_container(encode(MsgType::Ping, Proto::Tcp, 1)), FromContainer::Drop);
  std::string unknown = encode(MsgType::Data, Proto::Tcp, 1);
  unknown[0] = 0x09;
  EXPECT_EQ(classify_from_container(unknown), FromContainer::Drop);
}

TEST(TunnelRelayRules, FromUser) {
  EXPECT_EQ(classify_from_user("1234567"), FromUser::Ignore);
  EXPECT_EQ(classify_from_user(encode(MsgType::Connect, Proto::Udp, 1, 53)), FromUser::Connect);
  EXPECT_EQ(classify_from_user(encode(MsgType::Data, Proto::Tcp, 1, 0, "x")), FromUser::Data);
  EXPECT_EQ(classify_from_user(encode(MsgType::Close, Proto::Tcp, 1)), FromUser::Close);
  EXPECT_EQ(classify_from_user(encode(MsgType::Ping, Proto::Tcp, 1)), FromUser::Drop);
  EXPECT_EQ(classify_from_user(encode(MsgType::Error, Proto::Tcp, 1)), FromUser::Drop);
}

TEST(TunnelRelayRules, DataAboveTheHostLimitIsCutLosslessly) {
  std::string payload;
  for (int i = 0; i < 2500; ++i) payload += static_cast<char>('a' + i % 26);
  auto parts = split_data(encode(MsgType::Data, Proto::Tcp, 7, 0, payload), 1008);
  ASSERT_EQ(parts.size(), 3u);  // 1000 + 1000 + 500 payload bytes
  std::string joined;
  for (auto& p : parts) {
    EXPECT_LE(p.size(), 1008u);
    auto h = parse_header(p);
    EXPECT_EQ(h->type, static_cast<std::uint8_t>(MsgType::Data));
    EXPECT_EQ(h->client_id, 7u);
    joined += payload_of(p);
  }
  EXPECT_EQ(joined, payload);
  // At the limit or not DATA: unchanged.
  std::string exact = encode(MsgType::Data, Proto::Tcp, 7, 0, std::string(1000, 'x'));
  EXPECT_EQ(split_data(exact, 1008), std::vector<std::string>{exact});
  std::string err = encode(MsgType::Error, Proto::Tcp, 7, 0, std::string(5000, 'x'));
  EXPECT_EQ(split_data(err, 1008), std::vector<std::string>{err});
  EXPECT_EQ(kMaxMessageToHost, 1u << 20);
}

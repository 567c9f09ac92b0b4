// The faster WebSocket unmasking that replaces Beast's (src/tunnel/beast_mask.cpp;
// src/net/asio_impl.cpp leaves Beast's out)
// must give the same bytes and the same key rotation as the byte-wise rule
// of RFC 6455 §5.3, over any split of a payload into buffers.
#include <gtest/gtest.h>

#include <boost/beast/websocket/detail/mask.hpp>
#include <string>

namespace {

namespace wsd = boost::beast::websocket::detail;

std::string reference(std::string data, std::uint32_t key) {
  unsigned char k[4] = {static_cast<unsigned char>(key), static_cast<unsigned char>(key >> 8),
                        static_cast<unsigned char>(key >> 16), static_cast<unsigned char>(key >> 24)};
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(data[i] ^ k[i % 4]);
  return data;
}

TEST(BeastMask, MatchesByteWiseRuleOverAnySplit) {
  const std::uint32_t key = 0xA1B2C3D4;
  for (std::size_t n : {0u, 1u, 3u, 4u, 7u, 8u, 9u, 15u, 16u, 17u, 1000u, 65536u, 65541u}) {
    std::string data(n, '\0');
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<char>(i * 37 + 11);
    const std::string want = reference(data, key);
    for (std::size_t first : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{5}, n / 2, n}) {
      if (first > n) continue;
      std::string got = data;
      wsd::prepared_key k;
      wsd::prepare_key(k, key);
      // Two buffers, unaligned start for the second: the key must carry over.
      wsd::mask_inplace(boost::asio::mutable_buffer(got.data(), first), k);
      wsd::mask_inplace(boost::asio::mutable_buffer(got.data() + first, n - first), k);
      EXPECT_EQ(got, want) << "n=" << n << " first=" << first;
    }
  }
}

TEST(BeastMask, KeyRotatesByLength) {
  wsd::prepared_key k;
  wsd::prepare_key(k, 0x04030201);
  EXPECT_EQ(k, (wsd::prepared_key{1, 2, 3, 4}));
  char b[6] = {};
  wsd::mask_inplace(boost::asio::mutable_buffer(b, 6), k);
  EXPECT_EQ(k, (wsd::prepared_key{3, 4, 1, 2}));
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[5], 2);
}

}  // namespace

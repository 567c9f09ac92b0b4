// The one translation unit that compiles Asio and Beast (see CMakeLists.txt:
// BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION).
#include <boost/asio/impl/src.hpp>

// Beast's WebSocket unmasking (websocket/detail/mask.ipp in Boost 1.81)
// XORs one byte at a time; it was the runner's largest user-space cost when
// relaying tunnel traffic (every client frame is masked). Its separately
// compiled definition is left out here and replaced below by one with the
// same contract that works 8 bytes at a time (tests/unit/beast_mask_test.cpp
// checks it against the byte-wise definition).
#define BOOST_BEAST_WEBSOCKET_DETAIL_MASK_IPP
#include <boost/beast/src.hpp>

#include <boost/beast/websocket/detail/mask.hpp>
#include <cstring>

namespace boost::beast::websocket::detail {

void prepare_key(prepared_key& prepared, std::uint32_t key) {
  prepared[0] = static_cast<unsigned char>(key & 0xff);
  prepared[1] = static_cast<unsigned char>((key >> 8) & 0xff);
  prepared[2] = static_cast<unsigned char>((key >> 16) & 0xff);
  prepared[3] = static_cast<unsigned char>((key >> 24) & 0xff);
}

// XORs byte i of `b` with key[i % 4], then rotates the key by the buffer's
// length so that the next buffer continues the same key stream.
void mask_inplace(net::mutable_buffer const& b, prepared_key& key) {
  auto* p = static_cast<unsigned char*>(b.data());
  const std::size_t n = b.size();
  const prepared_key k = key;
  // 16-byte vectors (SSE2, part of baseline x86-64), two per iteration.
  typedef unsigned char v16 __attribute__((vector_size(16)));
  v16 k16;
  for (std::size_t j = 0; j < 16; ++j) k16[j] = k[j & 3];
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    v16 a, c;
    std::memcpy(&a, p + i, 16);
    std::memcpy(&c, p + i + 16, 16);
    a ^= k16;
    c ^= k16;
    std::memcpy(p + i, &a, 16);
    std::memcpy(p + i + 16, &c, 16);
  }
  for (; i < n; ++i) p[i] ^= k[i & 3];
  for (std::size_t j = 0; j < 4; ++j) key[j] = k[(j + n) & 3];
}

}  // namespace boost::beast::websocket::detail

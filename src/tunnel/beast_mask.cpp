// Beast's WebSocket (un)masking, defined here instead of Beast's byte-wise
// websocket/detail/mask.ipp (left out of src/net/asio_impl.cpp): the same
// contract, with the tunnel codec's vectorised XOR, 32 bytes at a time.
// tests/unit/beast_mask_test.cpp checks it against the byte-wise definition.
#include <boost/beast/websocket/detail/mask.hpp>

#include "tunnel/ws_client_codec.hpp"

namespace boost::beast::websocket::detail {

void prepare_key(prepared_key& prepared, std::uint32_t key) {
  prepared[0] = static_cast<unsigned char>(key & 0xff);
  prepared[1] = static_cast<unsigned char>((key >> 8) & 0xff);
  prepared[2] = static_cast<unsigned char>((key >> 16) & 0xff);
  prepared[3] = static_cast<unsigned char>((key >> 24) & 0xff);
}

// XORs byte i of `b` with key[i % 4], then rotates the key by the buffer's
// length so that the next buffer continues the same key stream. The XOR is
// the tunnel codec's vectorised one (key bytes in wire order).
void mask_inplace(net::mutable_buffer const& b, prepared_key& key) {
  const std::size_t n = b.size();
  const prepared_key k = key;
  const std::uint32_t wire_key = (std::uint32_t{k[0]} << 24) | (std::uint32_t{k[1]} << 16) |
                                 (std::uint32_t{k[2]} << 8) | std::uint32_t{k[3]};
  kr::tunnel::ws::apply_mask(static_cast<char*>(b.data()), n, wire_key, 0);
  for (std::size_t j = 0; j < 4; ++j) key[j] = k[(j + n) & 3];
}

}  // namespace boost::beast::websocket::detail

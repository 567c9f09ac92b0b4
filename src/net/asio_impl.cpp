// The one translation unit that compiles Asio and Beast (see CMakeLists.txt:
// BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION).
#include <boost/asio/impl/src.hpp>

// Beast's WebSocket unmasking (websocket/detail/mask.ipp in Boost 1.81)
// XORs one byte at a time; it was the runner's largest user-space cost when
// relaying tunnel traffic (every client frame is masked). Its separately
// compiled definition is left out here; src/tunnel/beast_mask.cpp defines
// one with the same contract that works 32 bytes at a time (net/ stays
// below tunnel/: only the tunnel layer knows the codec it reuses).
#define BOOST_BEAST_WEBSOCKET_DETAIL_MASK_IPP
#include <boost/beast/src.hpp>

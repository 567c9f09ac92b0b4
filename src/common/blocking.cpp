#include "common/blocking.hpp"

namespace kr {

boost::asio::thread_pool& blocking_pool() {
  // Created on first use: an idle runner that never touches the disk from a
  // request path does not pay for the thread.
  static boost::asio::thread_pool pool(1);
  return pool;
}

}  // namespace kr

#include "tunnel/id_allocator.hpp"

namespace kr::tunnel {

std::optional<std::uint32_t> IdAllocator::allocate() {
  if (used_.size() >= 0xFFFFFFFFu) return std::nullopt;
  while (next_ == 0 || used_.count(next_)) ++next_;
  std::uint32_t id = next_++;
  used_.insert(id);
  return id;
}

}  // namespace kr::tunnel

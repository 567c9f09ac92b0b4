#pragma once
// Runner-side client ids of one container tunnel (ruling T1): every forward
// session's ids are rewritten to ids the runner hands out, so two users can
// never collide inside one tunnel. Ids go up monotonically (wrapping, never
// 0, never one still in use), so an id is not reused before its CLOSE and
// not soon after either (a late message for an old id cannot hit a new user).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_set>

namespace kr::tunnel {

class IdAllocator {
 public:
  explicit IdAllocator(std::uint32_t first = 1) : next_(first == 0 ? 1 : first) {}
  // nullopt only when all 2^32-1 ids are in use.
  std::optional<std::uint32_t> allocate();
  void release(std::uint32_t id) { used_.erase(id); }
  bool in_use(std::uint32_t id) const { return used_.count(id) != 0; }
  std::size_t size() const { return used_.size(); }

 private:
  std::uint32_t next_;
  std::unordered_set<std::uint32_t> used_;
};

}  // namespace kr::tunnel

#include "api/connection_limiter.hpp"

namespace kr::api {

ConnectionLimiter::Slot& ConnectionLimiter::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = std::exchange(o.owner_, nullptr);
    address_ = std::move(o.address_);
    privileged_ = o.privileged_;
  }
  return *this;
}

void ConnectionLimiter::Slot::release() {
  if (owner_) std::exchange(owner_, nullptr)->release(address_, privileged_);
}

ConnectionLimiter::Slot ConnectionLimiter::try_acquire(const std::string& address, bool privileged) {
  if (total() >= limits_.max_total) return {};
  if (!privileged) {
    const std::size_t ordinary_cap = limits_.max_total > limits_.reserved ? limits_.max_total - limits_.reserved : 0;
    if (ordinary_ >= ordinary_cap) return {};
    if (count(address) >= limits_.max_per_address) return {};
    ++ordinary_;
  } else {
    ++privileged_;
  }
  ++per_address_[address];
  return Slot(this, address, privileged);
}

void ConnectionLimiter::release(const std::string& address, bool privileged) {
  (privileged ? privileged_ : ordinary_) -= 1;
  auto it = per_address_.find(address);
  if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
}

std::size_t ConnectionLimiter::count(const std::string& address) const {
  auto it = per_address_.find(address);
  return it == per_address_.end() ? 0 : it->second;
}

std::string normalize_address(const std::string& address) {
  constexpr std::string_view kMapped = "::ffff:";
  if (address.size() > kMapped.size() && address.compare(0, kMapped.size(), kMapped) == 0 &&
      address.find('.') != std::string::npos)
    return address.substr(kMapped.size());
  return address;
}

bool is_loopback_address(const std::string& address) {
  std::string a = normalize_address(address);
  return a == "::1" || a.rfind("127.", 0) == 0;
}

}  // namespace kr::api

#pragma once
// The tunnel-client's WebSocket send buffer (header-only, libc only: part of
// the static client, unit-tested in tests/unit/tunnel_out_buffer_test.cpp).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace kr::tunnel_client {

// The WebSocket send buffer. Frames are built in place: a local read lands
// right behind room for its frame head and is masked where it lies, so a
// payload is not copied between the read and the send.
class OutBuffer {
 public:
  std::size_t size() const { return end_ - begin_; }
  const char* data() const { return buf_.get() + begin_; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // At least `n` writable bytes at the end.
  char* prepare(std::size_t n) {
    if (cap_ - end_ < n && begin_ > 0) {
      std::memmove(buf_.get(), buf_.get() + begin_, size());
      end_ -= begin_;
      begin_ = 0;
    }
    if (cap_ - end_ < n) {
      std::size_t cap = std::max(cap_ * 2, end_ + n);
      std::unique_ptr<char[]> grown(new char[cap]);
      if (end_ > 0) std::memcpy(grown.get(), buf_.get(), end_);
      buf_ = std::move(grown);
      cap_ = cap;
    }
    return buf_.get() + end_;
  }
  // Appends the `len` bytes found at prepare()'s pointer + `skip`.
  void commit(std::size_t skip, std::size_t len) {
    if (skip > 0) {
      if (size() == 0) {
        begin_ = end_ = end_ + skip;
      } else {
        std::memmove(buf_.get() + end_, buf_.get() + end_ + skip, len);
      }
    }
    end_ += len;
  }
  void append(std::string_view d) {
    if (d.empty()) return;
    std::memcpy(prepare(d.size()), d.data(), d.size());
    end_ += d.size();
  }
  // Gives memory back after a burst, once everything was sent.
  void trim(std::size_t keep) {
    if (size() == 0 && cap_ > keep) {
      buf_.reset();
      cap_ = begin_ = end_ = 0;
    }
  }

 private:
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0, begin_ = 0, end_ = 0;
};

}  // namespace kr::tunnel_client

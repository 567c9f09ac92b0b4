#pragma once
// CancelToken: lets a caller abort its own long-running calls (a Docker
// event stream, a wait, an image pull/load during a kill; a lock or blocking
// job wait in common/) without touching other calls. Copies share one
// state. It is meant for a single-threaded io_context: cancel() must run on
// the thread of the calls it cancels.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>

namespace kr {

class CancelToken {
 public:
  CancelToken() : st_(std::make_shared<State>()) {}

  // Aborts every call currently using this token (their sockets are closed
  // at once) and makes later calls with it fail immediately.
  void cancel() {
    if (st_->cancelled) return;
    st_->cancelled = true;
    auto callbacks = std::exchange(st_->callbacks, {});
    for (auto& [id, fn] : callbacks) fn();
  }
  bool cancelled() const { return st_->cancelled; }

  // For the transport: run `fn` on cancel(); returns an id for unsubscribe().
  std::uint64_t subscribe(std::function<void()> fn) const {
    auto id = st_->next_id++;
    st_->callbacks.emplace(id, std::move(fn));
    return id;
  }
  void unsubscribe(std::uint64_t id) const { st_->callbacks.erase(id); }

 private:
  struct State {
    bool cancelled = false;
    std::uint64_t next_id = 1;
    std::map<std::uint64_t, std::function<void()>> callbacks;
  };
  std::shared_ptr<State> st_;
};

}  // namespace kr

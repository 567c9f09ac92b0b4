#pragma once
// Delivery of status reports to the host (decision D8 / D-REPORTRETRY).
//
// Every report is in the store's outbox table before push() returns (also
// those enqueued by StateStore::finish_task/enqueue_report directly: the
// outbox listens to the store). Delivery rules:
//  * per task, strictly in enqueue order: report n+1 is not sent before the
//    host accepted (or we dropped) report n; different tasks in parallel,
//    at most max_in_flight requests at once, oldest head report first;
//  * 2xx → delete; network error/timeout (sender throws), 408, 429, 5xx and
//    any other non-4xx status → retry with capped exponential back-off and
//    jitter, per task, plus a shared gate so a down host is probed by one
//    wave of requests per back-off period, not hammered;
//  * other 4xx → logged with the payload and dropped (retrying cannot help);
//  * pending entries are reloaded on start, order preserved. A report whose
//    2xx arrived just before a crash may be sent once more after the restart
//    (at-least-once); the host accepts identical updates.
// Idle, the delivery loop waits on a timer with no expiry: no polling.
//
// All methods must be called on the io executor's thread. The sender must
// bound its own duration (HostClient's deadline): a sender that never
// returns stalls that task's queue and one in-flight slot.
// Destroy the Outbox before the StateStore.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "store/state_store.hpp"

namespace kr::store {

struct OutboxOptions {
  std::size_t max_in_flight = 8;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
};

class Outbox {
 public:
  // Returns the HTTP status of POST /api/update with this body; throws on a
  // network error or timeout.
  using Sender = std::function<boost::asio::awaitable<int>(const std::string& json_body)>;

  enum class Verdict { Delivered, Retry, Drop };
  static Verdict classify(int http_status);

  Outbox(StateStore& store, boost::asio::any_io_executor ex, Sender sender, OutboxOptions opts = {});
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Begins delivery (of the reloaded backlog too). Once only.
  void start();
  // Stops launching new requests; requests in flight finish on their own
  // (their outcome is still recorded). Wakes pending flush() calls.
  void stop();

  // Durable when it returns; returns the entry's seq.
  boost::asio::awaitable<int64_t> push(int64_t task_id, std::string payload, bool is_final);

  // For when the store cannot write (full disk, read-only file system): the
  // report is queued in memory only and delivered like the others, but is
  // lost if the runner stops first.
  void push_volatile(int64_t task_id, std::string payload, bool is_final);

  // Pause/resume: the host shows the new state on our 2xx, and a queued
  // non-final report (a `running` still being retried) delivered later
  // would flip it back. Deletes the task's queued non-final reports, makes
  // one in flight be dropped instead of retried, and waits up to `deadline`
  // for that one to finish. Final reports are never touched.
  boost::asio::awaitable<void> supersede_non_final(int64_t task_id, std::chrono::milliseconds deadline);

  // Waits until every known report is delivered or dropped, or `deadline`
  // passed, or stop() was called; true when the outbox is empty. Cuts any
  // running back-off short so each waiting task gets a prompt attempt
  // (shutdown, decision D7: at most 5 s).
  boost::asio::awaitable<bool> flush(std::chrono::milliseconds deadline);

  // Counters (tests, logs). pending = known, not yet delivered or dropped.
  std::size_t pending() const;
  uint64_t delivered() const;
  uint64_t dropped() const;
  uint64_t failed_attempts() const;

  struct Core;

 private:
  StateStore& store_;
  std::shared_ptr<Core> core_;
};

}  // namespace kr::store

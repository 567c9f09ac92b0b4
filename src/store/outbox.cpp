#include "store/outbox.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace kr::store {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// Shared with the coroutines and the store listener, so neither can outlive
// it. Everything except the "inbox" block and the atomics is touched only on
// the io thread.
struct Outbox::Core : std::enable_shared_from_this<Core> {
  struct TaskQueue {
    std::deque<OutboxEntry> entries;
    bool busy = false;             // a request for entries.front() is in flight
    Clock::time_point retry_at{};  // per-task back-off
    Clock::duration delay{};
  };

  Core(StateStore* s, asio::any_io_executor e, Sender snd, OutboxOptions o)
      : store(s), ex(std::move(e)), sender(std::move(snd)), opts(o), wake(ex), rng(std::random_device{}()) {}

  StateStore* store;  // nulled by ~Outbox
  asio::any_io_executor ex;
  Sender sender;
  OutboxOptions opts;

  // Inbox: filled on the store's worker thread.
  std::mutex inbox_mu;
  std::vector<OutboxEntry> inbox;
  bool wake_posted = false;
  std::atomic<bool> loaded{false};  // the backlog arrived from the store
  std::atomic<std::size_t> pending{0};
  std::atomic<uint64_t> delivered{0}, dropped{0}, failures{0};

  std::map<int64_t, TaskQueue> tasks;
  std::size_t in_flight = 0;
  Clock::time_point gate{};  // shared back-off: no new request before it
  Clock::duration host_delay{};
  asio::steady_timer wake;  // the dispatcher sleeps on it; cancel() = wake up
  std::set<asio::steady_timer*> flush_waiters;
  // Non-final reports with seq <= this are stale (superseded by a pause or
  // resume the host saw): dropped, never sent.
  std::map<int64_t, int64_t> superseded_upto;
  std::set<int64_t> volatile_seqs;  // in memory only (the store failed)
  int64_t next_volatile_seq = int64_t{1} << 62;
  bool started = false, stopping = false;
  std::minstd_rand rng;

  void on_store_entries(std::vector<OutboxEntry> v) {
    std::lock_guard lk(inbox_mu);
    pending += v.size();
    for (auto& e : v) inbox.push_back(std::move(e));
    loaded = true;
    if (!wake_posted) {
      wake_posted = true;
      asio::post(ex, [self = shared_from_this()] {
        {
          std::lock_guard lk(self->inbox_mu);
          self->wake_posted = false;
        }
        self->wake.cancel();
        self->notify_flushers();  // an empty backlog completes a flush
      });
    }
  }

  void drain_inbox() {
    std::vector<OutboxEntry> got;
    {
      std::lock_guard lk(inbox_mu);
      got.swap(inbox);
    }
    // Listener batches arrive in commit order, so appending keeps each
    // task's queue sorted by seq.
    for (auto& e : got) tasks[e.task_id].entries.push_back(std::move(e));
  }

  bool empty() const { return loaded && pending == 0; }

  void notify_flushers() {
    if (empty() || stopping)
      for (auto* t : flush_waiters) t->cancel();
  }

  Clock::duration next_delay(Clock::duration prev) {
    Clock::duration d = prev == Clock::duration{} ? Clock::duration(opts.initial_backoff) : prev * 2;
    return std::min<Clock::duration>(d, opts.max_backoff);
  }

  // 75–100 % of the delay: spreads retries of many tasks without ever
  // exceeding the cap.
  Clock::duration jittered(Clock::duration d) {
    std::uniform_real_distribution<double> f(0.75, 1.0);
    return std::chrono::duration_cast<Clock::duration>(d * f(rng));
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    while (!stopping) {
      drain_inbox();
      auto now = Clock::now();
      auto next = Clock::time_point::max();
      if (now < gate) {
        next = gate;
      } else {
        std::vector<std::pair<int64_t, int64_t>> ready;  // (head seq, task id)
        for (auto& [id, tq] : tasks) {
          if (tq.busy || tq.entries.empty()) continue;
          if (tq.retry_at > now)
            next = std::min(next, tq.retry_at);
          else
            ready.emplace_back(tq.entries.front().seq, id);
        }
        std::sort(ready.begin(), ready.end());
        for (auto& [seq, id] : ready) {
          if (in_flight >= opts.max_in_flight) break;
          launch(id);
        }
      }
      wake.expires_at(next);
      co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  void launch(int64_t task_id) {
    tasks[task_id].busy = true;
    ++in_flight;
    asio::co_spawn(ex, send_head(task_id), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("status report delivery failed unexpectedly: {}", ex.what());
      }
    });
  }

  asio::awaitable<void> send_head(int64_t task_id) {
    auto self = shared_from_this();
    // std::map nodes are stable, and a busy queue is never erased.
    TaskQueue& tq = tasks[task_id];
    OutboxEntry e = tq.entries.front();
    int status = 0;
    std::string error;
    auto sup = superseded_upto.find(task_id);
    const bool stale = !e.is_final && sup != superseded_upto.end() && e.seq <= sup->second;
    if (!stale) {
      try {
        status = co_await sender(e.payload);
      } catch (const std::exception& ex) {
        error = ex.what();
      } catch (...) {
        error = "unknown error";
      }
    }
    Verdict v = error.empty() ? classify(status) : Verdict::Retry;
    // Superseded before or while this attempt was in flight: dropped, never
    // retried (a later `running` would undo a pause the host shows).
    sup = superseded_upto.find(task_id);
    const bool superseded = !e.is_final && sup != superseded_upto.end() && e.seq <= sup->second;
    const bool host_answered = !stale && error.empty() && classify(status) != Verdict::Retry;
    if (superseded && v == Verdict::Retry) v = Verdict::Drop;
    if (stale) v = Verdict::Drop;

    if (v == Verdict::Retry) {
      ++failures;
      ++e.attempts;
      tq.entries.front().attempts = e.attempts;
      auto now = Clock::now();
      tq.delay = next_delay(tq.delay);
      tq.retry_at = now + jittered(tq.delay);
      host_delay = next_delay(host_delay);
      gate = std::max(gate, now + jittered(host_delay));
      std::string why = error.empty() ? "HTTP " + std::to_string(status) : error;
      // The first failure and then every 10th: a host that is down for an
      // hour must not flood the log.
      if (e.attempts == 1 || e.attempts % 10 == 0)
        spdlog::warn("Status report for task {} not delivered ({}), attempt {}; retrying", task_id, why, e.attempts);
      if (store && !volatile_seqs.count(e.seq)) {
        try {
          co_await store->note_failed_attempt(e.seq);
        } catch (const std::exception& ex) {
          spdlog::warn("Cannot record delivery attempt for task {}: {}", task_id, ex.what());
        }
      }
    } else {
      if (superseded && !host_answered)
        spdlog::info("Status report for task {} superseded by a pause/resume; not sent again", task_id);
      else if (v == Verdict::Drop)
        spdlog::error("Host rejected the status report for task {} with HTTP {}; dropping it: {}", task_id, status,
                      e.payload);
      tq.delay = {};
      tq.retry_at = {};
      if (host_answered) {
        host_delay = {};  // the host answers: lift the shared gate
        gate = {};
      }
      if (store && !volatile_seqs.erase(e.seq)) {
        try {
          co_await store->delete_report(e.seq);
        } catch (const std::exception& ex) {
          // The entry stays on disk and is sent once more after a restart;
          // the host accepts the duplicate.
          spdlog::error("Cannot remove delivered status report {} from the outbox: {}", e.seq, ex.what());
        }
      }
      tq.entries.pop_front();
      (v == Verdict::Drop ? dropped : delivered)++;
      --pending;
    }
    tq.busy = false;
    --in_flight;
    if (tq.entries.empty()) {
      tasks.erase(task_id);
      superseded_upto.erase(task_id);
    }
    wake.cancel();
    notify_flushers();
  }
};

Outbox::Verdict Outbox::classify(int s) {
  if (s >= 200 && s < 300) return Verdict::Delivered;
  if (s == 408 || s == 429) return Verdict::Retry;
  if (s >= 400 && s < 500) return Verdict::Drop;
  // 5xx, and anything unexpected (1xx/3xx: we never follow redirects): the
  // report is not known to be accepted, so keep it.
  return Verdict::Retry;
}

Outbox::Outbox(StateStore& store, asio::any_io_executor ex, Sender sender, OutboxOptions opts)
    : store_(store), core_(std::make_shared<Core>(&store, std::move(ex), std::move(sender), opts)) {
  if (core_->opts.max_in_flight == 0) core_->opts.max_in_flight = 1;
  // Installed now rather than in start(), so pending() and flush() know the
  // backlog even before delivery begins.
  store_.set_outbox_listener([core = core_](std::vector<OutboxEntry> v) { core->on_store_entries(std::move(v)); });
}

Outbox::~Outbox() {
  stop();
  store_.set_outbox_listener(nullptr);
  core_->store = nullptr;  // requests still in flight must not touch it
}

void Outbox::start() {
  if (core_->started) return;
  core_->started = true;
  asio::co_spawn(core_->ex, core_->run(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("status report delivery loop died: {}", ex.what());
    }
  });
}

void Outbox::stop() {
  core_->stopping = true;
  core_->wake.cancel();
  core_->notify_flushers();
}

asio::awaitable<int64_t> Outbox::push(int64_t task_id, std::string payload, bool is_final) {
  co_return co_await store_.enqueue_report(task_id, std::move(payload), is_final);
}

asio::awaitable<bool> Outbox::flush(std::chrono::milliseconds deadline) {
  auto core = core_;
  if (core->empty()) co_return true;
  core->gate = {};
  for (auto& [id, tq] : core->tasks) tq.retry_at = {};
  core->wake.cancel();

  auto until = Clock::now() + deadline;
  asio::steady_timer t(core->ex, until);
  core->flush_waiters.insert(&t);
  struct Unregister {
    Core* c;
    asio::steady_timer* t;
    ~Unregister() { c->flush_waiters.erase(t); }
  } unregister{core.get(), &t};
  while (!core->empty() && !core->stopping && Clock::now() < until)
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return core->empty();
}

void Outbox::push_volatile(int64_t task_id, std::string payload, bool is_final) {
  auto& c = *core_;
  c.drain_inbox();  // keeps the task's queue in enqueue order
  OutboxEntry e;
  e.seq = c.next_volatile_seq++;
  e.task_id = task_id;
  e.payload = std::move(payload);
  e.is_final = is_final;
  c.volatile_seqs.insert(e.seq);
  c.tasks[task_id].entries.push_back(std::move(e));
  ++c.pending;
  c.wake.cancel();
}

asio::awaitable<void> Outbox::supersede_non_final(int64_t task_id, std::chrono::milliseconds deadline) {
  auto core = core_;
  core->drain_inbox();
  auto it = core->tasks.find(task_id);
  if (it == core->tasks.end()) co_return;
  auto& tq = it->second;
  int64_t upto = 0;
  for (const auto& e : tq.entries) upto = std::max(upto, e.seq);
  core->superseded_upto[task_id] = std::max(core->superseded_upto[task_id], upto);
  // Queued ones (not the one in flight) go now.
  std::vector<int64_t> doomed;
  std::deque<OutboxEntry> keep;
  for (std::size_t i = 0; i < tq.entries.size(); ++i) {
    auto& e = tq.entries[i];
    if ((i == 0 && tq.busy) || e.is_final) {
      keep.push_back(std::move(e));
    } else {
      if (!core->volatile_seqs.erase(e.seq)) doomed.push_back(e.seq);
      --core->pending;
      ++core->dropped;
    }
  }
  tq.entries = std::move(keep);
  const bool in_flight = tq.busy;
  if (tq.entries.empty() && !tq.busy) {
    core->tasks.erase(it);
    core->superseded_upto.erase(task_id);
  }
  core->notify_flushers();
  if (!doomed.empty() || in_flight)
    spdlog::info("Task {}: {} queued non-final status report(s) superseded by a pause/resume{}", task_id, doomed.size(),
                 in_flight ? "; waiting for the one in flight" : "");
  for (int64_t seq : doomed) {
    if (!core->store) break;
    try {
      co_await core->store->delete_report(seq);
    } catch (const std::exception& ex) {
      spdlog::error("Cannot remove superseded status report {} from the outbox: {}", seq, ex.what());
    }
  }
  if (!in_flight) co_return;
  // Wait for the request in flight (its outcome is then final: delivered
  // before our answer, or dropped).
  const auto until = Clock::now() + deadline;
  asio::steady_timer t(core->ex);
  for (;;) {
    auto q = core->tasks.find(task_id);
    if (q == core->tasks.end() || !q->second.busy || q->second.entries.empty() ||
        q->second.entries.front().is_final || q->second.entries.front().seq > upto || Clock::now() >= until)
      break;
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

std::size_t Outbox::pending() const { return core_->pending; }
uint64_t Outbox::delivered() const { return core_->delivered; }
uint64_t Outbox::dropped() const { return core_->dropped; }
uint64_t Outbox::failed_attempts() const { return core_->failures; }

}  // namespace kr::store

#pragma once
// The runner's durable state (decisions "Durable state", D8, D9, D26, R-DUP):
// task rows that survive restarts (so containers can be re-attached) and the
// outbox of status reports not yet accepted by the host.
//
// Threading: the store owns one worker thread and the only SQLite
// connection. Every awaitable method runs its work on that thread, in
// submission order, and resumes the awaiting coroutine on the coroutine's own
// executor; SQLite errors are rethrown there as StoreError. The I/O thread
// never touches the disk.
//
// Lifetime: construct it before the io_context runs and destroy it before the
// io_context object (declare the io_context first). The destructor finishes
// every queued job, so a write that was submitted is not lost.
//
// Durability: WAL with synchronous=NORMAL — a committed write survives a
// crash or kill -9 of the runner; a power loss or kernel crash may lose the
// last few transactions (never corrupts the file).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "store/sqlite.hpp"

namespace kr::store {

namespace detail {
class Worker;
}

// One task (command task, Docker VPS or VM) the runner is responsible for.
struct TaskRecord {
  int64_t task_id = 0;
  std::string kind;            // "task" | "vps" | "vm"
  std::string container_name;  // "kohakuriver-task-<id>", "kohakuriver-vps-<id>", "vm-<id>"
  std::string phase;           // "accepted" | "provisioning" | "running" | "finishing" | ...
  std::string request_json = "{}";       // the accepted request body, verbatim
  std::optional<std::string> started_at;  // naive local ISO, as sent in reports
  bool killed = false;         // a host kill: the final report is suppressed
  int64_t created_unix = 0;    // 0 on insert: filled with the current time
  std::string extra_json = "{}";  // free-form JSON object for later features

  bool operator==(const TaskRecord&) const = default;
};

// Optional changes applied together with a phase change.
struct TaskChanges {
  std::optional<std::string> container_name;
  std::optional<std::string> started_at;
  std::optional<std::string> request_json;
  std::optional<std::string> extra_json;
};

// One status report waiting for the host.
struct OutboxEntry {
  int64_t seq = 0;  // global enqueue order; per task, lower seq is sent first
  int64_t task_id = 0;
  std::string payload;  // exact JSON body for POST /api/update
  bool is_final = false;
  int64_t attempts = 0;  // failed delivery attempts so far
  int64_t enqueued_unix = 0;

  bool operator==(const OutboxEntry&) const = default;
};

enum class FinishOutcome {
  Reported,      // final report enqueued, task row deleted
  WasKilled,     // the host killed it: row deleted, no report (upstream)
  NoSuchTask,    // no row: someone else already finished it; nothing done
};

// Failures of store operations since start (full disk, read-only file
// system…), for /healthz and the logs.
struct StoreHealth {
  uint64_t errors = 0;
  std::string last_error;
  int64_t last_error_unix = 0;
};

struct StoreOptions {
  // synchronous=FULL makes every commit survive power loss too, at the cost
  // of an fsync per commit (measured on the dev VM's ext4: ~3.5 ms per
  // commit vs ~0.05 ms with NORMAL). Off by default: a power loss kills the
  // containers too, and the host marks the node's tasks lost anyway.
  bool synchronous_full = false;
  int busy_timeout_ms = 5000;
};

// Called on the worker thread, right after the commit, with newly durable
// entries — and first, when installed, once with every pending entry (even
// an empty list, so the listener knows the backlog is loaded). Must be quick
// and must not call back into the store.
using OutboxListener = std::function<void(std::vector<OutboxEntry>)>;

class StateStore {
 public:
  static constexpr const char* kFileName = "runner-state.db";

  // Creates state_dir (mode 0700) when missing, opens or creates
  // <state_dir>/runner-state.db, migrates it. Blocks the calling thread
  // until then (startup only). Throws StoreError with a readable message,
  // also when another process already holds this state directory.
  explicit StateStore(std::filesystem::path state_dir, StoreOptions opts = {});
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::filesystem::path& db_path() const { return db_path_; }

  // --- tasks ---------------------------------------------------------------
  // false when the id already exists (the 409 duplicate check; atomic).
  boost::asio::awaitable<bool> insert_task(TaskRecord rec);
  // false when the id does not exist.
  boost::asio::awaitable<bool> update_task(int64_t task_id, std::string phase, TaskChanges changes = {});
  // Marks a host kill. true only for the first kill of an existing task, so
  // exactly one of {kill endpoint, finish_task} owns the final outcome.
  boost::asio::awaitable<bool> mark_killed(int64_t task_id);
  boost::asio::awaitable<bool> delete_task(int64_t task_id);
  boost::asio::awaitable<std::optional<TaskRecord>> get_task(int64_t task_id);
  // Ordered by created_unix, then task_id.
  boost::asio::awaitable<std::vector<TaskRecord>> load_tasks();

  // Ids of the rows not marked killed, from memory (no disk, never blocks on
  // the worker): for the heartbeat's running_tasks (D9). Updated before the
  // awaiting coroutine of the changing call resumes.
  std::vector<int64_t> live_task_ids() const;

  // --- migration from the Python runner --------------------------------
  // true until mark_python_store_read(), and only for a state database
  // this runner created (its first start on this node): the Python
  // runner's store is untrusted and read at most once, before any state
  // of ours exists.
  boost::asio::awaitable<bool> python_store_read_pending();
  // Records, before anything read from it is acted on, that the store was
  // read and which task ids it listed: a start stopped before its takeover
  // was done resumes from this copy, never from the file again.
  boost::asio::awaitable<void> save_python_store_read(std::vector<int64_t> task_ids);
  // The ids saved by save_python_store_read() while the takeover is not
  // done; nullopt when there is nothing to resume.
  boost::asio::awaitable<std::optional<std::vector<int64_t>>> python_store_saved_tasks();
  boost::asio::awaitable<void> mark_python_store_read();

  // --- outbox --------------------------------------------------------------
  // Durable when the awaitable completes. Returns the entry's seq.
  boost::asio::awaitable<int64_t> enqueue_report(int64_t task_id, std::string payload, bool is_final);
  // One transaction: enqueue the final report and delete the task row, or
  // only delete the row when the task was killed. Remove the container only
  // after this returns.
  boost::asio::awaitable<FinishOutcome> finish_task(int64_t task_id, std::string final_payload);
  // Ordered by seq.
  boost::asio::awaitable<std::vector<OutboxEntry>> load_outbox();
  boost::asio::awaitable<void> delete_report(int64_t seq);
  boost::asio::awaitable<void> note_failed_attempt(int64_t seq);

  // Installs (or, with nullptr, removes) the outbox listener. On the worker,
  // in order with every other call: the listener first gets all pending
  // entries, then each later enqueue — no entry is missed or seen twice.
  void set_outbox_listener(OutboxListener listener);

  // Thread-safe snapshot of the failure counters.
  StoreHealth health() const;

 private:
  void open(const StoreOptions& opts);
  void notify(std::vector<OutboxEntry> entries);
  void cache_set(int64_t task_id, bool live);
  template <class R, class F>
  boost::asio::awaitable<R> call(F fn);

  std::filesystem::path dir_;
  std::filesystem::path db_path_;
  int lock_fd_ = -1;
  std::unique_ptr<Db> db_;          // used on the worker thread only
  OutboxListener listener_;         // worker thread only
  void record_error(const char* what);

  mutable std::mutex health_mu_;
  StoreHealth health_;
  mutable std::mutex ids_mu_;
  std::set<int64_t> live_ids_;
  std::unique_ptr<detail::Worker> worker_;  // last: joined first on destruction
};

}  // namespace kr::store

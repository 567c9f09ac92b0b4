#include "store/state_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <future>

#include <spdlog/spdlog.h>

#include "store/schema.hpp"
#include "store/worker.hpp"

namespace kr::store {

namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {

constexpr const char* kTaskColumns =
    "task_id, kind, container_name, phase, request_json, started_at, killed, created_unix, extra_json";

TaskRecord read_task(const Stmt& st) {
  TaskRecord r;
  r.task_id = st.col_int(0);
  r.kind = st.col_text(1);
  r.container_name = st.col_text(2);
  r.phase = st.col_text(3);
  r.request_json = st.col_text(4);
  r.started_at = st.col_opt_text(5);
  r.killed = st.col_int(6) != 0;
  r.created_unix = st.col_int(7);
  r.extra_json = st.col_text(8);
  return r;
}

std::vector<OutboxEntry> read_outbox(Db& db) {
  std::vector<OutboxEntry> out;
  auto st = db.prepare("SELECT seq, task_id, payload, is_final, attempts, enqueued_unix FROM outbox ORDER BY seq");
  while (st.step())
    out.push_back(
        OutboxEntry{st.col_int(0), st.col_int(1), st.col_text(2), st.col_int(3) != 0, st.col_int(4), st.col_int(5)});
  return out;
}

OutboxEntry insert_report(Db& db, int64_t task_id, std::string payload, bool is_final) {
  OutboxEntry e;
  e.task_id = task_id;
  e.payload = std::move(payload);
  e.is_final = is_final;
  e.enqueued_unix = static_cast<int64_t>(std::time(nullptr));
  db.prepare("INSERT INTO outbox (task_id, payload, is_final, attempts, enqueued_unix) VALUES (?, ?, ?, 0, ?)")
      .bind(1, task_id)
      .bind(2, std::string_view(e.payload))
      .bind(3, int64_t{is_final})
      .bind(4, e.enqueued_unix)
      .run();
  e.seq = db.last_insert_rowid();
  return e;
}

// The directory holds request bodies (environment variables may carry
// secrets), hence owner-only when we create it. An existing directory's
// mode is the operator's choice and left alone.
void ensure_state_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  if (fs::exists(dir, ec)) throw StoreError("state directory " + dir.string() + " exists but is not a directory");
  if (!fs::create_directories(dir, ec) && ec)
    throw StoreError("cannot create state directory " + dir.string() + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) throw StoreError("cannot set mode 0700 on state directory " + dir.string() + ": " + ec.message());
}

// Two runners sharing one state directory would both "own" the same tasks
// and double-report them; an advisory lock makes the second one fail at
// startup with a clear message. Released by the kernel on any exit.
int lock_state_dir(const fs::path& dir) {
  auto path = dir / "runner-state.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw StoreError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw StoreError("state directory " + dir.string() + " is in use by another runner process");
    throw StoreError("cannot lock " + path.string() + ": " + std::strerror(err));
  }
  return fd;
}

}  // namespace

StateStore::StateStore(fs::path state_dir, StoreOptions opts)
    : dir_(std::move(state_dir)), db_path_(dir_ / kFileName), worker_(std::make_unique<detail::Worker>()) {
  // The connection is created, used and (via the destructor's join) last
  // touched on the worker thread; the constructor just waits for it.
  std::promise<void> opened;
  worker_->submit([&] {
    try {
      open(opts);
      opened.set_value();
    } catch (...) {
      opened.set_exception(std::current_exception());
    }
  });
  try {
    opened.get_future().get();
  } catch (...) {
    worker_.reset();
    db_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
    throw;
  }
}

StateStore::~StateStore() {
  worker_.reset();  // drains queued writes before the connection closes
  db_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void StateStore::open(const StoreOptions& opts) {
  ensure_state_dir(dir_);
  lock_fd_ = lock_state_dir(dir_);
  db_ = std::make_unique<Db>(db_path_.string());
  // Before the first write creates -wal/-shm: SQLite gives those the
  // database file's mode.
  std::error_code ec;
  fs::permissions(db_path_, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace, ec);
  try {
    sqlite3_busy_timeout(db_->raw(), opts.busy_timeout_ms);
    std::string mode;
    {
      auto st = db_->prepare("PRAGMA journal_mode = WAL");  // finalized before the migration commits
      mode = st.step() ? st.col_text(0) : "";
    }
    if (mode != "wal")
      throw StoreError("cannot enable WAL mode (journal_mode is '" + mode +
                       "'; is the state directory on a local filesystem?)");
    db_->exec(opts.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    // A database created just now: this is the runner's first start on
    // this node, the only time the Python runner's store may be read.
    const bool first_start = user_version(*db_) == 0;
    migrate(*db_);
    // Outside the versioned steps (not part of the task/outbox schema):
    // markers of the one-time migration from the Python runner.
    db_->exec("CREATE TABLE IF NOT EXISTS migration_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    if (first_start)
      db_->prepare("INSERT OR IGNORE INTO migration_meta (key, value) VALUES ('python_store', 'pending')").run();
    auto ids = db_->prepare("SELECT task_id FROM tasks WHERE killed = 0");
    std::lock_guard lk(ids_mu_);
    while (ids.step()) live_ids_.insert(ids.col_int(0));
  } catch (const StoreError& e) {
    // e.g. "file is not a database": name the file, the operator must act.
    throw StoreError("state database " + db_path_.string() + ": " + e.what());
  }
}

template <class R, class F>
asio::awaitable<R> StateStore::call(F fn) {
  // Every failure is counted and logged here, whatever the caller does
  // with it: a store that cannot write must show in /healthz.
  return detail::run_on<R>(*worker_, [this, fn = std::move(fn)]() mutable -> R {
    try {
      return fn();
    } catch (const std::exception& e) {
      record_error(e.what());
      throw;
    }
  });
}

void StateStore::record_error(const char* what) {
  spdlog::error("Runner state store ({}): {}", db_path_.string(), what);
  std::lock_guard lk(health_mu_);
  ++health_.errors;
  health_.last_error = what;
  health_.last_error_unix = static_cast<int64_t>(std::time(nullptr));
}

StoreHealth StateStore::health() const {
  std::lock_guard lk(health_mu_);
  return health_;
}

void StateStore::notify(std::vector<OutboxEntry> entries) {
  if (listener_ && !entries.empty()) listener_(std::move(entries));
}

void StateStore::cache_set(int64_t task_id, bool live) {
  std::lock_guard lk(ids_mu_);
  if (live)
    live_ids_.insert(task_id);
  else
    live_ids_.erase(task_id);
}

std::vector<int64_t> StateStore::live_task_ids() const {
  std::lock_guard lk(ids_mu_);
  return {live_ids_.begin(), live_ids_.end()};
}

asio::awaitable<bool> StateStore::insert_task(TaskRecord rec) {
  return call<bool>([this, rec = std::move(rec)]() mutable {
    if (rec.created_unix == 0) rec.created_unix = static_cast<int64_t>(std::time(nullptr));
    // One statement: the existence check and the insert cannot interleave
    // with anything (and the worker runs one job at a time anyway).
    db_->prepare(std::string("INSERT INTO tasks (") + kTaskColumns +
                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING")
        .bind(1, rec.task_id)
        .bind(2, std::string_view(rec.kind))
        .bind(3, std::string_view(rec.container_name))
        .bind(4, std::string_view(rec.phase))
        .bind(5, std::string_view(rec.request_json))
        .bind(6, rec.started_at)
        .bind(7, int64_t{rec.killed})
        .bind(8, rec.created_unix)
        .bind(9, std::string_view(rec.extra_json))
        .run();
    bool inserted = db_->changes() == 1;
    if (inserted && !rec.killed) cache_set(rec.task_id, true);
    return inserted;
  });
}

asio::awaitable<bool> StateStore::update_task(int64_t task_id, std::string phase, TaskChanges c) {
  return call<bool>([this, task_id, phase = std::move(phase), c = std::move(c)] {
    db_->prepare(
           "UPDATE tasks SET phase = ?, container_name = COALESCE(?, container_name), "
           "started_at = COALESCE(?, started_at), request_json = COALESCE(?, request_json), "
           "extra_json = COALESCE(?, extra_json) WHERE task_id = ?")
        .bind(1, std::string_view(phase))
        .bind(2, c.container_name)
        .bind(3, c.started_at)
        .bind(4, c.request_json)
        .bind(5, c.extra_json)
        .bind(6, task_id)
        .run();
    return db_->changes() == 1;
  });
}

asio::awaitable<bool> StateStore::mark_killed(int64_t task_id) {
  return call<bool>([this, task_id] {
    db_->prepare("UPDATE tasks SET killed = 1 WHERE task_id = ? AND killed = 0").bind(1, task_id).run();
    bool first = db_->changes() == 1;
    if (first) cache_set(task_id, false);
    return first;
  });
}

asio::awaitable<bool> StateStore::delete_task(int64_t task_id) {
  return call<bool>([this, task_id] {
    db_->prepare("DELETE FROM tasks WHERE task_id = ?").bind(1, task_id).run();
    cache_set(task_id, false);
    return db_->changes() == 1;
  });
}

asio::awaitable<bool> StateStore::python_store_read_pending() {
  return call<bool>([this] {
    auto st = db_->prepare("SELECT value FROM migration_meta WHERE key = 'python_store'");
    return st.step() && st.col_text(0) == "pending";
  });
}

asio::awaitable<void> StateStore::save_python_store_read(std::vector<int64_t> task_ids) {
  return call<void>([this, ids = std::move(task_ids)] {
    std::string list;
    for (int64_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    Transaction tx(*db_);
    db_->prepare("INSERT OR REPLACE INTO migration_meta (key, value) VALUES ('python_store', 'read')").run();
    db_->prepare("INSERT OR REPLACE INTO migration_meta (key, value) VALUES ('python_store_tasks', ?)")
        .bind(1, std::string_view(list))
        .run();
    tx.commit();
  });
}

asio::awaitable<std::optional<std::vector<int64_t>>> StateStore::python_store_saved_tasks() {
  return call<std::optional<std::vector<int64_t>>>([this]() -> std::optional<std::vector<int64_t>> {
    auto st = db_->prepare("SELECT value FROM migration_meta WHERE key = 'python_store'");
    if (!st.step() || st.col_text(0) != "read") return std::nullopt;
    auto saved = db_->prepare("SELECT value FROM migration_meta WHERE key = 'python_store_tasks'");
    std::vector<int64_t> ids;
    if (!saved.step()) return ids;
    const std::string list = saved.col_text(0);
    for (size_t pos = 0; pos < list.size();) {
      size_t end = list.find(',', pos);
      if (end == std::string::npos) end = list.size();
      int64_t id = 0;
      auto [p, ec] = std::from_chars(list.data() + pos, list.data() + end, id);
      if (ec == std::errc() && p == list.data() + end && id > 0) ids.push_back(id);
      pos = end + 1;
    }
    return ids;
  });
}

asio::awaitable<void> StateStore::mark_python_store_read() {
  return call<void>([this] {
    Transaction tx(*db_);
    db_->prepare("INSERT OR REPLACE INTO migration_meta (key, value) VALUES ('python_store', 'done')").run();
    db_->prepare("DELETE FROM migration_meta WHERE key = 'python_store_tasks'").run();
    tx.commit();
  });
}

asio::awaitable<std::optional<TaskRecord>> StateStore::get_task(int64_t task_id) {
  return call<std::optional<TaskRecord>>([this, task_id]() -> std::optional<TaskRecord> {
    auto st = db_->prepare(std::string("SELECT ") + kTaskColumns + " FROM tasks WHERE task_id = ?");
    st.bind(1, task_id);
    if (!st.step()) return std::nullopt;
    return read_task(st);
  });
}

asio::awaitable<std::vector<TaskRecord>> StateStore::load_tasks() {
  return call<std::vector<TaskRecord>>([this] {
    std::vector<TaskRecord> out;
    auto st = db_->prepare(std::string("SELECT ") + kTaskColumns + " FROM tasks ORDER BY created_unix, task_id");
    while (st.step()) out.push_back(read_task(st));
    return out;
  });
}

asio::awaitable<int64_t> StateStore::enqueue_report(int64_t task_id, std::string payload, bool is_final) {
  return call<int64_t>([this, task_id, payload = std::move(payload), is_final]() mutable {
    OutboxEntry e = insert_report(*db_, task_id, std::move(payload), is_final);
    int64_t seq = e.seq;
    std::vector<OutboxEntry> v;
    v.push_back(std::move(e));
    notify(std::move(v));
    return seq;
  });
}

asio::awaitable<FinishOutcome> StateStore::finish_task(int64_t task_id, std::string final_payload) {
  return call<FinishOutcome>([this, task_id, payload = std::move(final_payload)]() mutable {
    Transaction tx(*db_);
    std::optional<bool> killed;
    {
      auto st = db_->prepare("SELECT killed FROM tasks WHERE task_id = ?");
      st.bind(1, task_id);
      if (st.step()) killed = st.col_int(0) != 0;
    }
    if (!killed) return FinishOutcome::NoSuchTask;  // tx rolls back: nothing changed
    std::vector<OutboxEntry> added;
    if (!*killed) added.push_back(insert_report(*db_, task_id, std::move(payload), true));
    db_->prepare("DELETE FROM tasks WHERE task_id = ?").bind(1, task_id).run();
    tx.commit();
    cache_set(task_id, false);
    notify(std::move(added));
    return *killed ? FinishOutcome::WasKilled : FinishOutcome::Reported;
  });
}

asio::awaitable<std::vector<OutboxEntry>> StateStore::load_outbox() {
  return call<std::vector<OutboxEntry>>([this] { return read_outbox(*db_); });
}

asio::awaitable<void> StateStore::delete_report(int64_t seq) {
  return call<void>([this, seq] { db_->prepare("DELETE FROM outbox WHERE seq = ?").bind(1, seq).run(); });
}

asio::awaitable<void> StateStore::note_failed_attempt(int64_t seq) {
  return call<void>(
      [this, seq] { db_->prepare("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?").bind(1, seq).run(); });
}

void StateStore::set_outbox_listener(OutboxListener listener) {
  worker_->submit([this, listener = std::move(listener)]() mutable {
    listener_ = std::move(listener);
    if (!listener_) return;
    try {
      // Called even when empty: it tells the listener the backlog is loaded.
      listener_(read_outbox(*db_));
    } catch (const std::exception& e) {
      // Nobody awaits this job, so log here. The entries stay in the
      // database and are retried on the next start; later enqueues still
      // reach the listener.
      spdlog::error("Cannot load pending status reports from {}: {}", db_path_.string(), e.what());
    }
  });
}

}  // namespace kr::store

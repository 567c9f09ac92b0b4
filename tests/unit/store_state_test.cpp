// StateStore: tasks table, atomic outbox operations, durability across
// reopen, schema/WAL settings and open failures (real SQLite in a temp dir).
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "store/schema.hpp"
#include "store/state_store.hpp"
#include "store_test_util.hpp"

namespace asio = boost::asio;
using namespace kr::store;
using kr::store::test::report;
using kr::store::test::run_co;
using kr::store::test::TempDir;

namespace {

TaskRecord make_task(int64_t id, std::string kind = "task") {
  TaskRecord r;
  r.task_id = id;
  r.kind = kind;
  r.container_name = "kohakuriver-" + kind + "-" + std::to_string(id);
  r.phase = "accepted";
  r.request_json = R"({"task_id":)" + std::to_string(id) + R"(,"command":"echo hi"})";
  return r;
}

// A second, independent connection: what an operator's sqlite3 shell sees.
std::string query_text(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(h);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

void exec_raw(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(h);
}

}  // namespace

TEST(StoreState, CreatesOwnerOnlyDirectoryAndWalDatabase) {
  TempDir tmp;
  auto dir = tmp.path / "nested" / "state";
  {
    StateStore store(dir);
    EXPECT_EQ(store.db_path(), dir / "runner-state.db");
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_EQ(::stat(store.db_path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0077, 0u) << "database readable by others";
  }
  // WAL is a property of the file: a fresh connection reports it.
  EXPECT_EQ(query_text(dir / "runner-state.db", "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query_text(dir / "runner-state.db", "PRAGMA user_version"), std::to_string(kSchemaVersion));
}

TEST(StoreState, InsertGetAndDuplicate) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  auto rec = make_task(7312345678901234567);  // int64 ids must round-trip exactly (D1)
  rec.started_at = "2025-01-02T03:04:05.123456";
  EXPECT_TRUE(run_co(ioc, store.insert_task(rec)));

  auto dup = make_task(rec.task_id, "vps");
  EXPECT_FALSE(run_co(ioc, store.insert_task(dup)));

  auto got = run_co(ioc, store.get_task(rec.task_id));
  ASSERT_TRUE(got.has_value());
  EXPECT_GT(got->created_unix, 0);  // filled in on insert
  rec.created_unix = got->created_unix;
  EXPECT_EQ(*got, rec);  // the duplicate changed nothing
  EXPECT_FALSE(run_co(ioc, store.get_task(1)).has_value());
}

TEST(StoreState, ConcurrentDuplicateInsertsHaveExactlyOneWinner) {
  TempDir tmp;
  StateStore store(tmp.state());
  // Four threads, each with its own io_context (so also its own executor to
  // resume on), race to insert the same 50 ids.
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      asio::io_context ioc;
      for (int64_t id = 1; id <= 50; ++id)
        asio::co_spawn(ioc, store.insert_task(make_task(id)), [&](std::exception_ptr e, bool ok) {
          if (!e && ok) ++wins;
        });
      ioc.run();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 50);
  EXPECT_EQ(store.live_task_ids().size(), 50u);
}

TEST(StoreState, UpdateTaskChangesOnlyGivenFields) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  auto rec = make_task(5);
  ASSERT_TRUE(run_co(ioc, store.insert_task(rec)));

  TaskChanges c;
  c.started_at = "2025-01-02T03:04:05";
  c.extra_json = R"({"ssh_port":2222})";
  EXPECT_TRUE(run_co(ioc, store.update_task(5, "running", c)));
  auto got = run_co(ioc, store.get_task(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->phase, "running");
  EXPECT_EQ(got->started_at, "2025-01-02T03:04:05");
  EXPECT_EQ(got->extra_json, R"({"ssh_port":2222})");
  EXPECT_EQ(got->container_name, rec.container_name);
  EXPECT_EQ(got->request_json, rec.request_json);

  EXPECT_TRUE(run_co(ioc, store.update_task(5, "finishing")));
  got = run_co(ioc, store.get_task(5));
  EXPECT_EQ(got->phase, "finishing");
  EXPECT_EQ(got->started_at, "2025-01-02T03:04:05");
  EXPECT_FALSE(run_co(ioc, store.update_task(6, "running")));
}

TEST(StoreState, MarkKilledOnlyOnceAndHidesFromLiveIds) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  ASSERT_TRUE(run_co(ioc, store.insert_task(make_task(1))));
  ASSERT_TRUE(run_co(ioc, store.insert_task(make_task(2))));
  EXPECT_EQ(store.live_task_ids(), (std::vector<int64_t>{1, 2}));

  EXPECT_TRUE(run_co(ioc, store.mark_killed(1)));
  EXPECT_FALSE(run_co(ioc, store.mark_killed(1)));  // a second kill → 404 upstream
  EXPECT_FALSE(run_co(ioc, store.mark_killed(99)));
  EXPECT_EQ(store.live_task_ids(), (std::vector<int64_t>{2}));
  EXPECT_TRUE(run_co(ioc, store.get_task(1))->killed);

  EXPECT_TRUE(run_co(ioc, store.delete_task(2)));
  EXPECT_FALSE(run_co(ioc, store.delete_task(2)));
  EXPECT_TRUE(store.live_task_ids().empty());
}

TEST(StoreState, FinishTaskEnqueuesFinalReportAndDeletesRow) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  ASSERT_TRUE(run_co(ioc, store.insert_task(make_task(3))));
  auto seq1 = run_co(ioc, store.enqueue_report(3, report(3, 0), false));

  EXPECT_EQ(run_co(ioc, store.finish_task(3, report(3, 1, "completed"))), FinishOutcome::Reported);
  EXPECT_FALSE(run_co(ioc, store.get_task(3)).has_value());
  EXPECT_TRUE(store.live_task_ids().empty());
  auto out = run_co(ioc, store.load_outbox());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].seq, seq1);
  EXPECT_FALSE(out[0].is_final);
  EXPECT_GT(out[1].seq, seq1);
  EXPECT_TRUE(out[1].is_final);
  EXPECT_EQ(out[1].payload, report(3, 1, "completed"));

  // The executor and a late second finisher: only the first one reports.
  EXPECT_EQ(run_co(ioc, store.finish_task(3, report(3, 2, "failed"))), FinishOutcome::NoSuchTask);
  EXPECT_EQ(run_co(ioc, store.load_outbox()).size(), 2u);
}

TEST(StoreState, FinishKilledTaskSuppressesTheFinalReport) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  ASSERT_TRUE(run_co(ioc, store.insert_task(make_task(4))));
  ASSERT_TRUE(run_co(ioc, store.mark_killed(4)));
  EXPECT_EQ(run_co(ioc, store.finish_task(4, report(4, 0, "killed_oom"))), FinishOutcome::WasKilled);
  EXPECT_FALSE(run_co(ioc, store.get_task(4)).has_value());
  EXPECT_TRUE(run_co(ioc, store.load_outbox()).empty());
}

TEST(StoreState, FailedFinishRollsBackAndThrowsInTheCoroutine) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  ASSERT_TRUE(run_co(ioc, store.insert_task(make_task(8))));
  // Make the outbox insert fail inside finish_task's transaction.
  exec_raw(store.db_path(),
           "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
  try {
    run_co(ioc, store.finish_task(8, report(8, 0, "completed")));
    FAIL() << "finish_task should have thrown";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("disk says no"), std::string::npos) << e.what();
  }
  // Neither half happened: the row is still there, nothing was enqueued.
  EXPECT_TRUE(run_co(ioc, store.get_task(8)).has_value());
  EXPECT_TRUE(run_co(ioc, store.load_outbox()).empty());
  EXPECT_EQ(store.live_task_ids(), (std::vector<int64_t>{8}));

  exec_raw(store.db_path(), "DROP TRIGGER boom");
  EXPECT_EQ(run_co(ioc, store.finish_task(8, report(8, 0, "completed"))), FinishOutcome::Reported);
}

TEST(StoreState, ReopenKeepsTasksOutboxAndSequence) {
  TempDir tmp;
  asio::io_context ioc;
  std::vector<TaskRecord> tasks;
  std::vector<OutboxEntry> outbox;
  int64_t last_seq = 0;
  {
    StateStore store(tmp.state());
    for (int64_t id : {30, 10, 20}) {
      auto r = make_task(id, id == 20 ? "vps" : "task");
      r.created_unix = 1000 + id;  // load order is creation order
      r.extra_json = R"({"ports":[22]})";
      ASSERT_TRUE(run_co(ioc, store.insert_task(r)));
    }
    ASSERT_TRUE(run_co(ioc, store.mark_killed(30)));
    for (int n = 0; n < 3; ++n) run_co(ioc, store.enqueue_report(10, report(10, n), false));
    last_seq = run_co(ioc, store.enqueue_report(20, report(20, 0), true));
    run_co(ioc, store.delete_report(last_seq));  // the newest seq is gone...
    tasks = run_co(ioc, store.load_tasks());
    outbox = run_co(ioc, store.load_outbox());
  }
  StateStore store(tmp.state());
  EXPECT_EQ(run_co(ioc, store.load_tasks()), tasks);
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].task_id, 10);
  EXPECT_EQ(tasks[2].task_id, 30);
  EXPECT_EQ(run_co(ioc, store.load_outbox()), outbox);
  EXPECT_EQ(store.live_task_ids(), (std::vector<int64_t>{10, 20}));
  // ...but is never handed out again: seq order stays enqueue order.
  EXPECT_GT(run_co(ioc, store.enqueue_report(10, report(10, 3), false)), last_seq);
}

TEST(StoreState, SecondStoreOnSameDirectoryIsRefused) {
  TempDir tmp;
  StateStore first(tmp.state());
  try {
    StateStore second(tmp.state());
    FAIL() << "second store opened";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another runner"), std::string::npos) << e.what();
  }
}

TEST(StoreState, OpenFailuresSayWhatIsWrong) {
  TempDir tmp;
  auto file = tmp.path / "not-a-dir";
  std::ofstream(file) << "x";
  try {
    StateStore s(file);
    FAIL() << "opened a store under a regular file";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
  }

  { StateStore s(tmp.state()); }
  exec_raw(tmp.state() / "runner-state.db", "PRAGMA user_version = 99");
  try {
    StateStore s(tmp.state());
    FAIL() << "opened a database from a newer runner";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(StoreState, CorruptDatabaseFailsToOpen) {
  TempDir tmp;
  std::filesystem::create_directories(tmp.state());
  std::ofstream(tmp.state() / "runner-state.db") << std::string(8192, 'z');
  try {
    StateStore s(tmp.state());
    FAIL() << "opened a corrupt database";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("runner-state.db"), std::string::npos) << e.what();
  }
  // The lock was released with the failed store: a repaired file opens.
  std::filesystem::remove(tmp.state() / "runner-state.db");
  StateStore s(tmp.state());
}

// The Python runner's state store (migration, issue 18): row parsing of
// KohakuVault's on-disk values, the read-only copy-then-read of an untrusted
// file (WAL content of a killed writer included, symlinks refused), and the
// first-start marker of our own store.
#include <sqlite3.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <set>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "store/python_store.hpp"
#include "store/state_store.hpp"
#include "store_test_util.hpp"

using namespace kr::store;
using kr::store::test::run_co;
using kr::store::test::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Exactly what KohakuVault 1.1.0 stored for the Python runner's
// TaskStateStore.add_task(12, "kohakuriver-task-12", ...) (captured from the
// real library: header 89 4B 01 04 00 00 00 00 56 4B, then MessagePack).
const std::string kRealValue12(
    "\x89K\x01\x04\x00\x00\x00\x00VK\x85\xaf"
    "allocated_cores\x90\xae"
    "allocated_gpus\x90\xae"
    "container_name\xb3"
    "kohakuriver-task-12\xa9"
    "numa_node\xc0\xa7"
    "task_id\x0c",
    99);

std::string kvault_value(const json& j) {
  std::string v("\x89K\x01\x04\x00\x00\x00\x00VK", 10);
  auto packed = json::to_msgpack(j);
  v.append(packed.begin(), packed.end());
  return v;
}

json task_value(int64_t id, const std::string& name) {
  return json{{"task_id", id}, {"container_name", name}, {"allocated_cores", json::array()},
              {"allocated_gpus", json::array()}, {"numa_node", nullptr}};
}

// A KohakuVault file as the Python runner leaves it when killed: WAL mode,
// rows still in the -wal (the writer is kept open, no checkpoint).
struct KVaultWriter {
  sqlite3* db = nullptr;
  explicit KVaultWriter(const fs::path& path) {
    fs::create_directories(path.parent_path());
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA wal_autocheckpoint=0");
    exec("CREATE TABLE IF NOT EXISTS kohakuvault_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    exec("CREATE TABLE IF NOT EXISTS running_tasks (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL)");
  }
  ~KVaultWriter() { sqlite3_close(db); }
  void exec(const std::string& sql) { ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db); }
  void put(const std::string& key, const std::string& value) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO running_tasks VALUES (?, ?)", -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_blob(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
  }
};

}  // namespace

TEST(PythonStore, ParsesTheRealKohakuVaultValue) {
  auto r = parse_python_store_row("12", kRealValue12);
  ASSERT_TRUE(r.entry) << r.reason;
  EXPECT_EQ(*r.entry, (PythonStoreEntry{12, "kohakuriver-task-12", "task"}));
}

TEST(PythonStore, ParsesVpsAndVmEntries) {
  auto vps = parse_python_store_row("13", kvault_value(task_value(13, "kohakuriver-vps-13")));
  ASSERT_TRUE(vps.entry);
  EXPECT_EQ(vps.entry->kind, "vps");
  auto vm = parse_python_store_row("14", kvault_value(task_value(14, "vm-14")));
  ASSERT_TRUE(vm.entry);
  EXPECT_EQ(vm.entry->kind, "vm");
}

TEST(PythonStore, RejectsMalformedRows) {
  const std::string good = kvault_value(task_value(5, "kohakuriver-task-5"));
  EXPECT_TRUE(parse_python_store_row("5", good).entry);
  // Snowflake ids use all 19 digits of int64.
  const int64_t big = 9223372036854775807;
  EXPECT_TRUE(parse_python_store_row(std::to_string(big), kvault_value(task_value(big, "kohakuriver-task-" + std::to_string(big)))).entry);
  for (const char* key : {"", "05", "-5", "+5", "5 ", "abc", "9223372036854775808", "5\n"})
    EXPECT_FALSE(parse_python_store_row(key, good).entry) << "key " << key;
  // Another task's name, another id, names that are not container names.
  EXPECT_FALSE(parse_python_store_row("6", good).entry);
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(task_value(5, "kohakuriver-task-6"))).entry);
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(task_value(5, "kohakuriver-task-5; rm -rf /"))).entry);
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(task_value(5, "/kohakuriver-task-5"))).entry);
  json no_name = task_value(5, "x");
  no_name.erase("container_name");
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(no_name)).entry);
  json str_id = task_value(5, "kohakuriver-task-5");
  str_id["task_id"] = "5";
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(str_id)).entry);
  EXPECT_FALSE(parse_python_store_row("5", kvault_value(json::array({5}))).entry);
  // Pickle (encoding 1) is never unpickled; no header; truncated MessagePack.
  std::string pickled = good;
  pickled[3] = 0x01;
  EXPECT_FALSE(parse_python_store_row("5", pickled).entry);
  EXPECT_FALSE(parse_python_store_row("5", good.substr(10)).entry);
  EXPECT_FALSE(parse_python_store_row("5", good.substr(0, good.size() - 3)).entry);
  EXPECT_FALSE(parse_python_store_row("5", good + "extra").entry);
  // Deeply nested arrays: refused without recursing through them.
  std::string deep(kRealValue12.substr(0, 10));
  deep.append(60000, '\x91');
  deep.push_back('\x00');
  EXPECT_FALSE(parse_python_store_row("5", deep).entry);
  auto r = parse_python_store_row("5", std::string("\x89K", 2));
  EXPECT_FALSE(r.entry);
  EXPECT_FALSE(r.reason.empty());
}

TEST(PythonStore, ReadsRowsStillInTheWalOfAKilledWriter) {
  TempDir tmp;
  const fs::path temp_dir = tmp.path / "local_temp";
  fs::create_directories(tmp.state());
  KVaultWriter w(python_store_path(temp_dir));
  w.put("12", kRealValue12);
  w.put("77", kvault_value(task_value(77, "kohakuriver-task-77")));
  w.put("oops", "garbage");
  // The writer is still open: nothing was checkpointed into the main file.
  ASSERT_TRUE(fs::exists(python_store_path(temp_dir).string() + "-wal"));
  auto c = read_python_store(temp_dir, tmp.state());
  ASSERT_FALSE(c.error) << *c.error;
  EXPECT_TRUE(c.present);
  ASSERT_EQ(c.entries.size(), 2u);
  EXPECT_EQ(c.entries[0].task_id, 12);
  EXPECT_EQ(c.entries[1].task_id, 77);
  ASSERT_EQ(c.rejected.size(), 1u);
  EXPECT_NE(c.rejected[0].find("oops"), std::string::npos);
  // The copy is gone; the original is untouched (same rows, still readable by its writer).
  EXPECT_TRUE(fs::is_empty(tmp.state()));
  w.put("78", kvault_value(task_value(78, "kohakuriver-task-78")));
}

TEST(PythonStore, AbsentStoreIsNotAnError) {
  TempDir tmp;
  fs::create_directories(tmp.state());
  auto c = read_python_store(tmp.path / "nothing-here", tmp.state());
  EXPECT_FALSE(c.present);
  EXPECT_FALSE(c.error);
  fs::create_directories(tmp.path / "lt" / ".kohakuriver");
  c = read_python_store(tmp.path / "lt", tmp.state());
  EXPECT_FALSE(c.present);
  EXPECT_FALSE(c.error);
}

TEST(PythonStore, RefusesSymlinksPlantedByContainers) {
  TempDir tmp;
  fs::create_directories(tmp.state());
  // A real store elsewhere, reachable only through a link.
  const fs::path elsewhere = tmp.path / "elsewhere";
  {
    KVaultWriter w(python_store_path(elsewhere));
    w.put("12", kRealValue12);
  }
  const fs::path lt1 = tmp.path / "lt1";
  fs::create_directories(lt1);
  fs::create_directory_symlink(elsewhere / ".kohakuriver", lt1 / ".kohakuriver");
  auto c = read_python_store(lt1, tmp.state());
  EXPECT_TRUE(c.error);
  EXPECT_TRUE(c.entries.empty());

  const fs::path lt2 = tmp.path / "lt2";
  fs::create_directories(lt2 / ".kohakuriver");
  fs::create_symlink(python_store_path(elsewhere), python_store_path(lt2));
  c = read_python_store(lt2, tmp.state());
  EXPECT_TRUE(c.error);
  EXPECT_TRUE(c.entries.empty());

  const fs::path lt3 = tmp.path / "lt3";
  fs::create_directories(python_store_path(lt3));  // a directory, not a file
  c = read_python_store(lt3, tmp.state());
  EXPECT_TRUE(c.error);
}

TEST(PythonStore, NotADatabaseIsAnErrorNotACrash) {
  TempDir tmp;
  fs::create_directories(tmp.state());
  fs::create_directories(tmp.path / "lt" / ".kohakuriver");
  std::ofstream(python_store_path(tmp.path / "lt")) << "this is not sqlite";
  auto c = read_python_store(tmp.path / "lt", tmp.state());
  EXPECT_TRUE(c.present);
  EXPECT_TRUE(c.error);
}

TEST(PythonStore, ReadPendingOnlyOnTheFirstStartOfOurStore) {
  TempDir tmp;
  boost::asio::io_context ioc;
  {
    StateStore s(tmp.state());
    EXPECT_TRUE(run_co(ioc, s.python_store_read_pending()));
    run_co(ioc, s.mark_python_store_read());
    EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
  }
  {
    StateStore s(tmp.state());
    EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
  }
  // A store of ours from before the marker existed is not a first start.
  TempDir older;
  { StateStore s(older.state()); }
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open((older.state() / StateStore::kFileName).c_str(), &h), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(h, "DROP TABLE migration_meta", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(h);
  }
  StateStore s(older.state());
  EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
}

// Issue 18: a first start stopped after it read the store (before its
// takeover was done) must not read the file again; the ids it read are
// saved in our own database and the next start resumes from them.
TEST(PythonStore, ReadIsSavedSoAnInterruptedTakeoverNeverRereads) {
  TempDir tmp;
  boost::asio::io_context ioc;
  {
    StateStore s(tmp.state());
    EXPECT_TRUE(run_co(ioc, s.python_store_read_pending()));
    EXPECT_FALSE(run_co(ioc, s.python_store_saved_tasks()));
    run_co(ioc, s.save_python_store_read({12, 7}));
    EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
  }
  {
    StateStore s(tmp.state());  // the restart after the interruption
    EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
    auto saved = run_co(ioc, s.python_store_saved_tasks());
    ASSERT_TRUE(saved);
    EXPECT_EQ(*saved, (std::vector<int64_t>{12, 7}));
    run_co(ioc, s.mark_python_store_read());
    EXPECT_FALSE(run_co(ioc, s.python_store_saved_tasks()));
  }
  {
    StateStore s(tmp.state());
    EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
    EXPECT_FALSE(run_co(ioc, s.python_store_saved_tasks()));
  }
  // Read and found empty (or absent): nothing to resume, but read.
  TempDir empty;
  StateStore s(empty.state());
  run_co(ioc, s.save_python_store_read({}));
  EXPECT_FALSE(run_co(ioc, s.python_store_read_pending()));
  auto saved = run_co(ioc, s.python_store_saved_tasks());
  ASSERT_TRUE(saved);
  EXPECT_TRUE(saved->empty());
}

namespace {

// The state a killed writer leaves: the -wal as it was while the writer was
// open (its close would have checkpointed and removed it).
void leave_as_killed(const fs::path& store, const std::function<void(KVaultWriter&)>& write) {
  const fs::path keep = store.parent_path() / "keep";
  {
    KVaultWriter w(store);
    write(w);
    fs::copy_file(store, keep, fs::copy_options::overwrite_existing);
    fs::copy_file(store.string() + "-wal", keep.string() + "-wal", fs::copy_options::overwrite_existing);
  }
  fs::rename(keep, store);
  fs::rename(keep.string() + "-wal", store.string() + "-wal");
  fs::remove(store.string() + "-shm");
}

std::set<std::string> keys_in(const fs::path& store) {
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open(store.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::set<std::string> out;
  if (sqlite3_prepare_v2(h, "SELECT key FROM running_tasks", -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW)
      out.insert(std::string(static_cast<const char*>(sqlite3_column_blob(st, 0)), sqlite3_column_bytes(st, 0)));
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(PythonStore, RemovesExactlyTheTakenOverEntries) {
  TempDir tmp;
  fs::create_directories(tmp.state());
  const fs::path lt = tmp.path / "local", store = python_store_path(lt);
  leave_as_killed(store, [](KVaultWriter& w) {
    w.put("12", kRealValue12);
    w.put("77", kvault_value(task_value(77, "kohakuriver-task-77")));
    w.put("78", kvault_value(task_value(78, "kohakuriver-vps-78")));
  });
  fs::permissions(store, fs::perms(0644), fs::perm_options::replace);
  ASSERT_TRUE(fs::exists(store.string() + "-wal"));
  auto err = remove_python_store_entries(lt, tmp.state(), {12, 77, 99});
  ASSERT_FALSE(err) << *err;
  EXPECT_FALSE(fs::exists(store.string() + "-wal"));
  EXPECT_EQ(fs::status(store).permissions(), fs::perms(0644));
  EXPECT_EQ(keys_in(store), (std::set<std::string>{"78"}));
  auto c = read_python_store(lt, tmp.state());
  ASSERT_EQ(c.entries.size(), 1u);
  EXPECT_EQ(c.entries[0].kind, "vps");
  EXPECT_TRUE(fs::is_empty(tmp.state()));
  // Nothing to do: no ids, or the store is gone.
  EXPECT_FALSE(remove_python_store_entries(lt, tmp.state(), {}));
  fs::remove(store);
  EXPECT_FALSE(remove_python_store_entries(lt, tmp.state(), {1}));
  EXPECT_FALSE(fs::exists(store));
}

TEST(PythonStore, EditNeverWritesThroughPlantedLinks) {
  TempDir tmp;
  fs::create_directories(tmp.state());
  const fs::path lt = tmp.path / "local", store = python_store_path(lt);
  const fs::path victim = tmp.path / "victim";
  std::ofstream(victim) << "precious";
  {
    KVaultWriter w(store);
    w.put("12", kRealValue12);
  }
  // A link where the edit writes its new file: removed, not followed.
  fs::create_symlink(victim, store.parent_path() / "runner-state.db.kohakuriver-edit");
  ASSERT_FALSE(remove_python_store_entries(lt, tmp.state(), {12}));
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_TRUE(keys_in(store).empty());
  // A -wal link: the edit is refused, nothing written anywhere.
  {
    KVaultWriter w(store);
    w.put("13", kvault_value(task_value(13, "kohakuriver-task-13")));
  }
  fs::create_symlink(victim, store.string() + "-wal");
  auto err = remove_python_store_entries(lt, tmp.state(), {13});
  EXPECT_TRUE(err);
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_TRUE(fs::is_symlink(store.string() + "-wal"));
}

#pragma once
// Thin RAII layer over the SQLite C API, used only on the store's worker
// thread. Every error becomes a StoreError that names the failing statement,
// so a broken disk or a corrupt file surfaces with a readable message.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace kr::store {

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Stmt;

class Db {
 public:
  // Opens (creating when missing) the file read-write.
  explicit Db(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs one or more statements that return no rows we care about.
  void exec(std::string_view sql);
  Stmt prepare(std::string_view sql);
  int64_t last_insert_rowid() const;
  int changes() const;
  sqlite3* raw() const { return db_; }
  [[noreturn]] void fail(std::string_view what) const;

 private:
  sqlite3* db_ = nullptr;
};

// A prepared statement; bind() is 1-based like SQLite.
class Stmt {
 public:
  Stmt(Db& db, std::string_view sql);
  ~Stmt();
  Stmt(Stmt&& o) noexcept : db_(o.db_), st_(o.st_) { o.st_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int idx, int64_t v);
  Stmt& bind(int idx, std::string_view v);
  Stmt& bind(int idx, const std::optional<std::string>& v);
  Stmt& bind_null(int idx);
  // true while a row is available; false once the statement is done.
  bool step();
  // step() that must not return a row (INSERT/UPDATE/DELETE).
  void run();

  int64_t col_int(int idx) const;
  std::string col_text(int idx) const;
  std::optional<std::string> col_opt_text(int idx) const;

 private:
  Db* db_;
  sqlite3_stmt* st_ = nullptr;
};

// BEGIN IMMEDIATE … COMMIT; rolls back when destroyed without commit() (an
// exception escaped), so a failed multi-step operation leaves no half state.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Transaction();
  void commit();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

 private:
  Db& db_;
  bool done_ = false;
};

}  // namespace kr::store

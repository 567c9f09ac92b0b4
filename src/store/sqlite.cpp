#include "store/sqlite.hpp"

#include <sqlite3.h>

#include <string>

namespace kr::store {

Db::Db(const std::string& path) {
  // NOMUTEX: the connection is confined to the store's worker thread, so
  // SQLite's own per-connection mutex would only cost time.
  int rc = sqlite3_open_v2(path.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw StoreError("cannot open state database " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db_, 1);
}

Db::~Db() {
  // close_v2 defers the close until stray statements are finalized instead
  // of failing; all ours are RAII-owned, so this is the normal path.
  if (db_) sqlite3_close_v2(db_);
}

void Db::fail(std::string_view what) const {
  throw StoreError(std::string(what) + ": " + sqlite3_errmsg(db_) + " (code " +
                   std::to_string(sqlite3_extended_errcode(db_)) + ")");
}

void Db::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw StoreError("SQLite error in `" + s + "`: " + msg);
  }
}

Stmt Db::prepare(std::string_view sql) { return Stmt(*this, sql); }
int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Db::changes() const { return sqlite3_changes(db_); }

Stmt::Stmt(Db& db, std::string_view sql) : db_(&db) {
  if (sqlite3_prepare_v2(db.raw(), sql.data(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK)
    db.fail("SQLite prepare `" + std::string(sql) + "`");
}

Stmt::~Stmt() {
  if (st_) sqlite3_finalize(st_);
}

Stmt& Stmt::bind(int idx, int64_t v) {
  if (sqlite3_bind_int64(st_, idx, v) != SQLITE_OK) db_->fail("SQLite bind");
  return *this;
}

Stmt& Stmt::bind(int idx, std::string_view v) {
  if (sqlite3_bind_text(st_, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    db_->fail("SQLite bind");
  return *this;
}

Stmt& Stmt::bind(int idx, const std::optional<std::string>& v) {
  return v ? bind(idx, std::string_view(*v)) : bind_null(idx);
}

Stmt& Stmt::bind_null(int idx) {
  if (sqlite3_bind_null(st_, idx) != SQLITE_OK) db_->fail("SQLite bind");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_->fail(std::string("SQLite step `") + sqlite3_sql(st_) + "`");
}

void Stmt::run() {
  if (step()) throw StoreError(std::string("statement unexpectedly returned a row: ") + sqlite3_sql(st_));
}

int64_t Stmt::col_int(int idx) const { return sqlite3_column_int64(st_, idx); }

std::string Stmt::col_text(int idx) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, idx));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, idx))) : std::string();
}

std::optional<std::string> Stmt::col_opt_text(int idx) const {
  if (sqlite3_column_type(st_, idx) == SQLITE_NULL) return std::nullopt;
  return col_text(idx);
}

Transaction::~Transaction() {
  if (!done_) {
    // Best effort: if ROLLBACK itself fails the connection is unusable and
    // the next statement reports it.
    sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace kr::store

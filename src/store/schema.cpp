#include "store/schema.hpp"

#include <string>

namespace kr::store {

namespace {

// steps[i] upgrades version i to i + 1.
constexpr const char* kSteps[] = {
    // v1: runner-owned task rows and the status-report outbox.
    R"sql(
CREATE TABLE tasks (
  task_id        INTEGER PRIMARY KEY,
  kind           TEXT    NOT NULL,
  container_name TEXT    NOT NULL,
  phase          TEXT    NOT NULL,
  request_json   TEXT    NOT NULL,
  started_at     TEXT,
  killed         INTEGER NOT NULL DEFAULT 0,
  created_unix   INTEGER NOT NULL,
  extra_json     TEXT    NOT NULL DEFAULT '{}'
);
-- AUTOINCREMENT: seq never goes back, even after the newest rows were
-- deleted, so seq order is enqueue order across restarts.
CREATE TABLE outbox (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id       INTEGER NOT NULL,
  payload       TEXT    NOT NULL,
  is_final      INTEGER NOT NULL,
  attempts      INTEGER NOT NULL DEFAULT 0,
  enqueued_unix INTEGER NOT NULL
);
CREATE INDEX outbox_by_task ON outbox (task_id, seq);
)sql",
};

constexpr int kStepCount = static_cast<int>(sizeof kSteps / sizeof kSteps[0]);
static_assert(kStepCount == kSchemaVersion, "one migration step per schema version");

}  // namespace

int user_version(Db& db) {
  auto st = db.prepare("PRAGMA user_version");
  st.step();
  return static_cast<int>(st.col_int(0));
}

void migrate(Db& db) {
  int v = user_version(db);
  if (v > kSchemaVersion)
    throw StoreError("state database schema version " + std::to_string(v) + " is newer than this runner supports (" +
                     std::to_string(kSchemaVersion) + "); refusing to downgrade it");
  for (; v < kSchemaVersion; ++v) {
    Transaction tx(db);
    db.exec(kSteps[v]);
    // user_version is part of the database header, so it commits (or rolls
    // back) together with the step's DDL.
    db.exec("PRAGMA user_version = " + std::to_string(v + 1));
    tx.commit();
  }
}

}  // namespace kr::store

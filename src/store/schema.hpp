#pragma once
// Schema of runner-state.db and its migrations, keyed by PRAGMA user_version.
#include "store/sqlite.hpp"

namespace kr::store {

// The version this build writes. Bump it and append a step in schema.cpp
// for every schema change; never edit an applied step.
inline constexpr int kSchemaVersion = 1;

// Brings the database up to kSchemaVersion, one transaction per step, so a
// crash mid-migration leaves a consistent older version that is retried on
// the next start. Throws StoreError for a file written by a newer runner
// (downgrades are refused rather than silently misreading newer data).
void migrate(Db& db);

int user_version(Db& db);

}  // namespace kr::store

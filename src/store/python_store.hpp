#pragma once
// Read-only access to the Python runner's state store (migration, decisions
// "Adopting the Python runner's work"): LOCAL_TEMP_DIR/.kohakuriver/
// runner-state.db, a KohakuVault (SQLite) file whose table `running_tasks`
// maps str(task_id) to a value written by KohakuVault's auto-packer: a
// 10-byte header (0x89 'K', version 1, encoding 4 = MessagePack, flags 0,
// 3 reserved zero bytes, 'V' 'K') followed by a MessagePack map
// {task_id, container_name, allocated_cores, allocated_gpus, numa_node}
// (VM entries carry more keys).
//
// The file lies in a directory every container can write: it is untrusted.
// It is never opened in place by SQLite (a planted -wal/-shm symlink would
// be followed): the database and its -wal are copied through descriptors
// opened without following symlinks, size-capped, into a private scratch
// directory, and only the copy is read. Only well-formed entries are
// returned; everything else is listed as rejected with the reason.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kr::store {

struct PythonStoreEntry {
  int64_t task_id = 0;
  std::string container_name;  // kohakuriver-task-<id> | kohakuriver-vps-<id> | vm-<id>
  std::string kind;            // "task" | "vps" | "vm"

  bool operator==(const PythonStoreEntry&) const = default;
};

struct PythonStoreContents {
  bool present = false;  // the store file exists
  std::vector<PythonStoreEntry> entries;
  std::vector<std::string> rejected;  // one line per rejected row, with the reason
  std::optional<std::string> error;   // the file could not be read at all
};

// One `running_tasks` row → an entry, or the reason it is not well-formed:
// key of 1–18 decimal digits without leading zeros; value with the
// MessagePack header above; a map whose `task_id` is the key's number and
// whose `container_name` is exactly this task's name for one of the kinds.
struct ParsedRow {
  std::optional<PythonStoreEntry> entry;
  std::string reason;  // set when entry is empty
};
ParsedRow parse_python_store_row(std::string_view key, std::string_view value);

// The store's path under a LOCAL_TEMP_DIR (for messages and the doctor).
std::filesystem::path python_store_path(const std::filesystem::path& local_temp_dir);

// Reads the store as described above. `scratch_dir` must be a private
// directory (the runner's state directory); the copy is deleted afterwards.
// Blocking (file copies and SQLite): call it off the I/O thread.
PythonStoreContents read_python_store(const std::filesystem::path& local_temp_dir,
                                      const std::filesystem::path& scratch_dir);

// Rollback safety: removes the `running_tasks` rows of `task_ids` (tasks
// this runner took over: adopted, or reported lost) so that the Python
// runner, started again on this node, does not act on them (it would
// re-report them stopped/-1, overwriting their true results). Call it only
// while the Python runner is not running. Never edits the file in place
// (SQLite would follow a planted -wal/-shm link): a private copy is edited
// and checkpointed, written beside the store as a new file (O_EXCL,
// O_NOFOLLOW, original owner and mode), the old -wal/-shm are unlinked and
// the new file is renamed over the store. Returns the error, if any.
std::optional<std::string> remove_python_store_entries(const std::filesystem::path& local_temp_dir,
                                                       const std::filesystem::path& scratch_dir,
                                                       const std::vector<int64_t>& task_ids);

}  // namespace kr::store

#include "store/python_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "store/sqlite.hpp"

namespace kr::store {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// KohakuVault's value header (kv/header.rs in KohakuVault): magic 0x89 'K',
// version 1, encoding, flags, 3 reserved bytes, magic 'V' 'K'.
constexpr std::size_t kHeaderSize = 10;
constexpr unsigned char kEncodingMsgPack = 0x04;
// A node's store holds a handful of rows; anything near these is not one.
constexpr off_t kMaxFileBytes = 64 << 20;
constexpr int kMaxRows = 100000;
constexpr std::size_t kMaxValueBytes = 64 << 10;

// Nesting depth check before building the value: nlohmann's MessagePack
// reader recurses per level, and a crafted value of nested one-byte arrays
// must not exhaust the stack. Stops the parse at the first level too deep.
struct DepthLimit : nlohmann::json_sax<json> {
  int depth = 0;
  bool too_deep = false;
  bool enter() {
    if (++depth > 8) too_deep = true;
    return !too_deep;
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override { return --depth, true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// The kind whose container name this is for `id`, or "".
std::string kind_for_name(const std::string& name, int64_t id) {
  const std::string n = std::to_string(id);
  if (name == "kohakuriver-task-" + n) return "task";
  if (name == "kohakuriver-vps-" + n) return "vps";
  if (name == "vm-" + n) return "vm";
  return "";
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Copies `name` (relative to `dir_fd`, never through a symlink, regular
// file only, size-capped) to `dest`. false when it does not exist.
bool copy_regular_file(int dir_fd, const char* name, const fs::path& dest, const fs::path& shown) {
  // O_NONBLOCK: a FIFO planted under that name must not block the open.
  Fd src(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (src.fd < 0) {
    if (errno == ENOENT) return false;
    throw StoreError(errno_text("cannot open " + shown.string() + " (it must be a regular file, not a link)"));
  }
  struct stat st {};
  if (::fstat(src.fd, &st) != 0) throw StoreError(errno_text("cannot stat " + shown.string()));
  if (!S_ISREG(st.st_mode)) throw StoreError(shown.string() + " is not a regular file");
  if (st.st_size > kMaxFileBytes)
    throw StoreError(shown.string() + " is " + std::to_string(st.st_size) + " bytes; refusing to read more than " +
                     std::to_string(kMaxFileBytes));
  Fd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (out.fd < 0) throw StoreError(errno_text("cannot create " + dest.string()));
  std::array<char, 65536> buf{};
  off_t total = 0;
  for (;;) {
    ssize_t n = ::read(src.fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw StoreError(errno_text("cannot read " + shown.string()));
    if (n == 0) break;
    total += n;
    if (total > kMaxFileBytes) throw StoreError(shown.string() + " grew past the size limit while being read");
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(out.fd, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) throw StoreError(errno_text("cannot write " + dest.string()));
      off += w;
    }
  }
  return true;
}

struct ScratchFiles {
  fs::path db;
  ~ScratchFiles() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(db.string() + suffix, ec);
  }
};

using SqliteHandle = std::unique_ptr<sqlite3, int (*)(sqlite3*)>;

// Opens the private copy with the defensive settings for files of unknown
// origin (no schema-defined functions, triggers or views).
SqliteHandle open_untrusted_copy(const fs::path& copy) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(copy.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                           nullptr);
  SqliteHandle db(raw, sqlite3_close_v2);
  if (rc != SQLITE_OK) throw StoreError(std::string("cannot open the copy: ") + sqlite3_errstr(rc));
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_VIEW, 0, nullptr);
  return db;
}

// Reads every row of the copy. SQLite runs with the defensive settings for
// files of unknown origin: no schema-defined functions, bounded work.
void read_rows(const fs::path& copy, PythonStoreContents& out) {
  SqliteHandle db = open_untrusted_copy(copy);
  sqlite3* raw = db.get();
  sqlite3_limit(raw, SQLITE_LIMIT_LENGTH, static_cast<int>(kMaxValueBytes) * 4);
  // A crafted file can make a query run for ever: stop after this much work.
  long long ticks = 0;
  sqlite3_progress_handler(
      raw, 1000,
      [](void* p) -> int {
        auto* t = static_cast<long long*>(p);
        return ++*t > 100000 ? 1 : 0;
      },
      &ticks);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(raw, "SELECT key, value FROM main.running_tasks", -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(raw);
    if (msg.find("no such table") != std::string::npos) return;  // no task ever stored
    throw StoreError("cannot read table running_tasks: " + msg);
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
  int rows = 0;
  for (;;) {
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) throw StoreError(std::string("reading running_tasks failed: ") + sqlite3_errmsg(raw));
    if (++rows > kMaxRows) throw StoreError("running_tasks has more than " + std::to_string(kMaxRows) + " rows");
    auto col = [st](int i) {
      const void* p = sqlite3_column_blob(st, i);
      int n = sqlite3_column_bytes(st, i);
      return std::string(static_cast<const char*>(p ? p : ""), static_cast<std::size_t>(n));
    };
    const std::string key = col(0);
    const std::string value = col(1);
    auto parsed = parse_python_store_row(key, value);
    if (parsed.entry) {
      out.entries.push_back(std::move(*parsed.entry));
    } else {
      std::string shown = key.substr(0, 40);
      for (char& c : shown)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
      out.rejected.push_back("key '" + shown + "': " + parsed.reason);
    }
  }
}

// Deletes the rows of `ids` from the copy and folds its WAL into the file,
// so the file alone holds the result.
void delete_rows(const fs::path& copy, const std::vector<int64_t>& ids) {
  SqliteHandle db = open_untrusted_copy(copy);
  sqlite3* raw = db.get();
  auto exec = [raw](const char* sql) {
    if (sqlite3_exec(raw, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
      throw StoreError(std::string(sql) + ": " + sqlite3_errmsg(raw));
  };
  exec("BEGIN IMMEDIATE");
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(raw, "DELETE FROM main.running_tasks WHERE key = ?1", -1, &st, nullptr) != SQLITE_OK)
    throw StoreError(std::string("cannot prepare the delete: ") + sqlite3_errmsg(raw));
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
  for (int64_t id : ids) {
    // KohakuVault stores str keys as their UTF-8 bytes in a BLOB column.
    const std::string key = std::to_string(id);
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) throw StoreError(std::string("delete failed: ") + sqlite3_errmsg(raw));
  }
  exec("COMMIT");
  exec("PRAGMA main.wal_checkpoint(TRUNCATE)");
}

void unlink_if_present(int dir_fd, const char* name, const fs::path& shown) {
  if (::unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT) throw StoreError(errno_text("cannot remove " + shown.string()));
}

}  // namespace

ParsedRow parse_python_store_row(std::string_view key, std::string_view value) {
  ParsedRow r;
  int64_t id = 0;
  if (!all_digits(key) || (key.size() > 1 && key[0] == '0') ||
      std::from_chars(key.data(), key.data() + key.size(), id).ec != std::errc()) {
    r.reason = "key is not a task id";
    return r;
  }
  if (value.size() > kMaxValueBytes) {
    r.reason = "value too large";
    return r;
  }
  static constexpr unsigned char kMagic[] = {0x89, 'K', 0x01, kEncodingMsgPack, 0, 0, 0, 0, 'V', 'K'};
  if (value.size() <= kHeaderSize || std::memcmp(value.data(), kMagic, kHeaderSize) != 0) {
    r.reason = "value is not a MessagePack value written by KohakuVault";
    return r;
  }
  // char, not unsigned char: libc++ 19 (the release toolchain) has no
  // std::char_traits<unsigned char>, which nlohmann 3.11.2 needs for it.
  const char* p = value.data() + kHeaderSize;
  DepthLimit limit;
  if (!json::sax_parse(p, p + (value.size() - kHeaderSize), &limit, nlohmann::detail::input_format_t::msgpack,
                       /*strict=*/true) ||
      limit.too_deep) {
    r.reason = limit.too_deep ? "value nested too deeply" : "value is not valid MessagePack";
    return r;
  }
  json j = json::from_msgpack(p, p + (value.size() - kHeaderSize), /*strict=*/true, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    r.reason = "value is not a MessagePack map";
    return r;
  }
  auto tid = j.find("task_id");
  if (tid == j.end() || !tid->is_number_integer() || tid->get<int64_t>() != id) {
    r.reason = "task_id does not match the key";
    return r;
  }
  auto name = j.find("container_name");
  if (name == j.end() || !name->is_string()) {
    r.reason = "container_name missing";
    return r;
  }
  std::string kind = kind_for_name(name->get<std::string>(), id);
  if (kind.empty()) {
    r.reason = "container_name is not this task's container";
    return r;
  }
  r.entry = PythonStoreEntry{id, name->get<std::string>(), kind};
  return r;
}

fs::path python_store_path(const fs::path& local_temp_dir) {
  return local_temp_dir / ".kohakuriver" / "runner-state.db";
}

PythonStoreContents read_python_store(const fs::path& local_temp_dir, const fs::path& scratch_dir) {
  PythonStoreContents out;
  const fs::path shown = python_store_path(local_temp_dir);
  try {
    // LOCAL_TEMP_DIR itself is the operator's setting; below it, nothing
    // is followed through a symlink.
    Fd top(::open(local_temp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (top.fd < 0) {
      if (errno == ENOENT) return out;
      throw StoreError(errno_text("cannot open " + local_temp_dir.string()));
    }
    Fd dir(::openat(top.fd, ".kohakuriver", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.fd < 0) {
      if (errno == ENOENT) return out;
      throw StoreError(errno_text("cannot open " + (local_temp_dir / ".kohakuriver").string() +
                                  " (it must be a directory, not a link)"));
    }
    ScratchFiles scratch{scratch_dir / "python-runner-state.copy.db"};
    if (!copy_regular_file(dir.fd, "runner-state.db", scratch.db, shown)) return out;
    out.present = true;
    // Its last writes may still be in the WAL (the Python runner was killed,
    // nothing checkpointed): the copy replays it when opened.
    copy_regular_file(dir.fd, "runner-state.db-wal", scratch.db.string() + "-wal", shown.string() + "-wal");
    read_rows(scratch.db, out);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace kr::store

namespace kr::store {

std::optional<std::string> remove_python_store_entries(const fs::path& local_temp_dir, const fs::path& scratch_dir,
                                                       const std::vector<int64_t>& task_ids) {
  if (task_ids.empty()) return std::nullopt;
  const fs::path shown = python_store_path(local_temp_dir);
  try {
    Fd top(::open(local_temp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (top.fd < 0) throw StoreError(errno_text("cannot open " + local_temp_dir.string()));
    Fd dir(::openat(top.fd, ".kohakuriver", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.fd < 0) throw StoreError(errno_text("cannot open " + shown.parent_path().string()));
    struct stat orig {};
    if (::fstatat(dir.fd, "runner-state.db", &orig, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return std::nullopt;  // gone: nothing left to act on
      throw StoreError(errno_text("cannot stat " + shown.string()));
    }
    // 1. A private copy (with its WAL), edited there.
    ScratchFiles scratch{scratch_dir / "python-runner-state.edit.db"};
    if (!copy_regular_file(dir.fd, "runner-state.db", scratch.db, shown)) return std::nullopt;
    copy_regular_file(dir.fd, "runner-state.db-wal", scratch.db.string() + "-wal", shown.string() + "-wal");
    delete_rows(scratch.db, task_ids);
    // 2. Written next to the store as a new file (never through a planted
    // name: O_EXCL|O_NOFOLLOW), owner and mode of the original.
    static constexpr const char* kTmp = "runner-state.db.kohakuriver-edit";
    unlink_if_present(dir.fd, kTmp, shown.parent_path() / kTmp);
    {
      Fd in(::open(scratch.db.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (in.fd < 0) throw StoreError(errno_text("cannot reopen " + scratch.db.string()));
      Fd out(::openat(dir.fd, kTmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (out.fd < 0) throw StoreError(errno_text("cannot create " + (shown.parent_path() / kTmp).string()));
      std::array<char, 65536> buf{};
      for (;;) {
        ssize_t n = ::read(in.fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw StoreError(errno_text("cannot read " + scratch.db.string()));
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::write(out.fd, buf.data() + off, static_cast<size_t>(n - off));
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) throw StoreError(errno_text("cannot write the edited store"));
          off += w;
        }
      }
      if (::fchown(out.fd, orig.st_uid, orig.st_gid) != 0 || ::fchmod(out.fd, orig.st_mode & 07777) != 0 ||
          ::fsync(out.fd) != 0)
        throw StoreError(errno_text("cannot finish the edited store"));
    }
    // 3. The old WAL must go before the new file takes the name: replayed
    // onto the new file it would bring the rows back (or worse).
    unlink_if_present(dir.fd, "runner-state.db-wal", shown.string() + "-wal");
    unlink_if_present(dir.fd, "runner-state.db-shm", shown.string() + "-shm");
    if (::renameat(dir.fd, kTmp, dir.fd, "runner-state.db") != 0)
      throw StoreError(errno_text("cannot replace " + shown.string()));
    ::fsync(dir.fd);
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

}  // namespace kr::store

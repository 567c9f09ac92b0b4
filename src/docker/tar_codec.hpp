#pragma once
// The tar format as Docker's archive API speaks it (PUT/GET
// /containers/{id}/archive, what `docker cp` uses): a one-file archive to
// upload, and an incremental reader for the first entry of a download.
// Pure functions, no I/O. POSIX ustar headers; PAX extended headers (and
// GNU long names) are understood when reading, and written when a name or
// id does not fit ustar's fields.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kr::docker {

struct TarEntry {
  char type = '0';  // '0' regular file, '2' symlink, '5' directory, ...
  std::string name;
  std::string linkname;
  std::uint64_t size = 0;
  std::uint32_t mode = 0644;  // permission bits, setuid/setgid/sticky included
  std::uint64_t uid = 0;
  std::uint64_t gid = 0;
  std::int64_t mtime = 0;  // Unix seconds
};

inline constexpr std::size_t kTarBlock = 512;

// The header block(s) of one regular file `e` (e.type is ignored): a PAX
// extended header first when the name is over 100 bytes or an id over
// ustar's 7 octal digits. The content follows, then tar_padding(size)
// zero bytes, then tar_end().
std::string tar_file_header(const TarEntry& e);
std::size_t tar_padding(std::uint64_t size);
// End of archive: two zero blocks.
std::string tar_end();

// Parses one 512-byte ustar/GNU header block. Returns false (and says why)
// for a bad checksum or malformed numbers; an all-zero block is reported
// by `is_zero_block`.
bool parse_tar_header(std::string_view block, TarEntry& out, std::string& error);
bool is_zero_block(std::string_view block);
// Applies PAX extended-header records ("NN key=value\n"...) to `e`.
// Returns false on malformed records.
bool apply_pax_records(std::string_view records, TarEntry& e);

// Reads a tar stream's first real entry (PAX/GNU meta entries before it are
// applied to it): its header, then up to `max_content` bytes of its content.
// Feed bytes as they arrive; extra bytes after what is needed are ignored.
class TarFirstEntryReader {
 public:
  explicit TarFirstEntryReader(std::uint64_t max_content) : max_content_(max_content) {}
  // Throws std::runtime_error on a malformed stream.
  void feed(std::string_view bytes);
  bool has_entry() const { return state_ >= State::Content; }
  // Header and the wanted content are in.
  bool done() const { return state_ == State::Done; }
  const TarEntry& entry() const { return entry_; }
  std::string& content() { return content_; }

 private:
  enum class State { Header, Meta, Content, Done };
  void on_header();
  void on_meta_complete();
  State state_ = State::Header;
  std::uint64_t max_content_;
  std::string block_;          // a header block being assembled
  std::string meta_;           // content of a PAX/GNU meta entry being read
  std::uint64_t meta_size_ = 0;   // its size, padding excluded
  std::uint64_t meta_skip_ = 0;   // bytes still to read of it, padding included
  char meta_type_ = 0;
  std::string pax_records_;   // from 'x' entries, applied to the next entry
  std::string long_name_, long_link_;  // from GNU 'L' / 'K' entries
  TarEntry entry_;
  std::string content_;
  std::uint64_t want_ = 0;
};

}  // namespace kr::docker

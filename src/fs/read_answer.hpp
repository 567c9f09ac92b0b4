#pragma once
// The JSON answer of a file read (execution.md §6.2, D-FSREAD):
// {"path", "content", "encoding", "size", "truncated"} in upstream's key
// order, built as text — a 10 MiB base64 content needs no escaping, and
// the JSON serializer would cost ~100 ms — either from the whole file or
// while it arrives from dockerd (Base64Answer).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/http_types.hpp"
#include "common/base64.hpp"
#include "fs/fs_archive.hpp"

namespace kr::fs {

// `{"path":<n>,"content":` — what every read answer starts with.
std::string read_head(const std::string& n);

// The answer for the whole file in `bytes`: utf-8 text when asked for and
// valid UTF-8, else base64.
api::HttpResponse read_response(const std::string& n, std::string bytes, bool want_text, bool truncated);

// A base64 read answer built while the file arrives from dockerd (the
// same text read_response makes): the buffer is sized once the file's
// size is known and each piece is encoded into it in place, so nothing is
// left to do when the last piece is in.
class Base64Answer final : public ReadSink {
 public:
  explicit Base64Answer(std::string head) : head_(std::move(head)) {}

  void begin(std::uint64_t bytes, bool truncated) override;
  void data(std::string_view piece) override;
  // The answer, or nullopt when the pieces did not add up to the size.
  std::optional<std::string> finish();

 private:
  std::string head_, tail_, out_;
  std::size_t start_ = 0;
  std::optional<Base64PieceEncoder> encoder_;
  std::uint64_t expected_ = 0, got_ = 0;
  bool broken_ = false;
};

}  // namespace kr::fs

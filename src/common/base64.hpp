#pragma once
// Standard base64 (RFC 4648 alphabet, '=' padding).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kr {

std::string base64_encode(std::string_view bytes);
// Encodes into `out`, which has room for base64_encoded_size(bytes.size())
// characters; returns that count.
std::size_t base64_encoded_size(std::size_t bytes);
std::size_t base64_encode_into(std::string_view bytes, char* out);

// Encodes bytes that arrive in pieces of any size into `out` (room for
// base64_encoded_size of their total): whole groups as they complete, the
// last one with its padding at finish(). The text equals base64_encode of
// all pieces joined.
class Base64PieceEncoder {
 public:
  explicit Base64PieceEncoder(char* out) : out_(out) {}
  void feed(std::string_view piece);
  // Writes the final group; returns the characters written in all.
  std::size_t finish();

 private:
  char* out_;
  std::size_t pos_ = 0;
  char carry_[3] = {};
  std::size_t carry_len_ = 0;
};

// Lenient decoding like Python's base64.b64decode(validate=False):
// characters outside the alphabet are skipped; a wrong length or missing
// padding is an error whose text matches Python's ("Incorrect padding").
// Returns nullopt and sets `error` on failure.
std::optional<std::string> base64_decode_lenient(std::string_view text, std::string& error);

// The canonical form every real client sends: length a multiple of 4, only
// alphabet characters, at most two '=' closing the last group. One pass,
// no output: the decoded size when `text` has that form, else nullopt.
// Every canonical text is accepted by base64_decode_lenient with exactly
// the bytes base64_decode_canonical_chunk produces; a non-canonical one
// may still be accepted by it (whitespace, stray characters), or rejected.
std::optional<std::size_t> base64_canonical_size(std::string_view text);

// Decodes a piece of a text base64_canonical_size accepted, cut at a
// multiple of 4 characters (only the last piece holds the '=' padding),
// into `out` (room for text.size() / 4 * 3 bytes); returns the bytes
// written. Pieces decoded one after another give the whole text's bytes:
// how a large upload is decoded while it is being sent.
std::size_t base64_decode_canonical_chunk(std::string_view text, char* out);

}  // namespace kr

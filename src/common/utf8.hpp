#pragma once
// UTF-8 decoding with replacement, like Python's bytes.decode("utf-8",
// "replace"): each maximal invalid subpart becomes one U+FFFD.
#include <string>
#include <string_view>

namespace kr {

// Incremental: a multi-byte character split across feed() calls is kept
// back and completed by the next call instead of becoming U+FFFD (the
// terminal's 4096-byte reads, D-TERMUTF8).
class Utf8StreamDecoder {
 public:
  // Valid UTF-8 for everything up to an incomplete trailing sequence.
  std::string feed(std::string_view bytes);
  // End of stream: a held incomplete sequence becomes U+FFFD.
  std::string finish();
  std::size_t held() const { return held_.size(); }

 private:
  std::string held_;
};

// Whole buffer, replacement decoding.
std::string utf8_replace_invalid(std::string_view bytes);
bool utf8_is_valid(std::string_view bytes);

}  // namespace kr

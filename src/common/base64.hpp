#pragma once
// Standard base64 (RFC 4648 alphabet, '=' padding).
#include <optional>
#include <string>
#include <string_view>

namespace kr {

std::string base64_encode(std::string_view bytes);

// Lenient decoding like Python's base64.b64decode(validate=False):
// characters outside the alphabet are skipped; a wrong length or missing
// padding is an error whose text matches Python's ("Incorrect padding").
// Returns nullopt and sets `error` on failure.
std::optional<std::string> base64_decode_lenient(std::string_view text, std::string& error);

}  // namespace kr

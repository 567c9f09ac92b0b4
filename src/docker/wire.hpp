#pragma once
// Pure helpers for the Engine API wire format (no I/O, no Asio): splitting
// streamed JSON bodies, building query strings, API version arithmetic,
// error-body decoding. Separate from the transport so they are unit-tested
// without a daemon.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kr::docker::wire {

// Splits a byte stream of concatenated JSON values (Docker's progress and
// event streams: one object per line, but chunk boundaries fall anywhere)
// into complete values. Works on brace depth, string- and escape-aware, so
// it also copes with values not separated by newlines. Top-level text that
// is not an object/array is delivered up to the end of its line, so the
// caller sees (and can report) garbage instead of it being dropped silently.
class JsonStreamSplitter {
 public:
  using Sink = std::function<void(std::string_view value)>;

  // A single value larger than this is a protocol error (bounded memory).
  explicit JsonStreamSplitter(std::size_t max_value_bytes = 16u << 20)
      : max_value_bytes_(max_value_bytes) {}

  // Feeds bytes; calls `sink` for each completed value. Throws
  // std::length_error when one value exceeds the limit.
  void feed(std::string_view bytes, const Sink& sink);
  // End of stream: delivers a trailing unterminated non-JSON line, if any.
  // Returns false if the stream ended inside a JSON value (truncated).
  bool finish(const Sink& sink);

 private:
  std::string pending_;
  std::size_t depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  bool raw_line_ = false;  // collecting non-JSON top-level text
  std::size_t max_value_bytes_;
};

// RFC 3986 percent-encoding of everything except unreserved characters.
std::string percent_encode(std::string_view s);

// Builds "?a=1&b=x%2Fy"; empty string when no parameter was added.
class Query {
 public:
  Query& add(std::string_view key, std::string_view value);
  Query& add(std::string_view key, bool value) { return add(key, value ? "1" : "0"); }
  Query& add(std::string_view key, long long value) { return add(key, std::to_string(value)); }
  Query& add(std::string_view key, int value) { return add(key, static_cast<long long>(value)); }
  Query& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// "1.41" -> {1, 41}; nullopt if malformed.
std::optional<std::pair<int, int>> parse_api_version(std::string_view v);
// The API version to use: min(server, client_max); server unparsable -> fallback.
std::string negotiate_api_version(std::string_view server, std::string_view client_max,
                                  std::string_view fallback);

// Docker error bodies are {"message":"..."}; anything else is returned
// trimmed (and clipped to 1000 bytes) so the text still reaches the log.
std::string error_message_from_body(std::string_view body, int status);

}  // namespace kr::docker::wire

#include "fs/read_answer.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/utf8.hpp"

namespace kr::fs {

using json = nlohmann::json;

namespace {

std::string read_tail(bool as_text, std::uint64_t size, bool truncated) {
  return std::string(as_text ? R"(,"encoding":"utf-8")" : R"(,"encoding":"base64")") + R"(,"size":)" +
         std::to_string(size) + R"(,"truncated":)" + (truncated ? "true" : "false") + "}";
}

}  // namespace

std::string read_head(const std::string& n) {
  return R"({"path":)" + json(n).dump(-1, ' ', false, json::error_handler_t::replace) + R"(,"content":)";
}

void Base64Answer::begin(std::uint64_t bytes, bool truncated) {
  tail_ = read_tail(false, bytes, truncated);
  out_.resize(head_.size() + 2 + base64_encoded_size(static_cast<std::size_t>(bytes)) + tail_.size());
  char* o = std::copy(head_.begin(), head_.end(), out_.data());
  *o++ = '"';
  start_ = static_cast<std::size_t>(o - out_.data());
  encoder_.emplace(o);
  expected_ = bytes;
}

void Base64Answer::data(std::string_view piece) {
  if (!encoder_ || got_ + piece.size() > expected_) {
    broken_ = true;
    return;
  }
  got_ += piece.size();
  encoder_->feed(piece);
}

std::optional<std::string> Base64Answer::finish() {
  if (!encoder_ || broken_ || got_ != expected_) return std::nullopt;
  std::size_t pos = start_ + encoder_->finish();
  out_[pos++] = '"';
  std::copy(tail_.begin(), tail_.end(), out_.data() + pos);
  if (pos + tail_.size() != out_.size()) return std::nullopt;
  return std::move(out_);
}

api::HttpResponse read_response(const std::string& n, std::string bytes, bool want_text, bool truncated) {
  const bool as_text = want_text && utf8_is_valid(bytes);
  const std::string head = read_head(n);
  const std::string tail = read_tail(as_text, bytes.size(), truncated);
  std::string out;
  if (as_text) {
    out = head + json(bytes).dump() + tail;
  } else {
    // One allocation, the base64 written in place.
    out.resize(head.size() + 2 + base64_encoded_size(bytes.size()) + tail.size());
    char* o = out.data();
    o = std::copy(head.begin(), head.end(), o);
    *o++ = '"';
    o += base64_encode_into(bytes, o);
    *o++ = '"';
    std::copy(tail.begin(), tail.end(), o);
  }
  return api::HttpResponse{200, std::move(out), "application/json", {}};
}

}  // namespace kr::fs

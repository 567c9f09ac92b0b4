#include "docker/wire.hpp"

#include "docker/docker_client.hpp"

#include <charconv>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace kr::docker::wire {

void JsonStreamSplitter::feed(std::string_view bytes, const Sink& sink) {
  for (char c : bytes) {
    if (raw_line_) {
      if (c == '\n') {
        raw_line_ = false;
        std::string value = std::move(pending_);
        pending_.clear();
        while (!value.empty() && (value.back() == '\r' || value.back() == ' '))
          value.pop_back();
        sink(value);
        continue;
      }
      pending_.push_back(c);
    } else if (depth_ == 0) {
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
      pending_.push_back(c);
      if (c == '{' || c == '[') {
        depth_ = 1;
      } else {
        raw_line_ = true;
      }
    } else {
      pending_.push_back(c);
      if (in_string_) {
        if (escape_) {
          escape_ = false;
        } else if (c == '\\') {
          escape_ = true;
        } else if (c == '"') {
          in_string_ = false;
        }
      } else if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if (c == '}' || c == ']') {
        if (--depth_ == 0) {
          std::string value = std::move(pending_);
          pending_.clear();
          sink(value);
          continue;
        }
      }
    }
    if (pending_.size() > max_value_bytes_)
      throw std::length_error("streamed JSON value exceeds " + std::to_string(max_value_bytes_) +
                              " bytes");
  }
}

bool JsonStreamSplitter::finish(const Sink& sink) {
  if (raw_line_) {
    raw_line_ = false;
    std::string value = std::move(pending_);
    pending_.clear();
    sink(value);
    return true;
  }
  return depth_ == 0;
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Query& Query::add(std::string_view key, std::string_view value) {
  s_ += s_.empty() ? '?' : '&';
  s_ += percent_encode(key);
  s_ += '=';
  s_ += percent_encode(value);
  return *this;
}

std::optional<std::pair<int, int>> parse_api_version(std::string_view v) {
  auto dot = v.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int major = 0, minor = 0;
  auto a = std::from_chars(v.data(), v.data() + dot, major);
  auto b = std::from_chars(v.data() + dot + 1, v.data() + v.size(), minor);
  if (a.ec != std::errc() || a.ptr != v.data() + dot || b.ec != std::errc() ||
      b.ptr != v.data() + v.size() || dot == 0 || dot + 1 == v.size())
    return std::nullopt;
  return std::pair{major, minor};
}

std::string negotiate_api_version(std::string_view server, std::string_view client_max,
                                  std::string_view fallback) {
  auto s = parse_api_version(server);
  auto c = parse_api_version(client_max);
  if (!s || !c) return std::string(fallback);
  return std::string(*s < *c ? server : client_max);
}

std::string error_message_from_body(std::string_view body, int status) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    if (auto it = j.find("message"); it != j.end() && it->is_string()) return it->get<std::string>();
  }
  std::size_t b = body.find_first_not_of(" \t\r\n");
  std::size_t e = body.find_last_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "HTTP status " + std::to_string(status);
  std::string text(body.substr(b, e - b + 1));
  if (text.size() > 1000) text.resize(1000);
  return text;
}

}  // namespace kr::docker::wire

namespace kr::docker {

const char* method_name(Method m) {
  switch (m) {
    case Method::Get: return "GET";
    case Method::Head: return "HEAD";
    case Method::Post: return "POST";
    case Method::Put: return "PUT";
    case Method::Delete: return "DELETE";
  }
  return "GET";
}

}  // namespace kr::docker

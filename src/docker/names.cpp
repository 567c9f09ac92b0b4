#include "docker/names.hpp"

#include <stdexcept>
#include <vector>

namespace kr::docker {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_word(char c) { return is_alnum(c) || c == '_'; }

bool all_digits(std::string_view s, std::size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*
// separator      := [_.] | "__" | "-"+
bool is_path_component(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto alnum_run = [&] {
    std::size_t start = i;
    while (i < n && is_lower_alnum(s[i])) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < n) {
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < n && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < n && s[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool is_domain_component(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  for (char c : s)
    if (!is_alnum(c) && c != '-') return false;
  return true;
}

// domain := host [":" port], host := domain-name | "[" IPv6 "]"
bool is_domain(std::string_view s) {
  std::string_view host = s;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : s.substr(1, close - 1))
      if (!is_hex(c) && c != ':') return false;
    std::string_view rest = s.substr(close + 1);
    if (rest.empty()) return true;
    return rest.front() == ':' && all_digits(rest.substr(1), 5);
  }
  auto colon = s.find(':');
  if (colon != std::string_view::npos) {
    if (!all_digits(s.substr(colon + 1), 5)) return false;
    host = s.substr(0, colon);
  }
  std::size_t start = 0;
  while (true) {
    auto dot = host.find('.', start);
    if (!is_domain_component(host.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool looks_like_domain(std::string_view s) {
  return s.find('.') != std::string_view::npos || s.find(':') != std::string_view::npos ||
         s == "localhost" || (!s.empty() && s.front() == '[');
}

// digest := algorithm ":" hex{32,}; algorithm := [A-Za-z][A-Za-z0-9]* ([+.-_] …)*
bool is_digest(std::string_view s) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view algo = s.substr(0, colon), hex = s.substr(colon + 1);
  bool component_start = true;
  for (char c : algo) {
    if (c == '+' || c == '.' || c == '-' || c == '_') {
      if (component_start) return false;
      component_start = true;
    } else if (component_start) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
      component_start = false;
    } else if (!is_alnum(c)) {
      return false;
    }
  }
  if (component_start) return false;
  if (hex.size() < 32 || hex.size() > 1024) return false;
  for (char c : hex)
    if (!is_hex(c)) return false;
  // The only algorithm Docker resolves; its hex must be exactly 64 lower-case.
  if (algo == "sha256") {
    if (hex.size() != 64) return false;
    for (char c : hex)
      if (c >= 'A' && c <= 'F') return false;
  }
  return true;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

}  // namespace

bool is_managed_container_name(std::string_view name) {
  for (std::string_view prefix : {"kohakuriver-task-", "kohakuriver-vps-", "vm-"}) {
    if (name.substr(0, prefix.size()) == prefix)
      return all_digits(name.substr(prefix.size()), 19);
  }
  return false;
}

std::optional<long long> managed_container_id(std::string_view name) {
  if (!is_managed_container_name(name)) return std::nullopt;
  std::string_view digits = name.substr(name.rfind('-') + 1);
  unsigned long long v = 0;
  for (char c : digits) {
    const unsigned d = static_cast<unsigned>(c - '0');
    if (v > (9223372036854775807ULL - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return static_cast<long long>(v);
}

bool is_valid_container_name(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty() || name.size() > kMaxContainerNameLength || !is_alnum(name.front()))
    return false;
  for (char c : name)
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

bool is_valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLength || !is_word(tag.front())) return false;
  for (char c : tag)
    if (!is_word(c) && c != '.' && c != '-') return false;
  return true;
}

std::string ImageReference::name() const {
  return domain.empty() ? path : domain + "/" + path;
}

std::string ImageReference::str() const {
  std::string s = name();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::optional<ImageReference> parse_image_reference(std::string_view ref) {
  ImageReference out;
  std::string_view rest = ref;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    if (!is_digest(rest.substr(at + 1))) return std::nullopt;
    out.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
  }
  // A tag is a ':' after the last '/': earlier colons belong to a port.
  auto last_slash = rest.rfind('/');
  auto colon = rest.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
  if (colon != std::string_view::npos) {
    if (!is_valid_tag(rest.substr(colon + 1))) return std::nullopt;
    out.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
  }
  if (rest.empty() || rest.size() > kMaxRepositoryLength) return std::nullopt;

  auto parts = split(rest, '/');
  auto all_paths = [&](std::size_t from) {
    for (std::size_t i = from; i < parts.size(); ++i)
      if (!is_path_component(parts[i])) return false;
    return true;
  };
  const bool domain_ok = parts.size() >= 2 && is_domain(parts[0]) && all_paths(1);
  const bool path_ok = all_paths(0);
  if (!domain_ok && !path_ok) return std::nullopt;
  // Prefer Docker's split (see header); fall back to whichever parse is valid.
  if (domain_ok && (looks_like_domain(parts[0]) || !path_ok)) {
    out.domain = std::string(parts[0]);
    out.path = std::string(rest.substr(parts[0].size() + 1));
  } else {
    out.path = std::string(rest);
  }
  return out;
}

bool is_valid_image_reference(std::string_view ref) {
  if (ref.substr(0, 7) == "sha256:") return is_digest(ref);
  return parse_image_reference(ref).has_value();
}

void validate_container_name(std::string_view name) {
  if (!is_valid_container_name(name))
    throw std::invalid_argument("invalid container name '" + std::string(name) + "'");
}

void validate_image_reference(std::string_view ref) {
  if (!is_valid_image_reference(ref))
    throw std::invalid_argument("invalid image reference '" + std::string(ref) + "'");
}

}  // namespace kr::docker

#include "vm/yaml_emit.hpp"

#include <cstdio>
#include <stdexcept>

namespace kr::vm {

using nlohmann::ordered_json;

std::string yaml_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through
        }
    }
  }
  return out + "\"";
}

namespace {

// A literal block reproduces the string exactly when it has a line break,
// no control characters besides tab/newline, does not start with blank space
// or a newline (that would need an indentation indicator) and has no line of
// only spaces (those would be read as indentation).
bool literal_block_ok(const std::string& s) {
  if (s.find('\n') == std::string::npos) return false;
  if (s.front() == ' ' || s.front() == '\n' || s.front() == '\t') return false;
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
  }
  // A trailing line of only spaces would be read as indentation.
  for (std::size_t pos = 0; pos < s.size();) {
    std::size_t nl = s.find('\n', pos);
    std::size_t end = nl == std::string::npos ? s.size() : nl;
    if (end > pos && s.find_first_not_of(' ', pos) >= end) return false;  // spaces-only line
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return true;
}

std::string literal_block(const std::string& s, int indent) {
  std::size_t trailing = 0;
  while (trailing < s.size() && s[s.size() - 1 - trailing] == '\n') ++trailing;
  std::string out = trailing == 0 ? "|-" : trailing == 1 ? "|" : "|+";
  out += "\n";
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::size_t pos = 0;
  const std::size_t body_end = s.size() - trailing;
  while (pos < body_end) {
    std::size_t nl = s.find('\n', pos);
    if (nl == std::string::npos || nl > body_end) nl = body_end;
    if (nl > pos) out += pad + s.substr(pos, nl - pos);
    out += "\n";
    pos = nl + 1;
  }
  for (std::size_t i = 1; i < trailing; ++i) out += "\n";
  return out;
}

std::string scalar(const ordered_json& v) {
  switch (v.type()) {
    case ordered_json::value_t::null: return "null";
    case ordered_json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case ordered_json::value_t::number_integer:
    case ordered_json::value_t::number_unsigned:
    case ordered_json::value_t::number_float: return v.dump();
    case ordered_json::value_t::string: return yaml_quote(v.get<std::string>());
    case ordered_json::value_t::object:
      if (v.empty()) return "{}";
      break;
    case ordered_json::value_t::array:
      if (v.empty()) return "[]";
      break;
    default: break;
  }
  throw std::invalid_argument("to_yaml: unsupported value " + v.dump());
}

// Plain keys when they cannot be read as anything but a string in YAML 1.1.
std::string key(const std::string& k) {
  static const char* const kReserved[] = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"};
  bool plain = !k.empty() && ((k[0] >= 'a' && k[0] <= 'z') || k[0] == '_');
  for (char c : k) plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  for (const char* r : kReserved) plain = plain && k != r;
  return plain ? k : yaml_quote(k);
}

bool is_collection(const ordered_json& v) { return (v.is_object() || v.is_array()) && !v.empty(); }

void emit(const ordered_json& v, int indent, std::string& out);

// Writes the value after "key:" or "- " has been written (no newline yet).
void emit_after_marker(const ordered_json& v, int child_indent, std::string& out) {
  if (is_collection(v)) {
    out += "\n";
    emit(v, child_indent, out);
  } else if (v.is_string() && literal_block_ok(v.get_ref<const std::string&>())) {
    out += " " + literal_block(v.get_ref<const std::string&>(), child_indent);
  } else {
    out += " " + scalar(v) + "\n";
  }
}

void emit(const ordered_json& v, int indent, std::string& out) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += pad + key(it.key()) + ":";
      emit_after_marker(it.value(), indent + 2, out);
    }
  } else if (v.is_array()) {
    for (const auto& item : v) {
      if (item.is_object() && !item.empty()) {
        // "- key: value" with the remaining keys aligned under the first.
        std::string nested;
        emit(item, indent + 2, nested);
        out += pad + "- " + nested.substr(static_cast<std::size_t>(indent) + 2);
      } else {
        out += pad + "-";
        emit_after_marker(item, indent + 2, out);
      }
    }
  } else {
    out += pad + scalar(v) + "\n";
  }
}

}  // namespace

std::string to_yaml(const ordered_json& document) {
  std::string out;
  if (is_collection(document)) {
    emit(document, 0, out);
  } else {
    out = scalar(document) + "\n";
  }
  return out;
}

}  // namespace kr::vm

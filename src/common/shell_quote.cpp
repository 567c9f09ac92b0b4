#include "common/shell_quote.hpp"

namespace kr {
namespace {

// shlex's safe set is `[\w@%+=:,./-]` compiled with re.ASCII, so every byte
// of a non-ASCII character makes the string "unsafe" and quoted.
bool is_shell_safe(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '@' || c == '%' || c == '+' || c == '=' || c == ':' || c == ',' || c == '.' || c == '/' ||
         c == '-';
}

}  // namespace

std::string shell_quote(std::string_view s) {
  if (s.empty()) return "''";
  bool safe = true;
  for (char c : s)
    if (!is_shell_safe(static_cast<unsigned char>(c))) {
      safe = false;
      break;
    }
  if (safe) return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  out += '\'';
  return out;
}

}  // namespace kr

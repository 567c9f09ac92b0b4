#include "tasks/shell.hpp"

#include <cstdint>

namespace kr::tasks {
namespace {

// CPython's Py_UNICODE_ISSPACE: what str.strip() removes by default.
bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed sequence starting at s[i] (0 if it is not one),
// using the Unicode table of valid second bytes (no overlongs, surrogates or
// code points above U+10FFFF). `valid_prefix` receives how many bytes form a
// maximal valid-so-far prefix, which is what one U+FFFD replaces.
std::size_t utf8_seq(std::string_view s, std::size_t i, std::size_t& valid_prefix) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  valid_prefix = 1;
  if (b0 < 0x80) return 1;
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k < len; ++k) {
    if (i + k >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : is_cont(b);
    if (!ok) return 0;
    valid_prefix = k + 1;
  }
  return len;
}

char32_t decode_at(std::string_view s, std::size_t i, std::size_t len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (len == 1) return b0;
  char32_t cp = b0 & (0xFF >> (len + 1));
  for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

}  // namespace

std::string build_task_script(std::string_view command, const std::vector<std::string>& arguments,
                              std::string_view container_stdout, std::string_view container_stderr,
                              bool tunnel) {
  std::string args;
  for (const auto& a : arguments) {
    if (!args.empty()) args += ' ';
    args += shell_quote(a);
  }
  // Upstream formats "{command} {args}" and strips it, so an empty argument
  // list leaves no trailing blank and leading/trailing whitespace of the raw
  // command disappears too.
  std::string inner = python_strip(std::string(command) + " " + args);
  std::string script = "exec " + inner + " > " + shell_quote(container_stdout) + " 2> " +
                       shell_quote(container_stderr);
  if (!tunnel) return script;
  // The client daemonises in a subshell, then `exec` still replaces the
  // shell with the workload.
  return tunnel_wrapper_prefix() + " && " + script;
}

std::string tunnel_wrapper_prefix() {
  // Exact text of upstream's wrapper (§1.5.2).
  return "(nohup " + std::string(kTunnelClientContainerPath) +
         " --runner-url \"$KOHAKURIVER_TUNNEL_URL\" --container-id \"$KOHAKURIVER_CONTAINER_ID\""
         " --log-level info > /tmp/tunnel-client.log 2>&1 &) && sleep 0.1";
}

std::string python_strip(std::string_view s) {
  std::size_t begin = 0, end = s.size();
  while (begin < end) {
    std::size_t vp;
    std::size_t len = utf8_seq(s, begin, vp);
    if (len == 0 || !is_python_space(decode_at(s, begin, len))) break;
    begin += len;
  }
  while (end > begin) {
    // Step back to the start of the last code point (at most 4 bytes).
    std::size_t start = end - 1;
    while (start > begin && end - start < 4 && is_cont(static_cast<unsigned char>(s[start]))) --start;
    std::size_t vp;
    std::size_t len = utf8_seq(s, start, vp);
    if (len == 0 || start + len != end || !is_python_space(decode_at(s, start, len))) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

std::string decode_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    std::size_t valid_prefix;
    std::size_t len = utf8_seq(bytes, i, valid_prefix);
    if (len > 0) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += valid_prefix;
    }
  }
  return out;
}

std::string utf8_prefix(std::string_view s, std::size_t n) {
  std::size_t i = 0;
  for (std::size_t count = 0; i < s.size() && count < n; ++count) {
    std::size_t vp;
    std::size_t len = utf8_seq(s, i, vp);
    i += len == 0 ? 1 : len;
  }
  return std::string(s.substr(0, i));
}

}  // namespace kr::tasks

#include "fs/fs_parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>

#include "common/datetime.hpp"
#include "fs/fs_paths.hpp"

namespace kr::fs {

std::vector<std::string> ls_argv(const std::string& n, bool show_hidden, bool gnu) {
  std::vector<std::string> a = {"ls", show_hidden ? "-la" : "-lA"};
  if (gnu) a.push_back("--time-style=+%s");
  a.push_back(n);
  return a;
}

std::vector<std::string> stat_type_size_argv(const std::string& n, bool gnu) {
  if (gnu) return {"stat", "--format=%F|%s", n};
  return {"stat", "-c", "%F|%s", n};
}

std::vector<std::string> stat_full_argv(const std::string& n, bool gnu) {
  if (gnu) return {"stat", "--format=%F|%s|%Y|%U|%G|%a", n};
  return {"stat", "-c", "%F|%s|%Y|%U|%G|%a", n};
}

std::vector<std::string> head_argv(const std::string& n, std::int64_t limit) {
  return {"head", "-c", std::to_string(limit), n};
}

std::vector<std::string> write_argv(const std::string& n) { return {"sh", "-c", "cat > \"$1\"", "sh", n}; }

std::vector<std::string> inotify_argv(const std::vector<std::string>& paths) {
  std::vector<std::string> a = {"inotifywait", "-m", "-r", "-e", "create,modify,delete,move", "--format", "%e|%w%f|%:e"};
  a.insert(a.end(), paths.begin(), paths.end());
  return a;
}

std::vector<std::string> find_snapshot_argv(const std::string& path, bool with_mtime) {
  if (with_mtime) return {"find", path, "-maxdepth", "3", "-printf", "%p|%T@\\n"};
  return {"find", path, "-maxdepth", "3"};
}

bool contains(std::string_view h, std::string_view n) { return h.find(n) != std::string_view::npos; }

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n\f\v");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n\f\v");
  return std::string(s.substr(b, e - b + 1));
}

namespace {

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> f;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size()) break;
    std::size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    f.push_back(line.substr(i, j - i));
    i = j;
  }
  return f;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string join(const std::vector<std::string_view>& f, std::size_t from) {
  std::string out;
  for (std::size_t i = from; i < f.size(); ++i) {
    if (i > from) out.push_back(' ');
    out.append(f[i]);
  }
  return out;
}

std::string iso_of_unix(std::int64_t secs) {
  return naive_local_iso(std::chrono::system_clock::time_point(std::chrono::seconds(secs)));
}

}  // namespace

json parse_ls(std::string_view out, const std::string& n, const std::string& now_iso) {
  json entries = json::array();
  const std::string text = trim(out);
  std::size_t i = 0;
  while (i <= text.size() && entries.size() < kMaxListEntries) {
    std::size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    std::string_view line(text.data() + i, j - i);
    i = j + 1;
    if (line.empty() || line.substr(0, 6) == "total ") continue;
    auto f = split_ws(line);
    if (f.size() < 6) continue;
    std::string name, mtime;
    if (all_digits(f[5]) && f[5].size() > 6) {
      name = join(f, 6);
      mtime = iso_of_unix(to_int(f[5]).value_or(0));
    } else {
      if (f.size() < 8) continue;
      name = join(f, 8);
      mtime = now_iso;
    }
    const char t = f[0].empty() ? '?' : f[0][0];
    std::string type = t == 'd' ? "directory" : t == 'l' ? "symlink" : t == '-' ? "file" : "other";
    if (type == "symlink") {
      auto arrow = name.find(" -> ");
      if (arrow != std::string::npos) name.resize(arrow);
    }
    if (name.empty() || name == "." || name == "..") continue;
    std::int64_t size = -1;
    if (type == "file") size = to_int(f[4]).value_or(-1);
    json e = json::object();
    e["name"] = name;
    e["path"] = n == "/" ? "/" + name : n + "/" + name;
    e["type"] = type;
    e["size"] = size;
    e["mtime"] = mtime;
    e["permissions"] = std::string(f[0].substr(1));
    entries.push_back(std::move(e));
  }
  return entries;
}

json parent_of(const std::string& n) {
  if (n == "/") return nullptr;
  return python_dirname(n);
}

std::optional<StatInfo> parse_stat_full(std::string_view out) {
  const std::string t = trim(out);
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (true) {
    auto j = t.find('|', i);
    parts.push_back(t.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  if (parts.size() < 6) return std::nullopt;
  StatInfo s;
  s.type_text = parts[0];
  auto size = to_int(parts[1]);
  auto mtime = to_int(parts[2]);
  if (!size || !mtime) throw std::invalid_argument("non-numeric stat output");
  s.size = *size;
  s.mtime = *mtime;
  s.owner = parts[3];
  s.group = parts[4];
  s.mode = parts[5];
  return s;
}

std::pair<std::string, std::int64_t> parse_stat_type_size(std::string_view out) {
  const std::string t = trim(out);
  auto bar = t.find('|');
  if (bar == std::string::npos) return {t, 0};
  return {t.substr(0, bar), to_int(trim(t.substr(bar + 1))).value_or(0)};
}

std::string stat_kind(const std::string& type_text) {
  std::string lower = type_text;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (contains(lower, "directory")) return "directory";
  if (contains(lower, "symbolic link")) return "symlink";
  if (contains(lower, "regular") || contains(lower, "empty")) return "file";
  return "other";
}

std::string mode_to_rwx(const std::string& octal) {
  if (octal.empty()) return octal;
  unsigned v = 0;
  for (char c : octal) {
    if (c < '0' || c > '7') return octal;
    v = v * 8 + static_cast<unsigned>(c - '0');
  }
  std::string out;
  const char* sym = "rwx";
  for (int shift = 6; shift >= 0; shift -= 3)
    for (int b = 0; b < 3; ++b) out.push_back((v >> (shift + 2 - b)) & 1 ? sym[b] : '-');
  return out;
}

bool is_binary_name(const std::string& n) {
  static const char* kExt[] = {".bin", ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".zip", ".tar", ".gz",
                               ".bz2", ".xz", ".7z", ".rar", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".ico",
                               ".webp", ".mp3", ".wav", ".ogg", ".flac", ".mp4", ".mkv", ".avi", ".pdf",
                               ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".pyc", ".pyo", ".class",
                               ".jar", ".war"};
  // Python splitext: last dot of the final component, leading dots ignored.
  auto slash = n.rfind('/');
  std::string base = slash == std::string::npos ? n : n.substr(slash + 1);
  std::size_t lead = 0;
  while (lead < base.size() && base[lead] == '.') ++lead;
  auto dot = base.rfind('.');
  if (dot == std::string::npos || dot < lead) return false;
  std::string ext = base.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto* e : kExt)
    if (ext == e) return true;
  return false;
}

std::optional<json> parse_inotify_line(std::string_view raw) {
  const std::string line = trim(raw);
  if (line.empty()) return std::nullopt;
  auto a = line.find('|');
  if (a == std::string::npos) return std::nullopt;
  auto b = line.find('|', a + 1);
  const std::string events = line.substr(0, a);
  const std::string path = line.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  const bool is_dir = b != std::string::npos && contains(events, "ISDIR");
  std::string event = contains(events, "CREATE") ? "CREATE"
                      : contains(events, "DELETE") ? "DELETE"
                      : contains(events, "MOVE")   ? "MOVE"
                                                   : "MODIFY";
  json j = json::object();
  j["type"] = "change";
  j["event"] = event;
  j["path"] = path;
  j["is_dir"] = is_dir;
  return j;
}

std::map<std::string, std::string> parse_find_snapshot(std::string_view out, bool with_mtime) {
  std::map<std::string, std::string> snap;
  std::size_t i = 0;
  while (i < out.size()) {
    auto j = out.find('\n', i);
    if (j == std::string_view::npos) j = out.size();
    std::string line = trim(out.substr(i, j - i));
    i = j + 1;
    if (line.empty()) continue;
    if (!with_mtime) {
      snap[line] = "0";
      continue;
    }
    auto bar = line.rfind('|');
    if (bar == std::string::npos) snap[line] = "0";
    else snap[line.substr(0, bar)] = line.substr(bar + 1);
  }
  return snap;
}

}  // namespace kr::fs

#include <cstdint>
#include <cstring>

#include "common/utf8.hpp"

namespace kr::fs {

namespace {
// Any byte below 0x20? Eight bytes at a time over ASCII (base64 content).
// True when `s` has a byte below 0x20; `ascii` tells whether every byte
// was below 0x80 (then it is valid UTF-8 without further checks).
bool has_control_char(std::string_view s, bool& ascii) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  ascii = true;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    // High bit clear in every byte and every byte >= 0x20: skip the word.
    if ((w & 0x8080808080808080ull) == 0 && ((w - 0x2020202020202020ull) & 0x8080808080808080ull) == 0) continue;
    for (std::size_t k = 0; k < 8; ++k) {
      if (p[i + k] < 0x20) return true;
      if (p[i + k] >= 0x80) ascii = false;
    }
  }
  for (; i < s.size(); ++i) {
    if (p[i] < 0x20) return true;
    if (p[i] >= 0x80) ascii = false;
  }
  return false;
}
}  // namespace

std::optional<std::string> take_plain_string_member(std::string_view body, std::string_view key,
                                                    std::string& rest) {
  auto value = find_plain_string_member(body, key, rest);
  if (!value) return std::nullopt;
  return std::string(*value);
}

std::optional<std::string_view> find_plain_string_member(std::string_view body, std::string_view key,
                                                         std::string& rest) {
  // Walk the top level of the object; skip nested values string-aware.
  std::size_t i = body.find_first_not_of(" \t\r\n");
  if (i == std::string_view::npos || body[i] != '{') return std::nullopt;
  int depth = 0;
  bool expect_key = false;
  std::size_t best_begin = 0, best_end = 0;
  bool found = false;
  const char* data = body.data();
  const std::size_t n = body.size();
  std::string_view last_key;
  bool after_colon = false;
  while (i < n) {
    const char c = data[i];
    if (c == '"') {
      // String: find its end (escape-aware, memchr for speed).
      const std::size_t start = i + 1;
      std::size_t j = start;
      bool escaped = false;
      for (;;) {
        const void* q = std::memchr(data + j, '"', n - j);
        if (!q) return std::nullopt;
        std::size_t end = static_cast<const char*>(q) - data;
        std::size_t bs = end;
        while (bs > start && data[bs - 1] == '\\') --bs;
        if ((end - bs) % 2 == 0) {
          escaped = escaped || std::memchr(data + start, '\\', end - start) != nullptr;
          j = end;
          break;
        }
        j = end + 1;
      }
      if (depth == 1 && expect_key) {
        last_key = escaped ? std::string_view() : body.substr(start, j - start);
        expect_key = false;
      } else if (depth == 1 && after_colon && last_key == key) {
        if (escaped) return std::nullopt;
        found = true;
        best_begin = start;
        best_end = j;
      }
      after_colon = false;
      i = j + 1;
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
      if (depth == 1) expect_key = true;
    } else if (c == '}' || c == ']') {
      --depth;
      if (depth == 0) break;
    } else if (c == ',' && depth == 1) {
      expect_key = true;
    } else if (c == ':' && depth == 1) {
      after_colon = true;
      ++i;
      continue;
    }
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') after_colon = false;
    ++i;
  }
  if (!found) return std::nullopt;
  std::string_view value = body.substr(best_begin, best_end - best_begin);
  bool ascii = true;
  if (has_control_char(value, ascii)) return std::nullopt;  // invalid JSON: let the parser report it
  if (!ascii && !utf8_is_valid(value)) return std::nullopt;
  rest.clear();
  rest.reserve(body.size() - value.size());
  rest.append(body.substr(0, best_begin));
  rest.append(body.substr(best_end));
  return value;
}

}  // namespace kr::fs

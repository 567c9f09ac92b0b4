#include "monitor/sysfs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <system_error>

namespace kr::monitor::detail {

namespace fs = std::filesystem;

fs::path under(const fs::path& root, std::string_view abs) {
  while (!abs.empty() && abs.front() == '/') abs.remove_prefix(1);
  return root / fs::path(abs);
}

std::optional<std::string> read_small_file(const fs::path& path, std::size_t max_bytes) {
  // POSIX I/O instead of iostreams: these reads run every heartbeat on the
  // I/O thread, and sysfs attributes must be read in one go from offset 0.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  out.resize(std::min<std::size_t>(max_bytes, 4096));
  std::size_t used = 0;
  bool ok = true;
  while (used < max_bytes) {
    if (used == out.size()) out.resize(std::min(max_bytes, out.size() * 2));
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  out.resize(used);
  return out;
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\v\f";
  auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::optional<std::string> read_trimmed(const fs::path& path) {
  auto s = read_small_file(path);
  if (!s) return std::nullopt;
  return std::string(trim(*s));
}

std::optional<fs::path> read_link(const fs::path& dir, std::string_view name) {
  std::error_code ec;
  fs::path link = dir / fs::path(name);
  if (fs::is_symlink(link, ec)) {
    auto target = fs::read_symlink(link, ec);
    if (!ec) return target;
    return std::nullopt;
  }
  for (const std::string& stand_in :
       {"_" + std::string(name) + "_link", std::string(name) + "_link"}) {
    if (auto text = read_trimmed(dir / stand_in); text && !text->empty())
      return fs::path(*text);
  }
  return std::nullopt;
}

namespace {
// "_X_link" or "X_link" (a recorded symlink) -> "X"; other names unchanged.
std::string link_stand_in_name(std::string name) {
  constexpr std::string_view suffix = "_link";
  if (name.size() > suffix.size() && name.ends_with(suffix)) {
    name.resize(name.size() - suffix.size());
    if (name.size() > 1 && name.front() == '_') name.erase(0, 1);
  }
  return name;
}
}  // namespace

std::vector<std::string> list_entries(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) name = link_stand_in_name(std::move(name));
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

double round_1dp(double x) {
  // to_chars with a precision is specified as printf("%.1f"): the exact binary
  // value correctly rounded, ties to even - the same as Python's round(x, 1).
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf - 1, x, std::chars_format::fixed, 1);
  if (ec != std::errc()) return x;
  double out = x;
#if defined(_LIBCPP_VERSION) && _LIBCPP_VERSION < 200000
  // libc++ before 20 (the release build's Zig toolchain) has no floating-point
  // from_chars; strtod is exact too, and the runner never leaves the "C" locale.
  *end = '\0';
  out = std::strtod(buf, nullptr);
#else
  std::from_chars(buf, end, out);
#endif
  return out;
}

}  // namespace kr::monitor::detail

#include "tasks/image_source.hpp"

#include <charconv>
#include <system_error>

namespace kr::tasks {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Reads exactly `n` digits at `pos`.
bool read_fixed(std::string_view s, std::size_t& pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t k = 0; k < n; ++k) {
    if (!is_digit(s[pos + k])) return false;
    out = out * 10 + (s[pos + k] - '0');
  }
  pos += n;
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int days_in_month(int y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// "HH[[:]MM[[:]SS]]" after a sign: the offset in seconds, Python's < 24 h.
bool read_offset(std::string_view s, std::size_t pos, int64_t& out) {
  int h, m = 0, sec = 0;
  if (!read_fixed(s, pos, 2, h)) return false;
  if (pos < s.size()) {
    if (s[pos] == ':') ++pos;
    if (!read_fixed(s, pos, 2, m)) return false;
    if (pos < s.size()) {
      if (s[pos] == ':') ++pos;
      if (!read_fixed(s, pos, 2, sec)) return false;
    }
  }
  if (pos != s.size() || h > 23 || m > 59 || sec > 59) return false;
  out = h * 3600 + m * 60 + sec;
  return true;
}

}  // namespace

std::optional<int64_t> tarball_timestamp(std::string_view filename, std::string_view env_name) {
  // The name part is compared literally (re.escape) after ASCII lower-casing.
  // Valid environment names are ASCII (they must form a Docker reference).
  if (filename.size() < env_name.size() + 1) return std::nullopt;
  for (std::size_t i = 0; i < env_name.size(); ++i)
    if (filename[i] != ascii_lower(env_name[i])) return std::nullopt;
  std::string_view rest = filename.substr(env_name.size());
  if (rest.front() != '-') return std::nullopt;
  rest.remove_prefix(1);
  if (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);  // Python `$`
  constexpr std::string_view kExt = ".tar";
  if (rest.size() <= kExt.size() || rest.substr(rest.size() - kExt.size()) != kExt) return std::nullopt;
  std::string_view digits = rest.substr(0, rest.size() - kExt.size());
  for (char c : digits)
    if (!is_digit(c)) return std::nullopt;
  int64_t value = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;  // > int64
  return value;
}

std::optional<Tarball> newest_tarball(const std::filesystem::path& dir, std::string_view env_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  fs::directory_iterator it(dir, ec);
  if (ec) return std::nullopt;
  std::optional<Tarball> best;
  std::string best_name;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return std::nullopt;  // upstream: OSError while listing → no tarballs
    std::string name = it->path().filename().string();
    auto ts = tarball_timestamp(name, env_name);
    if (!ts) continue;
    if (!best || *ts > best->timestamp || (*ts == best->timestamp && name < best_name)) {
      best = Tarball{dir / name, *ts};
      best_name = std::move(name);
    }
  }
  if (ec) return std::nullopt;
  return best;
}

std::optional<int64_t> parse_docker_created(std::string_view s) {
  std::size_t pos = 0;
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!read_fixed(s, pos, 4, y) || pos >= s.size() || s[pos++] != '-' || !read_fixed(s, pos, 2, mo) ||
      pos >= s.size() || s[pos++] != '-' || !read_fixed(s, pos, 2, d))
    return std::nullopt;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return std::nullopt;
  bool fraction = false;
  if (pos < s.size()) {
    ++pos;  // Python 3.11 takes any single character as the separator
    if (!read_fixed(s, pos, 2, h)) return std::nullopt;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!read_fixed(s, pos, 2, mi)) return std::nullopt;
      if (pos < s.size() && s[pos] == ':') {
        ++pos;
        if (!read_fixed(s, pos, 2, sec)) return std::nullopt;
        if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
          // Any number of digits (even none); Python 3.11 keeps microseconds, which
          // int(timestamp()) then drops again. Docker sends nanoseconds.
          ++pos;
          const std::size_t start = pos;
          while (pos < s.size() && is_digit(s[pos])) {
            if (s[pos] != '0' && pos - start < 6) fraction = true;
            ++pos;
          }
        }
      }
    }
    if (h > 23 || mi > 59 || sec > 59) return std::nullopt;
  }
  int64_t offset = 0;
  if (pos < s.size()) {
    const char sign = s[pos];
    if (sign == 'Z' && pos + 1 == s.size()) {
      offset = 0;
    } else if (sign == '+' || sign == '-') {
      if (!read_offset(s, pos + 1, offset)) return std::nullopt;
      if (sign == '-') offset = -offset;
    } else {
      return std::nullopt;
    }
  }
  int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
  // int() of a float truncates toward zero: before 1970 a fractional second
  // rounds up, e.g. 1969-12-31T23:59:59.5Z → 0.
  if (fraction && t < 0) ++t;
  return t;
}

SyncDecision decide_sync(std::optional<int64_t> local_created, const std::optional<Tarball>& newest,
                         bool local_image_exists) {
  if (!newest) return SyncDecision{local_image_exists ? SyncAction::UpToDate : SyncAction::NoSource, std::nullopt};
  if (!local_created || newest->timestamp > *local_created) return SyncDecision{SyncAction::Load, newest};
  return SyncDecision{SyncAction::UpToDate, std::nullopt};
}

}  // namespace kr::tasks

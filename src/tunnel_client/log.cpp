#include "tunnel_client/log.hpp"

#include <cstdio>
#include <ctime>
#include <sys/time.h>

namespace kr::tunnel_client {

namespace {
Level g_level = Level::Info;

bool level_word(const std::string& w, Level* out) {
  std::string s;
  for (char c : w) s += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (s == "trace") *out = Level::Trace;
  else if (s == "debug") *out = Level::Debug;
  else if (s == "info") *out = Level::Info;
  else if (s == "warn" || s == "warning") *out = Level::Warn;
  else if (s == "error") *out = Level::Error;
  else if (s == "off") *out = Level::Off;
  else return false;
  return true;
}
}  // namespace

Level parse_level(const std::string& text, Level fallback) {
  bool any = false;
  Level best = Level::Off;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (auto eq = item.rfind('='); eq != std::string::npos) item = item.substr(eq + 1);
    Level l;
    if (level_word(item, &l)) {
      if (!any || l < best) best = l;
      any = true;
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return any ? best : fallback;
}

void set_level(Level level) { g_level = level; }
bool enabled(Level level) { return level >= g_level && g_level != Level::Off; }

void log(Level level, const char* fmt, ...) {
  static const char* names[] = {"TRACE", "DEBUG", " INFO", " WARN", "ERROR"};
  timeval tv;
  gettimeofday(&tv, nullptr);
  std::tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  char line[2048];
  int n = std::snprintf(line, sizeof line, "%s.%06ldZ %s ", ts, static_cast<long>(tv.tv_usec),
                        names[static_cast<int>(level)]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && static_cast<std::size_t>(n) < sizeof line) std::vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "%s\n", line);
}

}  // namespace kr::tunnel_client

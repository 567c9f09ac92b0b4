#include "common/datetime.hpp"

#include <ctime>
#include <cstdio>

namespace kr {

std::string naive_local_iso(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  const auto us_total = duration_cast<microseconds>(tp.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us_total / 1'000'000);
  long long micros = us_total % 1'000'000;
  if (micros < 0) {
    micros += 1'000'000;
    secs -= 1;
  }
  std::tm local{};
  localtime_r(&secs, &local);
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", local.tm_year + 1900,
                        local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec);
  if (micros != 0) std::snprintf(buf + n, sizeof buf - n, ".%06lld", micros);
  return buf;
}

}  // namespace kr

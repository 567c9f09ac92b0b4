#include "vm/validation.hpp"

#include <cmath>

namespace kr::vm {

std::optional<std::uint64_t> parse_disk_size(std::string_view text, std::string& error) {
  const std::string shown = "'" + std::string(text) + "'";
  auto fail = [&](std::string why) -> std::optional<std::uint64_t> {
    error = "invalid disk size " + shown + ": " + why;
    return std::nullopt;
  };
  if (text.empty()) return fail("empty");
  int shift = 0;
  switch (text.back()) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case 'p': case 'P': shift = 50; break;
    case 'e': case 'E': shift = 60; break;
    default: return fail("a unit is required (K, M, G, T, P or E), e.g. \"50G\"");
  }
  const std::string_view number = text.substr(0, text.size() - 1);
  std::uint64_t whole = 0;
  std::size_t i = 0;
  for (; i < number.size() && number[i] >= '0' && number[i] <= '9'; ++i) {
    if (whole > (UINT64_MAX - 9) / 10) return fail("too large");
    whole = whole * 10 + static_cast<std::uint64_t>(number[i] - '0');
  }
  if (i == 0) return fail("expected a number before the unit");
  double fraction = 0;
  if (i < number.size()) {
    if (number[i] != '.' || i + 1 == number.size()) return fail("expected a number before the unit");
    double scale = 0.1;
    for (++i; i < number.size(); ++i) {
      if (number[i] < '0' || number[i] > '9') return fail("expected a number before the unit");
      fraction += scale * (number[i] - '0');
      scale /= 10;
    }
  }
  if (whole >> (64 - shift) != 0) return fail("too large");
  std::uint64_t bytes = whole << shift;
  const double extra = std::floor(fraction * static_cast<double>(std::uint64_t{1} << shift));
  if (static_cast<double>(UINT64_MAX - bytes) < extra) return fail("too large");
  bytes += static_cast<std::uint64_t>(extra);
  if (bytes == 0) return fail("must be positive");
  // qemu-img takes sizes up to INT64_MAX.
  if (bytes > static_cast<std::uint64_t>(INT64_MAX)) return fail("too large");
  return bytes;
}

std::optional<std::string> image_name_error(std::string_view name) {
  if (name.empty()) return std::string("VM image name is empty");
  if (name.front() == '.') return "invalid VM image name '" + std::string(name) + "': must not start with '.'";
  for (unsigned char c : name) {
    if (c == '/' ) return "invalid VM image name '" + std::string(name) + "': must not contain '/'";
    if (c < 0x20 || c == 0x7f) return std::string("invalid VM image name: control characters are not allowed");
  }
  if (name.size() > 200) return std::string("invalid VM image name: longer than 200 characters");
  return std::nullopt;
}

}  // namespace kr::vm

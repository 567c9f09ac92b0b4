#include "monitor/temperature.hpp"

#include <algorithm>
#include <cctype>
#include <string>
#include <system_error>
#include <vector>

#include "monitor/sysfs.hpp"

namespace kr::monitor {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains_cpu_or_soc(const std::string& n) {
  return n.find("cpu") != std::string::npos || n == "soc_thermal" || n == "soc-thermal";
}

// Directory entries of `dir` whose name starts with `prefix`, sorted.
std::vector<fs::path> entries_with_prefix(const fs::path& dir, std::string_view prefix) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().starts_with(prefix)) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// Accumulates readings in millidegrees-converted °C.
struct Accumulator {
  double sum = 0.0;
  std::optional<double> max;
  std::size_t count = 0;

  void add(double celsius) {
    sum += celsius;
    max = max ? std::max(*max, celsius) : celsius;
    ++count;
  }
  bool add_file(const fs::path& file) {
    auto text = detail::read_small_file(file, 64);
    if (!text) return false;
    auto milli = detail::parse_int(*text);
    if (!milli) return false;  // e.g. ENODATA on a sensor that is not ready
    add(static_cast<double>(*milli) / 1000.0);
    return true;
  }
};

// Every temp<N>_input directly in `dir`.
void add_temp_inputs(const fs::path& dir, Accumulator& acc) {
  for (const auto& p : entries_with_prefix(dir, "temp")) {
    const std::string name = p.filename().string();
    if (name.ends_with("_input")) acc.add_file(p);
  }
}

// A hwmon chip directory: name from `name`, or `device/name` (older layout).
void add_hwmon_chip(const fs::path& chip, Accumulator& acc) {
  auto name = detail::read_trimmed(chip / "name");
  if (!name) name = detail::read_trimmed(chip / "device" / "name");
  if (!name || !is_cpu_hwmon_name(*name)) return;
  add_temp_inputs(chip, acc);
  add_temp_inputs(chip / "device", acc);
}

}  // namespace

bool is_cpu_hwmon_name(std::string_view name) {
  const std::string n = lower(detail::trim(name));
  return n == "coretemp" || n == "k10temp" || n == "k8temp" || n == "zenpower" ||
         n == "via_cputemp" || contains_cpu_or_soc(n);
}

bool is_cpu_thermal_zone_type(std::string_view type) {
  const std::string t = lower(detail::trim(type));
  return t == "x86_pkg_temp" || contains_cpu_or_soc(t);
}

CpuTemperatures read_cpu_temperatures(const fs::path& root) {
  Accumulator acc;

  const auto class_chips = entries_with_prefix(detail::under(root, "/sys/class/hwmon"), "hwmon");
  for (const auto& chip : class_chips) add_hwmon_chip(chip, acc);

  // Some kernels do not link coretemp's hwmon from /sys/class/hwmon (psutil
  // #1708); add those chips unless a class entry of the same name exists.
  for (const auto& platform :
       entries_with_prefix(detail::under(root, "/sys/devices/platform"), "coretemp.")) {
    for (const auto& chip : entries_with_prefix(platform / "hwmon", "hwmon")) {
      const bool linked = std::any_of(class_chips.begin(), class_chips.end(), [&](const fs::path& c) {
        return c.filename() == chip.filename();
      });
      if (!linked) add_hwmon_chip(chip, acc);
    }
  }

  if (acc.count == 0) {
    for (const auto& zone :
         entries_with_prefix(detail::under(root, "/sys/class/thermal"), "thermal_zone")) {
      auto type = detail::read_trimmed(zone / "type");
      if (type && is_cpu_thermal_zone_type(*type)) acc.add_file(zone / "temp");
    }
  }

  CpuTemperatures out;
  out.sensor_count = acc.count;
  if (acc.count > 0) {
    out.average = acc.sum / static_cast<double>(acc.count);
    out.max = acc.max;
  }
  return out;
}

}  // namespace kr::monitor

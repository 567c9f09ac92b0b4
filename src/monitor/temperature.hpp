// CPU temperatures for the heartbeat (current_avg_temp / current_max_temp).
//
// Decision D-TEMP (Fix): average and maximum over ALL CPU temperature sensors,
// not psutil's "last sensor group" (execution.md §8.1 describes upstream).
//
// Sources, in order:
//  1. hwmon chips (<root>/sys/class/hwmon/hwmon*, plus the older layout with
//     files under hwmonN/device/, plus /sys/devices/platform/coretemp.*/hwmon/
//     chips not linked from the class directory) whose `name` is a CPU sensor
//     (is_cpu_hwmon_name); every readable temp*_input counts.
//  2. Only if (1) yields no reading: thermal zones
//     (<root>/sys/class/thermal/thermal_zone*) whose `type` is a CPU zone
//     (is_cpu_thermal_zone_type).
// Plain small-file reads only (cheap enough for the I/O thread every 5 s).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string_view>

namespace kr::monitor {

struct CpuTemperatures {
  std::optional<double> average;  // °C; both null when there is no reading
  std::optional<double> max;
  std::size_t sensor_count = 0;
};

CpuTemperatures read_cpu_temperatures(const std::filesystem::path& root = "/");

// coretemp (Intel), k10temp / k8temp / zenpower (AMD), via_cputemp, and any
// name containing "cpu" (cpu_thermal, cpu0_thermal: ARM SoC zones exported as
// hwmon) or soc_thermal / soc-thermal (SoCs where that zone is the CPU).
// Not: acpitz (a board/ACPI zone, often a constant), nvme, drivetemp,
// amdgpu/nouveau, pch_*, iwlwifi, ...
bool is_cpu_hwmon_name(std::string_view name);

// x86_pkg_temp, any type containing "cpu", soc_thermal / soc-thermal.
bool is_cpu_thermal_zone_type(std::string_view type);

}  // namespace kr::monitor

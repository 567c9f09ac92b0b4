// NVIDIA GPU metrics through NVML, loaded with dlopen at run time (no build
// dependency on the CUDA toolkit or driver).
//
// NvmlApi is the function table; the real one wraps libnvidia-ml.so.1, tests
// plug in a fake. query_gpu_info() maps it to protocol.md §1.3.3's NVML-form
// `gpu_info` entries exactly as upstream's utils/gpu.py does.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace kr::monitor {

// The subset of NVML's C ABI we use, declared from NVML's documented layout.
namespace nvml {
using Return = int;  // nvmlReturn_t
inline constexpr Return kSuccess = 0;
inline constexpr Return kErrorUninitialized = 1;
inline constexpr Return kErrorNotSupported = 3;
inline constexpr Return kErrorNotFound = 6;
inline constexpr Return kErrorLibraryNotFound = 12;
inline constexpr Return kErrorGpuIsLost = 15;
inline constexpr Return kErrorUnknown = 999;

struct DeviceOpaque;               // struct nvmlDevice_st
using Device = DeviceOpaque*;      // nvmlDevice_t

struct PciInfo {                   // nvmlPciInfo_t (as filled by _v3)
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
};
struct Utilization {               // nvmlUtilization_t
  unsigned int gpu;
  unsigned int memory;
};
struct Memory {                    // nvmlMemory_t (v1: used = total - free)
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

using ClockType = int;             // nvmlClockType_t
inline constexpr ClockType kClockGraphics = 0;
inline constexpr ClockType kClockMem = 2;
using TemperatureSensor = int;     // nvmlTemperatureSensors_t
inline constexpr TemperatureSensor kTemperatureGpu = 0;

inline constexpr unsigned kDriverVersionBufferSize = 80;  // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
inline constexpr unsigned kDeviceNameBufferSize = 96;     // NVML_DEVICE_NAME_V2_BUFFER_SIZE
}  // namespace nvml

// One method per NVML entry point, same arguments and return codes.
class NvmlApi {
 public:
  virtual ~NvmlApi() = default;
  virtual nvml::Return init() = 0;       // nvmlInit_v2
  virtual nvml::Return shutdown() = 0;   // nvmlShutdown
  virtual nvml::Return system_get_driver_version(char* buf, unsigned len) = 0;
  virtual nvml::Return device_get_count(unsigned* count) = 0;  // _v2
  virtual nvml::Return device_get_handle_by_index(unsigned index, nvml::Device* dev) = 0;  // _v2
  virtual nvml::Return device_get_name(nvml::Device dev, char* buf, unsigned len) = 0;
  virtual nvml::Return device_get_pci_info(nvml::Device dev, nvml::PciInfo* pci) = 0;  // _v3
  virtual nvml::Return device_get_utilization_rates(nvml::Device dev, nvml::Utilization* u) = 0;
  virtual nvml::Return device_get_clock_info(nvml::Device dev, nvml::ClockType type, unsigned* mhz) = 0;
  virtual nvml::Return device_get_memory_info(nvml::Device dev, nvml::Memory* mem) = 0;
  virtual nvml::Return device_get_temperature(nvml::Device dev, nvml::TemperatureSensor s, unsigned* c) = 0;
  virtual nvml::Return device_get_fan_speed(nvml::Device dev, unsigned* percent) = 0;
  virtual nvml::Return device_get_power_usage(nvml::Device dev, unsigned* mw) = 0;
  virtual nvml::Return device_get_enforced_power_limit(nvml::Device dev, unsigned* mw) = 0;
  // nvmlErrorString when available; for log lines only.
  virtual std::string error_string(nvml::Return r);
};

// dlopen()s `soname` and resolves the entry points above. nullptr (with one
// info-level log line) if the library or a required symbol is missing. Does
// not call init().
std::unique_ptr<NvmlApi> load_nvml_library(const char* soname = "libnvidia-ml.so.1");

// The NVML-form gpu_info array for an initialised NVML (upstream semantics):
//  * driver version or device count fails -> [] ;
//  * a GPU whose handle, name, PCI info or memory query fails is omitted;
//  * utilisation fails -> gpu_utilization and mem_utilization both -1;
//  * either clock query fails -> graphics_clock_mhz and mem_clock_mhz both -1;
//  * power usage or enforced limit fails -> power_usage_mw and power_limit_mw both -1;
//  * temperature / fan fail -> that value -1;
//  * memory_*_mib = bytes / 2^20 as floats; gpu_id = NVML index.
nlohmann::json query_gpu_info(NvmlApi& api);

}  // namespace kr::monitor

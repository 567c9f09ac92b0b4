#include "monitor/nvml.hpp"

#include <dlfcn.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <string_view>

namespace kr::monitor {

std::string NvmlApi::error_string(nvml::Return r) { return "NVML error " + std::to_string(r); }

namespace {

using nvml::Device;
using nvml::Return;

// The real table: function pointers resolved from the shared library.
class DlopenNvml final : public NvmlApi {
 public:
  explicit DlopenNvml(void* handle)
      : handle_(handle),
        // Optional: only used to word log lines.
        error_string_(reinterpret_cast<const char* (*)(Return)>(::dlsym(handle, "nvmlErrorString"))) {}
  // dlclose is skipped on purpose: the library may still be in use by a
  // detached worker stuck in the driver, and it is kept for the process
  // lifetime anyway.
  ~DlopenNvml() override = default;

  bool resolve() {
    return sym(init_, "nvmlInit_v2") && sym(shutdown_, "nvmlShutdown") &&
           sym(driver_version_, "nvmlSystemGetDriverVersion") &&
           sym(count_, "nvmlDeviceGetCount_v2") &&
           sym(handle_by_index_, "nvmlDeviceGetHandleByIndex_v2") &&
           sym(name_, "nvmlDeviceGetName") && sym(pci_, "nvmlDeviceGetPciInfo_v3") &&
           sym(util_, "nvmlDeviceGetUtilizationRates") && sym(clock_, "nvmlDeviceGetClockInfo") &&
           sym(memory_, "nvmlDeviceGetMemoryInfo") && sym(temp_, "nvmlDeviceGetTemperature") &&
           sym(fan_, "nvmlDeviceGetFanSpeed") && sym(power_, "nvmlDeviceGetPowerUsage") &&
           sym(limit_, "nvmlDeviceGetEnforcedPowerLimit");
  }
  const char* missing() const { return missing_; }

  Return init() override { return init_(); }
  Return shutdown() override { return shutdown_(); }
  Return system_get_driver_version(char* b, unsigned n) override { return driver_version_(b, n); }
  Return device_get_count(unsigned* c) override { return count_(c); }
  Return device_get_handle_by_index(unsigned i, Device* d) override { return handle_by_index_(i, d); }
  Return device_get_name(Device d, char* b, unsigned n) override { return name_(d, b, n); }
  Return device_get_pci_info(Device d, nvml::PciInfo* p) override { return pci_(d, p); }
  Return device_get_utilization_rates(Device d, nvml::Utilization* u) override { return util_(d, u); }
  Return device_get_clock_info(Device d, nvml::ClockType t, unsigned* v) override { return clock_(d, t, v); }
  Return device_get_memory_info(Device d, nvml::Memory* m) override { return memory_(d, m); }
  Return device_get_temperature(Device d, nvml::TemperatureSensor s, unsigned* v) override {
    return temp_(d, s, v);
  }
  Return device_get_fan_speed(Device d, unsigned* v) override { return fan_(d, v); }
  Return device_get_power_usage(Device d, unsigned* v) override { return power_(d, v); }
  Return device_get_enforced_power_limit(Device d, unsigned* v) override { return limit_(d, v); }
  std::string error_string(Return r) override {
    if (error_string_) {
      if (const char* s = error_string_(r)) return s;
    }
    return NvmlApi::error_string(r);
  }

 private:
  template <class Fn>
  bool sym(Fn& fn, const char* name) {
    fn = reinterpret_cast<Fn>(::dlsym(handle_, name));
    if (!fn && !missing_) missing_ = name;
    return fn != nullptr;
  }

  void* handle_;
  const char* (*error_string_)(Return) = nullptr;
  const char* missing_ = nullptr;
  Return (*init_)() = nullptr;
  Return (*shutdown_)() = nullptr;
  Return (*driver_version_)(char*, unsigned) = nullptr;
  Return (*count_)(unsigned*) = nullptr;
  Return (*handle_by_index_)(unsigned, Device*) = nullptr;
  Return (*name_)(Device, char*, unsigned) = nullptr;
  Return (*pci_)(Device, nvml::PciInfo*) = nullptr;
  Return (*util_)(Device, nvml::Utilization*) = nullptr;
  Return (*clock_)(Device, nvml::ClockType, unsigned*) = nullptr;
  Return (*memory_)(Device, nvml::Memory*) = nullptr;
  Return (*temp_)(Device, nvml::TemperatureSensor, unsigned*) = nullptr;
  Return (*fan_)(Device, unsigned*) = nullptr;
  Return (*power_)(Device, unsigned*) = nullptr;
  Return (*limit_)(Device, unsigned*) = nullptr;
};

// Strict UTF-8 check: upstream decodes NVML strings as UTF-8 (failure skips
// the GPU), and nlohmann::json refuses to serialise invalid UTF-8.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    std::uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const std::uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// NUL-terminated, UTF-8 string out of a fixed NVML buffer.
std::optional<std::string> buffer_string(const char* buf, std::size_t cap) {
  std::string s(buf, ::strnlen(buf, cap));
  if (!valid_utf8(s)) return std::nullopt;
  return s;
}

std::optional<nlohmann::json> query_one(NvmlApi& api, unsigned index, const std::string& driver) {
  Device dev = nullptr;
  if (api.device_get_handle_by_index(index, &dev) != nvml::kSuccess) return std::nullopt;

  char name_buf[nvml::kDeviceNameBufferSize] = {};
  if (api.device_get_name(dev, name_buf, sizeof name_buf) != nvml::kSuccess) return std::nullopt;
  auto name = buffer_string(name_buf, sizeof name_buf);

  nvml::PciInfo pci{};
  if (api.device_get_pci_info(dev, &pci) != nvml::kSuccess) return std::nullopt;
  auto bus_id = buffer_string(pci.busId, sizeof pci.busId);

  nvml::Memory mem{};
  if (!name || !bus_id || api.device_get_memory_info(dev, &mem) != nvml::kSuccess)
    return std::nullopt;

  // Pairs follow upstream: one failing call sets both values of its pair to -1.
  long long gpu_util = -1, mem_util = -1;
  if (nvml::Utilization u{}; api.device_get_utilization_rates(dev, &u) == nvml::kSuccess) {
    gpu_util = u.gpu;
    mem_util = u.memory;
  }
  long long graphics_clock = -1, mem_clock = -1;
  unsigned g = 0, m = 0;
  if (api.device_get_clock_info(dev, nvml::kClockGraphics, &g) == nvml::kSuccess &&
      api.device_get_clock_info(dev, nvml::kClockMem, &m) == nvml::kSuccess) {
    graphics_clock = g;
    mem_clock = m;
  }
  long long temperature = -1, fan = -1;
  if (unsigned v = 0; api.device_get_temperature(dev, nvml::kTemperatureGpu, &v) == nvml::kSuccess)
    temperature = v;
  if (unsigned v = 0; api.device_get_fan_speed(dev, &v) == nvml::kSuccess) fan = v;
  long long power = -1, limit = -1;
  unsigned pu = 0, pl = 0;
  if (api.device_get_power_usage(dev, &pu) == nvml::kSuccess &&
      api.device_get_enforced_power_limit(dev, &pl) == nvml::kSuccess) {
    power = pu;
    limit = pl;
  }

  constexpr double kMiB = 1024.0 * 1024.0;
  return nlohmann::json{
      {"gpu_id", index},
      {"name", *name},
      {"driver_version", driver},
      {"pci_bus_id", *bus_id},
      {"gpu_utilization", gpu_util},
      {"graphics_clock_mhz", graphics_clock},
      {"mem_utilization", mem_util},
      {"mem_clock_mhz", mem_clock},
      {"memory_total_mib", static_cast<double>(mem.total) / kMiB},
      {"memory_used_mib", static_cast<double>(mem.used) / kMiB},
      {"memory_free_mib", static_cast<double>(mem.free) / kMiB},
      {"temperature", temperature},
      {"fan_speed", fan},
      {"power_usage_mw", power},
      {"power_limit_mw", limit},
  };
}

}  // namespace

std::unique_ptr<NvmlApi> load_nvml_library(const char* soname) {
  void* handle = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    spdlog::info("NVML not available ({}): GPU metrics disabled", soname);
    return nullptr;
  }
  auto api = std::make_unique<DlopenNvml>(handle);
  if (!api->resolve()) {
    spdlog::info("NVML library {} lacks {}: GPU metrics disabled", soname, api->missing());
    ::dlclose(handle);
    return nullptr;
  }
  return api;
}

nlohmann::json query_gpu_info(NvmlApi& api) {
  nlohmann::json out = nlohmann::json::array();
  char driver_buf[nvml::kDriverVersionBufferSize] = {};
  if (api.system_get_driver_version(driver_buf, sizeof driver_buf) != nvml::kSuccess) return out;
  auto driver = buffer_string(driver_buf, sizeof driver_buf);
  unsigned count = 0;
  if (!driver || api.device_get_count(&count) != nvml::kSuccess) return out;
  for (unsigned i = 0; i < count; ++i) {
    if (auto gpu = query_one(api, i, *driver)) out.push_back(std::move(*gpu));
  }
  return out;
}

}  // namespace kr::monitor

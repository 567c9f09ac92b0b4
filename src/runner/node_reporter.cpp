#include "runner/node_reporter.hpp"

#include <spdlog/spdlog.h>

#include "monitor/gpu_remap.hpp"
#include "monitor/system_metrics.hpp"

namespace kr::runner {

using json = nlohmann::json;

namespace {
// Short enough that a hung driver never delays a heartbeat noticeably.
constexpr std::chrono::milliseconds kGpuDeadline{2000};
}  // namespace

NodeReporterImpl::NodeReporterImpl(boost::asio::any_io_executor ex, const config::RunnerConfig& cfg)
    : ex_(std::move(ex)), cfg_(cfg), cpu_("/"), numa_(monitor::read_numa_topology("/")) {
  cpu_.sample();  // prime: psutil's first cpu_percent() is 0.0 too
}

NodeReporterImpl::~NodeReporterImpl() {
  if (vm_cap_future_.valid()) vm_cap_future_.wait();
}

void NodeReporterImpl::start() {
  gpus_ = monitor::GpuSampler::create_default();
  const monitor::VmCapabilityOptions vm_options = monitor::vm_capability_options(cfg_.vm_qemu_accel, cfg_.vm_firmware);
  vm_cap_future_ = std::async(std::launch::async, [vm_options] { return &monitor::vm_capability(vm_options); });
}

void NodeReporterImpl::stop() {}

const monitor::VmCapability* NodeReporterImpl::vm_capability_if_ready() {
  if (!vm_cap_ && vm_cap_future_.valid() &&
      vm_cap_future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    vm_cap_ = vm_cap_future_.get();  // the probe logs its own findings
  }
  return vm_cap_;
}

boost::asio::awaitable<json> NodeReporterImpl::registration_fields() {
  json body;
  body["total_cores"] = monitor::online_cpu_count("/");
  auto mem = monitor::read_memory_info("/");
  body["total_ram_bytes"] = mem ? mem->total : 0;
  body["numa_topology"] = monitor::numa_topology_json(numa_);
  // No co_await inside ?: — GCC 12 miscompiles it.
  json gpu_info = json::array();
  if (gpus_) gpu_info = co_await gpus_->sample(kGpuDeadline);
  body["gpu_info"] = std::move(gpu_info);
  co_return body;
}

boost::asio::awaitable<json> NodeReporterImpl::heartbeat_fields() {
  json body;
  monitor::add_system_metrics(body, monitor::collect_system_metrics("/", cpu_));
  json gpu_info = json::array();
  if (gpus_) gpu_info = co_await gpus_->sample(kGpuDeadline);
  const monitor::VmCapability* cap = vm_capability_if_ready();
  if (cap && !cap->vfio_gpus.empty()) {
    monitor::VmGpuStatsByPci vm_stats;
    if (vm_gpu_reports_) vm_stats = monitor::pair_vm_gpu_stats(vm_gpu_reports_(), cap->vfio_gpus);
    gpu_info = monitor::remap_gpu_info_for_vfio(gpu_info, cap->vfio_gpus, vm_stats);
  }
  body["gpu_info"] = std::move(gpu_info);
  body["vm_capable"] = cap ? cap->vm_capable : false;
  body["vfio_gpus"] = cap ? monitor::vfio_gpus_json(cap->vfio_gpus) : json(nullptr);
  body["runner_version"] = KR_VERSION;
  co_return body;
}

}  // namespace kr::runner

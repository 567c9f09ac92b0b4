#pragma once
// What this node tells the host about itself, assembled from the resource
// monitor: registration facts and heartbeat metrics (protocol.md §1.2–1.3).
#include <functional>
#include <future>
#include <memory>

#include <boost/asio/any_io_executor.hpp>

#include "config/config.hpp"
#include "host_link/host_link.hpp"
#include "monitor/cpu_memory.hpp"
#include "monitor/gpu_remap.hpp"
#include "monitor/gpu_sampler.hpp"
#include "monitor/numa.hpp"
#include "monitor/vm_capability.hpp"

namespace kr::runner {

class NodeReporterImpl : public host_link::NodeReporter {
 public:
  NodeReporterImpl(boost::asio::any_io_executor ex, const config::RunnerConfig& cfg);
  ~NodeReporterImpl() override;

  // Loads NVML (if present) and starts the one-off VM capability probe on a
  // short-lived thread (KVM ioctls and lspci must not run on the I/O thread).
  void start();
  void stop();

  boost::asio::awaitable<nlohmann::json> registration_fields() override;
  boost::asio::awaitable<nlohmann::json> heartbeat_fields() override;

  // Running VMs' passed-through GPUs and their agents' stats (the VM
  // service), merged into the heartbeat's gpu_info (vm.md §2).
  void set_vm_gpu_reports(std::function<std::vector<monitor::VmGpuReport>()> source) {
    vm_gpu_reports_ = std::move(source);
  }

  const std::optional<std::vector<monitor::NumaNode>>& numa_topology() const { return numa_; }
  // The most recent GPU sample (plain NVML gpu_info; [] without GPUs).
  nlohmann::json last_gpu_sample() const { return gpus_ ? gpus_->last_sample() : nlohmann::json::array(); }

 private:
  const monitor::VmCapability* vm_capability_if_ready();

  boost::asio::any_io_executor ex_;
  const config::RunnerConfig& cfg_;
  monitor::CpuSampler cpu_;
  std::optional<std::vector<monitor::NumaNode>> numa_;
  std::unique_ptr<monitor::GpuSampler> gpus_;
  std::future<const monitor::VmCapability*> vm_cap_future_;
  const monitor::VmCapability* vm_cap_ = nullptr;
  std::function<std::vector<monitor::VmGpuReport>()> vm_gpu_reports_;
};

}  // namespace kr::runner

// GPU sampling off the I/O thread (decisions.md: never block the I/O threads
// on NVML; a hung driver degrades the metric, never the heartbeat).
//
// With NVML, one dedicated worker thread initialises NVML once, keeps it open
// for the process lifetime and performs every NVML call. sample() asks it for
// a fresh gpu_info list and waits at most `deadline`; on timeout it returns
// the last good list ([] if none) and logs a warning once per stall. While a
// request is in flight, further callers wait for that same request instead of
// queueing another. Without NVML (library absent) no thread is started and
// sample() returns [] at once; an NVML init failure logs one info line, ends
// the thread and is never retried.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "monitor/nvml.hpp"

namespace kr::monitor {

class GpuSampler {
 public:
  // `api` null -> disabled. Takes ownership; init() runs on the worker.
  explicit GpuSampler(std::unique_ptr<NvmlApi> api);
  // Loads libnvidia-ml.so.1 (see load_nvml_library).
  static std::unique_ptr<GpuSampler> create_default();

  // Stops the worker. If it is stuck inside NVML for more than ~1 s, it is
  // detached (and NVML left as is) rather than blocking shutdown.
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // False when NVML is absent or failed to initialise.
  bool enabled() const;

  // Usable from any executor (intended: the single-threaded I/O context).
  // The result is the plain NVML form of gpu_info (protocol.md §1.3.3).
  boost::asio::awaitable<nlohmann::json> sample(std::chrono::milliseconds deadline);

  // Most recent completed sample ([] before the first one).
  nlohmann::json last_sample() const;

  struct State;  // shared with the worker thread (gpu_sampler.cpp)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace kr::monitor

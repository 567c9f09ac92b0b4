// GpuSampler: NVML on its own thread, deadlines, no thread without NVML.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "monitor/gpu_sampler.hpp"

namespace asio = boost::asio;
using namespace kr::monitor;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Counters outlive the sampler (a detached worker may still touch them).
struct Counters {
  std::atomic<int> inits{0}, shutdowns{0}, queries{0};
  std::atomic<int> query_delay_ms{0};
  std::atomic<unsigned> temperature{40};
  nvml::Return init_rc = nvml::kSuccess;
};

// One GPU; device_get_count sleeps query_delay_ms to play a hung driver.
class SlowNvml : public NvmlApi {
 public:
  explicit SlowNvml(std::shared_ptr<Counters> c) : c_(std::move(c)) {}
  nvml::Return init() override {
    ++c_->inits;
    return c_->init_rc;
  }
  nvml::Return shutdown() override {
    ++c_->shutdowns;
    return nvml::kSuccess;
  }
  nvml::Return system_get_driver_version(char* b, unsigned n) override { return str("550.54.15", b, n); }
  nvml::Return device_get_count(unsigned* count) override {
    ++c_->queries;
    std::this_thread::sleep_for(std::chrono::milliseconds(c_->query_delay_ms.load()));
    *count = 1;
    return nvml::kSuccess;
  }
  nvml::Return device_get_handle_by_index(unsigned, nvml::Device* d) override {
    *d = reinterpret_cast<nvml::Device>(std::uintptr_t{1});
    return nvml::kSuccess;
  }
  nvml::Return device_get_name(nvml::Device, char* b, unsigned n) override { return str("Fake GPU", b, n); }
  nvml::Return device_get_pci_info(nvml::Device, nvml::PciInfo* p) override {
    return str("00000000:07:00.0", p->busId, sizeof p->busId);
  }
  nvml::Return device_get_utilization_rates(nvml::Device, nvml::Utilization* u) override {
    *u = {1, 2};
    return nvml::kSuccess;
  }
  nvml::Return device_get_clock_info(nvml::Device, nvml::ClockType, unsigned* v) override {
    *v = 1000;
    return nvml::kSuccess;
  }
  nvml::Return device_get_memory_info(nvml::Device, nvml::Memory* m) override {
    *m = {1ull << 30, 1ull << 29, 1ull << 29};
    return nvml::kSuccess;
  }
  nvml::Return device_get_temperature(nvml::Device, nvml::TemperatureSensor, unsigned* v) override {
    *v = c_->temperature.load();
    return nvml::kSuccess;
  }
  nvml::Return device_get_fan_speed(nvml::Device, unsigned*) override { return nvml::kErrorNotSupported; }
  nvml::Return device_get_power_usage(nvml::Device, unsigned* v) override {
    *v = 62000;
    return nvml::kSuccess;
  }
  nvml::Return device_get_enforced_power_limit(nvml::Device, unsigned* v) override {
    *v = 400000;
    return nvml::kSuccess;
  }

 private:
  static nvml::Return str(const char* s, char* b, unsigned n) {
    std::strncpy(b, s, n - 1);
    b[n - 1] = 0;
    return nvml::kSuccess;
  }
  std::shared_ptr<Counters> c_;
};

json run_sample(GpuSampler& sampler, std::chrono::milliseconds deadline) {
  asio::io_context io;
  json out = "not set";
  asio::co_spawn(io, sampler.sample(deadline), [&](std::exception_ptr e, json j) {
    if (e) std::rethrow_exception(e);
    out = std::move(j);
  });
  io.run();
  return out;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 3000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST(MonitorGpuSampler, WithoutNvmlNoThreadAndEmptyList) {
  const auto before = thread_count();
  GpuSampler sampler(nullptr);
  EXPECT_EQ(thread_count(), before);
  EXPECT_FALSE(sampler.enabled());
  EXPECT_EQ(run_sample(sampler, 1000ms), json::array());
  EXPECT_EQ(sampler.last_sample(), json::array());
}

TEST(MonitorGpuSampler, DefaultWithoutDriverStartsNothing) {
  auto probe = load_nvml_library();
  if (probe) GTEST_SKIP() << "this machine has NVML";
  const auto before = thread_count();
  auto sampler = GpuSampler::create_default();
  EXPECT_FALSE(sampler->enabled());
  EXPECT_EQ(thread_count(), before);
}

TEST(MonitorGpuSampler, FreshSamplesWithNvmlInitialisedOnce) {
  auto c = std::make_shared<Counters>();
  {
    GpuSampler sampler(std::make_unique<SlowNvml>(c));
    EXPECT_TRUE(sampler.enabled());
    json a = run_sample(sampler, 2000ms);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0]["name"], "Fake GPU");
    EXPECT_EQ(a[0]["temperature"], 40);
    c->temperature = 41;
    json b = run_sample(sampler, 2000ms);
    EXPECT_EQ(b[0]["temperature"], 41);
    EXPECT_EQ(sampler.last_sample(), b);
    EXPECT_EQ(c->inits.load(), 1);
    EXPECT_EQ(c->queries.load(), 2);
    EXPECT_EQ(c->shutdowns.load(), 0);  // kept open between samples
  }
  EXPECT_EQ(c->shutdowns.load(), 1);
}

TEST(MonitorGpuSampler, DeadlineReturnsLastGoodSample) {
  auto c = std::make_shared<Counters>();
  GpuSampler sampler(std::make_unique<SlowNvml>(c));
  c->query_delay_ms = 400;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run_sample(sampler, 50ms), json::array());  // nothing good yet
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 300ms);

  // The stuck request completes later; its result becomes the last good one.
  ASSERT_TRUE(wait_until([&] { return !sampler.last_sample().empty(); }));
  c->query_delay_ms = 0;
  c->temperature = 55;
  json fresh = run_sample(sampler, 2000ms);
  EXPECT_EQ(fresh[0]["temperature"], 55);

  c->query_delay_ms = 400;
  c->temperature = 60;
  t0 = std::chrono::steady_clock::now();
  json stale = run_sample(sampler, 50ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 300ms);
  EXPECT_EQ(stale, fresh);
}

TEST(MonitorGpuSampler, RequestsInFlightAreNotQueuedTwice) {
  auto c = std::make_shared<Counters>();
  GpuSampler sampler(std::make_unique<SlowNvml>(c));
  c->query_delay_ms = 200;
  asio::io_context io;
  int done = 0;
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(io, sampler.sample(2000ms), [&](std::exception_ptr e, json j) {
      EXPECT_FALSE(e);
      EXPECT_EQ(j.size(), 1u);
      ++done;
    });
  io.run();
  EXPECT_EQ(done, 3);
  EXPECT_EQ(c->queries.load(), 1);

  // Timed-out callers do not queue more work either.
  c->query_delay_ms = 300;
  for (int i = 0; i < 3; ++i) run_sample(sampler, 20ms);
  ASSERT_TRUE(wait_until([&] { return c->queries.load() == 2; }));
  std::this_thread::sleep_for(350ms);
  EXPECT_EQ(c->queries.load(), 2);
}

TEST(MonitorGpuSampler, InitFailureDisablesForGood) {
  auto c = std::make_shared<Counters>();
  c->init_rc = nvml::kErrorLibraryNotFound;
  GpuSampler sampler(std::make_unique<SlowNvml>(c));
  EXPECT_EQ(run_sample(sampler, 2000ms), json::array());
  ASSERT_TRUE(wait_until([&] { return !sampler.enabled(); }));
  EXPECT_EQ(run_sample(sampler, 2000ms), json::array());
  EXPECT_EQ(c->inits.load(), 1);
  EXPECT_EQ(c->queries.load(), 0);
}

TEST(MonitorGpuSampler, DestructorDoesNotWaitForHungDriver) {
  auto c = std::make_shared<Counters>();
  auto sampler = std::make_unique<GpuSampler>(std::make_unique<SlowNvml>(c));
  c->query_delay_ms = 1800;
  run_sample(*sampler, 10ms);  // worker now stuck in "NVML"
  auto t0 = std::chrono::steady_clock::now();
  sampler.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  // The detached worker finishes on its own and still shuts NVML down.
  EXPECT_TRUE(wait_until([&] { return c->shutdowns.load() == 1; }, 4000ms));
}

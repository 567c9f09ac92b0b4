#include "monitor/gpu_sampler.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>
#include <vector>

namespace kr::monitor {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

// One caller waiting for the in-flight request. The worker marks it done and
// posts a cancel of its timer to the caller's executor; the timer doubles as
// the deadline. Shared so that neither side outlives the other's data.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  bool done = false;  // guarded by State::mu
  json result;
};

}  // namespace

struct GpuSampler::State {
  std::mutex mu;
  std::condition_variable wake;    // worker: request or stop
  std::condition_variable exited_cv;
  std::unique_ptr<NvmlApi> api;
  bool enabled = false;
  bool requested = false;          // a request is pending or being served
  bool stop = false;
  bool exited = false;
  bool warned = false;             // deadline warning logged for this stall
  json last = json::array();
  std::vector<std::shared_ptr<Waiter>> waiters;
  std::thread thread;

  // Called with mu held: hand `result` to everybody waiting.
  void complete_locked(const json& result) {
    for (auto& w : waiters) {
      w->done = true;
      w->result = result;
      asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
    }
    waiters.clear();
    requested = false;
  }

  static void run(const std::shared_ptr<State>& s) {
    const nvml::Return rc = s->api->init();
    if (rc != nvml::kSuccess) {
      spdlog::info("NVML initialisation failed ({}): GPU metrics disabled", s->api->error_string(rc));
      std::lock_guard lk(s->mu);
      s->enabled = false;
      s->complete_locked(json::array());
      s->exited = true;
      s->exited_cv.notify_all();
      return;
    }
    for (;;) {
      {
        std::unique_lock lk(s->mu);
        s->wake.wait(lk, [&] { return s->stop || s->requested; });
        if (s->stop) break;
      }
      json result;
      try {
        result = query_gpu_info(*s->api);
      } catch (const std::exception& e) {
        spdlog::debug("GPU query failed: {}", e.what());
        result = json::array();
      }
      std::lock_guard lk(s->mu);
      s->last = result;
      s->warned = false;  // a completed sample ends the stall
      s->complete_locked(result);
    }
    s->api->shutdown();
    std::lock_guard lk(s->mu);
    s->exited = true;
    s->exited_cv.notify_all();
  }
};

GpuSampler::GpuSampler(std::unique_ptr<NvmlApi> api) {
  if (!api) return;  // no NVML: no thread, no state
  state_ = std::make_shared<State>();
  state_->api = std::move(api);
  state_->enabled = true;
  state_->thread = std::thread([s = state_] { State::run(s); });
}

std::unique_ptr<GpuSampler> GpuSampler::create_default() {
  return std::make_unique<GpuSampler>(load_nvml_library());
}

GpuSampler::~GpuSampler() {
  if (!state_) return;
  bool exited = false;
  {
    std::unique_lock lk(state_->mu);
    state_->stop = true;
    state_->wake.notify_all();
    exited = state_->exited_cv.wait_for(lk, std::chrono::seconds(1), [&] { return state_->exited; });
  }
  // A worker stuck in the driver keeps its own reference to the state.
  if (exited) state_->thread.join();
  else state_->thread.detach();
}

bool GpuSampler::enabled() const {
  if (!state_) return false;
  std::lock_guard lk(state_->mu);
  return state_->enabled;
}

json GpuSampler::last_sample() const {
  if (!state_) return json::array();
  std::lock_guard lk(state_->mu);
  return state_->last;
}

asio::awaitable<json> GpuSampler::sample(std::chrono::milliseconds deadline) {
  std::shared_ptr<State> s = state_;  // the sampler may go away while we wait
  if (!s) co_return json::array();

  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  {
    std::lock_guard lk(s->mu);
    if (!s->enabled || s->stop) co_return s->last;
    if (!s->requested) {
      s->requested = true;
      s->wake.notify_one();
    }
    s->waiters.push_back(waiter);
    waiter->timer.expires_after(deadline);
  }

  boost::system::error_code ec;  // operation_aborted = woken by the worker
  co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));

  std::lock_guard lk(s->mu);
  if (waiter->done) co_return std::move(waiter->result);
  std::erase(s->waiters, waiter);
  if (!s->warned) {
    s->warned = true;
    spdlog::warn("NVML did not answer within {} ms; reporting the last GPU sample", deadline.count());
  }
  co_return s->last;
}

}  // namespace kr::monitor

#pragma once
// Runs a blocking function (filesystem calls that may hit NFS, etc.) on a
// small side thread pool and resumes the coroutine on its own executor, so
// the single I/O thread never waits on disk.
#include <optional>
#include <type_traits>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>

namespace kr {

boost::asio::thread_pool& blocking_pool();

template <class F>
boost::asio::awaitable<std::invoke_result_t<F>> run_blocking(F f) {
  auto home = co_await boost::asio::this_coro::executor;
  co_await boost::asio::post(blocking_pool().get_executor(), boost::asio::use_awaitable);
  std::exception_ptr error;
  if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
    co_await boost::asio::post(home, boost::asio::use_awaitable);
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<std::invoke_result_t<F>> result;
    try {
      result.emplace(f());
    } catch (...) {
      error = std::current_exception();
    }
    co_await boost::asio::post(home, boost::asio::use_awaitable);
    if (error) std::rethrow_exception(error);
    co_return std::move(*result);
  }
}

}  // namespace kr

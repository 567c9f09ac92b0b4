#pragma once
// Runs a blocking function (filesystem calls that may hit NFS, etc.) on a
// small side thread pool and resumes the awaiting coroutine on its own
// executor, so the single I/O thread never waits on disk.
//
// A plain function returning the async_initiate awaitable, not a coroutine:
// GCC 12 miscompiles coroutines that capture a lambda and await
// async_initiate (heap corruption seen here).
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kr {

boost::asio::thread_pool& blocking_pool();

namespace detail {
template <class R>
struct BlockingSignature {
  using type = void(std::exception_ptr, R);
};
template <>
struct BlockingSignature<void> {
  using type = void(std::exception_ptr);
};
}  // namespace detail

template <class F, class R = std::invoke_result_t<F>>
boost::asio::awaitable<R> run_blocking(F f) {
  using Sig = typename detail::BlockingSignature<R>::type;
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, Sig>(
      [](auto handler, F fn) {
        boost::asio::post(blocking_pool(), [handler = std::move(handler), fn = std::move(fn)]() mutable {
          auto home = boost::asio::get_associated_executor(handler);
          std::exception_ptr error;
          if constexpr (std::is_void_v<R>) {
            try {
              fn();
            } catch (...) {
              error = std::current_exception();
            }
            boost::asio::post(home, [handler = std::move(handler), error]() mutable { std::move(handler)(error); });
          } else {
            std::optional<R> result;
            try {
              result.emplace(fn());
            } catch (...) {
              error = std::current_exception();
            }
            boost::asio::post(home, [handler = std::move(handler), error, result = std::move(result)]() mutable {
              std::move(handler)(error, result ? std::move(*result) : R{});
            });
          }
        });
      },
      boost::asio::use_awaitable, std::move(f));
}

}  // namespace kr

#include "host_link/host_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kr::host_link {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

HostClient::HostClient(asio::any_io_executor ex, std::string host, uint16_t port)
    : ex_(std::move(ex)), host_(std::move(host)), port_(port) {}

namespace {

asio::awaitable<tcp::resolver::results_type> resolve(asio::any_io_executor ex, const std::string& host,
                                                     uint16_t port, std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) co_return tcp::resolver::results_type::create(tcp::endpoint(addr, port), host, std::to_string(port));
  tcp::resolver resolver(ex);
  asio::steady_timer timer(ex, timeout);
  auto result = co_await (resolver.async_resolve(host, std::to_string(port), asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 1) throw HostUnreachable("resolving " + host + " timed out");
  auto [rec, results] = std::get<0>(result);
  if (rec) throw HostUnreachable("cannot resolve " + host + ": " + rec.message());
  co_return results;
}

}  // namespace

asio::awaitable<HostResponse> HostClient::request(std::string method, std::string target,
                                                  std::optional<std::string> json_body,
                                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto endpoints = co_await resolve(ex_, host_, port_, timeout);

  beast::tcp_stream stream(ex_);
  auto remaining = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(1);
  };
  auto fail = [&](const char* what, const boost::system::error_code& ec) {
    std::string msg = std::string(what) + " http://" + host_ + ":" + std::to_string(port_) + target + ": ";
    msg += ec == beast::error::timeout ? "timed out after " + std::to_string(timeout.count()) + " ms" : ec.message();
    return HostUnreachable(msg);
  };

  stream.expires_after(remaining());
  auto [cec, ep] = co_await stream.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
  if (cec) throw fail("connect to", cec);
  stream.socket().set_option(tcp::no_delay(true));

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  req.set(http::field::user_agent, "kohakuriver-runner");
  req.set(http::field::accept, "*/*");
  req.keep_alive(false);
  if (json_body) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(*json_body);
  }
  req.prepare_payload();

  stream.expires_after(remaining());
  auto [wec, wn] = co_await http::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  if (wec) throw fail("write to", wec);

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(8 * 1024 * 1024);
  stream.expires_after(remaining());
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
  if (rec) throw fail("read from", rec);

  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  auto& res = parser.get();
  co_return HostResponse{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace kr::host_link

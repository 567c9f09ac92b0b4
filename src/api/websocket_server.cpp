// WebSocket sessions on top of Beast (the only translation unit that
// includes boost/beast/websocket.hpp).
//
// Writes go through one writer coroutine per connection that drains a
// bounded queue, so any number of producers can send() while a reader is
// suspended in read(): Beast allows one outstanding read and one outstanding
// write (close included) at a time, and answers pings inside the read.
#include <deque>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "api/ws_upgrade.hpp"

namespace kr::api::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr auto kCloseWait = std::chrono::seconds(5);
// A connection's read buffer is kept between messages up to this size.
constexpr std::size_t kKeepReadBuffer = 1u << 20;

// A condition variable for coroutines on one thread: wait() suspends until
// notify_all(). Callers re-check their condition in a loop.
class Signal {
 public:
  explicit Signal(const asio::any_io_executor& ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  asio::awaitable<void> wait() {
    timer_.expires_at(asio::steady_timer::time_point::max());
    co_await timer_.async_wait(use_nothrow);
  }
  void notify_all() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

struct Outgoing {
  std::string data;
  bool binary = false;
  bool is_close = false;
  websocket::close_reason reason;
};

class BeastWebSocket final : public WebSocket, public std::enable_shared_from_this<BeastWebSocket> {
 public:
  BeastWebSocket(beast::tcp_stream stream, HttpRequest req, WsOptions opts)
      : ws_(std::move(stream)),
        req_(std::move(req)),
        opts_(std::move(opts)),
        space_(ws_.get_executor()),
        work_(ws_.get_executor()),
        done_(ws_.get_executor()) {}

  websocket::stream<beast::tcp_stream>& stream() { return ws_; }

  const HttpRequest& request() const override { return req_; }
  bool is_open() const override { return !closing_ && !broken_; }
  std::size_t queued_bytes() const override { return queued_; }

  asio::awaitable<std::optional<WsMessage>> read() override {
    if (read_done_ || broken_) co_return std::nullopt;
    // One buffer per connection, reused: its storage stays allocated at the
    // largest message seen so far instead of growing from zero per message.
    auto& buf = read_buf_;
    buf.clear();
    auto [ec, n] = co_await ws_.async_read(buf, use_nothrow);
    if (ec) {
      read_done_ = true;
      if (ec != websocket::error::closed && ec != asio::error::operation_aborted)
        spdlog::debug("ws {}: read ended: {}", req_.path, ec.message());
      if (ec == websocket::error::message_too_big) closing_ = true;  // Beast sent 1009
      co_return std::nullopt;
    }
    WsMessage m;
    m.binary = !ws_.got_text();
    auto data = buf.data();
    m.data.assign(static_cast<const char*>(data.data()), data.size());
    if (buf.capacity() > kKeepReadBuffer) {  // one huge message must not pin memory
      buf.clear();
      buf.shrink_to_fit();
    }
    co_return m;
  }

  asio::awaitable<bool> send(std::string data, bool binary) override {
    while (is_open() && queued_ > 0 && queued_ + data.size() > opts_.send_queue_bytes) co_await space_.wait();
    if (!is_open()) co_return false;
    queued_ += data.size();
    queue_.push_back(Outgoing{std::move(data), binary, false, {}});
    work_.notify_all();
    co_return true;
  }

  asio::awaitable<void> close(std::uint16_t code, std::string reason) override {
    if (!closing_ && !broken_) {
      closing_ = true;
      Outgoing o;
      o.is_close = true;
      o.reason.code = code;
      o.reason.reason = reason;
      queue_.push_back(std::move(o));
      work_.notify_all();
      space_.notify_all();
    }
    // Bounded: Beast's handshake timeout also limits the closing handshake,
    // and this timer ends a stuck write.
    asio::steady_timer limit(ws_.get_executor());
    limit.expires_after(kCloseWait);
    std::weak_ptr<BeastWebSocket> weak = weak_from_this();
    limit.async_wait([weak](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->abort();
    });
    while (!writer_done_) co_await done_.wait();
    limit.cancel();
  }

  void abort() override {
    broken_ = true;
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    work_.notify_all();
    space_.notify_all();
  }

  // One per connection; ends after the close frame or on a broken socket.
  asio::awaitable<void> writer() {
    auto keep = shared_from_this();
    while (!broken_) {
      if (queue_.empty()) {
        co_await work_.wait();
        continue;
      }
      Outgoing o = std::move(queue_.front());
      queue_.pop_front();
      if (o.is_close) {
        auto [ec] = co_await ws_.async_close(o.reason, use_nothrow);
        (void)ec;
        break;
      }
      ws_.binary(o.binary);
      auto [ec, n] = co_await ws_.async_write(asio::buffer(o.data), use_nothrow);
      queued_ -= o.data.size();
      space_.notify_all();
      if (ec) {
        spdlog::debug("ws {}: write failed: {}", req_.path, ec.message());
        broken_ = true;
        break;
      }
    }
    queue_.clear();
    queued_ = 0;
    writer_done_ = true;
    space_.notify_all();
    done_.notify_all();
  }

 private:
  websocket::stream<beast::tcp_stream> ws_;
  HttpRequest req_;
  WsOptions opts_;
  beast::flat_buffer read_buf_;
  std::deque<Outgoing> queue_;
  std::size_t queued_ = 0;
  bool closing_ = false;
  bool broken_ = false;
  bool read_done_ = false;
  bool writer_done_ = false;
  Signal space_, work_, done_;
};

asio::awaitable<void> refuse(beast::tcp_stream& stream, const HttpResponse& h, unsigned version) {
  http::response<http::string_body> res{static_cast<http::status>(h.status), version};
  res.set(http::field::server, "kohakuriver-runner");
  if (!h.content_type.empty()) res.set(http::field::content_type, h.content_type);
  for (const auto& [k, v] : h.headers) res.set(k, v);
  res.body() = h.body;
  res.keep_alive(false);
  res.prepare_payload();
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, res, use_nothrow);
}

}  // namespace

asio::awaitable<void> serve_websocket(beast::tcp_stream stream, http::request<http::string_body> req,
                                      HttpRequest hreq, const WsRoute& route, beast::tcp_stream*& registered) {
  registered = &stream;
  if (route.options.precheck) {
    if (auto refusal = route.options.precheck(hreq)) {
      co_await refuse(stream, *refusal, req.version());
      co_return;
    }
  }
  stream.expires_never();
  boost::system::error_code nodelay_ec;  // interactive traffic: no Nagle delay
  stream.socket().set_option(asio::ip::tcp::no_delay(true), nodelay_ec);
  auto session = std::make_shared<BeastWebSocket>(std::move(stream), std::move(hreq), route.options);
  auto& ws = session->stream();
  registered = &beast::get_lowest_layer(ws);
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::chrono::seconds(15);
  t.idle_timeout = route.options.idle_timeout.count() > 0
                       ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(route.options.idle_timeout)
                       : websocket::stream_base::none();
  t.keep_alive_pings = route.options.idle_timeout.count() > 0;
  ws.set_option(t);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "kohakuriver-runner"); }));
  ws.read_message_max(route.options.max_message_bytes);
  // One frame per message: Beast's default auto-fragmentation cuts every
  // message into 4 KiB frames, one write system call each, which capped
  // tunnel throughput (peers reassemble either way).
  ws.auto_fragment(false);
  auto [aec] = co_await ws.async_accept(req, use_nothrow);
  if (aec) {
    spdlog::debug("ws {}: handshake failed: {}", session->request().path, aec.message());
    co_return;
  }
  asio::co_spawn(ws.get_executor(), session->writer(), asio::detached);
  std::uint16_t code = ws_close::kNormal;
  try {
    co_await route.handler(*session);
  } catch (const std::exception& e) {
    spdlog::error("Unhandled error in WebSocket {}: {}", session->request().path, e.what());
    code = ws_close::kInternalError;
  }
  co_await session->close(code, {});
  session->abort();  // releases the socket even if the peer lingers
}

}  // namespace kr::api::detail

#include "vm/vm_forward.hpp"

#include <map>
#include <memory>
#include <optional>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "common/join.hpp"

namespace kr::vm {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using tunnel::MsgType;
using tunnel::Proto;

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr std::size_t kReadSize = 65536;

struct Conn {
  Proto proto = Proto::Tcp;
  std::optional<tcp::socket> tcp_sock;
  std::optional<udp::socket> udp_sock;
  bool closed = false;
  void close() {
    closed = true;
    boost::system::error_code ec;
    if (tcp_sock) tcp_sock->close(ec);
    if (udp_sock) udp_sock->close(ec);
  }
};
using ConnPtr = std::shared_ptr<Conn>;

struct Session {
  api::WebSocket* ws = nullptr;
  std::map<std::uint32_t, ConnPtr> conns;
  int readers = 0;  // reader coroutines still running (they use `ws`)
};

bool quiet_error(const boost::system::error_code& ec) {
  return ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::bad_descriptor;
}

// VM -> user for one id, until EOF/error/CLOSE.
asio::awaitable<void> reader(std::shared_ptr<Session> s, std::uint32_t id, ConnPtr c) {
  std::string buf(kReadSize, '\0');
  for (;;) {
    boost::system::error_code ec;
    std::size_t n = 0;
    if (c->proto == Proto::Tcp)
      std::tie(ec, n) = co_await c->tcp_sock->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    else
      std::tie(ec, n) = co_await c->udp_sock->async_receive(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (c->closed) break;  // CLOSE from the user or session end: nothing to send
    if (!ec && (n > 0 || c->proto == Proto::Udp)) {
      if (!co_await s->ws->send(tunnel::encode(MsgType::Data, c->proto, id, 0, std::string_view(buf.data(), n)), true))
        break;
      continue;
    }
    if (!ec || ec == asio::error::eof) {
      co_await s->ws->send(tunnel::encode(MsgType::Close, c->proto, id, 0), true);
    } else if (c->proto == Proto::Udp && ec == asio::error::connection_refused) {
      // ICMP port unreachable: the "connection" is over (as the Rust client).
      co_await s->ws->send(tunnel::encode(MsgType::Close, c->proto, id, 0), true);
    } else if (!quiet_error(ec)) {
      co_await s->ws->send(tunnel::encode(MsgType::Error, c->proto, id, 0, ec.message()), true);
    }
    break;
  }
  c->close();
  if (auto it = s->conns.find(id); it != s->conns.end() && it->second == c) s->conns.erase(it);
  --s->readers;
}

// Closes the socket when the connect limit passes (a plain handler, not a
// lambda inside the coroutine: see common/blocking.hpp on GCC 12).
struct ConnectLimit {
  tcp::socket* sock;
  std::shared_ptr<bool> timed_out;
  void operator()(boost::system::error_code ec) const {
    if (ec) return;
    *timed_out = true;
    boost::system::error_code ignored;
    sock->close(ignored);
  }
};

// TCP connect with the 10 s limit; the error text on failure.
asio::awaitable<std::string> dial_tcp(tcp::socket& sock, tcp::endpoint ep) {
  auto ex = co_await asio::this_coro::executor;
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer timer(ex, kConnectTimeout);
  timer.async_wait(ConnectLimit{&sock, timed_out});
  auto [ec] = co_await sock.async_connect(ep, asio::as_tuple(asio::use_awaitable));
  timer.cancel();
  if (*timed_out) co_return "timed out";
  if (ec) co_return ec.message();
  co_return "";
}

}  // namespace

asio::awaitable<void> serve_vm_forward(api::WebSocket& ws, std::string vm_ip, std::uint16_t url_port,
                                       Proto session_proto) {
  auto ex = co_await asio::this_coro::executor;
  boost::system::error_code aec;
  const auto addr = asio::ip::make_address(vm_ip, aec);
  if (aec) {
    co_await ws.send("Error: Cannot resolve VM target: " + vm_ip, false);
    co_await ws.close(api::ws_close::kInternalError);
    co_return;
  }
  if (!co_await ws.send("CONNECTED", false)) co_return;
  auto s = std::make_shared<Session>();
  s->ws = &ws;
  spdlog::info("forward vm {}:{}/{}: session open", vm_ip, url_port, session_proto == Proto::Udp ? "udp" : "tcp");

  for (;;) {
    auto msg = co_await ws.read();
    if (!msg) break;
    if (!msg->binary) continue;  // T9
    auto h = tunnel::parse_header(msg->data);
    if (!h) continue;
    const std::uint32_t id = h->client_id;
    const std::uint16_t port = h->port ? h->port : url_port;
    // T8: the message's protocol (UDP really is UDP); the session's when
    // the byte is not a known protocol.
    const Proto proto = tunnel::is_known_proto(h->proto) ? static_cast<Proto>(h->proto) : session_proto;
    const auto type = static_cast<MsgType>(h->type);
    if (type == MsgType::Connect) {
      if (s->conns.count(id)) {
        spdlog::warn("forward vm {}: duplicate CONNECT for id {} ignored", vm_ip, id);
        continue;
      }
      auto c = std::make_shared<Conn>();
      c->proto = proto;
      std::string why;
      if (proto == Proto::Tcp) {
        c->tcp_sock.emplace(ex);
        why = co_await dial_tcp(*c->tcp_sock, tcp::endpoint(addr, port));
        if (why.empty()) {
          boost::system::error_code ec;
          c->tcp_sock->set_option(tcp::no_delay(true), ec);
        }
      } else {
        c->udp_sock.emplace(ex);
        boost::system::error_code ec;
        c->udp_sock->open(addr.is_v4() ? udp::v4() : udp::v6(), ec);
        if (!ec) c->udp_sock->connect(udp::endpoint(addr, port), ec);
        if (ec) why = ec.message();
      }
      if (!why.empty()) {
        co_await ws.send(tunnel::encode(MsgType::Error, proto, id, port, "Connection failed: " + why), true);
        continue;
      }
      s->conns[id] = c;
      ++s->readers;
      asio::co_spawn(ex, reader(s, id, c), asio::detached);
      co_await ws.send(tunnel::encode(MsgType::Connected, proto, id, port), true);
    } else if (type == MsgType::Data) {
      auto it = s->conns.find(id);
      if (it == s->conns.end()) {
        spdlog::debug("forward vm {}: DATA for unknown id {}", vm_ip, id);
        continue;
      }
      ConnPtr c = it->second;
      const std::string_view payload = tunnel::payload_of(msg->data);
      boost::system::error_code ec;
      if (c->proto == Proto::Tcp)
        std::tie(ec, std::ignore) =
            co_await asio::async_write(*c->tcp_sock, asio::buffer(payload), asio::as_tuple(asio::use_awaitable));
      else
        std::tie(ec, std::ignore) =
            co_await c->udp_sock->async_send(asio::buffer(payload), asio::as_tuple(asio::use_awaitable));
      if (ec) spdlog::debug("forward vm {}: write for id {} failed: {}", vm_ip, id, ec.message());
    } else if (type == MsgType::Close) {
      auto it = s->conns.find(id);
      if (it == s->conns.end()) continue;
      it->second->close();
      s->conns.erase(it);
    }
    // Other types: ignored (§2.3.3).
  }
  for (auto& [id, c] : s->conns) c->close();
  s->conns.clear();
  // The readers refer to `ws`: wait for them.
  asio::steady_timer t(ex);
  while (s->readers > 0) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  spdlog::info("forward vm {}:{}: session closed", vm_ip, url_port);
}

}  // namespace kr::vm

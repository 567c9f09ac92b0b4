#include "vm/ssh_proxy.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <list>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "metrics/metrics.hpp"
#include "vm/ssh_relay_guard.hpp"

namespace kr::vm {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::seconds kDialTimeout{10};
// TCP keepalive on both legs of an established session: an idle SSH session
// is never cut, a vanished peer is found after ~2 min (60 s + 4 x 15 s).
constexpr int kKeepIdleSeconds = 60;
constexpr int kKeepIntervalSeconds = 15;
constexpr int kKeepCount = 4;

void set_keepalive(tcp::socket& s) {
  boost::system::error_code ec;
  s.set_option(asio::socket_base::keep_alive(true), ec);
  if (ec) return;
  const int fd = s.native_handle();
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &kKeepIdleSeconds, sizeof kKeepIdleSeconds);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepIntervalSeconds, sizeof kKeepIntervalSeconds);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepCount, sizeof kKeepCount);
}

// One relayed connection: its slot in the shared limits, and whether both
// sides have sent their SSH identification line yet.
struct Conn {
  Conn(asio::any_io_executor ex, std::shared_ptr<SshRelayGuard> g, api::ConnectionLimiter::Slot s,
       std::shared_ptr<tcp::socket> c)
      : guard(std::move(g)), slot(std::move(s)), client(std::move(c)), vm(std::make_shared<tcp::socket>(ex)),
        handshake(ex) {
    metrics::ssh_relay_open_changed(+1);
  }
  ~Conn() { metrics::ssh_relay_open_changed(-1); }
  std::shared_ptr<SshRelayGuard> guard;  // outlives `slot`
  api::ConnectionLimiter::Slot slot;
  std::shared_ptr<tcp::socket> client, vm;
  asio::steady_timer handshake;
  SshBannerScanner from_client, from_vm;
  bool established = false;
};
using ConnPtr = std::shared_ptr<Conn>;

}  // namespace

struct SshProxy::State {
  State(asio::any_io_executor e, std::shared_ptr<SshRelayGuard> g) : ex(e), acceptor(e), guard(std::move(g)) {}
  asio::any_io_executor ex;
  tcp::acceptor acceptor;
  std::shared_ptr<SshRelayGuard> guard;
  tcp::endpoint target;
  bool stopped = false;
  std::list<std::shared_ptr<tcp::socket>> sockets;  // every open relayed socket

  void close_all() {
    boost::system::error_code ec;
    acceptor.close(ec);
    for (auto& s : sockets) s->close(ec);
    sockets.clear();
  }
};

namespace {

using StatePtr = std::shared_ptr<SshProxy::State>;

// Copies one direction, watching it for its SSH identification line until
// the exchange is complete; the second of the two pumps to finish drops
// both sockets from the state (closing them).
asio::awaitable<void> pump(StatePtr st, ConnPtr conn, bool from_client, std::shared_ptr<int> running) {
  auto& from = from_client ? conn->client : conn->vm;
  auto& to = from_client ? conn->vm : conn->client;
  SshBannerScanner& scanner = from_client ? conn->from_client : conn->from_vm;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto [rec, n] = co_await from->async_read_some(asio::buffer(buf), nothrow);
    if (rec || n == 0) break;
    if (!conn->established && scanner.feed(std::string_view(buf.data(), n)) && conn->from_client.seen() &&
        conn->from_vm.seen()) {
      conn->established = true;
      conn->handshake.cancel();
    }
    auto [wec, w] = co_await asio::async_write(*to, asio::buffer(buf.data(), n), nothrow);
    if (wec) break;
  }
  boost::system::error_code ec;
  to->shutdown(tcp::socket::shutdown_send, ec);  // half-close: the other way may still run
  if (--*running == 0) {
    conn->handshake.cancel();
    from->close(ec);
    to->close(ec);
    st->sockets.remove(from);
    st->sockets.remove(to);
  }
}

asio::awaitable<void> relay(StatePtr st, ConnPtr conn) {
  st->sockets.push_back(conn->vm);
  // The whole set-up, dial included, must be done within the handshake
  // timeout; an established session is never timed out.
  conn->handshake.expires_after(conn->guard->settings().handshake_timeout);
  conn->handshake.async_wait([conn](const boost::system::error_code& ec) {
    if (ec || conn->established) return;
    metrics::ssh_relay_event("handshake_timeout");
    boost::system::error_code ignored;
    conn->client->close(ignored);
    conn->vm->close(ignored);
  });
  asio::steady_timer timer(st->ex, kDialTimeout);
  auto vm = conn->vm;
  timer.async_wait([vm](const boost::system::error_code& ec) {
    if (!ec) {
      boost::system::error_code ignored;
      vm->close(ignored);  // the dial took too long
    }
  });
  auto [cec] = co_await vm->async_connect(st->target, nothrow);
  timer.cancel();
  if (cec || st->stopped) {
    spdlog::debug("SSH proxy: cannot reach {}:{}: {}", st->target.address().to_string(), st->target.port(),
                  cec.message());
    boost::system::error_code ec;
    conn->handshake.cancel();
    conn->client->close(ec);
    vm->close(ec);
    st->sockets.remove(vm);
    st->sockets.remove(conn->client);
    co_return;
  }
  boost::system::error_code nd;
  vm->set_option(tcp::no_delay(true), nd);
  set_keepalive(*vm);
  auto running = std::make_shared<int>(2);
  asio::co_spawn(st->ex, pump(st, conn, true, running), asio::detached);
  co_await pump(st, conn, false, running);
}

asio::awaitable<void> accept_loop(StatePtr st) {
  while (!st->stopped) {
    auto client = std::make_shared<tcp::socket>(st->ex);
    auto [ec] = co_await st->acceptor.async_accept(*client, nothrow);
    if (ec) {
      if (st->stopped || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
      spdlog::warn("SSH proxy on port {}: accept failed: {}", st->acceptor.local_endpoint().port(), ec.message());
      asio::steady_timer pause(st->ex, std::chrono::milliseconds(200));
      co_await pause.async_wait(nothrow);
      continue;
    }
    boost::system::error_code rec;
    const auto remote = client->remote_endpoint(rec);
    auto slot = st->guard->admit(rec ? std::string() : remote.address().to_string());
    if (!slot) {
      client->close(rec);  // over the limits: closed at once, nothing dialled
      continue;
    }
    boost::system::error_code nd;
    client->set_option(tcp::no_delay(true), nd);
    set_keepalive(*client);
    st->sockets.push_back(client);
    auto conn = std::make_shared<Conn>(st->ex, st->guard, std::move(slot), client);
    asio::co_spawn(st->ex, relay(st, conn), asio::detached);
  }
}

}  // namespace

SshProxy::SshProxy(asio::any_io_executor ex, std::shared_ptr<SshRelayGuard> guard, const std::string& bind_ip,
                   std::uint16_t port, std::string target_ip, std::uint16_t target_port)
    : state_(std::make_shared<State>(ex, std::move(guard))) {
  boost::system::error_code ec;
  auto bind_addr = asio::ip::make_address(bind_ip.empty() ? "0.0.0.0" : bind_ip, ec);
  if (ec) throw std::runtime_error("SSH proxy: bad bind address '" + bind_ip + "'");
  auto target_addr = asio::ip::make_address(target_ip, ec);
  if (ec) throw std::runtime_error("SSH proxy: bad VM address '" + target_ip + "'");
  state_->target = tcp::endpoint(target_addr, target_port);
  const tcp::endpoint ep(bind_addr, port);
  auto& a = state_->acceptor;
  const std::string where = bind_addr.to_string() + ":" + std::to_string(port);
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    a.close(ignored);
    throw std::runtime_error("cannot listen on " + where + " for the VM's SSH port: " + ec.message());
  }
}

SshProxy::~SshProxy() { stop(); }

void SshProxy::start() { asio::co_spawn(state_->ex, accept_loop(state_), asio::detached); }

void SshProxy::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  state_->close_all();
}

std::uint16_t SshProxy::port() const {
  boost::system::error_code ec;
  auto ep = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace kr::vm

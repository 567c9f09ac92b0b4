#include "vm/ssh_proxy.hpp"

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

namespace kr::vm {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::seconds kDialTimeout{10};
}  // namespace

struct SshProxy::State {
  State(asio::any_io_executor e) : ex(e), acceptor(e) {}
  asio::any_io_executor ex;
  tcp::acceptor acceptor;
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

// Copies one direction; the second of the two pumps to finish drops both
// sockets from the state (closing them).
asio::awaitable<void> pump(StatePtr st, std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to,
                           std::shared_ptr<int> running) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto [rec, n] = co_await from->async_read_some(asio::buffer(buf), nothrow);
    if (rec || n == 0) break;
    auto [wec, w] = co_await asio::async_write(*to, asio::buffer(buf.data(), n), nothrow);
    if (wec) break;
  }
  boost::system::error_code ec;
  to->shutdown(tcp::socket::shutdown_send, ec);  // half-close: the other way may still run
  if (--*running == 0) {
    from->close(ec);
    to->close(ec);
    st->sockets.remove(from);
    st->sockets.remove(to);
  }
}

asio::awaitable<void> relay(StatePtr st, std::shared_ptr<tcp::socket> client) {
  auto vm = std::make_shared<tcp::socket>(st->ex);
  st->sockets.push_back(vm);
  asio::steady_timer timer(st->ex, kDialTimeout);
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
    client->close(ec);
    vm->close(ec);
    st->sockets.remove(vm);
    st->sockets.remove(client);
    co_return;
  }
  auto running = std::make_shared<int>(2);
  asio::co_spawn(st->ex, pump(st, client, vm, running), asio::detached);
  co_await pump(st, vm, client, running);
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
    boost::system::error_code nd;
    client->set_option(tcp::no_delay(true), nd);
    st->sockets.push_back(client);
    asio::co_spawn(st->ex, relay(st, client), asio::detached);
  }
}

}  // namespace

SshProxy::SshProxy(asio::any_io_executor ex, const std::string& bind_ip, std::uint16_t port, std::string target_ip,
                   std::uint16_t target_port)
    : state_(std::make_shared<State>(ex)) {
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

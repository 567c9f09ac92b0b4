// The multiplexer of one tunnel session (tunnel-overlay.md §1.7, §2.6):
// CONNECT/DATA/CLOSE messages on the WebSocket to the runner become
// connections to 127.0.0.1:<port> inside the container and back, in one
// poll() loop over non-blocking sockets, with back-pressure both ways.
// Getting the WebSocket (connect, handshake, reconnect) is client.cpp's.
#include "tunnel_client/session.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <cstdio>
#include <memory>
#include <unordered_map>
#include <vector>

#include "tunnel/frame.hpp"
#include "tunnel/ws_client_codec.hpp"
#include "tunnel_client/client.hpp"
#include "tunnel_client/log.hpp"
#include "tunnel_client/out_buffer.hpp"

namespace kr::tunnel_client {

namespace {

using tunnel::MsgType;
using tunnel::Proto;
using Clock = std::chrono::steady_clock;

// TCP reads from the local service: larger than the Rust client's 64 KiB so
// that bulk transfers cost fewer messages and system calls, and far below the
// 1 MiB the host accepts per message (T7; the upstream runner relays our
// messages to the host unchanged). UDP keeps 64 KiB: one datagram per DATA.
constexpr std::size_t kTcpReadChunk = 256u << 10;
constexpr std::size_t kUdpReadChunk = 65536;
constexpr std::size_t kMaxIncomingMessage = 64u << 20;  // tungstenite's default
constexpr std::size_t kConnQueueLimit = 4u << 20;       // stop reading the tunnel above this
constexpr std::size_t kWsOutLimit = 1u << 20;           // stop reading local sockets above this
constexpr std::size_t kWsReadChunk = 256u << 10;
constexpr std::size_t kWsBufferKeep = 4u << 20;         // send buffer kept while idle
constexpr auto kLingerTimeout = std::chrono::seconds(30);

std::uint64_t g_rng = 0;

}  // namespace

std::uint32_t random_u32() {
  if (g_rng == 0) {
    if (getrandom(&g_rng, sizeof g_rng, 0) != static_cast<ssize_t>(sizeof g_rng) || g_rng == 0)
      g_rng = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) | 1;
  }
  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return static_cast<std::uint32_t>((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}

namespace {

struct Conn {
  std::uint32_t id = 0;
  Proto proto = Proto::Tcp;
  int fd = -1;
  bool connecting = false;  // TCP connect to the local service in progress
  bool local_done = false;  // local side ended (CLOSE sent); DATA is dropped
  bool closing = false;     // runner sent CLOSE: flush, FIN, discard until EOF
  bool fin_sent = false;
  Clock::time_point linger_deadline{};
  std::deque<std::string> out;  // TCP: byte chunks; UDP: datagrams
  std::size_t out_off = 0;
  std::size_t out_bytes = 0;

  ~Conn() {
    if (fd >= 0) ::close(fd);
  }
  void close_fd() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    out.clear();
    out_bytes = out_off = 0;
  }
};

class Session {
 public:
  explicit Session(int ws_fd, std::string leftover) : ws_fd_(ws_fd), parser_(kMaxIncomingMessage) {
    pending_in_ = std::move(leftover);
  }
  ~Session() {
    if (ws_fd_ >= 0) ::close(ws_fd_);
  }
  void run();

 private:
  int ws_fd_;
  tunnel::ws::FrameParser parser_;
  std::string pending_in_;
  OutBuffer ws_out_;
  bool ending_ = false;
  std::unordered_map<std::uint32_t, std::unique_ptr<Conn>> live_;
  std::vector<std::unique_ptr<Conn>> lingering_;
  std::string frame_;  // small control/tunnel messages are framed here

  std::size_t ws_backlog() const { return ws_out_.size(); }
  void send_ws(tunnel::ws::Opcode op, std::string_view payload) {
    frame_.clear();
    tunnel::ws::encode_frame(frame_, op, payload, random_u32());
    ws_out_.append(frame_);
  }
  void send_msg(MsgType t, Proto p, std::uint32_t id, std::string_view payload = {}) {
    send_ws(tunnel::ws::Binary, tunnel::encode(t, p, id, 0, payload));
  }
  bool flush_ws();
  bool read_ws();
  void handle_message(std::string_view m);
  void on_connect(std::uint32_t id, Proto proto, std::uint16_t port);
  void on_data(std::uint32_t id, std::string_view payload);
  void on_close(std::uint32_t id);
  void local_ended(Conn& c, const char* why);
  void read_local(Conn& c);
  void flush_local(Conn& c);
  void finish_connect(Conn& c);
  void drain_lingering(Conn& c, short revents);
};

bool Session::flush_ws() {
  while (ws_backlog() > 0) {
    ssize_t n = ::send(ws_fd_, ws_out_.data(), ws_backlog(), MSG_NOSIGNAL);
    if (n > 0) {
      ws_out_.consume(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    TC_ERROR("WebSocket error: send failed: %s", std::strerror(errno));
    return false;
  }
  ws_out_.trim(kWsBufferKeep);
  return true;
}

bool Session::read_ws() {
  static char buf[kWsReadChunk];
  std::string leftover = std::move(pending_in_);
  pending_in_.clear();
  ssize_t n = leftover.empty() ? ::recv(ws_fd_, buf, sizeof buf, 0) : 0;
  std::string_view in;
  if (!leftover.empty()) {
    in = leftover;
  } else if (n > 0) {
    in = std::string_view(buf, static_cast<std::size_t>(n));
  } else if (n == 0) {
    TC_INFO("WebSocket closed by server (connection ended without a close frame)");
    return false;
  } else {
    if (errno == EAGAIN || errno == EINTR) return true;
    TC_ERROR("WebSocket error: %s", std::strerror(errno));
    return false;
  }
  using Kind = tunnel::ws::FrameParser::Event::Kind;
  while (!in.empty()) {
    auto ev = parser_.next(in);
    switch (ev.kind) {
      case Kind::None:
        break;
      case Kind::Message:
        if (ev.opcode == tunnel::ws::Binary) handle_message(ev.payload);
        else TC_DEBUG("Received text message (unexpected): %zu bytes", ev.payload.size());
        break;
      case Kind::Ping:
        TC_DEBUG("Received WebSocket ping");
        send_ws(tunnel::ws::Pong, ev.payload);
        break;
      case Kind::Pong:
        TC_DEBUG("Received WebSocket pong");
        break;
      case Kind::Close: {
        unsigned code = ev.payload.size() >= 2
                            ? (static_cast<unsigned char>(ev.payload[0]) << 8) | static_cast<unsigned char>(ev.payload[1])
                            : 1005;
        TC_INFO("WebSocket closed by server (code %u)", code);
        send_ws(tunnel::ws::Close, ev.payload.substr(0, std::min<std::size_t>(2, ev.payload.size())));
        return false;
      }
      case Kind::Error:
        TC_ERROR("WebSocket error: %s", ev.payload.c_str());
        return false;
    }
  }
  return true;
}

void Session::handle_message(std::string_view m) {
  auto h = tunnel::parse_header(m);
  if (!h) {
    TC_WARN("Message too short, ignoring (len=%zu)", m.size());
    return;
  }
  if (!tunnel::is_known_type(h->type) || !tunnel::is_known_proto(h->proto)) {
    TC_WARN("Error handling message: invalid message type 0x%02x or protocol 0x%02x", h->type, h->proto);
    return;
  }
  auto payload = tunnel::payload_of(m);
  TC_TRACE("Received message type=%s proto=%u client_id=%u port=%u payload_len=%zu", tunnel::type_name(h->type),
           h->proto, h->client_id, h->port, payload.size());
  switch (static_cast<MsgType>(h->type)) {
    case MsgType::Connect: on_connect(h->client_id, static_cast<Proto>(h->proto), h->port); break;
    case MsgType::Data: on_data(h->client_id, payload); break;
    case MsgType::Close: on_close(h->client_id); break;
    case MsgType::Ping:
      TC_DEBUG("Received PING, sending PONG (client_id=%u)", h->client_id);
      send_msg(MsgType::Pong, Proto::Tcp, h->client_id);
      break;
    default: TC_WARN("Unexpected message type from server: %s", tunnel::type_name(h->type)); break;
  }
}

void Session::on_connect(std::uint32_t id, Proto proto, std::uint16_t port) {
  TC_INFO("Opening connection client_id=%u port=%u proto=%s", id, port, proto == Proto::Udp ? "udp" : "tcp");
  if (live_.count(id)) {
    TC_WARN("Connection already exists, ignoring duplicate CONNECT (client_id=%u)", id);
    return;
  }
  auto c = std::make_unique<Conn>();
  c->id = id;
  c->proto = proto;
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(port);
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (proto == Proto::Tcp) {
    c->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd >= 0) {
      // Each DATA is one write: no Nagle delay for small requests.
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int rc = c->fd < 0 ? -1 : ::connect(c->fd, reinterpret_cast<sockaddr*>(&target), sizeof target);
    if (rc == 0) {
      TC_INFO("TCP connection established client_id=%u port=%u", id, port);
      send_msg(MsgType::Connected, Proto::Tcp, id);
    } else if (errno == EINPROGRESS) {
      c->connecting = true;
    } else {
      int err = errno;
      TC_ERROR("Failed to connect to local service client_id=%u port=%u: %s", id, port, std::strerror(err));
      send_msg(MsgType::Error, Proto::Tcp, id, os_error_text(err));
      c->close_fd();
      c->local_done = true;
    }
  } else {
    c->fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (c->fd < 0 || ::bind(c->fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        ::connect(c->fd, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
      TC_ERROR("UDP connection failed client_id=%u: %s", id, std::strerror(errno));
      c->close_fd();
      c->local_done = true;
    } else {
      TC_INFO("UDP socket ready client_id=%u port=%u", id, port);
      send_msg(MsgType::Connected, Proto::Udp, id);
    }
  }
  live_.emplace(id, std::move(c));
}

void Session::on_data(std::uint32_t id, std::string_view payload) {
  auto it = live_.find(id);
  if (it == live_.end()) {
    TC_WARN("DATA for unknown connection (client_id=%u)", id);
    return;
  }
  Conn& c = *it->second;
  if (c.fd < 0) {
    TC_DEBUG("DATA for a connection whose local side ended, dropped (client_id=%u)", id);
    return;
  }
  if (c.proto == Proto::Udp) {
    if (c.out.empty()) {
      ssize_t n = ::send(c.fd, payload.data(), payload.size(), MSG_NOSIGNAL);
      if (n >= 0) return;
      if (errno != EAGAIN && errno != ENOBUFS) {
        local_ended(c, std::strerror(errno));
        return;
      }
    }
    c.out.emplace_back(payload);
    c.out_bytes += payload.size();
    return;
  }
  if (c.out.empty() && !c.connecting) {
    ssize_t n = ::send(c.fd, payload.data(), payload.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      local_ended(c, std::strerror(errno));
      return;
    }
    if (n > 0) payload.remove_prefix(static_cast<std::size_t>(n));
    if (payload.empty()) return;
  }
  c.out.emplace_back(payload);
  c.out_bytes += payload.size();
}

void Session::on_close(std::uint32_t id) {
  TC_INFO("Closing connection client_id=%u", id);
  auto it = live_.find(id);
  if (it == live_.end()) return;
  std::unique_ptr<Conn> c = std::move(it->second);
  live_.erase(it);
  if (c->fd < 0 || c->proto == Proto::Udp || c->connecting) return;  // destructor closes
  // Flush what the user sent, then FIN; read and discard until the service
  // closes so that close() does not turn into a reset that loses data.
  c->closing = true;
  c->linger_deadline = Clock::now() + kLingerTimeout;
  if (c->out.empty()) {
    ::shutdown(c->fd, SHUT_WR);
    c->fin_sent = true;
  }
  lingering_.push_back(std::move(c));
}

void Session::local_ended(Conn& c, const char* why) {
  TC_DEBUG("Local connection ended client_id=%u: %s", c.id, why);
  send_msg(MsgType::Close, c.proto, c.id);
  c.close_fd();
  c.local_done = true;
}

void Session::read_local(Conn& c) {
  // [frame head room][tunnel header][payload read here]
  const std::size_t chunk = c.proto == Proto::Udp ? kUdpReadChunk : kTcpReadChunk;
  char* room = ws_out_.prepare(tunnel::ws::kMaxFrameHead + tunnel::kHeaderSize + chunk);
  char* message = room + tunnel::ws::kMaxFrameHead;
  char* body = message + tunnel::kHeaderSize;
  ssize_t n = c.proto == Proto::Udp ? ::recv(c.fd, body, chunk, 0) : ::read(c.fd, body, chunk);
  if (n > 0) {
    tunnel::write_header(tunnel::Header{static_cast<std::uint8_t>(MsgType::Data), static_cast<std::uint8_t>(c.proto),
                                        c.id, 0},
                         reinterpret_cast<unsigned char*>(message));
    const std::size_t len = tunnel::kHeaderSize + static_cast<std::size_t>(n);
    std::size_t offset = tunnel::ws::build_frame_in_place(room, len, tunnel::ws::Binary, random_u32());
    ws_out_.commit(offset, tunnel::ws::kMaxFrameHead - offset + len);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n == 0 && c.proto == Proto::Udp) {
    // An empty datagram is a datagram.
    send_msg(MsgType::Data, Proto::Udp, c.id);
    return;
  }
  local_ended(c, n == 0 ? "closed by the local service" : std::strerror(errno));
}

void Session::flush_local(Conn& c) {
  while (!c.out.empty() && c.fd >= 0) {
    std::string& front = c.out.front();
    if (c.proto == Proto::Udp) {
      ssize_t n = ::send(c.fd, front.data(), front.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == ENOBUFS) return;
        local_ended(c, std::strerror(errno));
        return;
      }
      c.out_bytes -= front.size();
      c.out.pop_front();
      continue;
    }
    ssize_t n = ::send(c.fd, front.data() + c.out_off, front.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      if (c.closing) {
        c.close_fd();
      } else {
        local_ended(c, std::strerror(errno));
      }
      return;
    }
    c.out_off += static_cast<std::size_t>(n);
    c.out_bytes -= static_cast<std::size_t>(n);
    if (c.out_off == front.size()) {
      c.out.pop_front();
      c.out_off = 0;
    }
  }
  if (c.out.empty() && c.closing && !c.fin_sent && c.fd >= 0) {
    ::shutdown(c.fd, SHUT_WR);
    c.fin_sent = true;
  }
}

void Session::finish_connect(Conn& c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err == EINPROGRESS || err == EALREADY) return;
  c.connecting = false;
  if (err != 0) {
    TC_ERROR("Failed to connect to local service client_id=%u: %s", c.id, std::strerror(err));
    send_msg(MsgType::Error, Proto::Tcp, c.id, os_error_text(err));
    c.close_fd();
    c.local_done = true;
    return;
  }
  TC_INFO("TCP connection established client_id=%u", c.id);
  send_msg(MsgType::Connected, Proto::Tcp, c.id);
  flush_local(c);
}

void Session::drain_lingering(Conn& c, short revents) {
  if (revents & POLLOUT) flush_local(c);
  if (c.fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char sink[16384];
    ssize_t n = ::read(c.fd, sink, sizeof sink);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) c.close_fd();
  }
}

void Session::run() {
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;
  if (!pending_in_.empty() && !read_ws()) ending_ = true;
  while (!ending_) {
    fds.clear();
    owners.clear();
    bool congested = false;
    for (auto& [id, c] : live_)
      if (c->out_bytes > kConnQueueLimit) congested = true;
    for (auto& c : lingering_)
      if (c->out_bytes > kConnQueueLimit) congested = true;
    short ws_events = congested ? 0 : POLLIN;
    if (ws_backlog() > 0) ws_events |= POLLOUT;
    fds.push_back({ws_fd_, ws_events, 0});
    owners.push_back(nullptr);
    const bool ws_full = ws_backlog() >= kWsOutLimit;
    for (auto& [id, c] : live_) {
      if (c->fd < 0) continue;
      short ev = 0;
      if (c->connecting) ev = POLLOUT;
      else {
        if (!ws_full) ev |= POLLIN;
        if (!c->out.empty()) ev |= POLLOUT;
      }
      fds.push_back({c->fd, ev, 0});
      owners.push_back(c.get());
    }
    const auto now = Clock::now();
    int timeout_ms = -1;
    for (auto& c : lingering_) {
      if (c->fd < 0) continue;
      if (now >= c->linger_deadline) {
        c->close_fd();
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->linger_deadline - now).count() + 1;
      if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
      short ev = POLLIN;
      if (!c->out.empty()) ev |= POLLOUT;
      fds.push_back({c->fd, ev, 0});
      owners.push_back(c.get());
    }
    std::erase_if(lingering_, [](const std::unique_ptr<Conn>& c) { return c->fd < 0; });

    int rc = ::poll(fds.data(), fds.size(), timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      TC_ERROR("poll failed: %s", std::strerror(errno));
      break;
    }
    // Local sockets first (their DATA joins ws_out_), then the WebSocket.
    for (std::size_t i = 1; i < fds.size(); ++i) {
      short re = fds[i].revents;
      if (!re) continue;
      Conn& c = *owners[i];
      if (c.fd < 0) continue;
      if (c.closing) {
        drain_lingering(c, re);
        continue;
      }
      if (c.connecting) {
        finish_connect(c);
        continue;
      }
      if (re & POLLOUT) flush_local(c);
      if (c.fd >= 0 && (re & (POLLIN | POLLHUP | POLLERR)) && ws_backlog() < kWsOutLimit) read_local(c);
    }
    short wre = fds[0].revents;
    if (wre & (POLLIN | POLLHUP | POLLERR)) {
      if (!read_ws()) ending_ = true;
    }
    if (!flush_ws()) break;
  }
  // Best effort: deliver a close reply that may be queued.
  if (ws_backlog() > 0) flush_ws();
  TC_INFO("Shutting down all connections (%zu open)", live_.size() + lingering_.size());
  live_.clear();
  lingering_.clear();
}

}  // namespace

void run_tunnel_session(int ws_fd, std::string leftover) {
  Session s(ws_fd, std::move(leftover));
  s.run();
}

}  // namespace kr::tunnel_client

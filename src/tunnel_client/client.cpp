#include "tunnel_client/client.hpp"

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
#include "tunnel_client/log.hpp"
#include "tunnel_client/out_buffer.hpp"
#include "tunnel_client/session.hpp"

namespace kr::tunnel_client {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kConnectTimeoutMs = 30000;

// IP literal, "localhost", or a name from /etc/hosts. No DNS: a static glibc
// binary cannot use NSS, and the runner hands out an IP address anyway.
bool resolve(const std::string& host, std::uint16_t port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof *out);
  auto try_literal = [&](const std::string& h) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(out);
    if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      *len = sizeof(sockaddr_in);
      return true;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
    if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      *len = sizeof(sockaddr_in6);
      return true;
    }
    return false;
  };
  if (try_literal(host)) return true;
  if (host == "localhost") return try_literal("127.0.0.1");
  FILE* hosts = std::fopen("/etc/hosts", "re");
  if (!hosts) return false;
  char raw[1024];
  bool found = false;
  while (!found && std::fgets(raw, sizeof raw, hosts)) {
    std::string_view line(raw);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r')) ++i;
      std::size_t start = i;
      while (i < line.size() && !(line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r')) ++i;
      if (i > start) words.emplace_back(line.substr(start, i - start));
    }
    for (std::size_t w = 1; w < words.size() && !found; ++w)
      if (words[w] == host) found = try_literal(words[0]);
  }
  std::fclose(hosts);
  if (found) return true;
  return false;
}

// Connects with a deadline; returns the fd or -1 (with `why`).
int connect_runner(const tunnel::ws::Url& url, std::string* why) {
  sockaddr_storage addr;
  socklen_t alen = 0;
  if (!resolve(url.host, url.port, &addr, &alen)) {
    *why = "cannot resolve '" + url.host +
           "': this static tunnel-client accepts IP addresses, localhost and /etc/hosts names only";
    return -1;
  }
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::strerror(errno);
    return -1;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), alen) != 0 && errno != EINPROGRESS) {
    *why = os_error_text(errno);
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, kConnectTimeoutMs) <= 0) {
    *why = "connect timed out";
    ::close(fd);
    return -1;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    *why = os_error_text(err);
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  return fd;
}

bool io_deadline(int fd, short events, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left)) > 0;
}

}  // namespace

std::string os_error_text(int err) { return std::string(std::strerror(err)) + " (os error " + std::to_string(err) + ")"; }

SessionEnd run_session(const tunnel::ClientOptions& opts) {
  std::string err;
  std::string full = tunnel::ws::tunnel_url(opts.runner_url, opts.container_id);
  auto url = tunnel::ws::parse_url(full, &err);
  if (!url) {
    TC_ERROR("Connection error: %s", err.c_str());
    return SessionEnd::HandshakeFailed;
  }
  TC_INFO("Connecting to WebSocket url=%s", full.c_str());
  int fd = connect_runner(*url, &err);
  if (fd < 0) {
    TC_ERROR("Connection error: Failed to connect to WebSocket: %s", err.c_str());
    return SessionEnd::HandshakeFailed;
  }
  unsigned char key_raw[16];
  for (int i = 0; i < 16; i += 4) {
    std::uint32_t r = random_u32();
    std::memcpy(key_raw + i, &r, 4);
  }
  std::string key = tunnel::ws::base64(std::string_view(reinterpret_cast<char*>(key_raw), 16));
  std::string req = tunnel::ws::handshake_request(*url, key);
  const auto deadline = Clock::now() + std::chrono::milliseconds(kConnectTimeoutMs);
  std::size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<std::size_t>(n);
    else if (n < 0 && errno == EAGAIN && io_deadline(fd, POLLOUT, deadline)) continue;
    else {
      TC_ERROR("Connection error: Failed to connect to WebSocket: handshake send failed");
      ::close(fd);
      return SessionEnd::HandshakeFailed;
    }
  }
  std::string resp;
  std::size_t head_end = std::string::npos;
  while (head_end == std::string::npos) {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      resp.append(buf, static_cast<std::size_t>(n));
      head_end = resp.find("\r\n\r\n");
      if (head_end == std::string::npos && resp.size() > 65536) break;
      continue;
    }
    if (n < 0 && errno == EAGAIN && io_deadline(fd, POLLIN, deadline)) continue;
    break;
  }
  if (head_end == std::string::npos) {
    TC_ERROR("Connection error: Failed to connect to WebSocket: no complete handshake response");
    ::close(fd);
    return SessionEnd::HandshakeFailed;
  }
  std::string problem = tunnel::ws::check_handshake_response(std::string_view(resp).substr(0, head_end + 4), key);
  if (!problem.empty()) {
    TC_ERROR("Connection error: Failed to connect to WebSocket: %s", problem.c_str());
    ::close(fd);
    return SessionEnd::HandshakeFailed;
  }
  TC_INFO("WebSocket connected status=101 Switching Protocols");
  run_tunnel_session(fd, resp.substr(head_end + 4));
  return SessionEnd::Ended;
}

int run_client(const tunnel::ClientOptions& opts) {
  TC_INFO("Starting KohakuRiver Tunnel Client runner_url=%s container_id=%s", opts.runner_url.c_str(),
          opts.container_id.c_str());
  std::string err;
  if (!tunnel::ws::parse_url(tunnel::ws::tunnel_url(opts.runner_url, opts.container_id), &err)) {
    // A URL we can never use is a configuration error: retrying cannot help.
    std::fprintf(stderr, "Error: %s\n", err.c_str());
    return 1;
  }
  std::uint32_t attempt = 0;
  while (true) {
    ++attempt;
    if (opts.max_reconnect > 0 && attempt > opts.max_reconnect) {
      TC_ERROR("Max reconnection attempts reached, giving up");
      std::fprintf(stderr, "Error: Max reconnection attempts exceeded\n");
      return 1;
    }
    TC_INFO("Connecting to runner... attempt=%u", attempt);
    if (run_session(opts) == SessionEnd::Ended) {
      TC_INFO("Connection closed normally");
      attempt = 0;
    }
    TC_INFO("Reconnecting... delay_secs=%llu", static_cast<unsigned long long>(opts.reconnect_delay_s));
    timespec ts{static_cast<time_t>(opts.reconnect_delay_s), 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

}  // namespace kr::tunnel_client

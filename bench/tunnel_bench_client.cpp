// A fast user side for bench/tunnel_bench.py: fetches an HTTP path either
// directly (plain TCP to the container's address) or through the runner's
// /ws/forward endpoint (the tunnel messages the upstream CLI sends), with
// the same large reads and no per-message copies on both paths, so the
// ratio measures the tunnel rather than the client.
//
//   tunnel_bench_client direct IP PORT PATH [STREAMS]
//   tunnel_bench_client tunnel RUNNER_PORT CONTAINER PORT PATH [STREAMS]
//
// Prints one JSON line: {"bytes": N, "seconds": S, "MBps": X}. STREAMS > 1
// fetches PATH that many times at once (direct: one thread per stream;
// tunnel: one forward session multiplexing the streams, as the CLI does).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tunnel/frame.hpp"
#include "tunnel/ws_client_codec.hpp"

namespace {

using kr::tunnel::MsgType;
using kr::tunnel::Proto;
namespace ws = kr::tunnel::ws;

constexpr std::size_t kBuf = 4u << 20;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "tunnel_bench_client: %s\n", why.c_str());
  std::exit(1);
}

int dial(const char* ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) die(std::string("bad address ") + ip);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die(std::string("connect: ") + strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void send_all(int fd, std::string_view d) {
  while (!d.empty()) {
    ssize_t n = ::send(fd, d.data(), d.size(), MSG_NOSIGNAL);
    if (n <= 0) die(std::string("send: ") + strerror(errno));
    d.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string http_get(const std::string& path) { return "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n"; }

std::uint64_t direct_one(const char* ip, int port, const std::string& path) {
  int fd = dial(ip, port);
  send_all(fd, http_get(path));
  std::vector<char> buf(kBuf);
  std::uint64_t total = 0;
  while (true) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return total;
}

// Reads server frames straight out of the receive buffer; only headers are
// looked at, payload bytes are counted (DATA payload minus the 8-byte
// tunnel header).
struct TunnelReader {
  int fd;
  std::vector<char> buf = std::vector<char>(kBuf);
  std::size_t have = 0, off = 0;

  void fill(std::size_t need) {
    if (off > 0 && have - off < need) {
      std::memmove(buf.data(), buf.data() + off, have - off);
      have -= off;
      off = 0;
    }
    while (have - off < need) {
      ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, 0);
      if (n <= 0) die("connection ended");
      have += static_cast<std::size_t>(n);
    }
  }

  // Streams one frame: calls on_message(opcode, first bytes of payload, total
  // payload length) once the first min(len, 8) bytes are available.
  template <class F>
  void frame(F&& on_message) {
    fill(2);
    auto* p = reinterpret_cast<unsigned char*>(buf.data() + off);
    std::uint8_t op = p[0] & 0x0F;
    std::uint64_t len = p[1] & 0x7F;
    std::size_t hl = 2;
    if (len == 126) hl = 4;
    if (len == 127) hl = 10;
    fill(hl);
    p = reinterpret_cast<unsigned char*>(buf.data() + off);
    if (hl == 4) len = (std::uint64_t(p[2]) << 8) | p[3];
    if (hl == 10) {
      len = 0;
      for (int i = 2; i < 10; ++i) len = (len << 8) | p[i];
    }
    off += hl;
    std::size_t first = static_cast<std::size_t>(std::min<std::uint64_t>(len, 8));
    fill(first);
    on_message(op, std::string_view(buf.data() + off, first), len);
    // Skip the payload without copying it.
    std::uint64_t left = len;
    while (left > 0) {
      if (have == off) {
        have = off = 0;
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n <= 0) die("connection ended");
        have = static_cast<std::size_t>(n);
      }
      std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left, have - off));
      off += take;
      left -= take;
    }
  }
};

std::uint64_t tunnel(int runner_port, const std::string& container, int port, const std::string& path, int streams) {
  int fd = dial("127.0.0.1", runner_port);
  ws::Url url{"127.0.0.1", static_cast<std::uint16_t>(runner_port),
              "/ws/forward/" + container + "/" + std::to_string(port) + "?proto=tcp"};
  std::string key = ws::base64("0123456789abcdef");
  send_all(fd, ws::handshake_request(url, key));
  std::string head;
  char c;
  while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
    if (::recv(fd, &c, 1, 0) != 1) die("handshake: connection ended");
    head.push_back(c);
  }
  if (auto why = ws::check_handshake_response(head, key); !why.empty()) die("handshake: " + why);
  TunnelReader r{fd};
  bool connected = false;
  r.frame([&](std::uint8_t op, std::string_view first, std::uint64_t len) {
    connected = op == ws::Text && len == 9 && first == "CONNECTE";
  });
  if (!connected) die("the runner did not answer CONNECTED");
  std::string out;
  for (int i = 1; i <= streams; ++i) {
    ws::encode_frame(out, ws::Binary, kr::tunnel::encode(MsgType::Connect, Proto::Tcp, i, port), 0x12345678u + i);
    ws::encode_frame(out, ws::Binary, kr::tunnel::encode(MsgType::Data, Proto::Tcp, i, 0, http_get(path)),
                     0x9abcdef0u + i);
  }
  send_all(fd, out);
  std::uint64_t total = 0;
  int open = streams;
  // A tunnel message may arrive in several WebSocket frames (continuations
  // carry more of the current message's payload).
  bool in_data = false;
  while (open > 0) {
    r.frame([&](std::uint8_t op, std::string_view first, std::uint64_t len) {
      if (op == ws::Close) die("the runner closed the session");
      if (op == ws::Continuation) {
        if (in_data) total += len;
        return;
      }
      in_data = false;
      if (op != ws::Binary) return;
      auto h = kr::tunnel::parse_header(first);
      if (!h) return;
      if (h->type == static_cast<std::uint8_t>(MsgType::Data)) {
        total += len - kr::tunnel::kHeaderSize;
        in_data = true;
      }
      if (h->type == static_cast<std::uint8_t>(MsgType::Close) || h->type == static_cast<std::uint8_t>(MsgType::Error))
        --open;
    });
  }
  ::close(fd);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  auto t0 = std::chrono::steady_clock::now();
  std::uint64_t bytes = 0;
  if (a.size() >= 4 && a[0] == "direct") {
    int streams = a.size() > 4 ? std::stoi(a[4]) : 1;
    std::vector<std::uint64_t> got(static_cast<std::size_t>(streams));
    std::vector<std::thread> ts;
    for (int i = 0; i < streams; ++i)
      ts.emplace_back([&, i] { got[static_cast<std::size_t>(i)] = direct_one(a[1].c_str(), std::stoi(a[2]), a[3]); });
    for (auto& t : ts) t.join();
    for (auto g : got) bytes += g;
  } else if (a.size() >= 5 && a[0] == "tunnel") {
    int streams = a.size() > 5 ? std::stoi(a[5]) : 1;
    bytes = tunnel(std::stoi(a[1]), a[2], std::stoi(a[3]), a[4], streams);
  } else {
    std::fprintf(stderr,
                 "usage: tunnel_bench_client direct IP PORT PATH [STREAMS]\n"
                 "       tunnel_bench_client tunnel RUNNER_PORT CONTAINER PORT PATH [STREAMS]\n");
    return 2;
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"bytes\": %llu, \"seconds\": %.6f, \"MBps\": %.1f}\n", static_cast<unsigned long long>(bytes), s,
              static_cast<double>(bytes) / s / 1e6);
  return 0;
}

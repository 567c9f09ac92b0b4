// The QMP client (V4) against a fake QMP server on a UNIX socket that
// behaves like QEMU 7.2 (greeting, \r\n endings, events before returns).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <functional>
#include <thread>

#include "vm/qmp_client.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::TempDir;
using nlohmann::json;
namespace asio = boost::asio;

namespace {

const std::string kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}})"
    "\r\n";

// One scripted connection: the script gets the accepted fd.
class FakeQmp {
public:
  explicit FakeQmp(std::function<void(int fd, FakeQmp&)> script) : script_(std::move(script)) {
    path_ = tmp_.dir / "vm.qmp";
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 4) != 0)
      throw std::runtime_error("fake QMP: cannot listen");
    thread_ = std::thread([this] {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      script_(fd, *this);
      ::close(fd);
    });
  }
  ~FakeQmp() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    if (thread_.joinable()) thread_.join();
  }
  const std::filesystem::path& path() const { return path_; }

  static void send(int fd, const std::string& text) { (void)!::write(fd, text.data(), text.size()); }
  // Next request line as JSON (null on EOF).
  json read_request(int fd) {
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        json j = json::parse(line);
        requests.push_back(j);
        return j;
      }
      char buf[4096];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return nullptr;
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Answers qmp_capabilities after the greeting.
  json handshake(int fd) {
    send(fd, kGreeting);
    json caps = read_request(fd);
    send(fd, json({{"return", json::object()}, {"id", caps["id"]}}).dump() + "\r\n");
    return read_request(fd);
  }
  std::vector<json> requests;

private:
  TempDir tmp_;
  std::filesystem::path path_;
  int listen_fd_ = -1;
  std::function<void(int, FakeQmp&)> script_;
  std::thread thread_;
  std::string buffer_;
};

json run(const std::filesystem::path& path, const std::string& command, json args = nullptr,
         std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
  asio::io_context io;
  auto fut = asio::co_spawn(io, qmp_execute(path, command, std::move(args), deadline), asio::use_future);
  io.run();
  return fut.get();
}

const char* kPowerdownEvent = R"({"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": "POWERDOWN"})";

}  // namespace

TEST(Qmp, EventAndReturnInOneWrite) {
  FakeQmp server([](int fd, FakeQmp& s) {
    json cmd = s.handshake(fd);
    FakeQmp::send(fd, std::string(kPowerdownEvent) + "\r\n" + json({{"return", json::object()}, {"id", cmd["id"]}}).dump() +
                          "\r\n");
  });
  EXPECT_EQ(run(server.path(), "system_powerdown"), json::object());
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[0]["execute"], "qmp_capabilities");
  EXPECT_EQ(server.requests[1]["execute"], "system_powerdown");
  EXPECT_FALSE(server.requests[1].contains("arguments"));
}

TEST(Qmp, EventAloneThenReturnLater) {
  FakeQmp server([](int fd, FakeQmp& s) {
    json cmd = s.handshake(fd);
    FakeQmp::send(fd, std::string(kPowerdownEvent) + "\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // A reply split across writes.
    const std::string reply = json({{"return", json::object()}, {"id", cmd["id"]}}).dump() + "\r\n";
    FakeQmp::send(fd, reply.substr(0, 5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    FakeQmp::send(fd, reply.substr(5));
  });
  EXPECT_EQ(run(server.path(), "system_powerdown"), json::object());
}

TEST(Qmp, ReturnValueAndArguments) {
  FakeQmp server([](int fd, FakeQmp& s) {
    json cmd = s.handshake(fd);
    FakeQmp::send(fd, json({{"return", {{"status", "running"}, {"singlestep", false}, {"running", true}}},
                            {"id", cmd["id"]}})
                              .dump() +
                          "\r\n");
  });
  json r = run(server.path(), "query-status", json({{"x", 1}}));
  EXPECT_EQ(r["status"], "running");
  EXPECT_EQ(server.requests[1]["arguments"], json({{"x", 1}}));
}

TEST(Qmp, ErrorReply) {
  FakeQmp server([](int fd, FakeQmp& s) {
    json cmd = s.handshake(fd);
    FakeQmp::send(fd, json({{"error", {{"class", "CommandNotFound"}, {"desc", "The command nope has not been found"}}},
                            {"id", cmd["id"]}})
                              .dump() +
                          "\r\n");
  });
  try {
    run(server.path(), "nope");
    FAIL();
  } catch (const QmpError& e) {
    EXPECT_EQ(e.kind(), QmpError::Kind::Command);
    EXPECT_EQ(e.error_class(), "CommandNotFound");
    EXPECT_NE(std::string(e.what()).find("has not been found"), std::string::npos);
  }
}

TEST(Qmp, SilentServerHitsTheDeadline) {
  FakeQmp server([](int fd, FakeQmp& s) {
    s.handshake(fd);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // never answers in time
  });
  // Had the deadline not fired, the server's close after 2 s would give a
  // Protocol error instead.
  try {
    run(server.path(), "system_powerdown", nullptr, std::chrono::milliseconds(300));
    FAIL();
  } catch (const QmpError& e) {
    EXPECT_EQ(e.kind(), QmpError::Kind::Timeout) << e.what();
  }
}

TEST(Qmp, ServerClosesEarly) {
  FakeQmp server([](int fd, FakeQmp&) { FakeQmp::send(fd, kGreeting); });
  try {
    run(server.path(), "system_powerdown");
    FAIL();
  } catch (const QmpError& e) {
    EXPECT_EQ(e.kind(), QmpError::Kind::Protocol) << e.what();
  }
}

TEST(Qmp, NotAQmpServer) {
  FakeQmp server([](int fd, FakeQmp&) { FakeQmp::send(fd, "SSH-2.0-OpenSSH_9.2\r\n"); });
  try {
    run(server.path(), "system_powerdown");
    FAIL();
  } catch (const QmpError& e) {
    EXPECT_EQ(e.kind(), QmpError::Kind::Protocol) << e.what();
  }
}

TEST(Qmp, MissingSocket) {
  TempDir tmp;
  try {
    run(tmp.dir / "absent.qmp", "system_powerdown");
    FAIL();
  } catch (const QmpError& e) {
    EXPECT_EQ(e.kind(), QmpError::Kind::Connect) << e.what();
  }
}

#include "vm/qmp_client.hpp"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <atomic>
#include <memory>

namespace kr::vm {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxLine = 1 << 20;  // QMP replies we use are tiny

// Socket and watchdog shared with the timer handler, which may run after the
// coroutine has finished (the handler only holds a weak_ptr).
struct Session {
  explicit Session(const asio::any_io_executor& ex) : socket(ex), timer(ex) {}
  asio::local::stream_protocol::socket socket;
  asio::steady_timer timer;
  bool expired = false;
  std::string buffer;
};

std::atomic<unsigned long> g_next_id{1};

json parse_line(const std::string& line, const std::string& path) {
  try {
    return json::parse(line);
  } catch (const json::exception&) {
    throw QmpError(QmpError::Kind::Protocol, "QMP " + path + ": not JSON: " + line.substr(0, 200));
  }
}

// Next JSON line; throws on EOF, timeout, oversize.
asio::awaitable<json> read_message(std::shared_ptr<Session> s, std::string path) {
  std::size_t n = 0;
  try {
    n = co_await asio::async_read_until(s->socket, asio::dynamic_buffer(s->buffer, kMaxLine), '\n',
                                        asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (s->expired) throw QmpError(QmpError::Kind::Timeout, "QMP " + path + ": no answer before the deadline");
    if (e.code() == asio::error::not_found)
      throw QmpError(QmpError::Kind::Protocol, "QMP " + path + ": line longer than 1 MiB");
    throw QmpError(QmpError::Kind::Protocol, "QMP " + path + ": connection closed: " + e.code().message());
  }
  std::string line = s->buffer.substr(0, n);
  s->buffer.erase(0, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  co_return parse_line(line, path);
}

// Reads until the reply carrying `id` (events and stray replies skipped).
asio::awaitable<json> read_reply(std::shared_ptr<Session> s, std::string path, std::string id) {
  for (;;) {
    json msg = co_await read_message(s, path);
    if (!msg.is_object() || msg.contains("event")) continue;
    if (!msg.contains("return") && !msg.contains("error")) continue;
    const auto it = msg.find("id");
    if (it == msg.end() || !it->is_string() || it->get_ref<const std::string&>() != id) continue;
    co_return msg;
  }
}

asio::awaitable<void> send(std::shared_ptr<Session> s, std::string path, std::string text) {
  try {
    co_await asio::async_write(s->socket, asio::buffer(text), asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (s->expired) throw QmpError(QmpError::Kind::Timeout, "QMP " + path + ": no answer before the deadline");
    throw QmpError(QmpError::Kind::Protocol, "QMP " + path + ": send failed: " + e.code().message());
  }
}

json make_request(const std::string& command, const json& arguments, const std::string& id) {
  json req = json::object();
  req["execute"] = command;
  if (!arguments.is_null()) req["arguments"] = arguments;
  req["id"] = id;
  return req;
}

json result_of(const json& reply, const std::string& command, const std::string& path) {
  if (auto err = reply.find("error"); err != reply.end()) {
    std::string cls = err->is_object() ? err->value("class", std::string()) : std::string();
    std::string desc = err->is_object() ? err->value("desc", std::string()) : err->dump();
    throw QmpError(QmpError::Kind::Command, "QMP " + command + " failed: " + (cls.empty() ? "" : cls + ": ") + desc,
                   cls);
  }
  return reply.at("return");
}

}  // namespace

asio::awaitable<json> qmp_execute(std::filesystem::path socket_path, std::string command, json arguments,
                                  std::chrono::milliseconds deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto s = std::make_shared<Session>(ex);
  const std::string path = socket_path.string();
  s->timer.expires_after(deadline);
  s->timer.async_wait([w = std::weak_ptr<Session>(s)](boost::system::error_code ec) {
    if (ec) return;
    if (auto live = w.lock()) {
      live->expired = true;
      boost::system::error_code ignored;
      live->socket.close(ignored);
    }
  });
  struct TimerGuard {
    Session& s;
    ~TimerGuard() { s.timer.cancel(); }
  } guard{*s};

  bool connected = true;
  std::string connect_error;
  try {
    co_await s->socket.async_connect(asio::local::stream_protocol::endpoint(path), asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    connected = false;
    connect_error = e.code().message();
  }
  if (!connected) {
    if (s->expired) throw QmpError(QmpError::Kind::Timeout, "QMP " + path + ": connect timed out");
    throw QmpError(QmpError::Kind::Connect, "QMP connect to " + path + " failed: " + connect_error);
  }

  // The greeting comes first, before any reply or event.
  json greeting = co_await read_message(s, path);
  if (!greeting.is_object() || !greeting.contains("QMP"))
    throw QmpError(QmpError::Kind::Protocol, "QMP " + path + ": expected a greeting, got " + greeting.dump().substr(0, 200));

  const std::string caps_id = "kr-" + std::to_string(g_next_id++);
  co_await send(s, path, make_request("qmp_capabilities", nullptr, caps_id).dump() + "\n");
  json caps = co_await read_reply(s, path, caps_id);
  result_of(caps, "qmp_capabilities", path);

  const std::string id = "kr-" + std::to_string(g_next_id++);
  co_await send(s, path, make_request(command, arguments, id).dump() + "\n");
  json reply = co_await read_reply(s, path, id);
  co_return result_of(reply, command, path);
}

}  // namespace kr::vm

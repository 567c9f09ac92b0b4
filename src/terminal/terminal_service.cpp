#include "terminal/terminal_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/validation.hpp"
#include "common/join.hpp"
#include "common/utf8.hpp"
#include "docker/docker_error.hpp"
#include "docker/exec.hpp"
#include "ssh/stream.hpp"
#include "workload/target.hpp"

namespace kr::terminal {

namespace asio = boost::asio;
using json = nlohmann::json;
using docker::DockerError;

namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr auto kFirstMessageWait = std::chrono::milliseconds(2000);
const char* const kShells[] = {"/bin/bash", "/bin/sh"};

std::string frame(const char* type, const std::string& data) {
  json j = json::object();
  j["type"] = type;
  j["data"] = data;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Output starts after the first client message (so an initial resize
// applies before the prompt) or 2 s, like upstream.
asio::awaitable<void> wait_first_message(api::WebSocket* ws, const bool& seen) {
  const auto start = std::chrono::steady_clock::now();
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!seen && std::chrono::steady_clock::now() - start < kFirstMessageWait && ws->is_open()) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// One client message (§7.2), the same for containers and VMs: binary frames
// and invalid JSON are ignored; a JSON value without a string `type` ends
// the session (upstream's validation error).
struct ClientMessage {
  enum class Kind { Ignore, End, Input, Resize } kind = Kind::Ignore;
  std::string data;   // Input (a string `data`; absent: not an input)
  int rows = 0, cols = 0;  // Resize, both > 0
};

ClientMessage parse_client_message(const api::WsMessage& m) {
  ClientMessage out;
  if (m.binary) return out;
  auto j = json::parse(m.data, nullptr, false);
  if (j.is_discarded()) return out;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    out.kind = ClientMessage::Kind::End;
    return out;
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "input") {
    if (j.contains("data") && j["data"].is_string()) {
      out.kind = ClientMessage::Kind::Input;
      out.data = j["data"].get<std::string>();
    }
  } else if (type == "resize") {
    auto num = [&](const char* k) -> int {
      if (!j.contains(k) || !j[k].is_number_integer()) return 0;
      return static_cast<int>(std::clamp<std::int64_t>(j[k].get<std::int64_t>(), 0, 10000));
    };
    out.rows = num("rows");
    out.cols = num("cols");
    if (out.rows > 0 && out.cols > 0) out.kind = ClientMessage::Kind::Resize;
  }
  return out;
}

struct Shared {
  std::shared_ptr<docker::ExecStream> stream;
  bool first_message_seen = false;
  std::shared_ptr<DoneFlag> pump_done = std::make_shared<DoneFlag>();
};

// Shell output -> "output" frames, after wait_first_message.
asio::awaitable<void> pump_output(api::WebSocket* ws, std::shared_ptr<Shared> sh) {
  co_await wait_first_message(ws, sh->first_message_seen);
  bool ok = co_await ws->send(frame("output", ""));  // ready acknowledgement
  Utf8StreamDecoder utf8;
  while (ok) {
    std::string chunk = co_await sh->stream->read_some(kReadChunk);
    if (chunk.empty()) break;
    std::string text = utf8.feed(chunk);
    if (!text.empty()) ok = co_await ws->send(frame("output", text));
  }
  std::string rest = utf8.finish();
  if (ok && !rest.empty()) co_await ws->send(frame("output", rest));
  // The shell ended: end the session (this also ends the client loop).
  if (ws->is_open()) co_await ws->close(api::ws_close::kNormal, {});
  sh->pump_done->done = true;
}

// Returns false when the message's shape ends the session (upstream's
// validation error).
asio::awaitable<bool> handle_client_message(docker::DockerClient& docker, const std::string& exec_id,
                                            Shared& sh, const api::WsMessage& m) {
  const ClientMessage c = parse_client_message(m);
  if (c.kind == ClientMessage::Kind::End) co_return false;
  if (c.kind == ClientMessage::Kind::Input && !c.data.empty()) co_await sh.stream->write(c.data);
  if (c.kind == ClientMessage::Kind::Resize) {
    try {
      co_await docker::resize_exec(docker, exec_id, c.rows, c.cols, std::chrono::milliseconds(5000));
    } catch (const DockerError& e) {
      spdlog::warn("terminal: resize failed: {}", e.message);
    }
  }
  co_return true;
}


// ---- VMs (execution.md §7.4): an interactive shell over SSH ---------------

struct VmShared {
  std::unique_ptr<ssh::SshStream> stream;
  bool first_message_seen = false;
  std::shared_ptr<DoneFlag> pump_done = std::make_shared<DoneFlag>();
};

asio::awaitable<void> pump_vm_output(api::WebSocket* ws, std::shared_ptr<VmShared> sh) {
  co_await wait_first_message(ws, sh->first_message_seen);
  bool ok = co_await ws->send(frame("output", ""));  // ready acknowledgement
  Utf8StreamDecoder utf8;
  while (ok) {
    auto chunk = co_await sh->stream->read();
    if (!chunk) break;
    for (std::size_t off = 0; ok && off < chunk->data.size(); off += kReadChunk) {
      std::string text = utf8.feed(std::string_view(chunk->data).substr(off, kReadChunk));
      if (!text.empty()) ok = co_await ws->send(frame("output", text));
    }
  }
  std::string rest = utf8.finish();
  if (ok && !rest.empty()) co_await ws->send(frame("output", rest));
  const std::string why = sh->stream->end_error();
  if (ok && !why.empty() && ws->is_open()) co_await ws->send(frame("error", "Error: " + why + "\r\n"));
  if (ws->is_open()) co_await ws->close(api::ws_close::kNormal, {});
  sh->pump_done->done = true;
}

// Same message protocol as the Docker path (input, resize; invalid JSON
// ignored); false when the message's shape ends the session.
bool handle_vm_message(ssh::SshStream& stream, const api::WsMessage& m) {
  const ClientMessage c = parse_client_message(m);
  if (c.kind == ClientMessage::Kind::End) return false;
  if (c.kind == ClientMessage::Kind::Input) stream.write(c.data);
  if (c.kind == ClientMessage::Kind::Resize) stream.resize(c.rows, c.cols);
  return true;
}

asio::awaitable<void> vm_session(api::WebSocket& ws, std::int64_t id, std::string vm_ip) {
  auto sh = std::make_shared<VmShared>();
  std::string why;
  try {
    ssh::SshStreamSpec spec;
    spec.target = workload::vm_ssh_target(vm_ip);
    spec.connect_timeout = std::chrono::seconds(15);
    sh->stream = co_await ssh::SshStream::open(std::move(spec));  // 80x24 until the client's resize
  } catch (const std::exception& e) {
    why = e.what();
  }
  if (!sh->stream) {
    co_await ws.send(frame("error", "SSH connection failed: " + why));
    co_await ws.close(api::ws_close::kInternalError, {});
    co_return;
  }
  spdlog::info("Terminal opened for VM {} ({})", id, vm_ip);
  asio::co_spawn(co_await asio::this_coro::executor, pump_vm_output(&ws, sh), asio::detached);
  for (;;) {
    auto m = co_await ws.read();
    if (!m) break;
    sh->first_message_seen = true;
    if (!handle_vm_message(*sh->stream, *m)) break;
  }
  sh->stream->close();  // the channel's close hangs up the remote shell
  co_await wait_until_done(sh->pump_done);
  spdlog::info("Terminal closed for VM {}", id);
}

}  // namespace

TerminalService::TerminalService(docker::DockerClient& docker, store::StateStore& store)
    : docker_(docker), store_(store) {}

void TerminalService::add_routes(api::Router& r) {
  api::WsOptions o;
  o.max_message_bytes = 1u << 20;
  o.precheck = [](const api::HttpRequest& q) -> std::optional<api::HttpResponse> {
    api::Validation v;
    auto it = q.path_params.find("task_id");
    if (!api::path_int(it == q.path_params.end() ? "" : it->second, "task_id", v))
      return api::HttpResponse::detail(403, "Forbidden");
    return std::nullopt;
  };
  r.add_websocket("/ws/task/{task_id}/terminal", [this](api::WebSocket& ws) { return session(ws); }, o);
}

asio::awaitable<void> TerminalService::session(api::WebSocket& ws) {
  api::Validation v;
  const std::int64_t id = *api::path_int(ws.request().path_params.at("task_id"), "task_id", v);
  auto look = co_await workload::resolve_container(store_, docker_, id);
  if (!look.target) {
    co_await ws.send(frame("error", look.message));
    const bool internal = look.docker_unreachable || look.status >= 500;
    co_await ws.close(internal ? api::ws_close::kInternalError : api::ws_close::kPolicy, {});
    co_return;
  }
  if (look.target->is_vm()) {
    co_await vm_session(ws, id, look.target->vm_ip);
    co_return;
  }
  const std::string container = look.target->container;

  // Shell choice as upstream (bash, then sh) but probed by running it, so
  // images without `which` work.
  std::string shell;
  for (const char* candidate : kShells) {
    std::vector<std::string> argv = {candidate, "-c", "exit 0"};
    docker::RunOptions o;
    o.deadline = std::chrono::milliseconds(10000);
    std::optional<DockerError> err;
    try {
      auto r = co_await docker::run_exec(docker_, container, std::move(argv), o);
      if (r.exit_code == 0) shell = candidate;
    } catch (const DockerError& e) {
      err = e;
    }
    if (err) {
      co_await ws.send(frame("error", "Docker API Error: " + err->message + "\r\n"));
      co_await ws.close(api::ws_close::kInternalError, {});
      co_return;
    }
    if (!shell.empty()) break;
  }
  if (shell.empty()) {
    co_await ws.send(frame("error", "No suitable shell found."));
    co_await ws.close(api::ws_close::kInternalError, {});
    co_return;
  }

  auto sh = std::make_shared<Shared>();
  std::string exec_id;
  std::optional<DockerError> start_error;
  try {
    docker::ExecSpec spec;
    spec.cmd = {shell};
    spec.tty = true;
    spec.attach_stdin = true;
    exec_id = co_await docker::create_exec(docker_, container, spec);
    sh->stream = co_await docker::start_exec(docker_, exec_id, true);
  } catch (const DockerError& e) {
    start_error = e;
  }
  if (start_error) {
    co_await ws.send(frame("error", "Docker API Error: " + start_error->message + "\r\n"));
    co_await ws.close(api::ws_close::kNormal, {});
    co_return;
  }
  spdlog::info("Terminal opened for task {} ({}, exec {})", id, shell, exec_id.substr(0, 12));

  asio::co_spawn(co_await asio::this_coro::executor, pump_output(&ws, sh), asio::detached);
  std::optional<std::string> failure;
  for (;;) {
    auto m = co_await ws.read();
    if (!m) break;
    sh->first_message_seen = true;
    bool keep = true;
    try {
      keep = co_await handle_client_message(docker_, exec_id, *sh, *m);
    } catch (const DockerError& e) {
      failure = e.message;  // stdin gone: the shell exited
      keep = false;
    }
    if (!keep) break;
  }
  // D-EXECKILL: the client is gone (or the shell ended): make sure the
  // shell and its jobs do not outlive the session.
  co_await docker::kill_exec(docker_, exec_id);
  sh->stream->close();
  co_await wait_until_done(sh->pump_done);
  spdlog::info("Terminal closed for task {}{}", id, failure ? " (" + *failure + ")" : "");
}

}  // namespace kr::terminal

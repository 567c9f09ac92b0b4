// Filesystem watch WebSocket /ws/fs/{task_id}/watch (execution.md §6.4 with
// D-INOTIFY: the exec stream is demultiplexed, only stdout carries events;
// S-WATCH: paths are validated like REST paths).
#include <map>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/spdlog.h>

#include "api/validation.hpp"
#include "common/join.hpp"
#include "common/utf8.hpp"
#include "fs/fs_parse.hpp"
#include "fs/fs_paths.hpp"
#include "fs/fs_service.hpp"
#include "ssh/stream.hpp"
#include "workload/exec.hpp"

namespace kr::fs {

namespace asio = boost::asio;
using docker::DockerError;

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(2000);
constexpr auto kExecDeadline = std::chrono::milliseconds(30000);

std::string error_msg(const std::string& message) {
  json j = json::object();
  j["type"] = "error";
  j["message"] = message;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string watching_msg(const std::vector<std::string>& paths, bool inotify) {
  json j = json::object();
  j["type"] = "watching";
  j["paths"] = paths;
  j["method"] = inotify ? "inotify" : "polling";
  if (!inotify) j["interval"] = 2.0;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string change_msg(const std::string& event, const std::string& path, bool is_dir) {
  json j = json::object();
  j["type"] = "change";
  j["event"] = event;
  j["path"] = path;
  j["is_dir"] = is_dir;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

docker::RunOptions quick() {
  docker::RunOptions o;
  o.deadline = kExecDeadline;
  o.max_stdout = 16u << 20;
  return o;
}

// inotifywait's output -> messages. `watching` goes out once inotifywait
// reports "Watches established." on stderr (or before its first event, or
// when it exits): a client that acts on `watching` must not lose the
// events of its first change.
struct InotifyParser {
  explicit InotifyParser(std::string w) : watching(std::move(w)) {}
  std::string watching;
  Utf8StreamDecoder utf8;
  std::string line_buf;
  std::string banner;
  bool announced = false;
  std::vector<std::string> out;

  void announce() {
    if (announced) return;
    announced = true;
    out.push_back(std::move(watching));
  }
  void feed(bool is_stdout, std::string_view payload) {
    if (!is_stdout) {  // banners go to stderr
      if (!announced) {
        banner.append(payload.substr(0, 4096));
        if (banner.find("Watches established") != std::string::npos) announce();
        if (banner.size() > 8192) banner.erase(0, banner.size() - 4096);
      }
      return;
    }
    announce();
    line_buf += utf8.feed(payload);
    std::size_t nl;
    while ((nl = line_buf.find('\n')) != std::string::npos) {
      if (auto msg = parse_inotify_line(std::string_view(line_buf).substr(0, nl)))
        out.push_back(msg->dump(-1, ' ', false, json::error_handler_t::replace));
      line_buf.erase(0, nl + 1);
    }
    if (line_buf.size() > (1u << 20)) line_buf.clear();  // no newline in 1 MiB: not inotifywait
  }
  // Sends what is queued; false when the client is gone.
  asio::awaitable<bool> flush(api::WebSocket* ws) {
    bool ok = true;
    for (auto& m : out)
      if (!co_await ws->send(std::move(m))) ok = false;
    out.clear();
    co_return ok;
  }
};

// The stream ended (inotifywait exited): end the session, which also wakes
// the client loop's read.
asio::awaitable<void> end_inotify(api::WebSocket* ws, InotifyParser& p, bool ok, std::shared_ptr<DoneFlag> done) {
  if (ok && !p.announced && ws->is_open()) co_await ws->send(std::move(p.watching));
  if (ws->is_open()) co_await ws->close(api::ws_close::kNormal, {});
  done->done = true;
}

// Docker: the exec stream is multiplexed (D-INOTIFY: demultiplexed here).
asio::awaitable<void> pump_inotify(api::WebSocket* ws, std::shared_ptr<docker::ExecStream> stream,
                                   std::shared_ptr<DoneFlag> done, std::string watching) {
  docker::StreamDemuxer demux;
  InotifyParser p(std::move(watching));
  docker::StreamDemuxer::Sink sink = [&p](docker::StdStream s, std::string_view payload) {
    p.feed(s == docker::StdStream::Stdout, payload);
  };
  bool ok = true;
  while (ok) {
    std::string chunk = co_await stream->read_some();
    if (chunk.empty()) break;
    try {
      demux.feed(chunk, sink);
    } catch (const std::exception& e) {
      spdlog::warn("watch: bad exec stream: {}", e.what());
      break;
    }
    ok = co_await p.flush(ws);
  }
  co_await end_inotify(ws, p, ok, done);
}

// VM: stdout and stderr arrive apart on the SSH channel.
asio::awaitable<void> pump_inotify_ssh(api::WebSocket* ws, std::shared_ptr<ssh::SshStream> stream,
                                       std::shared_ptr<DoneFlag> done, std::string watching) {
  InotifyParser p(std::move(watching));
  bool ok = true;
  while (ok) {
    auto chunk = co_await stream->read();
    if (!chunk) break;
    p.feed(!chunk->is_stderr, chunk->data);
    ok = co_await p.flush(ws);
  }
  co_await end_inotify(ws, p, ok, done);
}

struct Snapshot {
  std::map<std::string, std::string> entries;
};

asio::awaitable<Snapshot> scan(docker::DockerClient* docker, workload::ContainerTarget t, std::string path) {
  Snapshot s;
  auto r = co_await workload::run_in_target(*docker, t, find_snapshot_argv(path, true), quick());
  if (r.exit_code == 0) {
    s.entries = parse_find_snapshot(r.out, true);
    co_return s;
  }
  // BusyBox find has no -printf: stat gives the mtime instead (seconds).
  std::vector<std::string> argv = {"find", path, "-maxdepth", "3", "-exec", "stat", "-c", "%n|%Y", "{}", "+"};
  r = co_await workload::run_in_target(*docker, t, std::move(argv), quick());
  if (r.exit_code == 0) {
    s.entries = parse_find_snapshot(r.out, true);
    co_return s;
  }
  r = co_await workload::run_in_target(*docker, t, find_snapshot_argv(path, false), quick());
  if (r.exit_code == 0) s.entries = parse_find_snapshot(r.out, false);
  co_return s;
}

asio::awaitable<bool> is_dir(docker::DockerClient* docker, workload::ContainerTarget t, std::string path) {
  if (!path.empty() && path.back() == '/') co_return true;
  std::vector<std::string> argv = {"test", "-d", path};
  auto r = co_await workload::run_in_target(*docker, t, std::move(argv), quick());
  co_return r.exit_code == 0;
}

asio::awaitable<void> poll_loop(api::WebSocket* ws, docker::DockerClient* docker, workload::ContainerTarget target,
                                std::vector<std::string> paths, std::shared_ptr<DoneFlag> stop,
                                std::shared_ptr<DoneFlag> done) {
  std::map<std::string, Snapshot> prev;
  const std::string container = target.is_vm() ? "vm-" + std::to_string(target.task_id) : target.container;
  bool failed = false;
  try {
    for (const auto& p : paths) prev[p] = co_await scan(docker, target, p);
    while (!stop->done && ws->is_open()) {
      co_await sleep_unless(kPollInterval, stop);
      if (stop->done) break;
      for (const auto& p : paths) {
        Snapshot cur;
        try {
          cur = co_await scan(docker, target, p);
        } catch (const DockerError& e) {
          spdlog::warn("watch {}: scan of {} failed: {}", container, p, e.message);
          continue;
        }
        const auto& old = prev[p].entries;
        std::vector<std::string> created, deleted, modified;
        for (const auto& [k, v] : cur.entries) {
          auto it = old.find(k);
          if (it == old.end()) created.push_back(k);
          else if (it->second != v) modified.push_back(k);
        }
        for (const auto& [k, v] : old)
          if (!cur.entries.count(k)) deleted.push_back(k);
        for (const auto& k : created) {
          bool d = co_await is_dir(docker, target, k);
          if (!co_await ws->send(change_msg("CREATE", k, d))) stop->done = true;
        }
        for (const auto& k : deleted)
          if (!co_await ws->send(change_msg("DELETE", k, false))) stop->done = true;
        for (const auto& k : modified) {
          bool d = co_await is_dir(docker, target, k);
          if (!co_await ws->send(change_msg("MODIFY", k, d))) stop->done = true;
        }
        prev[p] = std::move(cur);
      }
    }
  } catch (const std::exception& e) {
    spdlog::warn("watch {}: polling stopped: {}", container, e.what());
    failed = true;
  }
  if (failed && ws->is_open()) co_await ws->close(api::ws_close::kNormal, {});
  done->done = true;
}

// Client side of both modes: ping -> pong; other JSON ignored; binary or
// non-JSON ends the session (upstream); so does a disconnect.
asio::awaitable<void> client_loop(api::WebSocket& ws, std::shared_ptr<DoneFlag> producer_done) {
  for (;;) {
    auto m = co_await ws.read();
    if (!m || producer_done->done) co_return;
    if (m->binary) co_return;
    auto j = json::parse(m->data, nullptr, false);
    if (j.is_discarded()) co_return;
    if (j.is_object() && j.contains("type") && j["type"] == "ping") co_await ws.send(R"({"type":"pong"})");
  }
}

}  // namespace

asio::awaitable<void> FsService::watch(api::WebSocket& ws) {
  api::Validation v;
  auto id = api::path_int(ws.request().path_params.at("task_id"), "task_id", v);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) {
    std::string message = look.message;
    if (look.status == 404 && message == "Container not found.") message = "Failed to connect to container: " + message;
    co_await ws.send(error_msg(message));
    co_return;
  }
  const workload::ContainerTarget target = *look.target;
  const std::string container = target.is_vm() ? "vm-" + std::to_string(target.task_id) : target.container;
  auto q = ws.request().query_params.find("paths");
  std::vector<std::string> requested =
      split_watch_paths(q == ws.request().query_params.end() ? std::string_view() : std::string_view(q->second));
  std::vector<std::string> valid;
  for (const auto& p : requested) {
    std::string n;
    if (auto bad = check_path(p, n)) {  // S-WATCH
      co_await ws.send(error_msg(*bad));
      co_return;
    }
    std::vector<std::string> argv = {"test", "-d", n};
    try {
      auto r = co_await workload::run_in_target(docker_, target, std::move(argv), quick());
      if (r.exit_code == 0) valid.push_back(n);
    } catch (const DockerError& e) {
      spdlog::warn("watch {}: checking {} failed: {}", container, n, e.message);
    }
  }
  if (valid.empty()) {
    co_await ws.send(error_msg("No valid paths to watch."));
    co_return;
  }
  std::vector<std::string> which = {"which", "inotifywait"};
  auto probe = co_await workload::run_in_target(docker_, target, std::move(which), quick());
  const bool inotify = probe.exit_code == 0;
  if (!inotify) co_await ws.send(watching_msg(valid, inotify));

  auto producer_done = std::make_shared<DoneFlag>();
  auto ex = co_await asio::this_coro::executor;
  if (inotify && target.is_vm()) {
    std::shared_ptr<ssh::SshStream> stream;
    std::string why;
    try {
      ssh::SshStreamSpec spec;
      spec.target = workload::vm_ssh_target(target.vm_ip);
      spec.command = ssh::command_ending_with_channel(inotify_argv(valid));
      stream = co_await ssh::SshStream::open(std::move(spec));
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!stream) {
      spdlog::warn("watch {}: inotifywait did not start: {}", container, why);
      co_await ws.send(watching_msg(valid, inotify));
      co_await ws.send(error_msg("Failed to get socket for inotifywait."));
      co_return;
    }
    asio::co_spawn(ex, pump_inotify_ssh(&ws, stream, producer_done, watching_msg(valid, inotify)), asio::detached);
    co_await client_loop(ws, producer_done);
    stream->close();  // the channel's EOF ends inotifywait (command_ending_with_channel)
    co_await wait_until_done(producer_done);
  } else if (inotify) {
    std::shared_ptr<docker::ExecStream> stream;
    std::string exec_id;
    try {
      docker::ExecSpec spec;
      spec.cmd = inotify_argv(valid);
      exec_id = co_await docker::create_exec(docker_, container, spec);
      stream = co_await docker::start_exec(docker_, exec_id, false);
    } catch (const DockerError& e) {
      spdlog::warn("watch {}: inotifywait did not start: {}", container, e.message);
    }
    if (!stream) {
      co_await ws.send(watching_msg(valid, inotify));
      co_await ws.send(error_msg("Failed to get socket for inotifywait."));
      co_return;
    }
    asio::co_spawn(ex, pump_inotify(&ws, stream, producer_done, watching_msg(valid, inotify)), asio::detached);
    co_await client_loop(ws, producer_done);
    stream->close();
    co_await wait_until_done(producer_done);
    co_await docker::kill_exec(docker_, exec_id, std::chrono::milliseconds(0));  // inotifywait too
  } else {
    auto stop = std::make_shared<DoneFlag>();
    asio::co_spawn(ex, poll_loop(&ws, &docker_, target, valid, stop, producer_done), asio::detached);
    co_await client_loop(ws, producer_done);
    stop->done = true;
    co_await wait_until_done(producer_done);
  }
}

}  // namespace kr::fs

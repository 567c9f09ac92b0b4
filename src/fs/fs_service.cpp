// REST side of the container filesystem API (execution.md §6.1–6.2 with the
// rulings D-FSREAD, D-FSWRITE, D-FSTIMEOUT, S-PATHVAL, S-FSDELETE).
#include "fs/fs_service.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "api/validation.hpp"
#include "common/base64.hpp"
#include "common/datetime.hpp"
#include "common/utf8.hpp"
#include "docker/docker_error.hpp"
#include "fs/fs_archive.hpp"
#include "fs/fs_parse.hpp"
#include "fs/fs_paths.hpp"
#include "fs/read_answer.hpp"
#include "store/state_store.hpp"
#include "workload/exec.hpp"

namespace kr::fs {

namespace asio = boost::asio;
using api::HttpRequest;
using api::HttpResponse;
using docker::DockerError;

namespace {

enum Op { kList, kRead, kWrite, kMkdir, kRename, kDelete, kStat };

// Plain functions build the JSON bodies (GCC 12: no nested-brace JSON
// literals inside coroutines).
HttpResponse ok(json body) { return HttpResponse::json(200, body); }

json message_path(const std::string& message, const std::string& path) {
  json j = json::object();
  j["message"] = message;
  j["path"] = path;
  return j;
}

std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point end) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
  if (d.count() <= 0) throw DockerError(DockerError::Kind::Timeout, 0, "filesystem operation deadline passed");
  return d;
}

std::string err_text(const docker::ExecResult& r) { return trim(utf8_replace_invalid(r.err)); }

// FastAPI-shaped 422 for query parameters.
struct QueryCheck {
  api::Validation v;
  const HttpRequest& req;
  explicit QueryCheck(const HttpRequest& r) : req(r) {}

  std::optional<std::string> required(const std::string& key) {
    auto it = req.query_params.find(key);
    if (it == req.query_params.end()) {
      v.add(json::array({"query", key}), "missing", "Field required", nullptr);
      return std::nullopt;
    }
    return it->second;
  }
  std::string optional(const std::string& key, const std::string& dflt) {
    auto it = req.query_params.find(key);
    return it == req.query_params.end() ? dflt : it->second;
  }
  bool boolean(const std::string& key, bool dflt) {
    auto it = req.query_params.find(key);
    if (it == req.query_params.end()) return dflt;
    api::FieldError e;
    auto b = api::lax_bool_text(it->second, e);
    if (!b) {
      v.add(json::array({"query", key}), e, it->second);
      return dflt;
    }
    return *b;
  }
  std::int64_t integer(const std::string& key, std::int64_t dflt) {
    auto it = req.query_params.find(key);
    if (it == req.query_params.end()) return dflt;
    api::FieldError e;
    auto n = api::lax_int_text(it->second, e);
    if (!n) {
      v.add(json::array({"query", key}), e, it->second);
      return dflt;
    }
    return *n;
  }
};

std::optional<std::int64_t> task_id_of(const HttpRequest& req, api::Validation& v) {
  auto it = req.path_params.find("task_id");
  return api::path_int(it == req.path_params.end() ? "" : it->second, "task_id", v);
}

}  // namespace

FsService::FsService(docker::DockerClient& docker, store::StateStore& store, std::chrono::milliseconds op_deadline)
    : docker_(docker), store_(store), op_deadline_(op_deadline) {}

void FsService::add_routes(api::Router& r) {
  r.add("GET", "/api/fs/{task_id}/list", [this](HttpRequest& q) { return guarded(q, kList); });
  r.add("GET", "/api/fs/{task_id}/read", [this](HttpRequest& q) { return guarded(q, kRead); });
  // 50 MiB files, base64 or escaped text inside JSON (api/limits.hpp); a
  // body no permitted file needs is refused from its header, in file bytes.
  static_assert(static_cast<std::uint64_t>(kMaxWriteBytes) == api::limits::kFsWriteFileBytes);
  r.add("POST", "/api/fs/{task_id}/write", [this](HttpRequest& q) { return guarded(q, kWrite); },
        api::limits::kFilesystemBody,
        "Request body too large: files of at most " + std::to_string(kMaxWriteBytes) +
            " bytes can be written, and no such file needs a request body over " +
            std::to_string(api::limits::kFilesystemBody) + " bytes");
  r.add("POST", "/api/fs/{task_id}/mkdir", [this](HttpRequest& q) { return guarded(q, kMkdir); });
  r.add("POST", "/api/fs/{task_id}/rename", [this](HttpRequest& q) { return guarded(q, kRename); });
  r.add("DELETE", "/api/fs/{task_id}/delete", [this](HttpRequest& q) { return guarded(q, kDelete); });
  r.add("GET", "/api/fs/{task_id}/stat", [this](HttpRequest& q) { return guarded(q, kStat); });
  api::WsOptions wo;
  wo.max_message_bytes = 64u << 10;
  wo.precheck = [](const HttpRequest& q) -> std::optional<HttpResponse> {
    api::Validation v;
    if (!task_id_of(q, v)) return HttpResponse::detail(403, "Forbidden");
    return std::nullopt;
  };
  r.add_websocket("/ws/fs/{task_id}/watch", [this](api::WebSocket& ws) { return watch(ws); }, wo);
}

asio::awaitable<HttpResponse> FsService::guarded(HttpRequest& req, int op) {
  const auto end = Clock::now() + op_deadline_;
  std::optional<DockerError> error;
  try {
    switch (op) {
      case kList: co_return co_await list(req, end);
      case kRead: co_return co_await read(req, end);
      case kWrite: co_return co_await write(req, end);
      case kMkdir: co_return co_await mkdir(req, end);
      case kRename: co_return co_await rename(req, end);
      case kDelete: co_return co_await remove(req, end);
      default: co_return co_await stat(req, end);
    }
  } catch (const DockerError& e) {
    error = e;
  }
  spdlog::warn("fs {} {}: {}", req.method, req.path, error->message);
  if (error->timed_out())
    co_return HttpResponse::detail(
        504, "Filesystem operation timed out after " + std::to_string(op_deadline_.count() / 1000) + " seconds");
  if (error->daemon_unavailable()) co_return HttpResponse::detail(500, "Docker connection error: " + error->message);
  if (error->not_found()) co_return HttpResponse::detail(404, "Container not found.");
  co_return HttpResponse::detail(500, "Docker API error: " + error->message);
}

asio::awaitable<docker::ExecResult> FsService::run(const workload::ContainerTarget& t, std::vector<std::string> cmd,
                                                   Clock::time_point end, std::optional<std::string> stdin_data) {
  docker::RunOptions o;
  o.deadline = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
  if (o.deadline.count() <= 0)
    throw DockerError(DockerError::Kind::Timeout, 0, "filesystem operation deadline passed");
  o.stdin_data = std::move(stdin_data);
  o.max_stdout = static_cast<std::size_t>(kMaxReadBytes) + (1u << 20);
  co_return co_await workload::run_in_target(docker_, t, std::move(cmd), std::move(o));
}

// ---- list ------------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::list(HttpRequest& req, Clock::time_point end) {
  QueryCheck q(req);
  auto id = task_id_of(req, q.v);
  const std::string path = q.optional("path", "/");
  const bool show_hidden = q.boolean("show_hidden", false);
  if (!q.v.ok()) co_return HttpResponse::json(422, q.v.body());
  std::string n;
  if (auto bad = check_path(path, n)) co_return HttpResponse::detail(400, *bad);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);

  auto r = co_await run(*look.target, ls_argv(n, show_hidden, true), end);
  if (r.exit_code != 0 && contains(r.err, "unrecognized option"))
    r = co_await run(*look.target, ls_argv(n, show_hidden, false), end);
  if (r.exit_code != 0) {
    const std::string e = err_text(r);
    if (contains(e, "No such file or directory")) co_return HttpResponse::detail(404, "Path not found: " + n);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
    if (contains(e, "Not a directory")) co_return HttpResponse::detail(400, "Not a directory: " + n);
    co_return HttpResponse::detail(500, "ls failed: " + e);
  }
  json body = json::object();
  body["path"] = n;
  body["entries"] = parse_ls(utf8_replace_invalid(r.out), n, naive_local_now());
  body["parent"] = parent_of(n);
  co_return ok(std::move(body));
}

// ---- read ------------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::read(HttpRequest& req, Clock::time_point end) {
  QueryCheck q(req);
  auto id = task_id_of(req, q.v);
  auto path = q.required("path");
  const std::string encoding = q.optional("encoding", "utf-8");
  if (encoding != "utf-8" && encoding != "base64")
    q.v.add(json::array({"query", "encoding"}), "literal_error", "Input should be 'utf-8' or 'base64'", encoding);
  std::int64_t limit = q.integer("limit", kMaxReadBytes);
  if (!q.v.ok()) co_return HttpResponse::json(422, q.v.body());
  limit = std::min(limit, kMaxReadBytes);
  std::string n;
  if (auto bad = check_path(*path, n)) co_return HttpResponse::detail(400, *bad);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);

  // A regular file (or a directory) the archive API sees as the exec would
  // (containers only: a VM has no archive API). Asked for base64: the
  // answer is encoded while the file arrives.
  if (!look.target->is_vm()) {
    const auto t0 = Clock::now();
    std::optional<Base64Answer> answer;
    if (encoding == "base64") answer.emplace(read_head(n));
    auto fast =
        co_await read_via_archive(docker_, *look.target, n, limit, time_left(end), answer ? &*answer : nullptr);
    if (fast.kind == ArchiveRead::Directory) co_return HttpResponse::detail(400, "Cannot read directory: " + n);
    if (fast.kind == ArchiveRead::File) {
      const auto t1 = Clock::now();
      std::optional<std::string> built;
      if (answer) built = answer->finish();
      auto res = built ? HttpResponse{200, std::move(*built), "application/json", {}}
                       : read_response(n, std::move(fast.content), encoding == "utf-8", fast.truncated);
      spdlog::debug("fs read: archive read in {} us, answer built in {} us",
                    std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count(),
                    std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t1).count());
      co_return res;
    }
  }

  auto st = co_await run(*look.target, stat_type_size_argv(n, true), end);
  if (st.exit_code != 0 && contains(st.err, "unrecognized option"))
    st = co_await run(*look.target, stat_type_size_argv(n, false), end);
  if (st.exit_code != 0) {
    const std::string e = err_text(st);
    if (contains(e, "No such file or directory")) co_return HttpResponse::detail(404, "File not found: " + n);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
    co_return HttpResponse::detail(500, "stat failed: " + e);
  }
  auto [type, size] = parse_stat_type_size(utf8_replace_invalid(st.out));
  if (stat_kind(type) == "directory") co_return HttpResponse::detail(400, "Cannot read directory: " + n);
  auto r = co_await run(*look.target, head_argv(n, limit), end);
  if (r.exit_code != 0) co_return HttpResponse::detail(500, "read failed: " + err_text(r));

  // D-FSREAD: raw bytes; utf-8 only when they are valid UTF-8, else base64.
  co_return read_response(n, std::move(r.out), encoding == "utf-8", size > limit);
}

// ---- write -----------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::write(HttpRequest& req, Clock::time_point end) {
  const auto t0 = Clock::now();
  auto ms = [&t0] { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count(); };
  api::Validation v;
  auto id = task_id_of(req, v);
  // Large contents skip the general JSON parser (see find_plain_string_member);
  // the value stays where it is, in the request body.
  std::string rest;
  const std::optional<std::string_view> plain = find_plain_string_member(req.body, "content", rest);
  auto obj = api::parse_body_object(plain ? std::string_view(rest) : std::string_view(req.body), v);
  std::optional<std::string> path, parsed_content;
  std::string encoding = "utf-8";
  bool create_parents = true;
  if (obj) {
    api::BodyFields f(*obj, v);
    path = f.req_str("path");
    if (!plain) parsed_content = f.req_str("content");
    encoding = f.str_or("encoding", "utf-8");
    if (encoding != "utf-8" && encoding != "base64")
      v.add(json::array({"body", "encoding"}), "literal_error", "Input should be 'utf-8' or 'base64'", encoding);
    create_parents = f.bool_or("create_parents", true);
  }
  if (!v.ok()) co_return HttpResponse::json(422, v.body());
  obj.reset();
  const std::string_view content = plain ? *plain : std::string_view(*parsed_content);
  spdlog::debug("fs write: body of {} bytes parsed after {} ms", req.body.size(), ms());
  std::string n;
  if (auto bad = check_path(*path, n)) co_return HttpResponse::detail(400, *bad);
  // Canonical base64 (what every real client sends) is checked in one pass
  // and decoded only while it is sent to dockerd; anything else is decoded
  // here by the lenient decoder, as before. Either way every error is
  // known before a byte reaches the container.
  std::string decoded;
  WriteContent wc;
  if (encoding == "base64") {
    if (auto size = base64_canonical_size(content)) {
      wc = WriteContent{content, true, *size};
    } else {
      std::string why;
      auto d = base64_decode_lenient(content, why);
      if (!d) co_return HttpResponse::detail(400, "Invalid base64 content: " + why);
      decoded = std::move(*d);
      wc = WriteContent::raw(decoded);
    }
  } else {
    wc = WriteContent::raw(content);
  }
  if (wc.size > static_cast<std::uint64_t>(kMaxWriteBytes))
    co_return HttpResponse::detail(413, "File too large. Maximum size is 52428800 bytes.");
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);

  const std::string dir = python_dirname(n);
  const bool make_parents = create_parents && !dir.empty() && dir != "/";
  const std::uint64_t size = wc.size;
  spdlog::debug("fs write: {} bytes checked, container resolved after {} ms", size, ms());
  // The archive API where it sees what an exec would (fs/fs_archive.hpp);
  // it needs the directory to exist, so `mkdir -p` runs only when missing.
  bool parents_made = false;
  auto fast = ArchiveWrite::UseExec;
  if (!look.target->is_vm()) fast = co_await write_via_archive(docker_, *look.target, n, wc, time_left(end));
  if (fast == ArchiveWrite::ParentMissing && make_parents) {
    std::vector<std::string> argv = {"mkdir", "-p", dir};
    auto m = co_await run(*look.target, std::move(argv), end);
    if (m.exit_code != 0)
      co_return HttpResponse::detail(500, "Failed to create parent directories: " + err_text(m));
    parents_made = true;
    fast = co_await write_via_archive(docker_, *look.target, n, wc, time_left(end));
  }
  spdlog::debug("fs write: archive path {} after {} ms", fast == ArchiveWrite::Written ? "wrote" : "declined", ms());
  if (fast != ArchiveWrite::Written) {
    if (make_parents && !parents_made) {
      std::vector<std::string> argv = {"mkdir", "-p", dir};
      auto m = co_await run(*look.target, std::move(argv), end);
      if (m.exit_code != 0)
        co_return HttpResponse::detail(500, "Failed to create parent directories: " + err_text(m));
    }
    // D-FSWRITE: the content goes through the exec's stdin, not argv.
    std::string bytes;
    if (wc.base64) {
      bytes.resize(static_cast<std::size_t>(wc.size));
      base64_decode_canonical_chunk(wc.text, bytes.data());
    } else {
      bytes.assign(wc.text);
    }
    decoded.clear();
    decoded.shrink_to_fit();
    auto w = co_await run(*look.target, write_argv(n), end, std::move(bytes));
    spdlog::debug("fs write: exec finished after {} ms", ms());
    if (w.exit_code != 0) {
      const std::string e = err_text(w);
      if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
      co_return HttpResponse::detail(500, "Write failed: " + e);
    }
  }
  json body = json::object();
  body["path"] = n;
  body["size"] = size;
  body["success"] = true;
  co_return ok(std::move(body));
}

// ---- mkdir -----------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::mkdir(HttpRequest& req, Clock::time_point end) {
  api::Validation v;
  auto id = task_id_of(req, v);
  auto obj = api::parse_body_object(req.body, v);
  std::optional<std::string> path;
  bool parents = true;
  if (obj) {
    api::BodyFields f(*obj, v);
    path = f.req_str("path");
    parents = f.bool_or("parents", true);
  }
  if (!v.ok()) co_return HttpResponse::json(422, v.body());
  std::string n;
  if (auto bad = check_path(*path, n)) co_return HttpResponse::detail(400, *bad);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);
  std::vector<std::string> argv = {"mkdir"};
  if (parents) argv.push_back("-p");
  argv.push_back(n);
  auto r = co_await run(*look.target, std::move(argv), end);
  if (r.exit_code != 0) {
    const std::string e = err_text(r);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
    if (contains(e, "File exists")) co_return HttpResponse::detail(409, "Directory already exists: " + n);
    co_return HttpResponse::detail(500, "mkdir failed: " + e);
  }
  co_return ok(message_path("Directory created: " + n, n));
}

// ---- rename ----------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::rename(HttpRequest& req, Clock::time_point end) {
  api::Validation v;
  auto id = task_id_of(req, v);
  auto obj = api::parse_body_object(req.body, v);
  std::optional<std::string> source, destination;
  bool overwrite = false;
  if (obj) {
    api::BodyFields f(*obj, v);
    source = f.req_str("source");
    destination = f.req_str("destination");
    overwrite = f.bool_or("overwrite", false);
  }
  if (!v.ok()) co_return HttpResponse::json(422, v.body());
  std::string src, dst;
  if (auto bad = check_path(*source, src)) co_return HttpResponse::detail(400, *bad);
  if (auto bad = check_path(*destination, dst)) co_return HttpResponse::detail(400, *bad);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);
  // Moving "/" or a mount root away is as destructive as deleting it.
  if (auto refused = check_delete_target(src, look.target->mounts)) co_return HttpResponse::detail(400, *refused);
  if (!overwrite) {
    std::vector<std::string> argv = {"test", "-e", dst};
    auto t = co_await run(*look.target, std::move(argv), end);
    if (t.exit_code == 0) co_return HttpResponse::detail(409, "Destination already exists: " + dst);
  }
  std::vector<std::string> argv = {"mv", src, dst};
  auto r = co_await run(*look.target, std::move(argv), end);
  if (r.exit_code != 0) {
    const std::string e = err_text(r);
    if (contains(e, "No such file or directory")) co_return HttpResponse::detail(404, "Source not found: " + src);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied");
    co_return HttpResponse::detail(500, "rename failed: " + e);
  }
  json body = json::object();
  body["message"] = "Renamed " + src + " to " + dst;
  body["source"] = src;
  body["destination"] = dst;
  co_return ok(std::move(body));
}

// ---- delete ----------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::remove(HttpRequest& req, Clock::time_point end) {
  QueryCheck q(req);
  auto id = task_id_of(req, q.v);
  auto path = q.required("path");
  const bool recursive = q.boolean("recursive", false);
  if (!q.v.ok()) co_return HttpResponse::json(422, q.v.body());
  std::string n;
  if (auto bad = check_path(*path, n)) co_return HttpResponse::detail(400, *bad);
  if (auto refused = check_delete_target(n, {})) co_return HttpResponse::detail(400, *refused);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);
  if (auto refused = check_delete_target(n, look.target->mounts)) co_return HttpResponse::detail(400, *refused);
  std::vector<std::string> argv = {"rm", recursive ? "-rf" : "-f", n};
  auto r = co_await run(*look.target, std::move(argv), end);
  if (r.exit_code != 0) {
    const std::string e = err_text(r);
    if (contains(e, "No such file or directory")) co_return HttpResponse::detail(404, "Path not found: " + n);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
    // GNU: "Is a directory"; BusyBox: "is a directory".
    if (contains(e, "Is a directory") || contains(e, "is a directory"))
      co_return HttpResponse::detail(400, "Cannot delete directory without recursive flag: " + n);
    co_return HttpResponse::detail(500, "delete failed: " + e);
  }
  co_return ok(message_path("Deleted: " + n, n));
}

// ---- stat ------------------------------------------------------------------
asio::awaitable<HttpResponse> FsService::stat(HttpRequest& req, Clock::time_point end) {
  QueryCheck q(req);
  auto id = task_id_of(req, q.v);
  auto path = q.required("path");
  if (!q.v.ok()) co_return HttpResponse::json(422, q.v.body());
  std::string n;
  if (auto bad = check_path(*path, n)) co_return HttpResponse::detail(400, *bad);
  auto look = co_await workload::resolve_container(store_, docker_, *id);
  if (!look.target) co_return HttpResponse::detail(look.status, look.message);
  auto r = co_await run(*look.target, stat_full_argv(n, true), end);
  if (r.exit_code != 0 && contains(r.err, "unrecognized option"))
    r = co_await run(*look.target, stat_full_argv(n, false), end);
  if (r.exit_code != 0) {
    const std::string e = err_text(r);
    if (contains(e, "No such file or directory")) co_return HttpResponse::detail(404, "Path not found: " + n);
    if (contains(e, "Permission denied")) co_return HttpResponse::detail(403, "Permission denied: " + n);
    co_return HttpResponse::detail(500, "stat failed: " + e);
  }
  std::optional<StatInfo> info;
  try {
    info = parse_stat_full(utf8_replace_invalid(r.out));
  } catch (const std::invalid_argument&) {
    co_return HttpResponse::detail(500, "Invalid stat output");
  }
  if (!info) co_return HttpResponse::detail(500, "Invalid stat output");
  const std::string kind = stat_kind(info->type_text);
  json body = json::object();
  body["path"] = n;
  body["type"] = kind;
  body["size"] = info->size;
  body["mtime"] = naive_local_iso(std::chrono::system_clock::time_point(std::chrono::seconds(info->mtime)));
  body["permissions"] = mode_to_rwx(info->mode);
  body["owner"] = info->owner;
  body["is_readable"] = true;
  body["is_writable"] = true;
  body["is_binary"] = kind == "file" && is_binary_name(n);
  co_return ok(std::move(body));
}

}  // namespace kr::fs

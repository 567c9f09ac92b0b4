// Engine API operations on top of detail::Transport. No Beast here: this
// file only builds targets, encodes bodies and interprets responses.

#include "docker/docker_client.hpp"

#include <stdexcept>

#include <spdlog/spdlog.h>

#include "docker/names.hpp"
#include "docker/transport.hpp"
#include "docker/wire.hpp"

namespace kr::docker {

using json = nlohmann::json;
using detail::HttpRequest;
using detail::HttpResponse;
using Clock = std::chrono::steady_clock;
template <class T>
using awaitable = boost::asio::awaitable<T>;

namespace {

DockerError invalid(std::string what) {
  return DockerError(DockerError::Kind::InvalidArgument, 0, std::move(what));
}

// Container names and ids go into URL paths unencoded, so they must match
// Docker's grammar (which contains no URL-special characters).
const std::string& checked_container(const std::string& name) {
  if (!is_valid_container_name(name)) throw invalid("invalid container name '" + name + "'");
  return name;
}

const std::string& checked_network(const std::string& name) {
  if (!is_valid_network_name(name)) throw invalid("invalid network name '" + name + "'");
  return name;
}

// Image references contain only [A-Za-z0-9_.-/:@] once validated; Docker
// routes /images/{name:.*}/… so '/' needs no encoding.
const std::string& checked_image(const std::string& ref) {
  if (!is_valid_image_reference(ref)) throw invalid("invalid image reference '" + ref + "'");
  return ref;
}

// A repository for tag/commit: a reference without tag or digest.
void check_repo_and_tag(const std::string& repo, const std::string& tag) {
  auto parsed = parse_image_reference(repo);
  if (!parsed || !parsed->tag.empty() || !parsed->digest.empty())
    throw invalid("invalid image repository '" + repo + "'");
  if (!is_valid_tag(tag)) throw invalid("invalid image tag '" + tag + "'");
}

[[noreturn]] void throw_http(const HttpResponse& r) {
  throw DockerError(DockerError::Kind::Http, r.status,
                    wire::error_message_from_body(r.body, r.status));
}

json decode_body(const HttpResponse& r) {
  if (r.body.empty()) return nullptr;
  auto j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded()) return j;
  if (r.header("Content-Type").find("json") != std::string::npos)
    throw DockerError(DockerError::Kind::Protocol, 0,
                      "unparsable JSON from dockerd: " + r.body.substr(0, 200));
  return r.body;  // plain text (e.g. "OK" from /_ping)
}

// Error object in a progress stream: {"errorDetail":{"message":…},"error":…}.
std::optional<std::string> stream_error(const json& line) {
  if (!line.is_object()) return std::nullopt;
  if (auto d = line.find("errorDetail"); d != line.end() && d->is_object()) {
    if (auto m = d->find("message"); m != d->end() && m->is_string() && !m->get<std::string>().empty())
      return m->get<std::string>();
  }
  if (auto e = line.find("error"); e != line.end() && e->is_string()) return e->get<std::string>();
  return std::nullopt;
}

// Feeds a JSON stream to `on_value`, logging (not throwing on) unparsable
// values: one bad progress line must not fail a pull.
std::function<void(std::string_view)> json_lines(std::shared_ptr<wire::JsonStreamSplitter> splitter,
                                                 std::function<void(const json&)> on_value) {
  return [splitter = std::move(splitter), on_value = std::move(on_value)](std::string_view data) {
    splitter->feed(data, [&](std::string_view value) {
      auto j = json::parse(value, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) {
        spdlog::warn("docker: ignoring unparsable stream line: {:.200}", value);
        return;
      }
      on_value(j);
    });
  };
}

}  // namespace

struct DockerClient::Impl {
  ClientOptions opts;
  detail::Transport transport;
  std::optional<std::string> negotiated;

  Impl(boost::asio::any_io_executor ex, ClientOptions o)
      : opts(std::move(o)),
        transport(std::move(ex), opts.socket_path, opts.max_idle_connections) {}

  Deadline resolve(Deadline d) const { return d.count() > 0 ? d : opts.default_deadline; }

  // The version to put in front of every target. The /_ping this may cost
  // is charged to the caller's deadline.
  awaitable<std::string> version(Deadline d) {
    if (!opts.api_version.empty()) co_return opts.api_version;
    if (negotiated) co_return *negotiated;
    HttpRequest req;
    req.target = "/_ping";
    req.deadline = d;
    req.idempotent = true;
    auto r = co_await transport.request(std::move(req));
    if (r.status >= 400) throw_http(r);
    negotiated = wire::negotiate_api_version(r.header("API-Version"), kMaxApiVersion,
                                             kFallbackApiVersion);
    co_return *negotiated;
  }

  // A buffered call with the version prefix; status >= 400 throws.
  void observe(Method m, const std::string& target, Clock::time_point start) const {
    if (opts.on_request)
      opts.on_request(m, target, std::chrono::duration<double>(Clock::now() - start).count());
  }

  awaitable<HttpResponse> send(HttpRequest req, Deadline d) {
    d = resolve(d);
    const auto start = Clock::now();
    const Method method = req.method;
    const std::string target = req.target;
    try {
      const std::string v = co_await version(d);
      auto left = d - std::chrono::duration_cast<Deadline>(Clock::now() - start);
      req.target = "/v" + v + req.target;
      req.deadline = std::max(left, Deadline(1));
      if (req.method == Method::Get || req.method == Method::Head) req.idempotent = true;
      auto r = co_await transport.request(std::move(req));
      if (r.status >= 400) {
        // "client version 1.44 is too new": the daemon was downgraded.
        if (r.status == 400 && r.body.find("client version") != std::string::npos) negotiated.reset();
        observe(method, target, start);
        throw_http(r);
      }
      observe(method, target, start);
      co_return r;
    } catch (const DockerError& e) {
      // The daemon may come back as a different version: renegotiate.
      if (e.daemon_unavailable()) negotiated.reset();
      if (e.kind != DockerError::Kind::Http) observe(method, target, start);
      throw;
    }
  }

  // A long-lived call on its own connection (wait, pull, load, events).
  awaitable<HttpResponse> stream(HttpRequest req, std::function<void(std::string_view)> on_data) {
    const auto start = Clock::now();
    const Method method = req.method;
    const std::string target = req.target;
    try {
      const std::string v = co_await version(opts.default_deadline);
      req.target = "/v" + v + req.target;
      auto r = co_await transport.stream(std::move(req), std::move(on_data));
      observe(method, target, start);
      if (r.status >= 400) throw_http(r);
      co_return r;
    } catch (const DockerError& e) {
      if (e.daemon_unavailable()) negotiated.reset();
      if (e.kind != DockerError::Kind::Http) observe(method, target, start);
      throw;
    }
  }

  awaitable<void> simple(Method m, std::string target, Deadline d) {
    HttpRequest req;
    req.method = m;
    req.target = std::move(target);
    co_await send(std::move(req), d);
  }
};

namespace {
ClientOptions options_for(std::string socket_path) {
  ClientOptions o;
  o.socket_path = std::move(socket_path);
  return o;
}
}  // namespace

DockerClient::DockerClient(boost::asio::any_io_executor ex, std::string socket_path)
    : DockerClient(std::move(ex), options_for(std::move(socket_path))) {}

DockerClient::DockerClient(boost::asio::any_io_executor ex, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(options))) {}

DockerClient::~DockerClient() { impl_->transport.cancel_all(); }

void DockerClient::cancel_all() { impl_->transport.cancel_all(); }
ClientStats DockerClient::stats() const { return impl_->transport.stats(); }
const std::string& DockerClient::socket_path() const { return impl_->opts.socket_path; }

awaitable<json> DockerClient::call(Method method, std::string target, std::optional<json> body,
                                   Deadline deadline) {
  auto self = impl_;
  if (target.empty() || target.front() != '/') throw invalid("target must start with '/': " + target);
  HttpRequest req;
  req.method = method;
  req.target = std::move(target);
  if (body) req.body = body->dump();
  co_return decode_body(co_await self->send(std::move(req), deadline));
}

awaitable<json> DockerClient::ping(Deadline deadline) {
  auto self = impl_;
  HttpRequest req;
  req.target = "/_ping";
  req.deadline = self->resolve(deadline);
  req.idempotent = true;
  HttpResponse r;
  try {
    r = co_await self->transport.request(std::move(req));
  } catch (const DockerError& e) {
    if (e.daemon_unavailable()) self->negotiated.reset();
    throw;
  }
  if (r.status >= 400) throw_http(r);
  const std::string server = r.header("API-Version");
  if (self->opts.api_version.empty())
    self->negotiated = wire::negotiate_api_version(server, kMaxApiVersion, kFallbackApiVersion);
  co_return json{{"api_version", server},
                 {"os_type", r.header("OSType")},
                 {"experimental", r.header("Docker-Experimental") == "true"},
                 {"negotiated_version",
                  self->opts.api_version.empty() ? *self->negotiated : self->opts.api_version}};
}

awaitable<json> DockerClient::version(Deadline deadline) {
  co_return co_await call(Method::Get, "/version", std::nullopt, deadline);
}

awaitable<std::string> DockerClient::api_version(Deadline deadline) {
  auto self = impl_;
  co_return co_await self->version(self->resolve(deadline));
}

// ---------------------------------------------------------------- containers

awaitable<std::string> DockerClient::create_container(std::string name, json body,
                                                      Deadline deadline) {
  auto self = impl_;
  HttpRequest req;
  req.method = Method::Post;
  req.target = "/containers/create" + wire::Query().add("name", checked_container(name)).str();
  req.body = body.dump();
  auto j = decode_body(co_await self->send(std::move(req), deadline));
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string())
    throw DockerError(DockerError::Kind::Protocol, 0, "container create returned no Id");
  for (const auto& w : j.value("Warnings", json::array()))
    if (w.is_string()) spdlog::warn("docker: create {}: {}", name, w.get<std::string>());
  co_return j["Id"].get<std::string>();
}

awaitable<void> DockerClient::start_container(std::string name, Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Post, "/containers/" + checked_container(name) + "/start", deadline);
}

awaitable<void> DockerClient::kill_container(std::string name, std::string signal,
                                             Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Post,
                        "/containers/" + checked_container(name) + "/kill" +
                            wire::Query().add("signal", signal).str(),
                        deadline);
}

awaitable<void> DockerClient::pause_container(std::string name, Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Post, "/containers/" + checked_container(name) + "/pause", deadline);
}

awaitable<void> DockerClient::unpause_container(std::string name, Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Post, "/containers/" + checked_container(name) + "/unpause",
                        deadline);
}

awaitable<void> DockerClient::stop_container(std::string name, int timeout_s, Deadline deadline) {
  auto self = impl_;
  if (timeout_s < 0) timeout_s = 0;
  if (deadline.count() <= 0)
    deadline = std::chrono::seconds(timeout_s) + self->opts.default_deadline;
  co_await self->simple(Method::Post,
                        "/containers/" + checked_container(name) + "/stop" +
                            wire::Query().add("t", timeout_s).str(),
                        deadline);
}

awaitable<void> DockerClient::remove_container(std::string name, bool force, bool remove_volumes,
                                               Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Delete,
                        "/containers/" + checked_container(name) +
                            wire::Query().add("force", force).add("v", remove_volumes).str(),
                        deadline);
}

awaitable<json> DockerClient::inspect_container(std::string name, Deadline deadline) {
  co_return co_await call(Method::Get, "/containers/" + checked_container(name) + "/json",
                          std::nullopt, deadline);
}

awaitable<void> DockerClient::put_archive(std::string name, std::string dir, std::string tar,
                                          Deadline deadline) {
  auto self = impl_;
  HttpRequest req;
  req.method = Method::Put;
  req.target = "/containers/" + checked_container(name) + "/archive" +
               wire::Query().add("path", dir).add("noOverwriteDirNonDir", true).str();
  req.body = std::move(tar);
  req.content_type = "application/x-tar";
  co_await self->send(std::move(req), deadline);
}

awaitable<void> DockerClient::put_archive(std::string name, std::string dir, std::uint64_t size,
                                          std::function<std::string_view()> next, Deadline deadline) {
  auto self = impl_;
  HttpRequest req;
  req.method = Method::Put;
  req.target = "/containers/" + checked_container(name) + "/archive" +
               wire::Query().add("path", dir).add("noOverwriteDirNonDir", true).str();
  req.content_type = "application/x-tar";
  req.upload_next = std::move(next);
  req.upload_size = size;
  req.deadline = self->resolve(deadline);
  // dockerd answers a successful PUT with an empty body.
  std::function<void(std::string_view)> sink = [](std::string_view) {};
  co_await self->stream(std::move(req), std::move(sink));
}

awaitable<void> DockerClient::get_archive(std::string name, std::string path,
                                          std::function<void(std::string_view)> on_data,
                                          Deadline deadline) {
  auto self = impl_;
  HttpRequest req;
  req.target = "/containers/" + checked_container(name) + "/archive" + wire::Query().add("path", path).str();
  req.deadline = self->resolve(deadline);
  co_await self->stream(std::move(req), std::move(on_data));
}

awaitable<json> DockerClient::list_containers(bool all, json filters, Deadline deadline) {
  wire::Query q;
  q.add("all", all);
  if (!filters.is_null() && !filters.empty()) q.add("filters", filters.dump());
  co_return co_await call(Method::Get, "/containers/json" + q.str(), std::nullopt, deadline);
}

awaitable<WaitResult> DockerClient::wait_container(std::string name, Deadline deadline,
                                                   WaitCondition condition, CancelToken cancel) {
  auto self = impl_;
  static constexpr const char* kConditions[] = {"not-running", "next-exit", "removed"};
  HttpRequest req;
  req.method = Method::Post;
  req.target = "/containers/" + checked_container(name) + "/wait" +
               wire::Query().add("condition", kConditions[static_cast<int>(condition)]).str();
  req.deadline = self->resolve(deadline);
  req.cancel = std::move(cancel);
  auto body = std::make_shared<std::string>();
  // A named sink, not a lambda temporary in the co_await (see pull_image).
  std::function<void(std::string_view)> sink = [body](std::string_view d) {
    if (body->size() < (1u << 20)) body->append(d);
  };
  co_await self->stream(std::move(req), std::move(sink));
  auto j = json::parse(*body, nullptr, false);
  if (!j.is_object() || !j.contains("StatusCode") || !j["StatusCode"].is_number_integer())
    throw DockerError(DockerError::Kind::Protocol, 0,
                      "unexpected wait response: " + body->substr(0, 200));
  WaitResult out;
  out.status_code = j["StatusCode"].get<std::int64_t>();
  if (auto e = j.find("Error"); e != j.end() && e->is_object()) {
    auto msg = e->value("Message", std::string());
    if (!msg.empty()) out.error = msg;
  }
  co_return out;
}

awaitable<std::string> DockerClient::commit_container(std::string name, std::string repo,
                                                      std::string tag, Deadline deadline) {
  check_repo_and_tag(repo, tag);
  auto j = co_await call(Method::Post,
                         "/commit" + wire::Query()
                                         .add("container", checked_container(name))
                                         .add("repo", repo)
                                         .add("tag", tag)
                                         .add("pause", true)
                                         .str(),
                         json::object(), deadline);
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string())
    throw DockerError(DockerError::Kind::Protocol, 0, "commit returned no Id");
  co_return j["Id"].get<std::string>();
}

// -------------------------------------------------------------------- images

awaitable<std::optional<json>> DockerClient::inspect_image(std::string ref, Deadline deadline) {
  try {
    co_return co_await call(Method::Get, "/images/" + checked_image(ref) + "/json", std::nullopt,
                            deadline);
  } catch (const DockerError& e) {
    if (!e.not_found()) throw;
  }
  co_return std::nullopt;
}

awaitable<json> DockerClient::list_images(Deadline deadline) {
  co_return co_await call(Method::Get, "/images/json", std::nullopt, deadline);
}

awaitable<void> DockerClient::pull_image(std::string ref, Deadline deadline, CancelToken cancel,
                                         std::string registry_auth) {
  auto self = impl_;
  auto parsed = parse_image_reference(ref);
  if (!parsed) throw invalid("invalid image reference '" + ref + "'");
  // fromImage carries the name; the tag parameter takes a tag or a digest.
  const std::string tag = !parsed->digest.empty() ? parsed->digest
                          : !parsed->tag.empty()  ? parsed->tag
                                                  : std::string("latest");
  HttpRequest req;
  req.method = Method::Post;
  req.target = "/images/create" + wire::Query().add("fromImage", parsed->name()).add("tag", tag).str();
  req.deadline = self->resolve(deadline);
  req.cancel = std::move(cancel);
  if (!registry_auth.empty()) req.headers.emplace_back("X-Registry-Auth", registry_auth);
  // Sinks are named locals, never temporaries inside the co_await
  // expression: GCC 12 miscompiles lambda temporaries there (their captures
  // read as garbage after the suspension).
  auto on_line = [ref](const json& line) {
    if (auto err = stream_error(line))
      throw DockerError(DockerError::Kind::Stream, 0, "pull of " + ref + " failed: " + *err);
  };
  auto sink = json_lines(std::make_shared<wire::JsonStreamSplitter>(), std::move(on_line));
  co_await self->stream(std::move(req), std::move(sink));
}

awaitable<std::vector<std::string>> DockerClient::load_image(std::filesystem::path tarball,
                                                             Deadline deadline,
                                                             CancelToken cancel) {
  auto self = impl_;
  HttpRequest req;
  req.method = Method::Post;
  // quiet=1: no progress output while uploading. Without it dockerd writes
  // progress while we are still sending, and since we do not read during
  // the upload, both sides could block on full socket buffers.
  req.target = "/images/load" + wire::Query().add("quiet", true).str();
  req.upload_file = std::move(tarball);
  req.content_type = "application/x-tar";
  req.deadline = self->resolve(deadline);
  req.cancel = std::move(cancel);
  auto loaded = std::make_shared<std::vector<std::string>>();
  auto on_line = [loaded](const json& line) {
    if (auto err = stream_error(line))
      throw DockerError(DockerError::Kind::Stream, 0, "image load failed: " + *err);
    if (!line.is_object() || !line.contains("stream") || !line["stream"].is_string()) return;
    static constexpr std::string_view kPrefixes[] = {"Loaded image ID: ", "Loaded image: "};
    std::string text = line["stream"].get<std::string>();
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    for (auto prefix : kPrefixes) {
      if (text.rfind(prefix, 0) == 0) {
        loaded->push_back(text.substr(prefix.size()));
        break;
      }
    }
  };
  auto sink = json_lines(std::make_shared<wire::JsonStreamSplitter>(), std::move(on_line));
  co_await self->stream(std::move(req), std::move(sink));
  co_return std::move(*loaded);
}

awaitable<void> DockerClient::tag_image(std::string source, std::string repo, std::string tag,
                                        Deadline deadline) {
  auto self = impl_;
  check_repo_and_tag(repo, tag);
  co_await self->simple(Method::Post,
                        "/images/" + checked_image(source) + "/tag" +
                            wire::Query().add("repo", repo).add("tag", tag).str(),
                        deadline);
}

awaitable<void> DockerClient::remove_image(std::string ref, bool force, Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Delete,
                        "/images/" + checked_image(ref) + wire::Query().add("force", force).str(),
                        deadline);
}

// ------------------------------------------------------------------ networks

awaitable<std::optional<json>> DockerClient::inspect_network(std::string name, Deadline deadline) {
  try {
    co_return co_await call(Method::Get, "/networks/" + checked_network(name), std::nullopt,
                            deadline);
  } catch (const DockerError& e) {
    if (!e.not_found()) throw;
  }
  co_return std::nullopt;
}

awaitable<std::string> DockerClient::create_network(json body, Deadline deadline) {
  if (!body.is_object() || !body.contains("Name") || !body["Name"].is_string())
    throw invalid("network create body needs a string \"Name\"");
  checked_network(body["Name"].get<std::string>());
  auto j = co_await call(Method::Post, "/networks/create", std::move(body), deadline);
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string())
    throw DockerError(DockerError::Kind::Protocol, 0, "network create returned no Id");
  co_return j["Id"].get<std::string>();
}

awaitable<void> DockerClient::remove_network(std::string name, Deadline deadline) {
  auto self = impl_;
  co_await self->simple(Method::Delete, "/networks/" + checked_network(name), deadline);
}

// -------------------------------------------------------------------- events

awaitable<void> DockerClient::stream_events(json filters,
                                            std::function<void(const json&)> on_event,
                                            std::optional<long long> since_unix,
                                            CancelToken stop) {
  auto self = impl_;
  wire::Query q;
  if (since_unix) q.add("since", *since_unix);
  if (!filters.is_null() && !filters.empty()) q.add("filters", filters.dump());
  HttpRequest req;
  req.target = "/events" + q.str();
  // No deadline at all: dockerd (20.10) sends even the response header only
  // together with the first event, so a quiet node looks exactly like a
  // hung daemon. Callers stop the stream with `stop` / cancel_all().
  req.cancel = stop;
  auto sink = json_lines(std::make_shared<wire::JsonStreamSplitter>(), std::move(on_event));
  try {
    co_await self->stream(std::move(req), std::move(sink));
  } catch (const DockerError& e) {
    if (!(e.cancelled() && stop.cancelled())) throw;
  }
}

}  // namespace kr::docker

#include "docker/registry_auth.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>

#include "docker/names.hpp"

extern char** environ;

namespace kr::docker {

using json = nlohmann::json;

namespace {
constexpr const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string str_or_empty(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A helper's JSON answer → credentials.
std::optional<RegistryCredentials> from_helper_output(const std::string& out, const std::string& server) {
  auto j = json::parse(out, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  RegistryCredentials c;
  c.server_address = server;
  const std::string user = str_or_empty(j, "Username"), secret = str_or_empty(j, "Secret");
  if (user.empty() && secret.empty()) return std::nullopt;
  if (user == "<token>")
    c.identity_token = secret;
  else {
    c.username = user;
    c.password = secret;
  }
  return c;
}

std::optional<RegistryCredentials> from_auths(const json& config, std::string_view host, const std::string& key) {
  auto auths = config.find("auths");
  if (auths == config.end() || !auths->is_object()) return std::nullopt;
  const json* entry = nullptr;
  if (auto it = auths->find(key); it != auths->end()) entry = &*it;
  if (!entry)
    for (auto it = auths->begin(); it != auths->end(); ++it)
      if (auth_key_hostname(it.key()) == auth_key_hostname(key)) {
        entry = &*it;
        break;
      }
  if (!entry || !entry->is_object()) return std::nullopt;
  RegistryCredentials c;
  c.server_address = key;
  if (auto a = str_or_empty(*entry, "auth"); !a.empty()) {
    auto decoded = base64_decode(a);
    if (!decoded) return std::nullopt;
    auto colon = decoded->find(':');
    if (colon == std::string::npos) return std::nullopt;
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  } else {
    c.username = str_or_empty(*entry, "username");
    c.password = str_or_empty(*entry, "password");
  }
  c.identity_token = str_or_empty(*entry, "identitytoken");
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::nullopt;
  return c;
}
}  // namespace

std::string base64_encode(std::string_view in, bool url) {
  std::string out;
  std::size_t i = 0;
  while (i + 2 < in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += kB64[v >> 18 & 63];
    out += kB64[v >> 12 & 63];
    out += kB64[v >> 6 & 63];
    out += kB64[v & 63];
    i += 3;
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += kB64[v >> 18 & 63];
    out += kB64[v >> 12 & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += kB64[v >> 18 & 63];
    out += kB64[v >> 12 & 63];
    out += kB64[v >> 6 & 63];
    out += '=';
  }
  if (url)
    for (char& ch : out) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+' || ch == '-') v = 62;
    else if (ch == '/' || ch == '_') v = 63;
    else if (ch == '=' || ch == '\n' || ch == '\r') continue;
    else return std::nullopt;
    acc = acc << 6 | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xff);
    }
  }
  return out;
}

std::string registry_host(std::string_view image_ref) {
  auto ref = parse_image_reference(image_ref);
  if (!ref || ref->domain.empty() || ref->domain == "docker.io" || ref->domain == "index.docker.io")
    return "docker.io";
  return ref->domain;
}

std::string registry_auth_key(std::string_view host) {
  if (host == "docker.io") return std::string(kDockerHubAuthKey);
  return std::string(host);
}

std::string auth_key_hostname(std::string_view key) {
  std::string k(key);
  if (k.rfind("http://", 0) == 0)
    k = k.substr(7);
  else if (k.rfind("https://", 0) == 0)
    k = k.substr(8);
  if (auto slash = k.find('/'); slash != std::string::npos) k = k.substr(0, slash);
  return k;
}

std::filesystem::path docker_config_file(const std::function<const char*(const char*)>& getenv_fn) {
  if (const char* d = getenv_fn("DOCKER_CONFIG"); d && *d) return std::filesystem::path(d) / "config.json";
  std::string home;
  if (const char* h = getenv_fn("HOME"); h && *h) home = h;
  if (home.empty()) {
    // The CLI's fallback when HOME is unset (e.g. some service managers).
    std::vector<char> buf(16384);
    struct passwd pw {}, *res = nullptr;
    if (getpwuid_r(getuid(), &pw, buf.data(), buf.size(), &res) == 0 && res && res->pw_dir) home = res->pw_dir;
  }
  if (home.empty()) return {};
  return std::filesystem::path(home) / ".docker" / "config.json";
}

std::optional<RegistryCredentials> lookup_credentials(const json& config, std::string_view host,
                                                      const CredentialHelperRunner& run_helper) {
  if (!config.is_object()) return std::nullopt;
  const std::string key = registry_auth_key(host);
  auto helper_creds = [&](const std::string& helper) -> std::optional<RegistryCredentials> {
    auto out = run_helper(helper, key);
    if (!out) return std::nullopt;
    return from_helper_output(*out, key);
  };
  if (auto helpers = config.find("credHelpers"); helpers != config.end() && helpers->is_object()) {
    for (auto it = helpers->begin(); it != helpers->end(); ++it)
      if (it.value().is_string() && auth_key_hostname(it.key()) == auth_key_hostname(key))
        return helper_creds(it.value().get<std::string>());
  }
  if (auto store = str_or_empty(config, "credsStore"); !store.empty()) {
    if (auto c = helper_creds(store)) return c;
  }
  return from_auths(config, host, key);
}

std::optional<std::string> run_credential_helper(const std::string& helper, const std::string& server,
                                                 std::chrono::milliseconds timeout) {
  for (char ch : helper)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) {
      spdlog::warn("Ignoring credential helper with an unusual name '{}'", helper);
      return std::nullopt;
    }
  const std::string program = "docker-credential-" + helper;
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return std::nullopt;
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return std::nullopt;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>("get"), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    spdlog::warn("Cannot run credential helper {}: {}", program, std::strerror(rc));
    return std::nullopt;
  }
  // The server address is a few dozen bytes: one write fits the pipe.
  signal(SIGPIPE, SIG_IGN);
  [[maybe_unused]] auto w = write(in_pipe[1], server.data(), server.size());
  close(in_pipe[1]);
  std::string out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out_pipe[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = n == 0;
      break;
    }
    char buf[4096];
    ssize_t got = read(out_pipe[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (out.size() < (1u << 20)) out.append(buf, static_cast<std::size_t>(got));
  }
  close(out_pipe[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    spdlog::warn("Credential helper {} did not answer within {} ms", program, timeout.count());
    return std::nullopt;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // "credentials not found in native keychain" is the normal miss.
    if (out.find("not found") == std::string::npos)
      spdlog::warn("Credential helper {} failed for {}: {}", program, server, out.substr(0, 200));
    return std::nullopt;
  }
  return out;
}

std::string encode_registry_auth(const RegistryCredentials& c) {
  json j = json::object();
  if (!c.identity_token.empty()) {
    j["identitytoken"] = c.identity_token;
  } else {
    j["username"] = c.username;
    j["password"] = c.password;
  }
  j["serveraddress"] = c.server_address;
  return base64_encode(j.dump(), /*url=*/true);
}

std::optional<RegistryCredentials> credentials_for_image(std::string_view image_ref) {
  const auto path = docker_config_file([](const char* k) { return std::getenv(k); });
  if (path.empty()) return std::nullopt;
  std::ifstream f(path);
  if (!f) return std::nullopt;  // no config: anonymous, like the CLI
  std::stringstream ss;
  ss << f.rdbuf();
  auto config = json::parse(ss.str(), nullptr, false);
  if (!config.is_object()) {
    spdlog::warn("Docker client config {} is not valid JSON; pulling anonymously", path.string());
    return std::nullopt;
  }
  auto runner = [](const std::string& helper, const std::string& server) {
    return run_credential_helper(helper, server, std::chrono::seconds(10));
  };
  return lookup_credentials(config, registry_host(image_ref), runner);
}

}  // namespace kr::docker

// Issue 6: pure parts of the task-path hardening — log paths (item 7),
// control names (item 8), registry refresh rule and credentials (item 9).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "docker/names.hpp"
#include "docker/registry_auth.hpp"
#include "tasks/image_provisioner.hpp"
#include "tasks/log_paths.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace kr;

namespace {
struct TmpDir {
  fs::path path;
  TmpDir() {
    std::string t = (fs::temp_directory_path() / "kr-hard-XXXXXX").string();
    if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp");
    path = t;
  }
  ~TmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
}  // namespace

TEST(LogPaths, ContainerPathComesFromTheCheckedNormalisedPath) {
  // Before: the raw path was translated, so "a/../b" reached the container
  // un-normalised (and could resolve through a symlink `a` there).
  EXPECT_EQ(tasks::container_log_path("/share/logs/a/../b/out.log", "/share"), "/kohakuriver-logs/b/out.log");
  EXPECT_EQ(tasks::container_log_path("/share//logs/./7/out.log", "/share/"), "/kohakuriver-logs/7/out.log");
  // The first occurrence anywhere was replaced upstream-style; now only a
  // prefix counts (anything else is refused by check_log_path anyway).
  EXPECT_EQ(tasks::container_log_path("/x/share/logs/7/out.log", "/share"), "/x/share/logs/7/out.log");
  EXPECT_FALSE(tasks::check_log_path("/share/logs/a/../b/out.log", "/share"));
}

TEST(LogPaths, DirectoriesAreCreatedWithoutFollowingPlantedSymlinks) {
  TmpDir tmp;
  const fs::path share = tmp.path / "share";
  const fs::path outside = tmp.path / "outside";
  fs::create_directories(share / "logs");
  fs::create_directories(outside);
  // A task wrote a symlink into the shared logs tree.
  fs::create_directory_symlink(outside, share / "logs" / "evil");
  auto err = tasks::make_log_parent_dirs((share / "logs/evil/sub/out.log").string(), share.string());
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("symlink"), std::string::npos) << *err;
  EXPECT_FALSE(fs::exists(outside / "sub")) << "the runner followed the planted symlink";
  // Ordinary nested directories are created.
  EXPECT_FALSE(tasks::make_log_parent_dirs((share / "logs/1/2/out.log").string(), share.string()));
  EXPECT_TRUE(fs::is_directory(share / "logs/1/2"));
  // A file in the way is refused too.
  std::ofstream(share / "logs" / "file").put('x');
  EXPECT_TRUE(tasks::make_log_parent_dirs((share / "logs/file/out.log").string(), share.string()));
  // Paths outside the logs tree never reach the filesystem.
  EXPECT_TRUE(tasks::make_log_parent_dirs((tmp.path / "elsewhere/out.log").string(), share.string()));
  EXPECT_FALSE(fs::exists(tmp.path / "elsewhere"));
}

TEST(ControlNames, IdOfAManagedContainerName) {
  EXPECT_EQ(docker::managed_container_id("kohakuriver-task-42"), 42);
  EXPECT_EQ(docker::managed_container_id("kohakuriver-vps-42"), 42);
  EXPECT_EQ(docker::managed_container_id("vm-42"), 42);
  EXPECT_EQ(docker::managed_container_id("kohakuriver-task-9223372036854775807"), 9223372036854775807LL);
  EXPECT_FALSE(docker::managed_container_id("kohakuriver-task-9223372036854775808"));
  EXPECT_FALSE(docker::managed_container_id("kohakuriver-task-"));
  EXPECT_FALSE(docker::managed_container_id("other-42"));
  EXPECT_FALSE(docker::managed_container_id("kohakuriver-task-4x"));
}

TEST(RegistryRefresh, LatestOrUntaggedIsRefreshed) {
  EXPECT_TRUE(tasks::ImageProvisioner::wants_refresh("ubuntu"));
  EXPECT_TRUE(tasks::ImageProvisioner::wants_refresh("ubuntu:latest"));
  EXPECT_TRUE(tasks::ImageProvisioner::wants_refresh("127.0.0.1:5000/team/app"));
  EXPECT_FALSE(tasks::ImageProvisioner::wants_refresh("127.0.0.1:5000/team/app:v1"));
  EXPECT_FALSE(tasks::ImageProvisioner::wants_refresh("kr-test/busybox:test"));
  EXPECT_FALSE(tasks::ImageProvisioner::wants_refresh(
      "ubuntu@sha256:0123456789012345678901234567890123456789012345678901234567890123"));
}

TEST(RegistryAuth, HostsAndKeysLikeTheDockerCli) {
  EXPECT_EQ(docker::registry_host("ubuntu"), "docker.io");
  EXPECT_EQ(docker::registry_host("library/ubuntu:22.04"), "docker.io");
  EXPECT_EQ(docker::registry_host("docker.io/library/ubuntu"), "docker.io");
  EXPECT_EQ(docker::registry_host("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
  EXPECT_EQ(docker::registry_host("ghcr.io/org/img"), "ghcr.io");
  EXPECT_EQ(docker::registry_auth_key("docker.io"), "https://index.docker.io/v1/");
  EXPECT_EQ(docker::auth_key_hostname("https://reg.example:5000/v2/"), "reg.example:5000");
  EXPECT_EQ(docker::auth_key_hostname("reg.example"), "reg.example");
}

TEST(RegistryAuth, ConfigFileLocation) {
  std::map<std::string, std::string> env;
  auto get = [&](const char* k) -> const char* {
    auto it = env.find(k);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  env["DOCKER_CONFIG"] = "/etc/dcfg";
  env["HOME"] = "/home/u";
  EXPECT_EQ(docker::docker_config_file(get), fs::path("/etc/dcfg/config.json"));
  env.erase("DOCKER_CONFIG");
  EXPECT_EQ(docker::docker_config_file(get), fs::path("/home/u/.docker/config.json"));
  env.erase("HOME");  // falls back to the passwd entry of the current user
  auto p = docker::docker_config_file(get);
  EXPECT_FALSE(p.empty());
  EXPECT_EQ(p.filename(), "config.json");
  EXPECT_EQ(p.parent_path().filename(), ".docker");
}

TEST(RegistryAuth, AuthsEntries) {
  auto no_helper = [](const std::string&, const std::string&) -> std::optional<std::string> {
    ADD_FAILURE() << "no helper configured";
    return std::nullopt;
  };
  json cfg = json::parse(R"({"auths": {
      "127.0.0.1:5000": {"auth": ")" + docker::base64_encode("alice:s3cr:et") + R"("},
      "https://index.docker.io/v1/": {"auth": ")" + docker::base64_encode("hubuser:hubpw") + R"("},
      "http://reg.example/v2/": {"identitytoken": "tok"}}})");
  auto c = docker::lookup_credentials(cfg, "127.0.0.1:5000", no_helper);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "s3cr:et");
  EXPECT_EQ(c->server_address, "127.0.0.1:5000");
  c = docker::lookup_credentials(cfg, "docker.io", no_helper);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "hubuser");
  EXPECT_EQ(c->server_address, "https://index.docker.io/v1/");
  c = docker::lookup_credentials(cfg, "reg.example", no_helper);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->identity_token, "tok");
  EXPECT_FALSE(docker::lookup_credentials(cfg, "ghcr.io", no_helper));
  EXPECT_FALSE(docker::lookup_credentials(json::parse(R"({"auths": {"x": {"auth": "!!"}}})"), "x", no_helper));

  auto header = docker::encode_registry_auth(*docker::lookup_credentials(cfg, "127.0.0.1:5000", no_helper));
  auto decoded = json::parse(*docker::base64_decode(header));
  EXPECT_EQ(decoded, json::parse(R"({"username":"alice","password":"s3cr:et","serveraddress":"127.0.0.1:5000"})"));
  EXPECT_EQ(header.find_first_of("+/"), std::string::npos) << "X-Registry-Auth is base64url";
}

TEST(RegistryAuth, HelpersTakePrecedence) {
  std::vector<std::pair<std::string, std::string>> calls;
  auto helper = [&](const std::string& name, const std::string& server) -> std::optional<std::string> {
    calls.emplace_back(name, server);
    if (name == "pass") return R"({"ServerURL":"x","Username":"bob","Secret":"pw"})";
    if (name == "desktop") return R"({"ServerURL":"x","Username":"<token>","Secret":"refresh"})";
    return std::nullopt;  // "credentials not found"
  };
  json cfg = json::parse(R"({"credHelpers": {"127.0.0.1:5000": "pass"}, "credsStore": "desktop",
                             "auths": {"127.0.0.1:5000": {"auth": "YTpi"}, "other:1": {"auth": "YTpi"}}})");
  auto c = docker::lookup_credentials(cfg, "127.0.0.1:5000", helper);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "bob");
  EXPECT_EQ(c->password, "pw");
  c = docker::lookup_credentials(cfg, "ghcr.io", helper);  // credsStore for the rest
  ASSERT_TRUE(c);
  EXPECT_EQ(c->identity_token, "refresh");
  EXPECT_EQ(calls.back(), (std::pair<std::string, std::string>{"desktop", "ghcr.io"}));
  // A store with nothing for the host falls back to the file's auths.
  json cfg2 = json::parse(R"({"credsStore": "empty", "auths": {"other:1": {"auth": "YTpi"}}})");
  c = docker::lookup_credentials(cfg2, "other:1", helper);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "a");
  EXPECT_EQ(c->password, "b");
}

TEST(RegistryAuth, RunsARealCredentialHelperFromPath) {
  TmpDir tmp;
  const fs::path script = tmp.path / "docker-credential-krtest";
  {
    std::ofstream f(script);
    // Echoes what it was asked (action and server) back in the secret.
    f << "#!/bin/sh\nread server\n"
         "if [ \"$server\" = missing ]; then echo 'credentials not found in native keychain'; exit 1; fi\n"
         "printf '{\"ServerURL\":\"%s\",\"Username\":\"u-%s\",\"Secret\":\"%s\"}' \"$server\" \"$1\" \"$server\"\n";
  }
  fs::permissions(script, fs::perms::owner_all);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (tmp.path.string() + ":" + old_path).c_str(), 1);
  auto out = docker::run_credential_helper("krtest", "127.0.0.1:5000", std::chrono::seconds(10));
  auto missing = docker::run_credential_helper("krtest", "missing", std::chrono::seconds(10));
  auto absent = docker::run_credential_helper("nosuchhelper", "x", std::chrono::seconds(10));
  auto weird = docker::run_credential_helper("../krtest", "x", std::chrono::seconds(10));
  setenv("PATH", old_path.c_str(), 1);
  ASSERT_TRUE(out);
  auto j = json::parse(*out);
  EXPECT_EQ(j["Username"], "u-get");
  EXPECT_EQ(j["Secret"], "127.0.0.1:5000");
  EXPECT_FALSE(missing);
  EXPECT_FALSE(absent);
  EXPECT_FALSE(weird);
}

TEST(RegistryAuth, AHangingHelperIsKilledAtItsDeadline) {
  TmpDir tmp;
  const fs::path script = tmp.path / "docker-credential-krhang";
  {
    std::ofstream f(script);
    f << "#!/bin/sh\nexec sleep 30\n";
  }
  fs::permissions(script, fs::perms::owner_all);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (tmp.path.string() + ":" + old_path).c_str(), 1);
  auto out = docker::run_credential_helper("krhang", "x", std::chrono::milliseconds(200));
  setenv("PATH", old_path.c_str(), 1);
  EXPECT_FALSE(out);
}

TEST(RegistryAuth, Base64RoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "user:p@ss:w0rd\xff\xfe"}) {
    EXPECT_EQ(docker::base64_decode(docker::base64_encode(s)), s);
    EXPECT_EQ(docker::base64_decode(docker::base64_encode(s, true)), s);
  }
  EXPECT_EQ(docker::base64_encode("alice:secret"), "YWxpY2U6c2VjcmV0");
}

// Pure parts of Docker VPS: request parsing, key modes, the create body,
// the SSH setup script, port parsing and snapshot tags/pruning
// (execution.md §3, decisions D18, D19, D-PKGMGR, S-KEYINJ, S-SSHCFG,
// D-SSHPORT, R-SNAPSEC).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sys/wait.h>

#include "tasks/container_spec.hpp"
#include "tasks/shell.hpp"
#include "vps/snapshot_tags.hpp"
#include "vps/vps_request.hpp"
#include "vps/vps_spec.hpp"

using namespace kr::vps;
using kr::config::RunnerConfig;
using nlohmann::json;

namespace {

VpsRequest parse_ok(const json& body) {
  auto r = parse_vps_request(body.dump());
  if (auto* err = std::get_if<json>(&r)) ADD_FAILURE() << err->dump();
  return std::get<VpsRequest>(r);
}

json host_body() {
  // What the host's send_vps_task_to_runner sends.
  return json{{"task_id", "7199539478398935040"}, {"required_cores", 2},   {"required_gpus", json::array()},
              {"required_memory_bytes", 1073741824}, {"target_numa_node_id", nullptr},
              {"container_name", "kohakuriver-base"}, {"registry_image", nullptr},
              {"ssh_key_mode", "upload"}, {"ssh_public_key", "ssh-ed25519 AAAA user@x"},
              {"ssh_port", 2222}, {"reserved_ip", nullptr}, {"vps_backend", "docker"}};
}

// Runs `sh -n -c script` (syntax only).
bool shell_syntax_ok(const std::string& script) {
  std::string path = ::testing::TempDir() + "/vps_script.sh";
  std::ofstream(path) << script;
  int rc = std::system(("sh -n " + path).c_str());
  return rc == 0;
}

// Runs the script with sh and returns its stdout.
std::string run_sh(const std::string& script) {
  std::string path = ::testing::TempDir() + "/vps_run.sh";
  std::ofstream(path) << script;
  std::string out;
  FILE* p = popen(("sh " + path).c_str(), "r");
  char buf[256];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  if (p) pclose(p);
  return out;
}

}  // namespace

TEST(VpsRequest, ParsesHostBodyWithStringId) {
  auto r = parse_ok(host_body());
  EXPECT_EQ(r.task_id, 7199539478398935040LL);
  EXPECT_EQ(r.required_cores, 2);
  EXPECT_EQ(r.ssh_port, 2222);
  EXPECT_EQ(r.container_name, "kohakuriver-base");
  EXPECT_EQ(r.vps_backend, "docker");
}

TEST(VpsRequest, RegistryImageWithEmptyOrNullContainerName) {
  auto b = host_body();
  b["registry_image"] = "kr-test/debian:bookworm";
  b["container_name"] = "";
  EXPECT_EQ(parse_ok(b).container_name, "");
  b["container_name"] = nullptr;  // D13
  EXPECT_FALSE(parse_ok(b).container_name.has_value());
  b["registry_image"] = nullptr;  // null without a registry image: 422
  EXPECT_TRUE(std::holds_alternative<json>(parse_vps_request(b.dump())));
}

TEST(VpsRequest, MissingSshPortAndBadTypesAre422) {
  auto b = host_body();
  b.erase("ssh_port");
  auto r = parse_vps_request(b.dump());
  ASSERT_TRUE(std::holds_alternative<json>(r));
  EXPECT_EQ(std::get<json>(r)["detail"][0]["loc"], json::array({"body", "ssh_port"}));
  b = host_body();
  b["ssh_key_mode"] = 5;
  EXPECT_TRUE(std::holds_alternative<json>(parse_vps_request(b.dump())));
  EXPECT_TRUE(std::holds_alternative<json>(parse_vps_request("not json")));
}

TEST(VpsRequest, KeyModes) {
  auto r = parse_ok(host_body());
  EXPECT_EQ(std::get<SshKeyMode>(resolve_key_mode(r)), SshKeyMode::Upload);
  r.ssh_key_mode = "generate";
  EXPECT_EQ(std::get<SshKeyMode>(resolve_key_mode(r)), SshKeyMode::Generate);
  r.ssh_public_key = "   ";
  EXPECT_TRUE(std::holds_alternative<std::string>(resolve_key_mode(r)));
  r.ssh_public_key.reset();
  r.ssh_key_mode = "";  // "" means upload (§3.1 step 4): key required
  EXPECT_EQ(std::get<std::string>(resolve_key_mode(r)), "ssh_public_key is required for ssh_key_mode 'upload'.");
  r.ssh_key_mode = "none";
  EXPECT_EQ(std::get<SshKeyMode>(resolve_key_mode(r)), SshKeyMode::None);
  r.ssh_key_mode = "disabled";
  EXPECT_EQ(std::get<SshKeyMode>(resolve_key_mode(r)), SshKeyMode::Disabled);
  r.ssh_key_mode = "password";
  EXPECT_NE(std::get<std::string>(resolve_key_mode(r)).find("Invalid ssh_key_mode 'password'"), std::string::npos);
}

TEST(VpsSpec, CreateBodyMatchesUpstreamArgv) {
  auto r = parse_ok(host_body());
  r.required_gpus = {0, 2};
  r.reserved_ip = "10.128.0.9";
  RunnerConfig cfg;
  cfg.additional_mounts = {"/data:/data:ro"};
  VpsContainerContext ctx;
  ctx.hostname = "node1";
  ctx.image = "kohakuriver/kohakuriver-base:base";
  ctx.mode = SshKeyMode::Upload;
  ctx.key_lines = {"ssh-ed25519 AAAA user@x"};
  ctx.tunnel_client_path = "/opt/tunnel-client";
  json b = build_vps_create_body(r, cfg, ctx);
  EXPECT_EQ(b["Image"], "kohakuriver/kohakuriver-base:base");
  EXPECT_EQ(b["WorkingDir"], "/shared");
  EXPECT_EQ(b["Labels"]["kohakuriver.kind"], "vps");
  EXPECT_EQ(b["Labels"]["kohakuriver.node"], "node1");
  EXPECT_EQ(b["Labels"]["kohakuriver.task_id"], "7199539478398935040");
  EXPECT_EQ(b["Labels"]["kohakuriver.ssh_key_mode"], "upload");
  const json& h = b["HostConfig"];
  EXPECT_EQ(h["RestartPolicy"]["Name"], "unless-stopped");
  EXPECT_EQ(h["PortBindings"]["22/tcp"][0]["HostPort"], "0");
  EXPECT_EQ(h["PortBindings"]["22/tcp"][0]["HostIp"], "");
  EXPECT_EQ(h["NanoCpus"], 2000000000LL);
  EXPECT_EQ(h["Memory"], 1073741824LL);  // plain bytes for VPS
  EXPECT_EQ(h["CapAdd"], json::array({"SYS_NICE"}));
  EXPECT_EQ(h["DeviceRequests"][0]["DeviceIDs"], json::array({"0", "2"}));
  EXPECT_EQ(h["NetworkMode"], "kohakuriver-net");
  EXPECT_EQ(h["AutoRemove"], false);
  // /shared, /local_temp, the additional mount, the tunnel client; no logs.
  ASSERT_EQ(h["Mounts"].size(), 4u);
  EXPECT_EQ(h["Mounts"][0]["Target"], "/shared");
  EXPECT_EQ(h["Mounts"][1]["Target"], "/local_temp");
  EXPECT_EQ(h["Mounts"][2]["Target"], "/data");
  EXPECT_EQ(h["Mounts"][3]["Target"], "/usr/local/bin/tunnel-client");
  EXPECT_EQ(b["Env"], json::array({"KOHAKURIVER_TUNNEL_URL=ws://172.30.0.1:8001",
                                   "KOHAKURIVER_CONTAINER_ID=kohakuriver-vps-7199539478398935040"}));
  EXPECT_EQ(b["NetworkingConfig"]["EndpointsConfig"]["kohakuriver-net"]["IPAMConfig"]["IPv4Address"], "10.128.0.9");
  const std::string cmd = b["Cmd"][2];
  EXPECT_EQ(b["Cmd"][0], "/bin/sh");
  EXPECT_EQ(cmd.rfind(kr::tasks::tunnel_wrapper_prefix() + " && { ", 0), 0u);
}

TEST(VpsSpec, DisabledPublishesNoPortAndBadInputThrows) {
  auto r = parse_ok(host_body());
  RunnerConfig cfg;
  cfg.tunnel_enabled = false;
  VpsContainerContext ctx;
  ctx.image = "kr-test/busybox:test";
  ctx.mode = SshKeyMode::Disabled;
  json b = build_vps_create_body(r, cfg, ctx);
  EXPECT_FALSE(b["HostConfig"].contains("PortBindings"));
  EXPECT_FALSE(b.contains("ExposedPorts"));
  EXPECT_EQ(b["Env"], json::array());
  EXPECT_EQ(b["Cmd"][2].get<std::string>().find("sshd"), std::string::npos);
  r.reserved_ip = "not-an-ip";
  EXPECT_THROW(build_vps_create_body(r, cfg, ctx), kr::tasks::SpecError);
  r.reserved_ip.reset();
  ctx.image = "--help";
  EXPECT_THROW(build_vps_create_body(r, cfg, ctx), kr::tasks::SpecError);
}

TEST(VpsSpec, ImageReference) {
  VpsRequest r;
  r.container_name = "kohakuriver-base";
  EXPECT_EQ(vps_image_reference(r), "kohakuriver/kohakuriver-base:base");
  r.registry_image = "kr-test/debian:bookworm";
  EXPECT_EQ(vps_image_reference(r), "kr-test/debian:bookworm");
  r.registry_image = "";
  r.container_name = "";
  EXPECT_THROW(vps_image_reference(r), kr::tasks::SpecError);
}

TEST(VpsSetup, ScriptsAreValidShellInEveryMode) {
  std::vector<std::string> keys = {"ssh-ed25519 AAAA it's'; touch /tmp/pwned; echo '"};
  for (auto mode : {SshKeyMode::Disabled, SshKeyMode::None, SshKeyMode::Upload, SshKeyMode::Generate})
    for (auto kind : {SetupKind::Fresh, SetupKind::Restore})
      for (bool tunnel : {false, true}) {
        auto s = build_vps_setup_script(mode, kind, keys, tunnel);
        EXPECT_TRUE(shell_syntax_ok(s)) << s;
      }
}

TEST(VpsSetup, FreshSshModesProbeBeforeInstalling) {
  auto s = build_vps_setup_script(SshKeyMode::Upload, SetupKind::Fresh, {"ssh-ed25519 AAAA k"}, false);
  // The package managers run only inside `if [ -z "$S" ]` (sshd absent),
  // probed in order, never guessed from the image name (D-PKGMGR).
  auto guard = s.find("if [ -z \"$S\" ]; then");
  ASSERT_NE(guard, std::string::npos);
  std::size_t last = guard;
  for (const char* pm : {"command -v apk", "command -v apt-get", "command -v dnf", "command -v yum",
                         "command -v zypper", "command -v pacman"}) {
    auto p = s.find(pm);
    ASSERT_NE(p, std::string::npos) << pm;
    EXPECT_GT(p, last) << pm;
    last = p;
  }
  EXPECT_NE(s.find("'PasswordAuthentication no'"), std::string::npos);
  EXPECT_NE(s.find("'ChallengeResponseAuthentication no'"), std::string::npos);
  EXPECT_EQ(s.find("passwd -d root"), std::string::npos);
  EXPECT_NE(s.find("exec \"$S\" -D -e"), std::string::npos);
  auto none = build_vps_setup_script(SshKeyMode::None, SetupKind::Fresh, {}, false);
  EXPECT_NE(none.find("'PermitEmptyPasswords yes'"), std::string::npos);
  EXPECT_NE(none.find("passwd -d root"), std::string::npos);
}

TEST(VpsSetup, RestoreLeavesSshStateAlone) {
  auto s = build_vps_setup_script(SshKeyMode::None, SetupKind::Restore, {}, false);
  EXPECT_EQ(s.find("sshd_config"), std::string::npos);
  EXPECT_EQ(s.find("passwd"), std::string::npos);
  EXPECT_EQ(s.find("apt-get"), std::string::npos);
  EXPECT_NE(s.find("exec \"$S\" -D -e"), std::string::npos);
}

TEST(VpsSetup, KeyIsQuotedSafely) {
  // S-KEYINJ: a hostile key stays one argument; run the quoted word through
  // a real shell and compare.
  const std::string key = "ssh-ed25519 AAAA it's'; echo INJECTED; echo '$(id) `id` \\ \"x\"";
  auto lines = authorized_key_lines(key);
  ASSERT_EQ(lines.size(), 1u);
  auto s = build_vps_setup_script(SshKeyMode::Upload, SetupKind::Fresh, lines, false);
  EXPECT_NE(s.find(kr::tasks::shell_quote(key)), std::string::npos);
  EXPECT_EQ(run_sh("printf '%s\\n' " + kr::tasks::shell_quote(key)), key + "\n");
}

TEST(VpsSetup, AuthorizedKeyLines) {
  EXPECT_EQ(authorized_key_lines("  ssh-ed25519 A a\r\n\nssh-rsa B b \n"),
            (std::vector<std::string>{"ssh-ed25519 A a", "ssh-rsa B b"}));
  EXPECT_TRUE(authorized_key_lines(" \n ").empty());
}

TEST(VpsSetup, SshdConfigBlockIsIdempotentAndFirst) {
  // The config part of the script, pointed at a scratch file and run twice.
  auto s = build_vps_setup_script(SshKeyMode::Upload, SetupKind::Fresh, {}, false);
  auto b = s.find("C=/etc/ssh/sshd_config;");
  auto e = s.find("|| exit 1; ", b);
  ASSERT_NE(b, std::string::npos);
  std::string part = s.substr(b, e - b);
  std::string file = ::testing::TempDir() + "/sshd_config_test";
  part.replace(0, std::string("C=/etc/ssh/sshd_config").size(), "C=" + file);
  std::ofstream(file) << "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n";
  run_sh(part);
  run_sh(part);
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text,
            "# BEGIN kohakuriver (managed: rewritten at every container start)\nPasswordAuthentication no\n"
            "ChallengeResponseAuthentication no\nPermitRootLogin yes\nPermitEmptyPasswords no\n# END kohakuriver\n"
            "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n");
}

TEST(VpsSpec, SshHostPort) {
  json c = {{"NetworkSettings", {{"Ports", {{"22/tcp", {{{"HostIp", "::"}, {"HostPort", "32792"}},
                                                        {{"HostIp", "0.0.0.0"}, {"HostPort", "32792"}}}}}}}}};
  EXPECT_EQ(ssh_host_port(c), 32792);  // IPv6 first (D-SSHPORT)
  c["NetworkSettings"]["Ports"]["22/tcp"] = nullptr;  // not started / not published
  EXPECT_EQ(ssh_host_port(c), std::nullopt);
  c["NetworkSettings"]["Ports"]["22/tcp"] = json::array({{{"HostIp", ""}, {"HostPort", "x"}}});
  EXPECT_EQ(ssh_host_port(c), std::nullopt);
  EXPECT_EQ(ssh_host_port(json::object()), std::nullopt);
  json img = {{"Config", {{"Labels", {{"kohakuriver.ssh_key_mode", "upload"}}}}}};
  EXPECT_EQ(recorded_key_mode(img), SshKeyMode::Upload);
  EXPECT_EQ(recorded_key_mode(json::object()), std::nullopt);
}

TEST(VpsSnapshots, TagParsing) {
  EXPECT_EQ(snapshot_reference(42, 1700000000), "kohakuriver-snapshot/vps-42:1700000000");
  EXPECT_EQ(snapshot_timestamp("kohakuriver-snapshot/vps-42:1700000000", 42), 1700000000);
  EXPECT_EQ(snapshot_timestamp("kohakuriver-snapshot/vps-421:1700000000", 42), std::nullopt);
  EXPECT_EQ(snapshot_timestamp("kohakuriver-snapshot/vps-42:latest", 42), std::nullopt);
  EXPECT_EQ(snapshot_timestamp("other/vps-42:1", 42), std::nullopt);
}

TEST(VpsSnapshots, ListSortedNewestFirst) {
  json images = json::array(
      {{{"Id", "a"}, {"RepoTags", {"kohakuriver-snapshot/vps-7:100", "kohakuriver-snapshot/vps-7:300"}},
        {"Size", 10}, {"CreatedText", "2024-01-01T00:00:00Z"}},
       {{"Id", "b"}, {"RepoTags", {"kohakuriver-snapshot/vps-7:200", "kohakuriver-snapshot/vps-8:999"}}, {"Size", 20}},
       {{"Id", "c"}, {"RepoTags", nullptr}}});
  auto s = snapshots_from_image_list(images, 7);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].timestamp, 300);
  EXPECT_EQ(s[0].size, 10);
  EXPECT_EQ(s[0].created_at, "2024-01-01T00:00:00Z");
  EXPECT_EQ(s[1].timestamp, 200);
  EXPECT_EQ(s[1].created_at, "");
  EXPECT_EQ(s[2].timestamp, 100);
  EXPECT_EQ(s[0].to_json()["tag"], "kohakuriver-snapshot/vps-7:300");
}

TEST(VpsSnapshots, TimestampsUniqueWithinOneSecond) {
  std::vector<SnapshotInfo> existing;
  EXPECT_EQ(next_snapshot_timestamp(1000, existing), 1000);
  existing.push_back(SnapshotInfo{"t", 1, 1000, 0, ""});
  EXPECT_EQ(next_snapshot_timestamp(1000, existing), 1001);
  existing.push_back(SnapshotInfo{"t", 1, 1001, 0, ""});
  EXPECT_EQ(next_snapshot_timestamp(1000, existing), 1002);
  EXPECT_EQ(next_snapshot_timestamp(5000, existing), 5000);
}

TEST(VpsSnapshots, PruneKeepsNewest) {
  std::vector<SnapshotInfo> s;
  for (int64_t t : {500, 400, 300, 200, 100}) s.push_back(SnapshotInfo{"vps-1:" + std::to_string(t), 1, t, 0, ""});
  EXPECT_EQ(tags_to_prune(s, 3), (std::vector<std::string>{"vps-1:200", "vps-1:100"}));
  EXPECT_TRUE(tags_to_prune(s, 0).empty());  // unlimited
  EXPECT_TRUE(tags_to_prune(s, 5).empty());
}

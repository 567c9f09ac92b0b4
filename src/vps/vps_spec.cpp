#include "vps/vps_spec.hpp"

#include <limits>

#include "docker/names.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/shell.hpp"

namespace kr::vps {
namespace {

using nlohmann::json;
using tasks::SpecError;

constexpr int64_t kNanoPerCpu = 1000000000;
constexpr const char* kSshdConfig = "/etc/ssh/sshd_config";
constexpr const char* kBlockBegin = "# BEGIN kohakuriver (managed: rewritten at every container start)";
constexpr const char* kBlockEnd = "# END kohakuriver";

void check_no_nul(std::string_view s) {
  if (s.find('\0') != std::string_view::npos) throw SpecError("embedded null byte");
}

std::string trim(std::string_view s) {
  const char* ws = " \t\r\n\v\f";
  auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  auto e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// Sets S to the sshd binary, or to "" when the image has none.
const char* kFindSshd =
    "S=/usr/sbin/sshd; [ -x \"$S\" ] || S=$(command -v sshd 2>/dev/null) || S=";

// Installs openssh with the first package manager that exists (D-PKGMGR:
// probed, not guessed from the image name); runs only when sshd is absent.
const char* kInstallSshd =
    "if [ -z \"$S\" ]; then "
    "echo 'kohakuriver: sshd not found in the image; installing openssh' >&2; "
    "if command -v apk >/dev/null 2>&1; then apk update && apk add --no-cache openssh; "
    "elif command -v apt-get >/dev/null 2>&1; then apt-get update && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server; "
    "elif command -v dnf >/dev/null 2>&1; then dnf install -y openssh-server; "
    "elif command -v yum >/dev/null 2>&1; then yum install -y openssh-server; "
    "elif command -v zypper >/dev/null 2>&1; then zypper --non-interactive refresh && "
    "zypper --non-interactive install -y openssh; "
    "elif command -v pacman >/dev/null 2>&1; then pacman -Sy --noconfirm openssh; "
    "else echo 'kohakuriver: no sshd and no known package manager (apk, apt-get, dnf, yum, zypper, pacman)' >&2; "
    "false; fi || exit 1; "
    "S=/usr/sbin/sshd; [ -x \"$S\" ] || S=$(command -v sshd 2>/dev/null) || exit 1; "
    "fi; ";

// /run/sshd (privilege separation) and any missing host key.
const char* kPrepareSshd = "mkdir -p /run/sshd && chmod 0755 /run/sshd; ssh-keygen -A >/dev/null 2>&1; ";

std::string config_block(SshKeyMode mode) {
  std::vector<std::string> lines = {kBlockBegin};
  if (mode == SshKeyMode::None) {
    lines.insert(lines.end(), {"PasswordAuthentication yes", "PermitRootLogin yes", "PermitEmptyPasswords yes"});
  } else {
    // Keyboard-interactive (PAM) would otherwise still take passwords.
    lines.insert(lines.end(), {"PasswordAuthentication no", "ChallengeResponseAuthentication no",
                               "PermitRootLogin yes", "PermitEmptyPasswords no"});
  }
  lines.push_back(kBlockEnd);
  std::string args;
  for (const auto& l : lines) args += " " + tasks::shell_quote(l);
  const std::string cfg = kSshdConfig;
  // The block goes first, the rest of the file (minus an older block) after.
  return "C=" + cfg + "; touch \"$C\" && { printf '%s\\n'" + args +
         "; sed '/^# BEGIN kohakuriver/,/^# END kohakuriver/d' \"$C\"; } > \"$C.kr\" && cat \"$C.kr\" > \"$C\" && "
         "rm -f \"$C.kr\" || exit 1; ";
}

std::string add_keys(const std::vector<std::string>& key_lines) {
  if (key_lines.empty()) return "";
  std::string s =
      "mkdir -p /root/.ssh && chmod 700 /root/.ssh && touch /root/.ssh/authorized_keys && "
      "chmod 600 /root/.ssh/authorized_keys || exit 1; ";
  for (const auto& k : key_lines) {
    const std::string q = tasks::shell_quote(k);  // S-KEYINJ
    s += "grep -qxF -- " + q + " /root/.ssh/authorized_keys || printf '%s\\n' " + q +
         " >> /root/.ssh/authorized_keys || exit 1; ";
  }
  return s;
}

// pid 1 ignores SIGTERM without a handler: trap it so `docker stop` is quick.
const char* kIdle = "trap 'exit 0' TERM INT; tail -f /dev/null & wait";

}  // namespace

std::string vps_container_name(int64_t task_id) { return "kohakuriver-vps-" + std::to_string(task_id); }

std::string vps_image_reference(const VpsRequest& rq) {
  if (rq.registry_image && !rq.registry_image->empty()) {
    if (!docker::is_valid_image_reference(*rq.registry_image))
      throw SpecError("Invalid registry image reference '" + *rq.registry_image + "'.");
    return *rq.registry_image;
  }
  if (!rq.container_name || rq.container_name->empty())
    throw SpecError("Neither container_name nor registry_image was given.");
  return tasks::env_image_reference(*rq.container_name);
}

std::vector<std::string> authorized_key_lines(std::string_view key) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= key.size()) {
    auto nl = key.find_first_of("\r\n", start);
    std::string line = trim(key.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (!line.empty()) out.push_back(std::move(line));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string build_vps_setup_script(SshKeyMode mode, SetupKind kind, const std::vector<std::string>& key_lines,
                                   bool tunnel) {
  std::string s;
  if (mode == SshKeyMode::Disabled) {
    s = kIdle;
  } else if (kind == SetupKind::Restore) {
    // The snapshot's sshd_config, keys and root password stay as they are.
    s = std::string(kFindSshd) + "; " + add_keys(key_lines) + "if [ -n \"$S\" ]; then " + kPrepareSshd +
        "exec \"$S\" -D -e; fi; echo 'kohakuriver: the snapshot has no sshd; TTY access only' >&2; " + kIdle;
  } else {
    s = std::string(kFindSshd) + "; " + kInstallSshd + kPrepareSshd + config_block(mode);
    if (mode == SshKeyMode::None)
      s += "passwd -d root >/dev/null 2>&1 || exit 1; ";
    else
      s += add_keys(key_lines);
    s += "exec \"$S\" -D -e";
  }
  if (!tunnel) return s;
  return tasks::tunnel_wrapper_prefix() + " && { " + s + "; }";
}

json build_vps_create_body(const VpsRequest& rq, const config::RunnerConfig& cfg, const VpsContainerContext& ctx,
                           std::vector<std::string>* warnings) {
  const std::string& image = ctx.image;
  if (!docker::is_valid_image_reference(image)) throw SpecError("Invalid image reference '" + image + "'.");
  const std::string network = ctx.network.empty() ? cfg.docker_network_name : ctx.network;
  const std::string gateway = ctx.container_gateway.empty() ? cfg.docker_network_gateway : ctx.container_gateway;
  const bool tunnel = cfg.tunnel_enabled && ctx.tunnel_client_path && !ctx.tunnel_client_path->empty();
  for (const auto& k : ctx.key_lines) check_no_nul(k);
  const std::string name = vps_container_name(rq.task_id);

  json body;
  body["Image"] = image;
  body["Cmd"] = json::array({"/bin/sh", "-c", build_vps_setup_script(ctx.mode, ctx.setup, ctx.key_lines, tunnel)});
  json env = json::array();
  if (cfg.tunnel_enabled) {
    env.push_back("KOHAKURIVER_TUNNEL_URL=" + tasks::tunnel_url(gateway, cfg.runner_port));
    env.push_back("KOHAKURIVER_CONTAINER_ID=" + name);
  }
  body["Env"] = env;
  body["WorkingDir"] = "/shared";
  body["Labels"] = json{{"kohakuriver.task_id", std::to_string(rq.task_id)},
                        {"kohakuriver.kind", "vps"},
                        {"kohakuriver.node", ctx.hostname},
                        {"kohakuriver.ssh_key_mode", to_string(ctx.mode)}};

  json host;
  host["NetworkMode"] = network;
  host["RestartPolicy"] = json{{"Name", "unless-stopped"}, {"MaximumRetryCount", 0}};
  host["Privileged"] = cfg.tasks_privileged;
  if (!cfg.tasks_privileged) host["CapAdd"] = json::array({"SYS_NICE"});
  if (ctx.mode != SshKeyMode::Disabled) {
    // -p 0:22 (D19): a random host port on all interfaces.
    body["ExposedPorts"] = json{{"22/tcp", json::object()}};
    host["PortBindings"] = json{{"22/tcp", json::array({json{{"HostIp", ""}, {"HostPort", "0"}}})}};
  }
  json mounts = json::array();
  mounts.push_back(tasks::bind_mount(cfg.shared_dir + "/shared_data", "/shared", false));
  mounts.push_back(tasks::bind_mount(cfg.local_temp_dir, "/local_temp", false));
  for (const auto& spec : cfg.additional_mounts)
    if (auto m = tasks::parse_additional_mount(spec, warnings)) mounts.push_back(std::move(*m));
  if (tunnel)
    mounts.push_back(tasks::bind_mount(*ctx.tunnel_client_path, std::string(tasks::kTunnelClientContainerPath), true));
  host["Mounts"] = std::move(mounts);
  if (rq.required_cores > 0) {
    if (rq.required_cores > std::numeric_limits<int64_t>::max() / kNanoPerCpu)
      throw SpecError("required_cores is too large.");
    host["NanoCpus"] = rq.required_cores * kNanoPerCpu;
  }
  // --memory {bytes}: a plain byte count for VPS (§3.3 item 10).
  if (rq.required_memory_bytes && *rq.required_memory_bytes > 0) host["Memory"] = *rq.required_memory_bytes;
  if (!rq.required_gpus.empty()) host["DeviceRequests"] = tasks::gpu_device_requests(rq.required_gpus);
  host["AutoRemove"] = false;
  body["HostConfig"] = std::move(host);

  json endpoint = json::object();
  if (rq.reserved_ip && !rq.reserved_ip->empty()) {
    if (!config::is_ipv4_literal(*rq.reserved_ip))
      throw SpecError("Invalid reserved_ip '" + *rq.reserved_ip + "': not an IPv4 address.");
    endpoint["IPAMConfig"] = json{{"IPv4Address", *rq.reserved_ip}};
  }
  body["NetworkingConfig"] = json{{"EndpointsConfig", json{{network, std::move(endpoint)}}}};
  return body;
}

std::optional<int> ssh_host_port(const json& inspect) {
  if (!inspect.is_object()) return std::nullopt;
  auto ns = inspect.find("NetworkSettings");
  if (ns == inspect.end() || !ns->is_object()) return std::nullopt;
  auto ports = ns->find("Ports");
  if (ports == ns->end() || !ports->is_object()) return std::nullopt;
  auto b = ports->find("22/tcp");
  if (b == ports->end() || !b->is_array()) return std::nullopt;
  for (const auto& binding : *b) {
    if (!binding.is_object()) continue;
    auto hp = binding.find("HostPort");
    if (hp == binding.end() || !hp->is_string()) continue;
    const std::string& t = hp->get_ref<const std::string&>();
    if (t.empty() || t.size() > 5 || t.find_first_not_of("0123456789") != std::string::npos) continue;
    int port = std::stoi(t);
    if (port >= 1 && port <= 65535) return port;
  }
  return std::nullopt;
}

std::optional<SshKeyMode> recorded_key_mode(const json& inspect) {
  if (!inspect.is_object()) return std::nullopt;
  auto c = inspect.find("Config");
  if (c == inspect.end() || !c->is_object()) return std::nullopt;
  auto l = c->find("Labels");
  if (l == c->end() || !l->is_object()) return std::nullopt;
  auto m = l->find("kohakuriver.ssh_key_mode");
  if (m == l->end() || !m->is_string()) return std::nullopt;
  return parse_key_mode(m->get_ref<const std::string&>());
}

}  // namespace kr::vps

#include "vm/cloud_init.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <system_error>

#include "vm/guest_agent.hpp"
#include "vm/names.hpp"
#include "vm/process.hpp"
#include "vm/yaml_emit.hpp"

namespace kr::vm {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr const char* k9pOptions = "trans=virtio,version=9p2000.L,msize=524288";

std::string agent_unit(const SeedSpec& s) {
  return "[Unit]\n"
         "Description=KohakuRiver VM Agent\n"
         "After=network-online.target\n"
         "Wants=network-online.target\n"
         "\n"
         "[Service]\n"
         "Type=simple\n"
         "ExecStart=/usr/local/bin/kohakuriver-vm-agent\n"
         "Restart=always\n"
         "RestartSec=5\n"
         "Environment=KOHAKU_RUNNER_URL=" + s.runner_url + "\n"
         "Environment=KOHAKU_TASK_ID=" + std::to_string(s.task_id) + "\n"
         "Environment=KOHAKU_HEARTBEAT_INTERVAL=" + std::to_string(s.heartbeat_interval_seconds) + "\n"
         "\n"
         "[Install]\n"
         "WantedBy=multi-user.target\n";
}

bool is_driver_version(const std::string& v) {
  if (v.empty() || v.front() == '.' || v.back() == '.') return false;
  for (char c : v)
    if (!(c == '.' || (c >= '0' && c <= '9'))) return false;
  return true;
}

// The systemd unit file's Environment= lines and the shell command lines
// carry these verbatim: no line breaks allowed.
void require_single_line(const std::string& value, const char* what) {
  if (value.find_first_of("\r\n") != std::string::npos)
    throw std::invalid_argument(std::string(what) + " must be a single line");
}

}  // namespace

std::string seed_meta_data(std::int64_t task_id) {
  ordered_json doc;
  doc["instance-id"] = vm_hostname(task_id);
  doc["local-hostname"] = vm_hostname(task_id);
  return to_yaml(doc);
}

std::string seed_network_config(const SeedNetwork& n) {
  ordered_json nic;
  nic["addresses"] = ordered_json::array({n.vm_ip + "/" + std::to_string(n.prefix_len)});
  nic["match"] = ordered_json::object({{"macaddress", n.mac}});
  if (n.mtu) nic["mtu"] = *n.mtu;
  nic["nameservers"] = ordered_json::object({{"addresses", n.dns}});
  ordered_json route;
  route["to"] = "default";
  route["via"] = n.gateway;
  nic["routes"] = ordered_json::array({route});
  ordered_json doc;
  doc["ethernets"] = ordered_json::object({{"vmnic0", nic}});
  doc["version"] = 2;
  return to_yaml(doc);
}

std::string seed_user_data(const SeedSpec& s) {
  require_single_line(s.runner_url, "runner URL");
  require_single_line(s.user_ssh_key, "SSH public key");
  require_single_line(s.runner_public_key, "runner public key");
  const bool user_key = !s.user_ssh_key.empty();
  ordered_json keys = ordered_json::array();
  if (user_key) keys.push_back(s.user_ssh_key);
  if (!s.runner_public_key.empty()) keys.push_back(s.runner_public_key);

  ordered_json kohaku;
  kohaku["name"] = "kohaku";
  kohaku["sudo"] = "ALL=(ALL) NOPASSWD:ALL";
  kohaku["shell"] = "/bin/bash";
  kohaku["lock_passwd"] = true;
  kohaku["ssh_authorized_keys"] = keys;
  ordered_json root;
  root["name"] = "root";
  root["ssh_authorized_keys"] = keys;
  if (!user_key) root["lock_passwd"] = false;

  ordered_json doc;
  doc["users"] = ordered_json::array({kohaku, root});
  doc["ssh_pwauth"] = !user_key;
  if (!user_key) doc["chpasswd"] = ordered_json::object({{"expire", false}});

  const std::string mount_line = std::string(" 9p ") + k9pOptions + ",nofail,_netdev 0 0\n";
  ordered_json files = ordered_json::array();
  files.push_back(ordered_json::object({{"path", "/usr/local/bin/kohakuriver-vm-agent"},
                                        {"permissions", "0755"},
                                        {"content", std::string(guest_agent_source())}}));
  files.push_back(ordered_json::object({{"path", "/etc/fstab"},
                                        {"append", true},
                                        {"content", "kohaku_shared /shared" + mount_line +
                                                        "kohaku_local /local_temp" + mount_line}}));
  files.push_back(ordered_json::object({{"path", "/etc/ssh/sshd_config.d/99-kohakuriver.conf"},
                                        {"content", "PermitRootLogin yes\nPasswordAuthentication yes\n"}}));
  files.push_back(ordered_json::object(
      {{"path", "/etc/systemd/system/kohakuriver-vm-agent.service"}, {"content", agent_unit(s)}}));
  doc["write_files"] = files;

  doc["package_update"] = true;
  ordered_json packages = ordered_json::array({"qemu-guest-agent", "net-tools"});
  const bool driver = s.gpu && s.nvidia_driver_version.has_value();
  if (driver)
    for (const char* p : {"build-essential", "dkms", "linux-headers-generic", "pkg-config", "libglvnd-dev", "python3-pip"})
      packages.push_back(p);
  doc["packages"] = packages;

  ordered_json run = ordered_json::array({
      "modprobe 9p 9pnet 9pnet_virtio || true",
      "mkdir -p /shared /local_temp",
      std::string("mount -t 9p -o ") + k9pOptions + " kohaku_shared /shared || true",
      std::string("mount -t 9p -o ") + k9pOptions + " kohaku_local /local_temp || true",
      "systemctl daemon-reload",
      "systemctl restart sshd || systemctl restart ssh || true",
  });
  if (driver) {
    const std::string& v = *s.nvidia_driver_version;
    std::string base = s.nvidia_driver_base_url;
    require_single_line(base, "NVIDIA driver URL");
    while (!base.empty() && base.back() == '/') base.pop_back();
    run.push_back("wget -q -O /tmp/nvidia.run " + base + "/" + v + "/NVIDIA-Linux-x86_64-" + v + ".run");
    run.push_back("chmod +x /tmp/nvidia.run");
    run.push_back("/tmp/nvidia.run --silent --dkms --no-cc-version-check");
    run.push_back("rm -f /tmp/nvidia.run");
    run.push_back("pip3 install nvidia-ml-py --break-system-packages");
  }
  run.push_back("systemctl enable --now kohakuriver-vm-agent");
  run.push_back("systemctl enable --now qemu-guest-agent");
  doc["runcmd"] = run;
  return "#cloud-config\n" + to_yaml(doc);
}

SeedFiles seed_files(const SeedSpec& spec) {
  if (spec.nvidia_driver_version && !is_driver_version(*spec.nvidia_driver_version))
    throw std::invalid_argument("unexpected NVIDIA driver version: " + *spec.nvidia_driver_version);
  return {seed_meta_data(spec.task_id), seed_user_data(spec), seed_network_config(spec.network)};
}

std::optional<fs::path> find_iso_tool(const std::string& path_env) {
  if (auto p = find_program("genisoimage", path_env)) return p;
  return find_program("mkisofs", path_env);
}

void write_seed_iso(const SeedFiles& files, const fs::path& iso, const fs::path& tool,
                    std::chrono::milliseconds timeout) {
  std::error_code ec;
  const fs::path tmp_base = fs::temp_directory_path(ec);
  if (ec) throw std::runtime_error("ISO creation failed: no temp directory: " + ec.message());
  std::string templ = (tmp_base / "kr-seed-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr)
    throw std::runtime_error("ISO creation failed: cannot create a temp directory: " + std::string(std::strerror(errno)));
  const fs::path dir = templ;
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(d, e);
    }
  } cleanup{dir};
  const std::pair<const char*, const std::string*> entries[] = {
      {"meta-data", &files.meta_data}, {"user-data", &files.user_data}, {"network-config", &files.network_config}};
  for (const auto& [name, text] : entries) {
    std::ofstream out(dir / name, std::ios::binary);
    out << *text;
    out.close();
    if (!out) throw std::runtime_error(std::string("ISO creation failed: cannot write ") + name);
  }
  ProcessOptions options;
  options.timeout = timeout;
  const ProcessResult r = run_process({tool.string(), "-output", iso.string(), "-volid", "cidata", "-joliet", "-rock",
                                       (dir / "meta-data").string(), (dir / "user-data").string(),
                                       (dir / "network-config").string()},
                                      options);
  if (r.exit_code != 0) {
    std::string why = r.timed_out ? "timed out" : r.output;
    throw std::runtime_error("ISO creation failed: " + why);
  }
}

}  // namespace kr::vm

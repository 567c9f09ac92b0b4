// The NoCloud seed (vm.md §7), read back with PyYAML as cloud-init does.
#include <gtest/gtest.h>

#include "source_dir.hpp"

#include <cstdlib>

#include "vm/cloud_init.hpp"
#include "vm/guest_agent.hpp"
#include "vm/names.hpp"
#include "vm/yaml_emit.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::pyyaml_load;
using kr::vm::testing::read_file;
using kr::vm::testing::TempDir;
using nlohmann::json;

namespace {

SeedSpec spec42() {
  SeedSpec s;
  s.task_id = 42;
  s.user_ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser user@laptop";
  s.runner_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRunner kohakuriver-runner";
  s.runner_url = "http://10.200.0.1:8001";
  s.network.vm_ip = "10.200.0.10";
  s.network.prefix_len = 24;
  s.network.gateway = "10.200.0.1";
  s.network.dns = {"8.8.8.8", "8.8.4.4"};
  s.network.mac = mac_address(42);
  return s;
}

const std::vector<std::string> kBaseRuncmd = {
    "modprobe 9p 9pnet 9pnet_virtio || true",
    "mkdir -p /shared /local_temp",
    "mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 kohaku_shared /shared || true",
    "mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 kohaku_local /local_temp || true",
    "systemctl daemon-reload",
    "systemctl restart sshd || systemctl restart ssh || true",
    "systemctl enable --now kohakuriver-vm-agent",
    "systemctl enable --now qemu-guest-agent",
};

}  // namespace

TEST(CloudInitSeed, MetaDataIsUpstreamsText) {
  EXPECT_EQ(pyyaml_load(seed_meta_data(42)),
            json({{"instance-id", "kohaku-vm-42"}, {"local-hostname", "kohaku-vm-42"}}));
  EXPECT_EQ(seed_meta_data(42), "instance-id: \"kohaku-vm-42\"\nlocal-hostname: \"kohaku-vm-42\"\n");
}

TEST(CloudInitSeed, NetworkConfigParsesToTheSpecDocument) {
  const json expected = json::parse(R"({
    "ethernets": {"vmnic0": {
        "addresses": ["10.200.0.10/24"],
        "match": {"macaddress": "52:54:00:1e:f5:15"},
        "nameservers": {"addresses": ["8.8.8.8", "8.8.4.4"]},
        "routes": [{"to": "default", "via": "10.200.0.1"}]}},
    "version": 2})");
  EXPECT_EQ(pyyaml_load(seed_network_config(spec42().network)), expected);
}

TEST(CloudInitSeed, AllDigitMacStaysAString) {
  // A YAML 1.1 base-60 integer when plain (vm.md §7.3).
  SeedNetwork n = spec42().network;
  n.mac = "52:54:00:12:34:56";
  n.mtu = 1450;  // overlay mode (V18)
  n.dns = {"10.0.0.53"};
  const json doc = pyyaml_load(seed_network_config(n));
  EXPECT_EQ(doc["ethernets"]["vmnic0"]["match"]["macaddress"], "52:54:00:12:34:56");
  EXPECT_EQ(doc["ethernets"]["vmnic0"]["mtu"], 1450);
  EXPECT_EQ(doc["ethernets"]["vmnic0"]["nameservers"]["addresses"], json({"10.0.0.53"}));
}

TEST(CloudInitSeed, UserDataWithUserKey) {
  const std::string text = seed_user_data(spec42());
  ASSERT_TRUE(text.starts_with("#cloud-config\n"));
  const json doc = pyyaml_load(text);
  const json keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser user@laptop",
                     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRunner kohakuriver-runner"};
  const json users = json::array({
      {{"name", "kohaku"}, {"sudo", "ALL=(ALL) NOPASSWD:ALL"}, {"shell", "/bin/bash"}, {"lock_passwd", true},
       {"ssh_authorized_keys", keys}},
      {{"name", "root"}, {"ssh_authorized_keys", keys}},
  });
  EXPECT_EQ(doc["users"], users);
  EXPECT_EQ(doc["ssh_pwauth"], false);
  EXPECT_FALSE(doc.contains("chpasswd"));
  EXPECT_EQ(doc["package_update"], true);
  EXPECT_EQ(doc["packages"], json({"qemu-guest-agent", "net-tools"}));
  EXPECT_EQ(doc["runcmd"], json(kBaseRuncmd));

  const json& files = doc["write_files"];
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0]["path"], "/usr/local/bin/kohakuriver-vm-agent");
  EXPECT_EQ(files[0]["permissions"], "0755");  // a string, not octal 493
  EXPECT_EQ(files[0]["content"], std::string(guest_agent_source()));
  EXPECT_EQ(files[1], json({{"path", "/etc/fstab"},
                            {"append", true},
                            {"content",
                             "kohaku_shared /shared 9p trans=virtio,version=9p2000.L,msize=524288,nofail,_netdev 0 0\n"
                             "kohaku_local /local_temp 9p trans=virtio,version=9p2000.L,msize=524288,nofail,_netdev 0 0\n"}}));
  EXPECT_EQ(files[2], json({{"path", "/etc/ssh/sshd_config.d/99-kohakuriver.conf"},
                            {"content", "PermitRootLogin yes\nPasswordAuthentication yes\n"}}));
  EXPECT_EQ(files[3]["path"], "/etc/systemd/system/kohakuriver-vm-agent.service");
  EXPECT_EQ(files[3]["content"],
            "[Unit]\nDescription=KohakuRiver VM Agent\nAfter=network-online.target\nWants=network-online.target\n\n"
            "[Service]\nType=simple\nExecStart=/usr/local/bin/kohakuriver-vm-agent\nRestart=always\nRestartSec=5\n"
            "Environment=KOHAKU_RUNNER_URL=http://10.200.0.1:8001\nEnvironment=KOHAKU_TASK_ID=42\n"
            "Environment=KOHAKU_HEARTBEAT_INTERVAL=10\n\n[Install]\nWantedBy=multi-user.target\n");
}

TEST(CloudInitSeed, UserDataWithoutUserKey) {
  SeedSpec s = spec42();
  s.user_ssh_key.clear();
  const json doc = pyyaml_load(seed_user_data(s));
  const json keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRunner kohakuriver-runner"};
  EXPECT_EQ(doc["users"][0]["ssh_authorized_keys"], keys);
  EXPECT_EQ(doc["users"][1], json({{"name", "root"}, {"ssh_authorized_keys", keys}, {"lock_passwd", false}}));
  EXPECT_EQ(doc["ssh_pwauth"], true);
  EXPECT_EQ(doc["chpasswd"], json({{"expire", false}}));

  s.runner_public_key.clear();  // key generation failed: empty lists
  const json bare = pyyaml_load(seed_user_data(s));
  EXPECT_EQ(bare["users"][1]["ssh_authorized_keys"], json::array());
}

TEST(CloudInitSeed, GpuVmInstallsTheHostDriver) {
  SeedSpec s = spec42();
  s.gpu = true;
  s.nvidia_driver_version = "580.159.04";
  const json doc = pyyaml_load(seed_files(s).user_data);
  EXPECT_EQ(doc["packages"], json({"qemu-guest-agent", "net-tools", "build-essential", "dkms", "linux-headers-generic",
                                   "pkg-config", "libglvnd-dev", "python3-pip"}));
  std::vector<std::string> run = kBaseRuncmd;
  run.insert(run.begin() + 6,
             {"wget -q -O /tmp/nvidia.run "
              "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run",
              "chmod +x /tmp/nvidia.run", "/tmp/nvidia.run --silent --dkms --no-cc-version-check",
              "rm -f /tmp/nvidia.run", "pip3 install nvidia-ml-py --break-system-packages"});
  EXPECT_EQ(doc["runcmd"], json(run));

  s.nvidia_driver_base_url = "http://mirror.cluster.local/nvidia/";  // V27
  EXPECT_EQ(pyyaml_load(seed_files(s).user_data)["runcmd"][6],
            "wget -q -O /tmp/nvidia.run http://mirror.cluster.local/nvidia/580.159.04/NVIDIA-Linux-x86_64-580.159.04.run");

  s.nvidia_driver_version.reset();  // not detected: plain VM
  const json plain = pyyaml_load(seed_files(s).user_data);
  EXPECT_EQ(plain["runcmd"], json(kBaseRuncmd));
  EXPECT_EQ(plain["packages"], json({"qemu-guest-agent", "net-tools"}));

  s.nvidia_driver_version = "580; rm -rf /";
  EXPECT_THROW(seed_files(s), std::invalid_argument);
}

TEST(CloudInitSeed, RefusesMultiLineValues) {
  SeedSpec s = spec42();
  s.user_ssh_key = "ssh-ed25519 AAAA\nruncmd: [reboot]";
  EXPECT_THROW(seed_user_data(s), std::invalid_argument);
}

TEST(GuestAgent, EmbeddedCopyIsTheSourceFile) {
  EXPECT_EQ(std::string(guest_agent_source()), read_file(std::filesystem::path(kr_source_dir()) / "src/vm/guest_agent.py"));
  EXPECT_TRUE(guest_agent_source().starts_with("#!/usr/bin/env python3\n"));
}

TEST(SeedIso, GenisoimageWritesACidataVolume) {
  const char* path_env = std::getenv("PATH");
  auto tool = find_iso_tool(path_env ? path_env : "");
  ASSERT_TRUE(tool) << "genisoimage (or mkisofs) is required: scripts/install-deps.sh --test installs it";
  TempDir tmp;
  const SeedFiles files = seed_files(spec42());
  const auto iso = tmp.dir / "seed.iso";
  write_seed_iso(files, iso, *tool);
  const std::string image = read_file(iso);
  // Primary volume descriptor at sector 16: type 1, "CD001", volume id at +40.
  ASSERT_GT(image.size(), 16u * 2048 + 72);
  EXPECT_EQ(image.substr(16 * 2048 + 1, 5), "CD001");
  EXPECT_EQ(image.substr(16 * 2048 + 40, 6), "cidata");
  EXPECT_EQ(image.substr(16 * 2048 + 46, 1), " ");
  // Each file's bytes are in the image (cloud-init reads them by name via
  // Rock Ridge/Joliet; isoinfo shows the names, checked below when present).
  for (const std::string* text : {&files.meta_data, &files.user_data, &files.network_config})
    EXPECT_NE(image.find(*text), std::string::npos);
  auto r = kr::vm::run_process({"isoinfo", "-i", iso.string(), "-R", "-f"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("/meta-data"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/user-data"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/network-config"), std::string::npos) << r.output;
}

TEST(SeedIso, ToolFailureIsReported) {
  TempDir tmp;
  const auto fake = tmp.write("bin/genisoimage", "#!/bin/sh\necho 'genisoimage: boom' >&2\nexit 3\n");
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  try {
    write_seed_iso(seed_files(spec42()), tmp.dir / "seed.iso", fake);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "ISO creation failed: genisoimage: boom\n");
  }
}

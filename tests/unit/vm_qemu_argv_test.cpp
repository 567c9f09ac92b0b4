// The QEMU argv (vm.md §5) with production and emulation settings.
#include <gtest/gtest.h>

#include "vm/qemu_argv.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::TempDir;

namespace {

QemuArgvSpec spec42() {
  QemuArgvSpec s;
  s.accel = Accel::Kvm;
  s.cpu_model = "host";
  s.vcpus = 4;
  s.memory_mb = 8192;
  s.paths = vm_paths("/var/lib/kohakuriver/vm-instances", "/run/kohakuriver/vm", 42);
  s.firmware_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
  s.tap = tap_name(42);
  s.mac = mac_address(42);
  s.shared_data_dir = "/mnt/cluster-share/shared_data";
  s.local_dir = "/tmp/kohakuriver/42";
  return s;
}

}  // namespace

TEST(QemuArgv, ProductionSettingsGiveUpstreamsArgvExactly) {
  QemuArgvSpec s = spec42();
  s.vfio_pci = {"0000:41:00.0", "0000:41:00.1"};
  const std::vector<std::string> expected = {
      "qemu-system-x86_64",
      "-enable-kvm",
      "-machine", "q35,accel=kvm",
      "-cpu", "host",
      "-smp", "4",
      "-m", "8192M",
      "-daemonize",
      "-pidfile", "/var/lib/kohakuriver/vm-instances/42/qemu.pid",
      "-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
      "-drive", "file=/var/lib/kohakuriver/vm-instances/42/root.qcow2,format=qcow2,if=virtio,cache=writeback",
      "-drive", "file=/var/lib/kohakuriver/vm-instances/42/seed.iso,format=raw,if=virtio,media=cdrom,readonly=on",
      "-netdev", "tap,id=net0,ifname=tap-1ef51593,script=no,downscript=no",
      "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:1e:f5:15",
      "-qmp", "unix:/run/kohakuriver/vm/42.qmp,server,nowait",
      "-serial", "file:/var/lib/kohakuriver/vm-instances/42/serial.log",
      "-display", "none",
      "-vga", "std",
      "-fsdev", "local,id=fs_shared,path=/mnt/cluster-share/shared_data,security_model=passthrough",
      "-device", "virtio-9p-pci,fsdev=fs_shared,mount_tag=kohaku_shared",
      "-fsdev", "local,id=fs_local,path=/tmp/kohakuriver/42,security_model=passthrough",
      "-device", "virtio-9p-pci,fsdev=fs_local,mount_tag=kohaku_local",
      "-device", "vfio-pci,host=0000:41:00.0",
      "-device", "vfio-pci,host=0000:41:00.1",
  };
  EXPECT_EQ(qemu_argv(s), expected);
}

TEST(QemuArgv, PerVmVarsFollowTheCodeImage) {
  QemuArgvSpec s = spec42();
  s.firmware_vars = true;
  const auto a = qemu_argv(s);
  auto it = std::find(a.begin(), a.end(), "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd");
  ASSERT_NE(it, a.end());
  ASSERT_NE(it + 2, a.end());
  EXPECT_EQ(*(it + 1), "-drive");
  EXPECT_EQ(*(it + 2), "if=pflash,format=raw,file=/var/lib/kohakuriver/vm-instances/42/OVMF_VARS.fd");
}

TEST(QemuArgv, TcgWithSeaBios) {
  QemuArgvSpec s = spec42();
  s.accel = Accel::Tcg;
  s.cpu_model = resolve_cpu_model(Accel::Tcg, "");
  s.firmware_code.reset();
  s.firmware_vars = true;  // ignored without OVMF
  const auto a = qemu_argv(s);
  EXPECT_EQ(std::count(a.begin(), a.end(), "-enable-kvm"), 0);
  ASSERT_GE(a.size(), 5u);
  EXPECT_EQ(a[1], "-machine");
  EXPECT_EQ(a[2], "q35,accel=tcg");
  EXPECT_EQ(a[3], "-cpu");
  EXPECT_EQ(a[4], "max");
  for (const auto& arg : a) EXPECT_EQ(arg.find("pflash"), std::string::npos) << arg;
  EXPECT_EQ(a.size(), qemu_argv(spec42()).size() - 3);  // no -enable-kvm, no pflash pair
}

TEST(QemuArgv, CpuModelSetting) {
  EXPECT_EQ(resolve_cpu_model(Accel::Kvm, ""), "host");
  EXPECT_EQ(resolve_cpu_model(Accel::Tcg, ""), "max");
  EXPECT_EQ(resolve_cpu_model(Accel::Kvm, "host,-arch-capabilities"), "host,-arch-capabilities");
  EXPECT_EQ(parse_accel("kvm"), Accel::Kvm);
  EXPECT_EQ(parse_accel("tcg"), Accel::Tcg);
  EXPECT_FALSE(parse_accel("KVM"));
}

TEST(QemuArgv, RefusesValuesThatWouldChangeQemuOptions) {
  QemuArgvSpec s = spec42();
  s.shared_data_dir = "/mnt/a,b";
  EXPECT_THROW(qemu_argv(s), std::invalid_argument);
  s = spec42();
  s.paths = vm_paths("/srv/vm,x=y", "/run/kohakuriver/vm", 42);
  EXPECT_THROW(qemu_argv(s), std::invalid_argument);
  s = spec42();
  s.vfio_pci = {"0000:41:00.0,x-igd-opregion=on"};
  EXPECT_THROW(qemu_argv(s), std::invalid_argument);
  s = spec42();
  s.vcpus = 0;
  EXPECT_THROW(qemu_argv(s), std::invalid_argument);
}

TEST(QemuFirmware, AutoSearchesUpstreamsOrderAndFindsVars) {
  TempDir root;
  EXPECT_FALSE(resolve_firmware("auto", root.dir));  // nothing installed: SeaBIOS
  root.write("usr/share/qemu/OVMF_CODE.fd", "x");
  auto fw = resolve_firmware("auto", root.dir);
  ASSERT_TRUE(fw);
  EXPECT_EQ(fw->code, "/usr/share/qemu/OVMF_CODE.fd");
  EXPECT_FALSE(fw->vars_template);
  root.write("usr/share/OVMF/OVMF_CODE_4M.fd", "x");
  root.write("usr/share/OVMF/OVMF_VARS_4M.fd", "v");
  root.write("usr/share/OVMF/OVMF_CODE.fd", "x");
  fw = resolve_firmware("auto", root.dir);
  ASSERT_TRUE(fw);
  EXPECT_EQ(fw->code, "/usr/share/OVMF/OVMF_CODE_4M.fd");
  EXPECT_EQ(fw->vars_template, std::filesystem::path("/usr/share/OVMF/OVMF_VARS_4M.fd"));
}

TEST(QemuFirmware, ExplicitPathEmptyAndMissing) {
  TempDir root;
  root.write("opt/fw/MY_CODE.fd", "x");
  EXPECT_FALSE(resolve_firmware("", root.dir));
  auto fw = resolve_firmware("/opt/fw/MY_CODE.fd", root.dir);
  ASSERT_TRUE(fw);
  EXPECT_EQ(fw->code, "/opt/fw/MY_CODE.fd");
  EXPECT_FALSE(fw->vars_template);
  EXPECT_THROW(resolve_firmware("/opt/fw/missing.fd", root.dir), std::runtime_error);
  EXPECT_THROW(resolve_firmware("relative.fd", root.dir), std::runtime_error);
}

// VM capability (decision V1) and VFIO GPU discovery over recorded trees.
#include "source_dir.hpp"
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "monitor_test_util.hpp"
#include "monitor/vm_capability.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor;
using nlohmann::json;

namespace {

fs::path fixture(const std::string& name) { return fs::path(kr_source_dir()) / "tests/fixtures" / name / "root"; }

struct TempTree : kr::monitor::testing::TempTree {
  void tool(const std::string& name) const {
    write("bin/" + name, "#!/bin/sh\nexit 0\n");
    fs::permissions(dir / "bin" / name, fs::perms::owner_all);
  }
};

// Tools on a private PATH and a KVM probe that answers `kvm_ok`.
VmCapabilityOptions options(const fs::path& root, const TempTree& tools, bool kvm_ok = true) {
  VmCapabilityOptions o;
  o.root = root;
  o.path_env = "/nonexistent-dir:" + (tools.dir / "bin").string();
  o.kvm_probe = [kvm_ok](const fs::path&, std::string& err) {
    if (!kvm_ok) err = "KVM_CREATE_VM failed: fake";
    return kvm_ok;
  };
  return o;
}

TempTree all_tools() {
  TempTree t;
  t.tool("qemu-system-x86_64");
  t.tool("qemu-img");
  t.tool("mkisofs");
  return t;
}

}  // namespace

TEST(MonitorVmCapability, VfioTreeDiscoversGpusInAddressOrder) {
  TempTree tools = all_tools();
  VmCapability cap = check_vm_capability(options(fixture("monitor-vfio"), tools));
  EXPECT_TRUE(cap.vm_capable);
  EXPECT_TRUE(cap.errors.empty());
  json expected = json::array({
      {{"gpu_id", 0}, {"pci_address", "0000:41:00.0"}, {"name", "NVIDIA GeForce RTX 3090"},
       {"vendor_id", "10de"}, {"device_id", "2204"}, {"iommu_group", 52},
       {"audio_pci", "0000:41:00.1"}, {"iommu_group_peers", json::array()}},
      {{"gpu_id", 1}, {"pci_address", "0000:61:00.0"}, {"name", "GPU at 0000:61:00.0"},
       {"vendor_id", "10de"}, {"device_id", "2330"}, {"iommu_group", 53},
       {"audio_pci", "0000:61:00.1"}, {"iommu_group_peers", {"0000:62:00.0"}}},
      {{"gpu_id", 2}, {"pci_address", "0000:62:00.0"}, {"name", "GPU at 0000:62:00.0"},
       {"vendor_id", "10de"}, {"device_id", "2330"}, {"iommu_group", 53},
       {"audio_pci", nullptr}, {"iommu_group_peers", {"0000:61:00.0"}}},
  });
  EXPECT_EQ(vfio_gpus_json(cap.vfio_gpus), expected) << vfio_gpus_json(cap.vfio_gpus).dump(1);
  // The DMA endpoint sharing group 53 is reported, not fatal.
  bool warned = false;
  for (auto& w : cap.warnings) warned |= w.find("0000:63:00.0") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(MonitorVmCapability, RecordedH100Node) {
  TempTree tools = all_tools();
  VmCapability cap = check_vm_capability(options(fixture("h100-node"), tools));
  // Firecracker guest: no vmx flag (V1: only a warning when KVM answers);
  // no OVMF; no IOMMU groups -> vfio_gpus null.
  EXPECT_FALSE(cap.vm_capable);
  ASSERT_EQ(cap.errors.size(), 1u);
  EXPECT_NE(cap.errors[0].find("OVMF"), std::string::npos);
  EXPECT_TRUE(cap.vfio_gpus.empty());
  EXPECT_TRUE(vfio_gpus_json(cap.vfio_gpus).is_null());
  ASSERT_GE(cap.warnings.size(), 2u);
  EXPECT_NE(cap.warnings.at(0).find("VMX/SVM"), std::string::npos);
  EXPECT_NE(cap.warnings.at(1).find("IOMMU"), std::string::npos);
}

TEST(MonitorVmCapability, KvmIoctlsDecideNotTheCpuFlag) {
  // V1: a nested/PVM host without vmx/svm in /proc/cpuinfo whose KVM answers
  // the ioctls is capable (the flag only warns); a failing probe is not,
  // whatever the flags say.
  TempTree tools = all_tools();
  VmCapabilityOptions o = options(fixture("h100-node"), tools, /*kvm_ok=*/true);
  o.firmware = "";
  VmCapability cap = check_vm_capability(o);
  EXPECT_TRUE(cap.vm_capable);
  EXPECT_TRUE(cap.errors.empty());
  o = options(fixture("monitor-vfio"), tools, /*kvm_ok=*/false);
  cap = check_vm_capability(o);
  EXPECT_FALSE(cap.vm_capable);
  ASSERT_FALSE(cap.errors.empty());
  EXPECT_NE(cap.errors[0].find("KVM"), std::string::npos) << cap.errors[0];
}

TEST(MonitorVmCapability, OptionsFromSettings) {
  auto o = vm_capability_options("tcg", "");
  EXPECT_TRUE(o.tcg);
  EXPECT_EQ(o.firmware, "");
  o = vm_capability_options("kvm", "auto");
  EXPECT_FALSE(o.tcg);
  EXPECT_EQ(o.firmware, "auto");
}

TEST(MonitorVmCapability, TcgNeedsNoKvmAndSeaBiosNoOvmf) {
  // The recorded H100 node (Firecracker guest, no vmx, no OVMF) can still run
  // VMs under software emulation with SeaBIOS (issue 10, VM_QEMU_ACCEL=tcg).
  TempTree tools = all_tools();
  VmCapabilityOptions o = options(fixture("h100-node"), tools, /*kvm_ok=*/false);
  o.tcg = true;
  o.firmware = "";
  VmCapability cap = check_vm_capability(o);
  EXPECT_TRUE(cap.vm_capable);
  EXPECT_TRUE(cap.errors.empty());
  o.firmware = "auto";  // OVMF still required when asked for
  cap = check_vm_capability(o);
  EXPECT_FALSE(cap.vm_capable);
  ASSERT_EQ(cap.errors.size(), 1u);
  EXPECT_NE(cap.errors[0].find("OVMF"), std::string::npos);
  o.firmware = "/usr/share/OVMF/OVMF_CODE_4M.fd";  // an explicit file
  cap = check_vm_capability(o);
  ASSERT_EQ(cap.errors.size(), 1u);
  EXPECT_EQ(cap.errors[0], "VM_FIRMWARE file not found: /usr/share/OVMF/OVMF_CODE_4M.fd");
  o.root = fixture("monitor-vfio");  // has that file
  EXPECT_TRUE(check_vm_capability(o).vm_capable);
  o.tcg = false;  // KVM path: the probe's answer counts again
  EXPECT_FALSE(check_vm_capability(o).vm_capable);
}

TEST(MonitorVmCapability, EachRequirementIsNeeded) {
  TempTree tools = all_tools();
  auto vfio = fixture("monitor-vfio");
  EXPECT_FALSE(check_vm_capability(options(vfio, tools, /*kvm_ok=*/false)).vm_capable);

  TempTree partial;
  partial.tool("qemu-system-x86_64");
  partial.tool("genisoimage");
  VmCapability cap = check_vm_capability(options(vfio, partial));
  EXPECT_FALSE(cap.vm_capable);
  ASSERT_EQ(cap.errors.size(), 1u);
  EXPECT_NE(cap.errors[0].find("qemu-img"), std::string::npos);
  EXPECT_EQ(cap.errors[0].find("genisoimage/mkisofs"), std::string::npos);
  EXPECT_EQ(cap.vfio_gpus.size(), 3u);  // GPU discovery does not depend on vm_capable

  TempTree not_executable;
  not_executable.write("bin/qemu-img", "");
  not_executable.tool("qemu-system-x86_64");
  not_executable.tool("mkisofs");
  EXPECT_FALSE(check_vm_capability(options(vfio, not_executable)).vm_capable);
}

TEST(MonitorVmCapability, RealSymlinksBuiltInModulesAndMissingModule) {
  TempTree t;
  // One NVIDIA GPU with its audio function, sysfs-style real symlinks.
  for (auto [addr, cls] : {std::pair{"0000:01:00.0", "0x030000"}, std::pair{"0000:01:00.1", "0x040300"}}) {
    std::string dev = std::string("sys/devices/pci0000:00/0000:00:01.0/") + addr;
    t.write(dev + "/class", std::string(cls) + "\n");
    t.write(dev + "/vendor", "0x10de\n");
    t.write(dev + "/device", "0x2684\n");
    fs::create_directories(t.dir / "sys/kernel/iommu_groups/14/devices");
    fs::create_symlink("../../../../kernel/iommu_groups/14", t.dir / dev / "iommu_group");
    fs::create_symlink("../../../../devices/pci0000:00/0000:00:01.0/" + std::string(addr),
                       t.dir / "sys/kernel/iommu_groups/14/devices" / addr);
    fs::create_directories(t.dir / "sys/bus/pci/devices");
    fs::create_symlink("../../../devices/pci0000:00/0000:00:01.0/" + std::string(addr),
                       t.dir / "sys/bus/pci/devices" / addr);
  }
  t.write("sys/bus/pci/devices/0000:01:00.0/label", "NVIDIA GeForce RTX 4090\n");
  // Built-in VFIO: no /proc/modules entries, only /sys/module/<name>.
  for (const char* m : {"vfio", "vfio_pci", "vfio_iommu_type1"}) fs::create_directories(t.dir / "sys/module" / m);
  TempTree tools = all_tools();

  VmCapability cap = check_vm_capability(options(t.dir, tools));
  ASSERT_EQ(cap.vfio_gpus.size(), 1u);
  const VfioGpu& g = cap.vfio_gpus[0];
  EXPECT_EQ(g.pci_address, "0000:01:00.0");
  EXPECT_EQ(g.name, "NVIDIA GeForce RTX 4090");
  EXPECT_EQ(g.device_id, "2684");
  EXPECT_EQ(g.iommu_group, 14);
  EXPECT_EQ(g.audio_pci, "0000:01:00.1");

  fs::remove(t.dir / "sys/module/vfio_iommu_type1");
  cap = check_vm_capability(options(t.dir, tools));
  EXPECT_TRUE(cap.vfio_gpus.empty());
  bool warned = false;
  for (auto& w : cap.warnings) warned |= w.find("vfio_iommu_type1") != std::string::npos;
  EXPECT_TRUE(warned);

  // A dangling iommu_group link means "no group".
  fs::create_directories(t.dir / "sys/module/vfio_iommu_type1");
  fs::remove_all(t.dir / "sys/kernel/iommu_groups/14");
  fs::create_directories(t.dir / "sys/kernel/iommu_groups/99/devices");
  EXPECT_TRUE(check_vm_capability(options(t.dir, tools)).vfio_gpus.empty());
}

TEST(MonitorVmCapability, KvmProbeErrors) {
  std::string err;
  EXPECT_FALSE(probe_kvm("/nonexistent/kvm", err));
  EXPECT_NE(err.find("not found"), std::string::npos);
  err.clear();
  EXPECT_FALSE(probe_kvm(fixture("monitor-vfio") / "dev/kvm", err));  // a plain file: ioctls fail
  EXPECT_FALSE(err.empty());
}

TEST(MonitorVmCapability, LiveCheckIsCachedAndSafe) {
  const VmCapability& a = vm_capability();
  const VmCapability& b = vm_capability();
  EXPECT_EQ(&a, &b);
  if (!a.vm_capable) {
    EXPECT_FALSE(a.errors.empty());
  }
}

// VFIO group handling, bind/unbind, audio companions and ACS override
// (vm.md §12, V5/V21/V22) against the recorded monitor-vfio sysfs tree,
// copied to a scratch root where a small fake "kernel" moves the `driver`
// links when the bind/unbind/drivers_probe attributes are written.
#include <gtest/gtest.h>

#include "source_dir.hpp"
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <set>
#include <thread>

#include "vm/vfio.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::read_file;
using kr::vm::testing::TempDir;
namespace fs = std::filesystem;

namespace {

fs::path fixture() { return fs::path(kr_source_dir()) / "tests/fixtures/monitor-vfio/root"; }

struct FakeKernel {
  fs::path root;
  std::map<std::string, std::string> native;  // driver the kernel probes without an override
  std::set<std::string> slow_unbind;          // unbind works but the write hangs (consumer cards)
  std::set<std::string> stuck_unbind;         // unbind hangs and does nothing
  std::set<std::string> probe_skips_native;   // drivers_probe does not bring the native driver back
  std::vector<std::string> writes;            // "<path under sys/bus/pci> <- <data>"

  fs::path dev(const std::string& a) const { return root / "sys/bus/pci/devices" / a; }
  void attach(const std::string& a, const std::string& driver) {
    fs::remove(dev(a) / "driver");
    fs::create_symlink(root / "sys/bus/pci/drivers" / driver, dev(a) / "driver");
  }
  std::optional<std::string> driver(const std::string& a) const {
    std::error_code ec;
    auto t = fs::read_symlink(dev(a) / "driver", ec);
    if (ec) return std::nullopt;
    return t.filename().string();
  }

  SysfsWrite operator()(const fs::path& file, std::string_view data) {
    const std::string rel = file.lexically_relative(root / "sys/bus/pci").string();
    writes.push_back(rel + " <- " + (data == "\n" ? std::string("\\n") : std::string(data)));
    const std::string value(data);
    if (rel.starts_with("devices/") && rel.ends_with("/driver/unbind")) {
      const std::string a = rel.substr(8, rel.size() - 8 - 14);
      if (stuck_unbind.count(a)) return {SysfsWrite::Status::TimedOut, "timed out"};
      fs::remove(dev(a) / "driver");
      if (slow_unbind.count(a)) return {SysfsWrite::Status::TimedOut, "timed out"};
    } else if (rel.starts_with("devices/") && rel.ends_with("/driver_override")) {
      std::ofstream(file) << value;
    } else if (rel == "drivers_probe") {
      if (!driver(value)) {
        std::string override_to = read_file(dev(value) / "driver_override");
        while (!override_to.empty() && override_to.back() == '\n') override_to.pop_back();
        if (!override_to.empty()) {
          attach(value, override_to);
        } else if (native.count(value) && !probe_skips_native.count(value)) {
          attach(value, native[value]);
        }
      }
    } else if (rel.starts_with("drivers/") && rel.ends_with("/bind")) {
      const std::string d = rel.substr(8, rel.size() - 8 - 5);
      if (!driver(value)) attach(value, d);
    } else {
      return {SysfsWrite::Status::Failed, "unexpected write to " + rel};
    }
    return {};
  }
};

struct VfioTree {
  TempDir tmp;
  FakeKernel kernel;
  std::vector<std::vector<std::string>> commands;
  int persistenced_active = 0;  // exit status of `systemctl is-active`

  VfioTree() {
    fs::copy(fixture(), tmp.dir, fs::copy_options::recursive);
    kernel.root = tmp.dir;
    for (const char* d : {"nvidia", "vfio-pci", "snd_hda_intel", "amdgpu"})
      fs::create_directories(tmp.dir / "sys/bus/pci/drivers" / d);
    for (const char* a : {"0000:41:00.0", "0000:61:00.0", "0000:62:00.0", "0000:81:00.0"}) kernel.native[a] = "nvidia";
    for (const char* a : {"0000:41:00.1", "0000:61:00.1"}) kernel.native[a] = "snd_hda_intel";
    for (auto& [a, d] : kernel.native) kernel.attach(a, d);
    for (auto& [a, d] : kernel.native) std::ofstream(kernel.dev(a) / "driver_override") << "\n";
    std::ofstream(kernel.dev("0000:63:00.0") / "driver_override") << "\n";  // DMA endpoint, no driver
  }
  Vfio vfio() {
    VfioOptions o;
    o.root = tmp.dir;
    o.write = [this](const fs::path& f, std::string_view d) { return kernel(f, d); };
    o.run = [this](const std::vector<std::string>& argv) {
      commands.push_back(argv);
      if (argv.size() > 1 && argv[1] == "is-active") return persistenced_active;
      return 0;
    };
    return Vfio(o);
  }
};

using Cmd = std::vector<std::string>;
const Cmd kIsActive = {"systemctl", "is-active", "--quiet", "nvidia-persistenced"};
const Cmd kStop = {"systemctl", "stop", "nvidia-persistenced"};
const Cmd kStart = {"systemctl", "start", "nvidia-persistenced"};

}  // namespace

TEST(VfioGroups, MembersWithoutBridges) {
  VfioTree t;
  Vfio v = t.vfio();
  EXPECT_EQ(v.group_of("0000:61:00.0"), 53);
  EXPECT_EQ(v.group_members("0000:61:00.0"),
            (std::vector<std::string>{"0000:61:00.0", "0000:61:00.1", "0000:62:00.0", "0000:63:00.0"}));
  EXPECT_EQ(v.group_members("0000:41:00.1"), (std::vector<std::string>{"0000:41:00.0", "0000:41:00.1"}));
  EXPECT_FALSE(v.group_of("0000:81:00.0"));
  EXPECT_EQ(v.group_members("0000:81:00.0"), (std::vector<std::string>{"0000:81:00.0"}));
  EXPECT_EQ(v.driver_of("0000:41:00.0"), "nvidia");
  EXPECT_FALSE(v.driver_of("0000:63:00.0"));
}

TEST(VfioBind, GroupMovesToVfioPciInOrder) {
  VfioTree t;
  Vfio v = t.vfio();
  EXPECT_EQ(v.bind_group("0000:41:00.0"), (std::vector<std::string>{"0000:41:00.0", "0000:41:00.1"}));
  EXPECT_EQ(v.driver_of("0000:41:00.0"), "vfio-pci");
  EXPECT_EQ(v.driver_of("0000:41:00.1"), "vfio-pci");
  EXPECT_EQ(t.kernel.writes, (std::vector<std::string>{
                                 "devices/0000:41:00.0/driver/unbind <- 0000:41:00.0",
                                 "devices/0000:41:00.0/driver_override <- vfio-pci",
                                 "drivers_probe <- 0000:41:00.0",
                                 "devices/0000:41:00.1/driver/unbind <- 0000:41:00.1",
                                 "devices/0000:41:00.1/driver_override <- vfio-pci",
                                 "drivers_probe <- 0000:41:00.1",
                             }));
  // persistenced stopped before unbinding the nvidia function, started after the group.
  EXPECT_EQ(t.commands, (std::vector<Cmd>{kIsActive, kStop, kStart}));

  // Already bound: nothing written, nothing restarted.
  t.kernel.writes.clear();
  t.commands.clear();
  EXPECT_TRUE(v.bind_group("0000:41:00.0").empty());
  EXPECT_TRUE(t.kernel.writes.empty());
  EXPECT_TRUE(t.commands.empty());
}

TEST(VfioBind, UnboundEndpointAndInactivePersistenced) {
  VfioTree t;
  t.persistenced_active = 3;
  Vfio v = t.vfio();
  EXPECT_EQ(v.bind_group("0000:62:00.0").size(), 4u);
  for (const char* a : {"0000:61:00.0", "0000:61:00.1", "0000:62:00.0", "0000:63:00.0"})
    EXPECT_EQ(v.driver_of(a), "vfio-pci") << a;
  EXPECT_FALSE(v.driver_of("0000:60:00.0"));  // the bridge is left alone
  // No stop when not active; one start after the group.
  EXPECT_EQ(std::count(t.commands.begin(), t.commands.end(), kStop), 0);
  EXPECT_EQ(t.commands.back(), kStart);
}

TEST(VfioBind, FallsBackToExplicitBind) {
  VfioTree t;
  Vfio v = t.vfio();
  // drivers_probe ignores the override (older kernels): vfio-pci/bind is written.
  VfioOptions o;
  o.root = t.tmp.dir;
  o.run = [](const Cmd&) { return 1; };
  o.write = [&t](const fs::path& f, std::string_view d) -> SysfsWrite {
    if (f.filename() == "drivers_probe") return {};
    return t.kernel(f, d);
  };
  Vfio v2(o);
  EXPECT_TRUE(v2.bind_device("0000:41:00.1"));
  EXPECT_EQ(v.driver_of("0000:41:00.1"), "vfio-pci");
  EXPECT_EQ(t.kernel.writes.back(), "drivers/vfio-pci/bind <- 0000:41:00.1");
}

TEST(VfioBind, SlowUnbindThatTookEffectIsFine) {
  VfioTree t;
  t.kernel.slow_unbind.insert("0000:41:00.0");
  Vfio v = t.vfio();
  EXPECT_TRUE(v.bind_device("0000:41:00.0"));
  EXPECT_EQ(v.driver_of("0000:41:00.0"), "vfio-pci");
}

TEST(VfioBind, StuckUnbindFailsAndStopsTheGroup) {
  VfioTree t;
  t.kernel.stuck_unbind.insert("0000:61:00.1");
  Vfio v = t.vfio();
  try {
    v.bind_group("0000:61:00.0");
    FAIL() << "no error";
  } catch (const VfioError& e) {
    EXPECT_EQ(std::string(e.what()), "Unbind timed out and 0000:61:00.1 still bound to snd_hda_intel");
  }
  EXPECT_EQ(v.driver_of("0000:61:00.0"), "vfio-pci");  // moved before the failure (caller rolls back, V5)
  EXPECT_EQ(v.driver_of("0000:62:00.0"), "nvidia");    // never reached
  EXPECT_EQ(t.commands.back(), kStart);                // a group touched: persistenced restarted
}

TEST(VfioBind, UnreadableVendorIsAnError) {
  VfioTree t;
  fs::remove(t.kernel.dev("0000:41:00.1") / "vendor");
  Vfio v = t.vfio();
  EXPECT_THROW(v.bind_device("0000:41:00.1"), VfioError);
  EXPECT_EQ(v.driver_of("0000:41:00.1"), "snd_hda_intel");
}

TEST(VfioUnbind, GroupGoesBackToItsDrivers) {
  VfioTree t;
  Vfio v = t.vfio();
  v.bind_group("0000:61:00.0");
  t.kernel.writes.clear();
  t.commands.clear();
  t.kernel.probe_skips_native.insert("0000:62:00.0");  // nvidia must be bound explicitly
  EXPECT_TRUE(v.unbind_group("0000:62:00.0").empty());
  EXPECT_EQ(v.driver_of("0000:61:00.0"), "nvidia");
  EXPECT_EQ(v.driver_of("0000:61:00.1"), "snd_hda_intel");
  EXPECT_EQ(v.driver_of("0000:62:00.0"), "nvidia");
  EXPECT_FALSE(v.driver_of("0000:63:00.0"));  // no native driver
  EXPECT_NE(std::find(t.kernel.writes.begin(), t.kernel.writes.end(), "drivers/nvidia/bind <- 0000:62:00.0"),
            t.kernel.writes.end());
  EXPECT_NE(std::find(t.kernel.writes.begin(), t.kernel.writes.end(), "devices/0000:61:00.0/driver_override <- \\n"),
            t.kernel.writes.end());
  // The audio function (vendor 10de too in this tree) and GPUs stop persistenced; it is started once at the end.
  EXPECT_EQ(t.commands.back(), kStart);
  EXPECT_EQ(std::count(t.commands.begin(), t.commands.end(), kStart), 1);
  // Not on vfio-pci: nothing to do.
  t.kernel.writes.clear();
  EXPECT_TRUE(v.unbind_group("0000:41:00.0").empty());
  EXPECT_TRUE(t.kernel.writes.empty());
}

TEST(VfioUnbind, ContinuesPastFailures) {
  VfioTree t;
  Vfio v = t.vfio();
  v.bind_group("0000:61:00.0");
  t.kernel.stuck_unbind.insert("0000:61:00.1");
  const auto errors = v.unbind_group("0000:61:00.0");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "Unbind timed out and 0000:61:00.1 still bound to vfio-pci");
  EXPECT_EQ(v.driver_of("0000:62:00.0"), "nvidia");  // later members still handled
}

TEST(VfioPassthrough, GpusWithAudioCompanions) {
  kr::monitor::VmCapabilityOptions o;
  o.root = fixture();
  o.use_lspci = false;
  const auto gpus = kr::monitor::discover_vfio_gpus(o);
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(passthrough_addresses({1, 0}, gpus),
            (std::vector<std::string>{"0000:61:00.0", "0000:61:00.1", "0000:41:00.0", "0000:41:00.1"}));
  EXPECT_EQ(passthrough_addresses({2}, gpus), (std::vector<std::string>{"0000:62:00.0"}));
  EXPECT_EQ(passthrough_addresses({0, 0}, gpus), (std::vector<std::string>{"0000:41:00.0", "0000:41:00.1"}));
  EXPECT_TRUE(passthrough_addresses({}, gpus).empty());
  try {
    passthrough_addresses({0, 5}, gpus);  // V22: unknown ids fail
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "GPU 5 is not a VFIO GPU on this node (available: 0, 1, 2)");
  }
  EXPECT_THROW(passthrough_addresses({0}, {}), std::invalid_argument);
}

TEST(VfioPassthrough, RecordedH100NodeHasNoVfioGpus) {
  // The recorded GPU node has no IOMMU groups: its GPU cannot be passed through.
  kr::monitor::VmCapabilityOptions o;
  o.root = fs::path(kr_source_dir()) / "tests/fixtures/h100-node/root";
  o.use_lspci = false;
  const auto gpus = kr::monitor::discover_vfio_gpus(o);
  EXPECT_TRUE(gpus.empty());
  EXPECT_FALSE(acs_override_wanted(true, gpus));  // V21
  EXPECT_THROW(passthrough_addresses({0}, gpus), std::invalid_argument);
}

TEST(VfioDriverVersion, FromSysModule) {
  TempDir tmp;
  EXPECT_FALSE(nvidia_driver_version_from_sysfs(tmp.dir));
  tmp.write("sys/module/nvidia/version", "580.159.04\n");
  EXPECT_EQ(nvidia_driver_version_from_sysfs(tmp.dir), "580.159.04");
}

TEST(SysfsWriteTimeout, RegularFileMissingFileAndHang) {
  TempDir tmp;
  const auto f = tmp.write("attr", "");
  EXPECT_EQ(write_sysfs(f, "vfio-pci").status, SysfsWrite::Status::Done);
  EXPECT_EQ(read_file(f), "vfio-pci");
  const auto missing = write_sysfs(tmp.dir / "nope/attr", "x");
  EXPECT_EQ(missing.status, SysfsWrite::Status::Failed);
  EXPECT_FALSE(missing.error.empty());
  // A FIFO nobody reads blocks the writer, like an unbind that hangs.
  const auto fifo = tmp.dir / "hang";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(write_sysfs(fifo, "0000:41:00.0", std::chrono::milliseconds(200)).status, SysfsWrite::Status::TimedOut);
  // Release the stuck helper thread before the directory goes away.
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(rd, 0);
  char buf[64];
  while (::read(rd, buf, sizeof buf) > 0) {
  }
  ::close(rd);
}

TEST(AcsOverride, OnlyWithVfioGpus) {
  kr::monitor::VfioGpu gpu;
  EXPECT_FALSE(acs_override_wanted(true, {}));
  EXPECT_FALSE(acs_override_wanted(false, {gpu}));
  EXPECT_TRUE(acs_override_wanted(true, {gpu}));
}

TEST(AcsOverride, UpstreamsCommands) {
  const std::string lspci =
      "00:00.0 Host bridge: Advanced Micro Devices, Inc. [AMD] Starship/Matisse Root Complex\n"
      "00:01.1 PCI bridge: Advanced Micro Devices, Inc. [AMD] Starship/Matisse GPP Bridge\n"
      "00:03.1 PCI bridge: Intel Corporation Device 2bb0 (PCI Express Root Port #1)\n"
      "41:00.0 VGA compatible controller: NVIDIA Corporation GA102 [GeForce RTX 3090] (rev a1)\n";
  const std::string plx = "60:00.0 PCI bridge: PLX Technology, Inc. PEX 8747 48-Lane (rev ca)\n";
  const auto cmds = acs_override_commands(lspci, plx);
  std::vector<Cmd> argv;
  for (const auto& c : cmds) argv.push_back(c.argv);
  EXPECT_EQ(argv, (std::vector<Cmd>{
                      {"setpci", "-s", "00:03.1", "ECAP_ACS+6.w=0000"},
                      {"setpci", "-s", "60:00.0", "ECAP_ACS+6.w=0000"},
                      {"setpci", "-s", "60:00.0", "0x154.w=0000"},
                      {"setpci", "-s", "60:00.0", "0xf2a.w=0000"},
                      {"setpci", "-s", "00:01.1", "ECAP_ACS+6.w=0000"},
                      {"setpci", "-s", "00:03.1", "ECAP_ACS+6.w=0000"},
                  }));
  EXPECT_EQ(cmds.front().kind, AcsCommand::Kind::RootPort);
  EXPECT_EQ(cmds.back().kind, AcsCommand::Kind::PciBridge);
  EXPECT_TRUE(acs_override_commands("", "").empty());
}

TEST(AcsOverride, AppliesTheWritesAndCountsWhatSucceeded) {
  std::vector<Cmd> ran;
  const AcsRunner run = [&](const Cmd& argv) -> AcsRunResult {
    ran.push_back(argv);
    if (argv == Cmd{"lspci"})
      return {0,
              "00:01.1 PCI bridge: AMD GPP Bridge\n"
              "00:03.1 PCI bridge: Intel Device (PCI Express Root Port #1)\n"
              "00:04.0 PCI bridge: Intel Device (PCI Express Root Port #2)\n"};
    if (argv == Cmd{"lspci", "-d", "10b5:"}) return {0, "60:00.0 PCI bridge: PLX PEX 8747\n"};
    // 00:04.0 refuses its write; one PLX write fails (ignored).
    if (argv[2] == "00:04.0") return {1, "setpci: permission denied"};
    if (argv[3] == "0x154.w=0000") return {1, "no such register"};
    return {0, ""};
  };
  const auto r = apply_acs_override(run);
  EXPECT_EQ(r.root_ports, 1);
  EXPECT_EQ(r.plx_switches, 1);
  EXPECT_EQ(r.pci_bridges, 2);  // 00:01.1 and 00:03.1 (the root port is also a bridge line)
  ASSERT_EQ(r.errors.size(), 2u);  // 00:04.0 twice: as root port and as bridge
  EXPECT_NE(r.errors[0].find("00:04.0"), std::string::npos);
  EXPECT_EQ(ran.size(), 2u + 2 + 3 + 3);  // two lspci, two root ports, three PLX writes, three bridges
}

TEST(AcsOverride, FailingLspciEndsThePass) {
  int calls = 0;
  const auto r = apply_acs_override([&](const Cmd&) -> AcsRunResult {
    ++calls;
    return {127, "lspci: not found"};
  });
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("lspci failed"), std::string::npos);
  EXPECT_EQ(r.root_ports + r.plx_switches + r.pci_bridges, 0);
}

// TAP/MAC derivation vectors and instance paths (vm.md §1).
#include <gtest/gtest.h>

#include "vm/names.hpp"

using namespace kr::vm;

TEST(VmNames, Sha3_224IsFips202NotKeccak) {
  // FIPS 202 test vector for the empty message.
  EXPECT_EQ(sha3_224_hex(""), "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7");
  EXPECT_EQ(sha3_224_hex("abc"), "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf");
}

TEST(VmNames, SpecVectors) {
  EXPECT_EQ(tap_name(42), "tap-1ef51593");
  EXPECT_EQ(mac_address(42), "52:54:00:1e:f5:15");
  EXPECT_EQ(tap_name(1234567890123456789LL), "tap-8a503734");
  EXPECT_EQ(mac_address(1234567890123456789LL), "52:54:00:8a:50:37");
}

TEST(VmNames, MacTailIsTheTapSuffixHead) {
  for (std::int64_t id : {1LL, 7LL, 99LL, 123456LL, 9223372036854775807LL}) {
    const std::string tap = tap_name(id), mac = mac_address(id);
    ASSERT_EQ(tap.size(), 12u);
    EXPECT_EQ(mac.substr(9, 2) + mac.substr(12, 2) + mac.substr(15, 2), tap.substr(4, 6)) << id;
  }
}

TEST(VmNames, NamesAndPaths) {
  EXPECT_EQ(vm_container_name(42), "vm-42");
  EXPECT_EQ(vm_hostname(42), "kohaku-vm-42");
  const VmPaths p = vm_paths("/var/lib/kohakuriver/vm-instances", "/run/kohakuriver/vm", 42);
  EXPECT_EQ(p.instance_dir, "/var/lib/kohakuriver/vm-instances/42");
  EXPECT_EQ(p.root_disk, "/var/lib/kohakuriver/vm-instances/42/root.qcow2");
  EXPECT_EQ(p.seed_iso, "/var/lib/kohakuriver/vm-instances/42/seed.iso");
  EXPECT_EQ(p.serial_log, "/var/lib/kohakuriver/vm-instances/42/serial.log");
  EXPECT_EQ(p.pid_file, "/var/lib/kohakuriver/vm-instances/42/qemu.pid");
  EXPECT_EQ(p.start_err, "/var/lib/kohakuriver/vm-instances/42/qemu_start.err");
  EXPECT_EQ(p.cmd_json, "/var/lib/kohakuriver/vm-instances/42/qemu_cmd.json");
  EXPECT_EQ(p.state_json, "/var/lib/kohakuriver/vm-instances/42/vm-state.json");
  EXPECT_EQ(p.qmp_socket, "/run/kohakuriver/vm/42.qmp");
}

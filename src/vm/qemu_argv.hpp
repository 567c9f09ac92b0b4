// The QEMU command line of a VM (vm.md §5) and the operator settings that
// adapt it to emulation (decisions: V1/V2/V3, "VM settings for emulation").
//
// With the production settings (accel kvm, cpu host, OVMF found) the argv is
// exactly upstream's, plus one pflash drive for the per-VM UEFI variables
// when the OVMF VARS template exists (V2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vm/names.hpp"

namespace kr::vm {

enum class Accel { Kvm, Tcg };

// "kvm" / "tcg"; nullopt otherwise.
std::optional<Accel> parse_accel(std::string_view text);
std::string to_string(Accel accel);

// VM_QEMU_CPU: empty means "host" under KVM and "max" under TCG (QEMU refuses
// -cpu host without KVM).
std::string resolve_cpu_model(Accel accel, const std::string& setting);

// Searched in this order when VM_FIRMWARE is "auto" (upstream's argv order).
const std::vector<std::string>& ovmf_code_candidates();

struct Firmware {
  std::filesystem::path code;                          // read-only OVMF CODE image
  std::optional<std::filesystem::path> vars_template;  // OVMF VARS image to copy per VM
};

// VM_FIRMWARE: "auto" → first existing candidate (none: SeaBIOS, as upstream);
// "" → SeaBIOS (nullopt); a path → that OVMF CODE file, which must exist.
// `root` prefixes every path (tests). The VARS template is the CODE file's
// sibling with CODE replaced by VARS (OVMF_CODE_4M.fd → OVMF_VARS_4M.fd),
// when present. Throws std::runtime_error for a configured path that is missing.
std::optional<Firmware> resolve_firmware(const std::string& setting,
                                         const std::filesystem::path& root = "/");

struct QemuArgvSpec {
  Accel accel = Accel::Kvm;
  std::string cpu_model = "host";  // already resolved
  int vcpus = 1;
  int memory_mb = 4096;
  VmPaths paths;
  std::optional<std::filesystem::path> firmware_code;  // nullopt: SeaBIOS
  bool firmware_vars = false;                         // attach paths.ovmf_vars as 2nd pflash
  std::string tap;
  std::string mac;
  std::filesystem::path shared_data_dir;  // {SHARED_DIR}/shared_data (9p kohaku_shared)
  std::filesystem::path local_dir;        // {VM_INSTANCES_DIR}/{id}/local_temp (9p kohaku_local)
  std::vector<std::string> vfio_pci;      // passed devices, in order
};

// One element per argv entry, argv[0] = "qemu-system-x86_64". Throws
// std::invalid_argument when a path or name would change the meaning of a
// QEMU option (a ',' or a control character), or on non-positive sizes.
std::vector<std::string> qemu_argv(const QemuArgvSpec& spec);

}  // namespace kr::vm

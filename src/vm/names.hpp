// Names and paths derived from a VM's task id (vm.md §1).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kr::vm {

// FIPS-202 SHA3-224 of `data`, lower-case hex (56 chars). OpenSSL's digest.
std::string sha3_224_hex(std::string_view data);

// "tap-" + first 8 hex chars of SHA3-224(decimal id): tap-1ef51593 for 42.
std::string tap_name(std::int64_t task_id);
// "52:54:00:" + first 3 digest bytes: 52:54:00:1e:f5:15 for 42.
std::string mac_address(std::int64_t task_id);

// Task-store "container_name" of a VM: "vm-{id}" (how every module tells VMs apart).
std::string vm_container_name(std::int64_t task_id);
// cloud-init instance-id and local-hostname: "kohaku-vm-{id}".
std::string vm_hostname(std::int64_t task_id);

// Files of one VM. instance = {VM_INSTANCES_DIR}/{id}; the QMP socket lives in
// the run directory ({VM_RUN_DIR}, default /run/kohakuriver/vm).
struct VmPaths {
  std::filesystem::path instance_dir;
  std::filesystem::path root_disk;    // root.qcow2
  std::filesystem::path seed_iso;     // seed.iso
  std::filesystem::path serial_log;   // serial.log
  std::filesystem::path pid_file;     // qemu.pid
  std::filesystem::path start_err;    // qemu_start.err
  std::filesystem::path cmd_json;     // qemu_cmd.json
  std::filesystem::path state_json;   // vm-state.json
  std::filesystem::path ovmf_vars;    // OVMF_VARS.fd (per-VM UEFI variables, decision V2)
  std::filesystem::path qmp_socket;   // {run_dir}/{id}.qmp
};

VmPaths vm_paths(const std::filesystem::path& instances_dir, const std::filesystem::path& run_dir,
                 std::int64_t task_id);

}  // namespace kr::vm

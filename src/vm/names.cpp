#include "vm/names.hpp"

#include <openssl/evp.h>

#include <array>
#include <stdexcept>

namespace kr::vm {

std::string sha3_224_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md.data(), &len, EVP_sha3_224(), nullptr) != 1 || len != 28)
    throw std::runtime_error("SHA3-224 digest failed (OpenSSL)");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

std::string tap_name(std::int64_t task_id) {
  return "tap-" + sha3_224_hex(std::to_string(task_id)).substr(0, 8);
}

std::string mac_address(std::int64_t task_id) {
  const std::string h = sha3_224_hex(std::to_string(task_id));
  return "52:54:00:" + h.substr(0, 2) + ":" + h.substr(2, 2) + ":" + h.substr(4, 2);
}

std::string vm_container_name(std::int64_t task_id) { return "vm-" + std::to_string(task_id); }

std::string vm_hostname(std::int64_t task_id) { return "kohaku-vm-" + std::to_string(task_id); }

VmPaths vm_paths(const std::filesystem::path& instances_dir, const std::filesystem::path& run_dir,
                 std::int64_t task_id) {
  const std::string id = std::to_string(task_id);
  VmPaths p;
  p.instance_dir = instances_dir / id;
  p.root_disk = p.instance_dir / "root.qcow2";
  p.seed_iso = p.instance_dir / "seed.iso";
  p.serial_log = p.instance_dir / "serial.log";
  p.pid_file = p.instance_dir / "qemu.pid";
  p.start_err = p.instance_dir / "qemu_start.err";
  p.cmd_json = p.instance_dir / "qemu_cmd.json";
  p.state_json = p.instance_dir / "vm-state.json";
  p.ovmf_vars = p.instance_dir / "OVMF_VARS.fd";
  p.qmp_socket = run_dir / (id + ".qmp");
  return p;
}

}  // namespace kr::vm

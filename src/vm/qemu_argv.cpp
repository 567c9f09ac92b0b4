#include "vm/qemu_argv.hpp"

#include <stdexcept>
#include <system_error>

namespace kr::vm {

namespace fs = std::filesystem;

std::optional<Accel> parse_accel(std::string_view text) {
  if (text == "kvm") return Accel::Kvm;
  if (text == "tcg") return Accel::Tcg;
  return std::nullopt;
}

std::string to_string(Accel accel) { return accel == Accel::Kvm ? "kvm" : "tcg"; }

std::string resolve_cpu_model(Accel accel, const std::string& setting) {
  if (!setting.empty()) return setting;
  return accel == Accel::Kvm ? "host" : "max";
}

const std::vector<std::string>& ovmf_code_candidates() {
  static const std::vector<std::string> list = {
      "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd",
      "/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/qemu/OVMF_CODE.fd"};
  return list;
}

namespace {

fs::path rooted(const fs::path& root, const fs::path& abs) {
  if (root == fs::path("/")) return abs;
  return root / abs.relative_path();
}

std::optional<fs::path> vars_template_for(const fs::path& root, const fs::path& code) {
  std::string name = code.filename().string();
  const auto pos = name.find("CODE");
  if (pos == std::string::npos) return std::nullopt;
  name.replace(pos, 4, "VARS");
  const fs::path vars = code.parent_path() / name;
  std::error_code ec;
  if (!fs::is_regular_file(rooted(root, vars), ec)) return std::nullopt;
  return vars;
}

// QEMU splits option values at ',' (",," escapes it); we refuse instead of
// escaping so the saved argv stays readable and identical to what ran.
const std::string& checked(const std::string& value, const char* what) {
  for (unsigned char c : value) {
    if (c == ',' || c < 0x20 || c == 0x7f)
      throw std::invalid_argument(std::string(what) + " must not contain ',' or control characters: " + value);
  }
  if (value.empty()) throw std::invalid_argument(std::string(what) + " is empty");
  return value;
}

}  // namespace

std::optional<Firmware> resolve_firmware(const std::string& setting, const fs::path& root) {
  std::error_code ec;
  if (setting.empty()) return std::nullopt;
  if (setting == "auto") {
    for (const std::string& candidate : ovmf_code_candidates()) {
      if (fs::exists(rooted(root, candidate), ec)) return Firmware{candidate, vars_template_for(root, candidate)};
    }
    return std::nullopt;  // upstream silently boots SeaBIOS then
  }
  const fs::path code = setting;
  if (!code.is_absolute()) throw std::runtime_error("VM_FIRMWARE must be an absolute path, \"auto\" or \"\": " + setting);
  if (!fs::is_regular_file(rooted(root, code), ec))
    throw std::runtime_error("VM_FIRMWARE file not found: " + setting);
  return Firmware{code, vars_template_for(root, code)};
}

std::vector<std::string> qemu_argv(const QemuArgvSpec& s) {
  if (s.vcpus < 1) throw std::invalid_argument("vCPU count must be positive");
  if (s.memory_mb < 1) throw std::invalid_argument("memory must be positive");
  const VmPaths& p = s.paths;
  std::vector<std::string> a = {"qemu-system-x86_64"};
  if (s.accel == Accel::Kvm) a.push_back("-enable-kvm");
  a.insert(a.end(), {"-machine", "q35,accel=" + to_string(s.accel), "-cpu", checked(s.cpu_model, "CPU model"),
                     "-smp", std::to_string(s.vcpus), "-m", std::to_string(s.memory_mb) + "M", "-daemonize",
                     "-pidfile", p.pid_file.string()});
  if (s.firmware_code) {
    a.insert(a.end(), {"-drive", "if=pflash,format=raw,readonly=on,file=" + checked(s.firmware_code->string(), "firmware path")});
    if (s.firmware_vars)
      a.insert(a.end(), {"-drive", "if=pflash,format=raw,file=" + checked(p.ovmf_vars.string(), "instance path")});
  }
  a.insert(a.end(),
           {"-drive", "file=" + checked(p.root_disk.string(), "instance path") + ",format=qcow2,if=virtio,cache=writeback",
            "-drive", "file=" + checked(p.seed_iso.string(), "instance path") + ",format=raw,if=virtio,media=cdrom,readonly=on",
            "-netdev", "tap,id=net0,ifname=" + checked(s.tap, "TAP name") + ",script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=net0,mac=" + checked(s.mac, "MAC address"),
            "-qmp", "unix:" + checked(p.qmp_socket.string(), "QMP socket path") + ",server,nowait",
            "-serial", "file:" + checked(p.serial_log.string(), "instance path"),
            "-display", "none",
            "-vga", "std",
            "-fsdev", "local,id=fs_shared,path=" + checked(s.shared_data_dir.string(), "shared directory") +
                          ",security_model=passthrough",
            "-device", "virtio-9p-pci,fsdev=fs_shared,mount_tag=kohaku_shared",
            "-fsdev", "local,id=fs_local,path=" + checked(s.local_dir.string(), "local temp directory") +
                          ",security_model=passthrough",
            "-device", "virtio-9p-pci,fsdev=fs_local,mount_tag=kohaku_local"});
  for (const std::string& pci : s.vfio_pci) a.insert(a.end(), {"-device", "vfio-pci,host=" + checked(pci, "PCI address")});
  return a;
}

}  // namespace kr::vm

#include "vm/qemu_instance.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <system_error>

#include "vm/process.hpp"
#include "vm/qmp_client.hpp"
#include "vm/validation.hpp"
#include "vm/vm_share.hpp"
#include "common/nofollow_dir.hpp"

namespace kr::vm {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string read_text(const fs::path& p, std::size_t limit = 16 * 1024) {
  std::ifstream in(p, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > limit) text.resize(limit);
  return text;
}

ProcessResult tool(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  ProcessOptions o;
  o.timeout = timeout;
  return run_process(argv, o);
}

void remove_runtime_files(const VmPaths& paths) {
  std::error_code ec;
  fs::remove(paths.pid_file, ec);
  fs::remove(paths.qmp_socket, ec);
}

std::optional<std::uint64_t> virtual_size(const fs::path& disk, std::string& error) {
  const ProcessResult r = tool({"qemu-img", "info", "--output=json", "-U", disk.string()});
  if (r.exit_code != 0) {
    error = trimmed(r.output);
    return std::nullopt;
  }
  try {
    return json::parse(r.output).at("virtual-size").get<std::uint64_t>();
  } catch (const json::exception& e) {
    error = std::string("unexpected qemu-img info output: ") + e.what();
    return std::nullopt;
  }
}

// Runs the launcher (the daemonizing parent) and returns the verified
// daemon pid. Cleans up the pid file and socket on failure (V5).
pid_t launch(const QemuSettings& settings, const VmPaths& paths, const std::vector<std::string>& argv) {
  if (auto running = verified_qemu_pid(paths))
    throw VmLaunchError("QEMU is already running for this VM (pid " + std::to_string(*running) + ")");
  remove_runtime_files(paths);  // stale ones from a killed QEMU
  ProcessOptions o;
  o.stderr_file = paths.start_err;
  o.new_session = true;  // plus KillMode=process in the unit: QEMU outlives the runner (V26)
  o.timeout = settings.launch_timeout;
  std::vector<std::string> command = settings.launch_prefix;
  command.insert(command.end(), argv.begin(), argv.end());
  const ProcessResult r = run_process(command, o);
  if (r.exit_code != 0) {
    // A launcher that hangs past the deadline may have left a daemon behind.
    if (auto pid = verified_qemu_pid(paths)) ::kill(*pid, SIGKILL);
    remove_runtime_files(paths);
    if (r.timed_out)
      throw VmLaunchError("QEMU failed to start: no answer within " +
                          std::to_string(settings.launch_timeout.count() / 1000) + " s");
    const std::string err = trimmed(read_text(paths.start_err));
    if (!err.empty()) throw VmLaunchError("QEMU failed to start: " + err);
    if (r.exit_code == -1 && !r.output.empty()) throw VmLaunchError("QEMU failed to start: " + r.output);
    throw VmLaunchError("QEMU failed (exit code " + std::to_string(r.exit_code) + ")");
  }
  const auto pid = read_pid_file(paths.pid_file);
  if (!pid) {
    remove_runtime_files(paths);
    throw VmLaunchError("QEMU did not write a valid pid file " + paths.pid_file.string());
  }
  if (!pid_exists(*pid) || !verified_qemu_pid(paths)) {
    remove_runtime_files(paths);
    throw VmLaunchError("QEMU daemon exited immediately after daemonize");
  }
  return *pid;
}

void save_argv(const VmPaths& paths, const std::vector<std::string>& argv) {
  const fs::path tmp = paths.cmd_json.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << json(argv).dump(2) << "\n";
    if (!out) throw VmLaunchError("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, paths.cmd_json, ec);
  if (ec) throw VmLaunchError("cannot write " + paths.cmd_json.string() + ": " + ec.message());
}

}  // namespace

LaunchedVm create_and_launch(const QemuSettings& settings, const LaunchRequest& req) {
  if (auto bad = image_name_error(req.image)) throw VmLaunchError(*bad);
  const VmPaths paths = vm_paths(settings.instances_dir, settings.run_dir, req.task_id);
  std::error_code ec;
  fs::path local_share;
  try {
    local_share = prepare_vm_share(settings.instances_dir, req.task_id);
  } catch (const NoFollowError& e) {
    throw VmLaunchError(e.what());
  }
  fs::create_directories(settings.run_dir, ec);
  if (ec) throw VmLaunchError("cannot create " + settings.run_dir.string() + ": " + ec.message());

  const fs::path base = settings.images_dir / (req.image + ".qcow2");
  if (!fs::is_regular_file(base, ec)) throw VmLaunchError("Base image not found: " + base.string());

  ProcessResult r = tool({"qemu-img", "create", "-q", "-f", "qcow2", "-b", fs::absolute(base).string(), "-F", "qcow2",
                          paths.root_disk.string()});
  if (r.exit_code != 0) throw VmLaunchError("Failed to create overlay disk: " + trimmed(r.output));
  if (req.disk_bytes) {
    std::string err;
    const auto current = virtual_size(paths.root_disk, err);
    if (!current) throw VmLaunchError("Cannot read the size of " + paths.root_disk.string() + ": " + err);
    if (*req.disk_bytes < *current)
      throw VmLaunchError("Requested disk size (" + std::to_string(*req.disk_bytes) +
                          " bytes) is smaller than the base image " + req.image + " (" + std::to_string(*current) +
                          " bytes)");
    if (*req.disk_bytes > *current) {
      r = tool({"qemu-img", "resize", "-q", paths.root_disk.string(), std::to_string(*req.disk_bytes)});
      if (r.exit_code != 0) throw VmLaunchError("Failed to resize the overlay disk: " + trimmed(r.output));
    }
  }

  bool vars = false;
  if (settings.firmware && settings.firmware->vars_template) {
    // Per-VM UEFI variables (V2), kept across restarts.
    if (!fs::exists(paths.ovmf_vars, ec)) {
      fs::copy_file(*settings.firmware->vars_template, paths.ovmf_vars, ec);
      if (ec) throw VmLaunchError("cannot copy OVMF variables: " + ec.message());
    }
    vars = true;
  }

  const auto iso_tool = find_iso_tool(settings.path_env);
  if (!iso_tool) throw VmLaunchError("genisoimage/mkisofs not found (apt install genisoimage)");
  try {
    write_seed_iso(seed_files(req.seed), paths.seed_iso, *iso_tool);
  } catch (const std::exception& e) {
    throw VmLaunchError(e.what());
  }

  QemuArgvSpec spec;
  spec.accel = settings.accel;
  spec.cpu_model = settings.cpu_model.empty() ? resolve_cpu_model(settings.accel, "") : settings.cpu_model;
  spec.vcpus = req.vcpus;
  spec.memory_mb = req.memory_mb;
  spec.paths = paths;
  if (settings.firmware) spec.firmware_code = settings.firmware->code;
  spec.firmware_vars = vars;
  spec.tap = req.tap;
  spec.mac = req.mac;
  spec.shared_data_dir = req.shared_data_dir;
  spec.local_dir = local_share;
  spec.vfio_pci = req.vfio_pci;
  std::vector<std::string> argv;
  try {
    argv = qemu_argv(spec);
  } catch (const std::invalid_argument& e) {
    throw VmLaunchError(e.what());
  }
  LaunchedVm vm{launch(settings, paths, argv), argv, paths};
  try {
    save_argv(paths, argv);
  } catch (...) {
    ::kill(vm.pid, SIGKILL);
    remove_runtime_files(paths);
    throw;
  }
  return vm;
}

LaunchedVm relaunch(const QemuSettings& settings, std::int64_t task_id, const std::vector<std::string>& argv) {
  if (argv.empty()) throw VmLaunchError("no saved QEMU command line");
  const VmPaths paths = vm_paths(settings.instances_dir, settings.run_dir, task_id);
  std::vector<std::string> run = argv;
  try {
    if (move_share_for_relaunch(settings.instances_dir, settings.legacy_share_root, task_id, run)) save_argv(paths, run);
  } catch (const NoFollowError& e) {
    throw VmLaunchError(e.what());
  }
  std::error_code ec;
  fs::create_directories(settings.run_dir, ec);
  return LaunchedVm{launch(settings, paths, run), run, paths};
}

std::optional<std::vector<std::string>> load_saved_argv(const VmPaths& paths) {
  std::ifstream in(paths.cmd_json);
  if (!in) return std::nullopt;
  try {
    auto argv = json::parse(in).get<std::vector<std::string>>();
    if (argv.empty()) return std::nullopt;
    return argv;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::vector<BaseImage> list_base_images(const fs::path& images_dir) {
  std::vector<BaseImage> out;
  std::error_code ec;
  for (fs::directory_iterator it(images_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string filename = it->path().filename().string();
    if (filename.size() <= 6 || !filename.ends_with(".qcow2")) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    BaseImage image;
    image.name = filename.substr(0, filename.size() - 6);
    image.filename = filename;
    image.size_bytes = static_cast<std::uint64_t>(st.st_size);
    image.modified_at = static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
    out.push_back(std::move(image));
  }
  std::sort(out.begin(), out.end(), [](const BaseImage& a, const BaseImage& b) { return a.name < b.name; });
  return out;
}

namespace {
// Alive and still this instance's QEMU (a reused pid is "gone").
bool still_ours(const VmPaths& paths, pid_t pid) {
  if (!pid_exists(pid)) return false;
  const auto cmdline = read_cmdline(pid);
  return cmdline && is_qemu_of_instance(*cmdline, paths);
}

// After a signal: a process on its way out loses its cmdline (its memory is
// released) before it becomes a zombie, and still holds the TAP device and
// the disk lock until then. It is gone only once it no longer runs at all,
// unless the pid now runs something else.
bool not_yet_gone(const VmPaths& paths, pid_t pid) {
  if (!pid_exists(pid)) return false;
  const auto cmdline = read_cmdline(pid);
  return !cmdline || is_qemu_of_instance(*cmdline, paths);
}
}  // namespace

boost::asio::awaitable<bool> shutdown_qemu(VmPaths paths, pid_t pid, std::chrono::milliseconds grace) {
  auto ex = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(ex);
  if (still_ours(paths, pid)) {
    bool asked = true;
    std::string why;
    try {
      co_await qmp_execute(paths.qmp_socket, "system_powerdown", nullptr, std::chrono::seconds(5));
    } catch (const QmpError& e) {
      asked = false;
      why = e.what();
    }
    if (!asked) spdlog::warn("VM pid {}: powerdown request failed: {}", pid, why);
    const auto until = std::chrono::steady_clock::now() + grace;
    while (asked && not_yet_gone(paths, pid) && std::chrono::steady_clock::now() < until) {
      timer.expires_after(std::chrono::milliseconds(250));
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
    if (not_yet_gone(paths, pid)) {
      spdlog::warn("VM pid {} did not power off; killing it", pid);
      co_return co_await kill_qemu(paths, pid, std::chrono::seconds(5));
    }
  }
  const bool gone = !not_yet_gone(paths, pid);
  if (gone) remove_runtime_files(paths);
  co_return gone;
}

boost::asio::awaitable<bool> kill_qemu(VmPaths paths, pid_t pid, std::chrono::milliseconds wait) {
  auto ex = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(ex);
  if (still_ours(paths, pid)) ::kill(pid, SIGKILL);
  const auto until = std::chrono::steady_clock::now() + wait;
  while (not_yet_gone(paths, pid) && std::chrono::steady_clock::now() < until) {
    timer.expires_after(std::chrono::milliseconds(100));
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  const bool gone = !not_yet_gone(paths, pid);
  if (gone) remove_runtime_files(paths);
  co_return gone;
}

}  // namespace kr::vm

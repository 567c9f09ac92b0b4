#include "cli/doctor_migration.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "store/python_store.hpp"
#include "store/state_store.hpp"

namespace kr::cli {

namespace fs = std::filesystem;

namespace {

std::string base(const std::string& p) { return fs::path(p).filename().string(); }

std::optional<std::string> read_small(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::string s;
  s.resize(64 * 1024);
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<std::size_t>(in.gcount()));
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

}  // namespace

bool is_python_runner_cmdline(const std::vector<std::string>& argv) {
  if (argv.empty() || base(argv[0]).rfind("python", 0) != 0) return false;
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "kohakuriver.cli.runner" || a == "kohakuriver.runner") return true;  // -m …
    const std::string b = base(a);
    if (b == "kohakuriver.runner") return true;
    if (b == "kohakuriver" && i + 1 < argv.size() && argv[i + 1] == "runner") return true;
  }
  return false;
}

CheckResult check_python_runner_process(const std::string& proc_root) {
  std::vector<std::string> pids;
  std::error_code ec;
  for (fs::directory_iterator it(proc_root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto raw = read_small(it->path() / "cmdline");
    if (!raw || raw->empty()) continue;
    std::vector<std::string> argv;
    std::string cur;
    for (char c : *raw) {
      if (c == '\0') {
        argv.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) argv.push_back(cur);
    if (is_python_runner_cmdline(argv)) pids.push_back(name);
  }
  if (pids.empty()) return {CheckStatus::Ok, "python-runner", "no Python runner process on this node", {}};
  std::string list;
  for (const auto& p : pids) list += (list.empty() ? "" : " ") + p;
  return {CheckStatus::Fail, "python-runner", "the Python runner is still running (pid " + list + ")",
          "stop it the way its unit does, so its tasks live on and are adopted: `systemctl stop "
          "kohakuriver-runner` (KillMode=process); one started by hand: `kill -KILL " + list +
              "` (SIGINT/SIGTERM reach its tasks through docker run). See docs/migration.md"};
}

CheckResult check_python_unit(const std::string& unit_dir) {
  const fs::path unit = fs::path(unit_dir) / "kohakuriver-runner.service";
  auto text = read_small(unit);
  if (!text) return {CheckStatus::Ok, "python-unit", "no " + unit.string(), {}};
  bool python = false, kill_process = false;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (line.rfind("ExecStart=", 0) == 0 &&
        (line.find("kohakuriver.cli.runner") != std::string::npos || line.find("python") != std::string::npos))
      python = true;
    if (line == "KillMode=process") kill_process = true;
  }
  if (!python) return {CheckStatus::Ok, "python-unit", unit.string() + " runs this runner", {}};
  const std::string fix_remove = "after stopping it: `rm " + unit.string() +
                                 " && systemctl daemon-reload`; it shadows the packaged unit (or run "
                                 "`kohakuriver init service --runner` to replace it). See docs/migration.md";
  if (kill_process)
    return {CheckStatus::Warn, "python-unit",
            unit.string() + " is the Python runner's unit (KillMode=process: stopping it keeps its tasks running)",
            fix_remove};
  return {CheckStatus::Warn, "python-unit",
          unit.string() + " is the Python runner's unit WITHOUT KillMode=process: stopping it also kills "
                          "every task it started",
          "first `systemctl edit kohakuriver-runner` and add [Service] KillMode=process (or drain the node), "
          "then " + fix_remove};
}

CheckResult check_python_store(const std::string& local_temp_dir, const std::string& state_dir) {
  const fs::path store = store::python_store_path(local_temp_dir);
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(store, ec))) return {CheckStatus::Ok, "python-store", "no " + store.string(), {}};
  const bool ours = fs::exists(fs::path(state_dir) / store::StateStore::kFileName, ec);
  if (!ours)
    return {CheckStatus::Info, "python-store",
            store.string() + " (the Python runner's state) will be read once, read only, on this runner's first "
                             "start: its tasks are adopted or reported lost",
            {}};
  return {CheckStatus::Info, "python-store",
          store.string() + " is the Python runner's state; this runner has its own state (" + state_dir +
              ") and does not read it again",
          "before a rollback to the Python runner, move it aside (docs/migration.md)"};
}

}  // namespace kr::cli

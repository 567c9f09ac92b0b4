// doctor's checks for a node switched from the Python runner (issue 18):
// process detection from /proc cmdlines, the unit upstream's `init service`
// writes, the Python runner's state store.
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "cli/doctor_migration.hpp"
#include "store/python_store.hpp"

namespace fs = std::filesystem;
using namespace kr::cli;

namespace {

struct Tmp {
  fs::path path;
  Tmp() {
    std::string t = (fs::temp_directory_path() / "kr-doctor-XXXXXX").string();
    if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp");
    path = t;
  }
  ~Tmp() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// Upstream init.py: ExecStart={python} -m kohakuriver.cli.runner --config …,
// kill_mode="process".
const char* kPythonUnit =
    "[Unit]\nDescription=KohakuRiver Runner Agent\nAfter=network.target docker.service\n\n[Service]\n"
    "Type=simple\nUser=root\nWorkingDirectory=/root/.kohakuriver\n"
    "ExecStart=/usr/bin/python3 -m kohakuriver.cli.runner --config /root/.kohakuriver/runner_config.py\n"
    "Restart=on-failure\nKillMode=process\n\n[Install]\nWantedBy=multi-user.target\n";

}  // namespace

TEST(DoctorMigration, RecognisesPythonRunnerCommandLines) {
  EXPECT_TRUE(is_python_runner_cmdline({"/usr/bin/python3", "-m", "kohakuriver.cli.runner", "--config", "x"}));
  EXPECT_TRUE(is_python_runner_cmdline({"/opt/venv/bin/python3.12", "/opt/venv/bin/kohakuriver.runner"}));
  EXPECT_TRUE(is_python_runner_cmdline({"python3", "/usr/local/bin/kohakuriver", "runner", "-c", "x"}));
  EXPECT_FALSE(is_python_runner_cmdline({"/usr/bin/kohakuriver", "runner"}));  // this runner
  EXPECT_FALSE(is_python_runner_cmdline({"python3", "/usr/local/bin/kohakuriver", "host"}));
  EXPECT_FALSE(is_python_runner_cmdline({"python3", "-m", "kohakuriver.cli.host"}));
  EXPECT_FALSE(is_python_runner_cmdline({"bash", "-c", "kohakuriver.runner"}));
  EXPECT_FALSE(is_python_runner_cmdline({}));
}

TEST(DoctorMigration, FindsARunningPythonRunnerInProc) {
  Tmp t;
  write(t.path / "1" / "cmdline", std::string("/sbin/init\0", 11));
  write(t.path / "self" / "cmdline", std::string("python3\0-m\0kohakuriver.cli.runner\0", 34));  // not a pid
  auto r = check_python_runner_process(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Ok) << r.result;
  write(t.path / "4242" / "cmdline", std::string("/usr/bin/python3\0-m\0kohakuriver.cli.runner\0--config\0x\0", 54));
  r = check_python_runner_process(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Fail);
  EXPECT_NE(r.result.find("4242"), std::string::npos) << r.result;
  EXPECT_NE(r.fix.find("systemctl stop kohakuriver-runner"), std::string::npos) << r.fix;
  EXPECT_NE(r.fix.find("kill -KILL 4242"), std::string::npos) << r.fix;
}

TEST(DoctorMigration, PythonUnitWithAndWithoutKillModeProcess) {
  Tmp t;
  auto r = check_python_unit(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Ok);
  write(t.path / "kohakuriver-runner.service", kPythonUnit);
  r = check_python_unit(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Warn);
  EXPECT_NE(r.result.find("KillMode=process: stopping it keeps its tasks running"), std::string::npos) << r.result;
  EXPECT_NE(r.fix.find("daemon-reload"), std::string::npos);
  std::string no_kill = kPythonUnit;
  no_kill.erase(no_kill.find("KillMode=process\n"), 17);
  write(t.path / "kohakuriver-runner.service", no_kill);
  r = check_python_unit(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Warn);
  EXPECT_NE(r.result.find("WITHOUT KillMode=process"), std::string::npos) << r.result;
  EXPECT_NE(r.fix.find("systemctl edit kohakuriver-runner"), std::string::npos) << r.fix;
  write(t.path / "kohakuriver-runner.service",
        "[Service]\nExecStart=/usr/bin/kohakuriver runner --config /etc/kohakuriver/runner_config.py\n"
        "KillMode=process\n");
  r = check_python_unit(t.path.string());
  EXPECT_EQ(r.status, CheckStatus::Ok) << r.result;
}

TEST(DoctorMigration, PythonStoreReadOnlyOnFirstStart) {
  Tmp t;
  const fs::path lt = t.path / "local", state = t.path / "state";
  auto r = check_python_store(lt.string(), state.string());
  EXPECT_EQ(r.status, CheckStatus::Ok);
  write(kr::store::python_store_path(lt), "x");
  r = check_python_store(lt.string(), state.string());
  EXPECT_EQ(r.status, CheckStatus::Info);
  EXPECT_NE(r.result.find("will be read once"), std::string::npos) << r.result;
  write(state / "runner-state.db", "x");
  r = check_python_store(lt.string(), state.string());
  EXPECT_NE(r.result.find("does not read it again"), std::string::npos) << r.result;
  EXPECT_NE(r.fix.find("move it aside"), std::string::npos);
}

// `kohakuriver init config` and `kohakuriver init service`.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "cli/cli.hpp"
#include "cli/init_commands.hpp"
#include "common/paths.hpp"
#include "config/config.hpp"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// HOME, the working directory and the unit-install variables point into a
// fresh temporary directory for each test and are restored afterwards.
class CliInit : public ::testing::Test {
protected:
    void SetUp() override {
        for (const char* name : {"HOME", "KR_SYSTEMD_UNIT_DIR", "KR_SYSTEMCTL"}) {
            const char* v = std::getenv(name);
            saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
        }
        saved_cwd_ = fs::current_path();
        char tmpl[] = "/tmp/kr_cli_init_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        fs::create_directories(root_ / "home");
        fs::create_directories(root_ / "cwd");
        ::setenv("HOME", (root_ / "home").c_str(), 1);
        ::unsetenv("KR_SYSTEMD_UNIT_DIR");
        ::setenv("KR_SYSTEMCTL", "", 1);  // never reach the real systemctl
        fs::current_path(root_ / "cwd");
    }
    void TearDown() override {
        fs::current_path(saved_cwd_);
        for (auto& [name, value] : saved_) {
            if (value) ::setenv(name.c_str(), value->c_str(), 1);
            else ::unsetenv(name.c_str());
        }
        std::error_code ec;
        fs::remove_all(root_, ec);
    }

    int run(std::vector<std::string> args) {
        args.insert(args.begin(), "kohakuriver");
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::ostringstream out, err;
        started_ = false;
        int rc = kr::cli::run_cli(
            static_cast<int>(args.size()), argv.data(),
            [&](kr::cli::RunnerLaunch& l) {
                started_ = true;
                launch_ = l;
                return 0;
            },
            out, err);
        out_ = out.str();
        err_ = err.str();
        return rc;
    }

    fs::path home() const { return root_ / "home"; }
    fs::path default_config() const { return home() / ".kohakuriver" / "runner_config.py"; }

    fs::path root_, saved_cwd_;
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
    std::string out_, err_;
    bool started_ = false;
    kr::cli::RunnerLaunch launch_;
};

TEST_F(CliInit, ConfigIsWrittenOnceAndNeverOverwritten) {
    EXPECT_EQ(run({"init", "config", "--runner"}), 0);
    ASSERT_TRUE(fs::exists(default_config()));
    EXPECT_EQ(slurp(default_config()), kr::cli::runner_config_template());
    EXPECT_NE(out_.find(default_config().string()), std::string::npos) << out_;
    EXPECT_NE(out_.find("kohakuriver runner --config " + default_config().string()), std::string::npos) << out_;

    std::ofstream(default_config()) << "RUNNER_PORT = 9999\n";
    EXPECT_EQ(run({"init", "config", "--runner"}), 0);
    EXPECT_NE(err_.find(default_config().string() + " already exists, skipping."), std::string::npos) << err_;
    EXPECT_EQ(slurp(default_config()), "RUNNER_PORT = 9999\n");
}

TEST_F(CliInit, GeneratedConfigStartsTheRunnerWithDefaults) {
    ASSERT_EQ(run({"init", "config", "-g"}), 0);
    EXPECT_NE(out_.find("host configuration is not generated"), std::string::npos) << out_;
    ASSERT_EQ(run({"runner"}), 0);
    ASSERT_TRUE(started_);
    EXPECT_EQ(launch_.config_source, default_config().string());
    EXPECT_EQ(launch_.config, kr::config::RunnerConfig{});
    EXPECT_TRUE(launch_.warnings.empty());
}

TEST_F(CliInit, ConfigOutputDirIsCreated) {
    const fs::path dir = root_ / "etc" / "kohakuriver";
    EXPECT_EQ(run({"init", "config", "--runner", "-o", dir.string()}), 0);
    EXPECT_TRUE(fs::exists(dir / "runner_config.py"));
    EXPECT_FALSE(fs::exists(default_config()));
    EXPECT_EQ(run({"init", "config", "--runner", "--output-dir", "rel"}), 0);
    EXPECT_TRUE(fs::exists(root_ / "cwd" / "rel" / "runner_config.py"));
}

TEST_F(CliInit, ConfigHostIsRefusedAndNoFlagOnlyExplains) {
    EXPECT_EQ(run({"init", "config", "--host"}), 2);
    EXPECT_NE(err_.find("not provided by this runner-only build"), std::string::npos) << err_;
    EXPECT_EQ(run({"init", "config", "--host", "--runner"}), 2);
    EXPECT_FALSE(fs::exists(default_config()));
    EXPECT_EQ(run({"init", "config"}), 0);
    EXPECT_NE(out_.find("kohakuriver init config --runner"), std::string::npos) << out_;
    EXPECT_FALSE(fs::exists(default_config()));
}

TEST_F(CliInit, ServiceNoInstallWritesUnitInCurrentDirectory) {
    const fs::path work = root_ / "work";
    fs::create_directories(work);
    ASSERT_EQ(run({"init", "service", "--runner", "--no-install", "--runner-config", "~/cfg/runner.py",
                   "--working-dir", work.string()}),
              0)
        << err_;
    const fs::path unit_path = root_ / "cwd" / "kohakuriver-runner.service";
    ASSERT_TRUE(fs::exists(unit_path));
    const std::string unit = slurp(unit_path);
    const std::string exe = kr::self_exe_path().string();
    const std::string config = (home() / "cfg" / "runner.py").string();
    EXPECT_NE(unit.find("\nExecStart=" + exe + " runner --config " + config + "\n"), std::string::npos) << unit;
    EXPECT_NE(unit.find("\nWorkingDirectory=" + work.string() + "\n"), std::string::npos) << unit;
    for (const char* line : {"[Unit]\n", "\nDescription=KohakuRiver Runner Agent\n",
                             "\nAfter=network.target docker.service\n", "\nWants=docker.service\n", "\n[Service]\n",
                             "\nType=notify\n", "\nNotifyAccess=main\n", "\nWatchdogSec=30\n", "\nRestart=on-failure\n",
                             "\nRestartSec=5\n", "\nKillMode=process\n", "\n[Install]\n",
                             "\nWantedBy=multi-user.target\n"})
        EXPECT_NE(unit.find(line), std::string::npos) << line;
    EXPECT_NE(unit.find("\nEnvironment=\"PATH=" + std::string(std::getenv("PATH")) + "\"\n"), std::string::npos)
        << unit;
    EXPECT_EQ(unit.find("User="), std::string::npos);  // runs as root
    EXPECT_EQ(unit.find('#'), std::string::npos);
    EXPECT_NE(err_.find("does not exist yet"), std::string::npos) << err_;  // the config is missing
    EXPECT_NE(out_.find("sudo systemctl daemon-reload"), std::string::npos) << out_;
}

TEST_F(CliInit, ServiceDefaultsToTheConfigDirectory) {
    ASSERT_EQ(run({"init", "config", "--runner"}), 0);
    ASSERT_EQ(run({"init", "service", "--runner", "--no-install", "--no-capture-env"}), 0) << err_;
    const std::string unit = slurp(root_ / "cwd" / "kohakuriver-runner.service");
    const fs::path dir = home() / ".kohakuriver";
    EXPECT_NE(unit.find("\nWorkingDirectory=" + dir.string() + "\n"), std::string::npos) << unit;
    EXPECT_NE(unit.find(" runner --config " + (dir / "runner_config.py").string() + "\n"), std::string::npos) << unit;
    EXPECT_EQ(unit.find("Environment="), std::string::npos) << unit;
    EXPECT_TRUE(err_.empty()) << err_;
    ASSERT_EQ(run({"init", "service", "--runner", "--no-install", "--capture-env"}), 0) << err_;
    EXPECT_NE(slurp(root_ / "cwd" / "kohakuriver-runner.service").find("\nEnvironment=\"PATH="), std::string::npos);
}

TEST_F(CliInit, ServiceInstallWritesUnitDirAndReloads) {
    const fs::path units = root_ / "units";
    fs::create_directories(units);
    const fs::path fake = root_ / "fake-systemctl";
    std::ofstream(fake) << "#!/bin/sh\necho \"$@\" >> " << (root_ / "systemctl.log").string() << "\n";
    fs::permissions(fake, fs::perms::owner_all);
    ::setenv("KR_SYSTEMD_UNIT_DIR", units.c_str(), 1);
    ::setenv("KR_SYSTEMCTL", fake.c_str(), 1);
    ASSERT_EQ(run({"init", "service", "--runner"}), 0) << err_;
    EXPECT_TRUE(fs::exists(units / "kohakuriver-runner.service"));
    EXPECT_FALSE(fs::exists(root_ / "cwd" / "kohakuriver-runner.service"));
    EXPECT_EQ(slurp(root_ / "systemctl.log"), "daemon-reload\n");
    EXPECT_NE(out_.find("systemctl enable --now kohakuriver-runner"), std::string::npos) << out_;
    EXPECT_NE(out_.find("journalctl -u kohakuriver-runner -f"), std::string::npos) << out_;

    // Re-running replaces the unit (e.g. after moving the binary).
    ASSERT_EQ(run({"init", "service", "--runner", "--runner-config", "/etc/kr.py"}), 0);
    EXPECT_NE(slurp(units / "kohakuriver-runner.service").find("--config /etc/kr.py\n"), std::string::npos);
}

TEST_F(CliInit, ServiceInstallWithoutSystemctlWarns) {
    ::setenv("KR_SYSTEMD_UNIT_DIR", root_.c_str(), 1);
    ASSERT_EQ(run({"init", "service", "--runner"}), 0);
    EXPECT_TRUE(fs::exists(root_ / "kohakuriver-runner.service"));
    EXPECT_NE(err_.find("WARNING: systemctl not found"), std::string::npos) << err_;
}

TEST_F(CliInit, ServiceInstallFailureIsExitOne) {
    ::setenv("KR_SYSTEMD_UNIT_DIR", (root_ / "no" / "such" / "dir").c_str(), 1);
    EXPECT_EQ(run({"init", "service", "--runner"}), 1);
    EXPECT_NE(err_.find("ERROR: cannot write"), std::string::npos) << err_;
}

TEST_F(CliInit, ServiceNeedsRunnerAndRefusesHost) {
    EXPECT_EQ(run({"init", "service"}), 1);
    EXPECT_EQ(run({"init", "service", "--host"}), 2);
    EXPECT_NE(err_.find("not provided by this runner-only build"), std::string::npos) << err_;
    EXPECT_NE(err_.find("this binary installs the runner service (kohakuriver-runner.service) only"),
              std::string::npos) << err_;
    EXPECT_EQ(run({"init", "service", "--all"}), 2);
    EXPECT_NE(err_.find("'init service --all' is not provided"), std::string::npos) << err_;
    EXPECT_EQ(run({"init", "service", "--runner", "--no-install", "--python-path", "/usr/bin/python3"}), 0);
    EXPECT_NE(err_.find("--python-path is ignored"), std::string::npos) << err_;
    // Upstream's own scripts pass --host-config with --runner (issue 18).
    EXPECT_EQ(run({"init", "service", "--runner", "--no-install", "--host-config", "/etc/kr/host_config.py"}), 0);
    EXPECT_NE(err_.find("--host-config is ignored"), std::string::npos) << err_;
    EXPECT_FALSE(started_);
}

TEST(CliUnitRendering, QuotesAndEscapesSystemdSyntax) {
    kr::cli::UnitParams p;
    p.exe = "/opt/kr 1/kohakuriver";
    p.config_path = "/etc/100%/$cfg.py";
    p.working_dir = "/srv/50%";
    p.path_env = "/bin:/x\"y";
    const std::string unit = kr::cli::render_runner_unit(p);
    EXPECT_NE(unit.find("\nExecStart=\"/opt/kr 1/kohakuriver\" runner --config /etc/100%%/$$cfg.py\n"),
              std::string::npos)
        << unit;
    EXPECT_NE(unit.find("\nWorkingDirectory=/srv/50%%\n"), std::string::npos) << unit;
    EXPECT_NE(unit.find("\nEnvironment=\"PATH=/bin:/x\\\"y\"\n"), std::string::npos) << unit;
}

}  // namespace

// `kohakuriver runner` / `kohakuriver.runner`: which configuration reaches
// the agent, and the exit codes of every way it can go wrong.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "cli/cli.hpp"

namespace fs = std::filesystem;
using kr::cli::RunnerLaunch;

namespace {

// Runs every test with HOME pointing at a fresh temporary directory.
class CliRunner : public ::testing::Test {
protected:
    void SetUp() override {
        if (const char* h = std::getenv("HOME")) saved_home_ = h;
        char tmpl[] = "/tmp/kr_cli_runner_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        home_ = tmpl;
        ::setenv("HOME", home_.c_str(), 1);
    }
    void TearDown() override {
        if (saved_home_) ::setenv("HOME", saved_home_->c_str(), 1);
        else ::unsetenv("HOME");
        std::error_code ec;
        fs::remove_all(home_, ec);
    }

    // Runs the CLI; `launched` is set when the agent would have started.
    int run(std::vector<std::string> args, int agent_rc = 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::ostringstream out, err;
        launched_.reset();
        int rc = kr::cli::run_cli(
            static_cast<int>(args.size()), argv.data(),
            [&](RunnerLaunch& l) {
                launched_ = l;
                return agent_rc;
            },
            out, err);
        out_ = out.str();
        err_ = err.str();
        return rc;
    }

    fs::path write(const fs::path& path, const std::string& text) {
        fs::create_directories(path.parent_path());
        std::ofstream(path) << text;
        return path;
    }
    fs::path default_config() const { return home_ / ".kohakuriver" / "runner_config.py"; }

    fs::path home_;
    std::optional<std::string> saved_home_;
    std::optional<RunnerLaunch> launched_;
    std::string out_, err_;
};

TEST_F(CliRunner, NoConfigFileMeansDefaultsAndAHint) {
    EXPECT_EQ(run({"kohakuriver", "runner"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config_source, "built-in defaults");
    EXPECT_EQ(launched_->config, kr::config::RunnerConfig{});
    EXPECT_NE(out_.find("using built-in defaults"), std::string::npos) << out_;
    EXPECT_NE(out_.find("kohakuriver init config --runner"), std::string::npos) << out_;
    EXPECT_NE(out_.find("Starting KohakuRiver Runner agent..."), std::string::npos) << out_;
}

TEST_F(CliRunner, AgentExitCodeIsReturned) {
    EXPECT_EQ(run({"kohakuriver", "runner"}, 3), 3);
}

TEST_F(CliRunner, AgentExceptionIsExitOne) {
    std::string a0 = "kohakuriver", a1 = "runner";
    char* argv[] = {a0.data(), a1.data(), nullptr};
    std::ostringstream out, err;
    int rc = kr::cli::run_cli(
        2, argv, [](RunnerLaunch&) -> int { throw std::runtime_error("state DB cannot be opened"); }, out, err);
    EXPECT_EQ(rc, 1);
    EXPECT_NE(err.str().find("ERROR: state DB cannot be opened"), std::string::npos);
}

TEST_F(CliRunner, DefaultPathIsLoaded) {
    write(default_config(), "HOST_ADDRESS = '10.1.1.1'\n");
    EXPECT_EQ(run({"kohakuriver", "runner"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.host_address, "10.1.1.1");
    EXPECT_EQ(launched_->config_source, default_config().string());
    EXPECT_NE(out_.find("Loading configuration from: " + default_config().string()), std::string::npos);
}

TEST_F(CliRunner, BrokenDefaultFileIsAnErrorNotAFallback) {
    write(default_config(), "HOST_ADDRESS = '10.1.1.1'\nHOST_PORT = 'eight thousand'\n");
    EXPECT_EQ(run({"kohakuriver", "runner"}), 1);
    EXPECT_FALSE(launched_);
    EXPECT_NE(err_.find(default_config().string() + ":2: HOST_PORT expects an int"), std::string::npos) << err_;
}

TEST_F(CliRunner, MissingExplicitConfigIsExitOne) {
    const std::string missing = (home_ / "nope.py").string();
    EXPECT_EQ(run({"kohakuriver", "runner", "--config", missing}), 1);
    EXPECT_FALSE(launched_);
    EXPECT_NE(out_.find("Loading configuration from: " + missing), std::string::npos) << out_;
    EXPECT_NE(err_.find("ERROR: Config file not found: " + missing), std::string::npos) << err_;
}

TEST_F(CliRunner, EmptyExplicitConfigIsNotTheDefault) {
    write(default_config(), "HOST_ADDRESS = '10.1.1.1'\n");
    EXPECT_EQ(run({"kohakuriver", "runner", "--config", ""}), 1);
    EXPECT_FALSE(launched_);
    EXPECT_NE(err_.find("ERROR: Config file not found: "), std::string::npos) << err_;
}

TEST_F(CliRunner, BadExplicitConfigIsExitOneWithFileAndLine) {
    auto f = write(home_ / "bad.py", "\n\nRUNNER_PORT = [\n");
    EXPECT_EQ(run({"kohakuriver", "runner", "-c", f.string()}), 1);
    EXPECT_FALSE(launched_);
    EXPECT_NE(err_.find(f.string() + ":3: '[' was never closed"), std::string::npos) << err_;
}

TEST_F(CliRunner, ExplicitConfigWinsOverDefaultPath) {
    write(default_config(), "HOST_ADDRESS = '10.1.1.1'\n");
    auto f = write(home_ / "other.py", "HOST_ADDRESS = '10.2.2.2'\n");
    EXPECT_EQ(run({"kohakuriver", "runner", "-c", f.string()}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.host_address, "10.2.2.2");
    EXPECT_EQ(launched_->config_source, f.string());
}

TEST_F(CliRunner, BindAndPortOverrideTheFile) {
    auto f = write(home_ / "c.py", "RUNNER_PORT = 9001\nRUNNER_BIND_IP = '10.0.0.5'\nHOST_PORT = 8100\n");
    EXPECT_EQ(run({"kohakuriver", "runner", "--config", f.string(), "--port", "9100", "--bind", "127.0.0.1"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.runner_port, 9100);
    EXPECT_EQ(launched_->config.runner_bind_ip, "127.0.0.1");
    EXPECT_EQ(launched_->config.host_port, 8100);

    EXPECT_EQ(run({"kohakuriver", "runner", "--config=" + f.string()}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.runner_port, 9001);
    EXPECT_EQ(launched_->config.runner_bind_ip, "10.0.0.5");

    // "::": every IPv6 and IPv4 address (issue 16 item 3).
    EXPECT_EQ(run({"kohakuriver", "runner", "--config", f.string(), "--bind", "::"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.runner_bind_ip, "::");
}

TEST_F(CliRunner, InvalidOverridesAreUsageErrors) {
    for (std::string port : {"0", "65536", "-5", "abc"}) {
        EXPECT_EQ(run({"kohakuriver", "runner", "--port", port}), 2) << port;
        EXPECT_FALSE(launched_);
    }
    for (std::string bind : {"localhost", "1.2.3", "::1", "fe80::1", "300.1.1.1"}) {
        EXPECT_EQ(run({"kohakuriver", "runner", "--bind", bind}), 2) << bind;
        EXPECT_FALSE(launched_);
        EXPECT_NE(err_.find("IPv4"), std::string::npos) << err_;
    }
}

TEST_F(CliRunner, WarningsArePrintedAndCarried) {
    auto f = write(home_ / "c.py", "RUNNER_PORT = 8001\nHOST_ADRESS = '10.0.0.9'\n");
    EXPECT_EQ(run({"kohakuriver", "runner", "-c", f.string()}), 0);
    ASSERT_TRUE(launched_);
    ASSERT_EQ(launched_->warnings.size(), 1u);
    EXPECT_EQ(launched_->warnings[0], f.string() + ":2: unknown configuration key 'HOST_ADRESS' ignored");
    EXPECT_NE(err_.find("WARNING: " + launched_->warnings[0]), std::string::npos) << err_;
}

TEST_F(CliRunner, UnknownOptionsAreUsageErrors) {
    EXPECT_EQ(run({"kohakuriver", "runner", "--frobnicate"}), 2);
    EXPECT_EQ(run({"kohakuriver", "--frobnicate"}), 2);
    EXPECT_EQ(run({"kohakuriver", "runner", "extra"}), 2);
    EXPECT_EQ(run({"kohakuriver", "bogus"}), 2);
    EXPECT_FALSE(launched_);
}

TEST_F(CliRunner, UpstreamOnlySubcommandsAreRefusedByName) {
    for (std::string cmd :
         {"host", "task", "vps", "node", "docker", "ssh", "terminal", "connect", "forward", "config", "qemu", "status",
          "auth"}) {
        EXPECT_EQ(run({"kohakuriver", cmd, "list", "--help"}), 2) << cmd;
        EXPECT_EQ(err_, "kohakuriver: '" + cmd +
                            "' is not provided by this runner-only build; use the upstream Python CLI\n");
        EXPECT_TRUE(out_.empty());
    }
}

TEST_F(CliRunner, VersionAndHelp) {
    EXPECT_EQ(run({"kohakuriver", "--version"}), 0);
    EXPECT_EQ(out_.rfind("kohakuriver-runner ", 0), 0u) << out_;
    EXPECT_EQ(run({"kohakuriver", "version"}), 0);
    EXPECT_EQ(out_, kr::cli::version_string() + "\n");
    EXPECT_EQ(run({"kohakuriver", "--help"}), 0);
    EXPECT_NE(out_.find("runner"), std::string::npos);
    EXPECT_NE(out_.find("Not in this runner-only build"), std::string::npos);
    EXPECT_EQ(run({"kohakuriver", "runner", "--help"}), 0);
    EXPECT_NE(out_.find("--bind"), std::string::npos);
    EXPECT_EQ(run({"kohakuriver", "init", "service", "--help"}), 0);
    EXPECT_NE(out_.find("--no-install"), std::string::npos);
    EXPECT_FALSE(launched_);
}

TEST_F(CliRunner, NoSubcommandIsAUsageError) {
    EXPECT_EQ(run({"kohakuriver"}), 2);
    EXPECT_NE(err_.find("runner"), std::string::npos);
    EXPECT_EQ(run({"kohakuriver", "init"}), 2);
}

TEST_F(CliRunner, DirectEntryPointByProgramName) {
    auto f = write(home_ / "c.py", "HOST_ADDRESS = '10.3.3.3'\n");
    EXPECT_EQ(run({"/usr/local/bin/kohakuriver.runner", "--config", f.string(), "--port", "9200"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config.host_address, "10.3.3.3");
    EXPECT_EQ(launched_->config.runner_port, 9200);

    EXPECT_EQ(run({"kohakuriver.runner"}), 0);
    ASSERT_TRUE(launched_);
    EXPECT_EQ(launched_->config_source, "built-in defaults");

    EXPECT_EQ(run({"kohakuriver.runner", "runner"}), 2);  // no subcommands there
    EXPECT_EQ(run({"kohakuriver.runner", "-c", (home_ / "missing.py").string()}), 1);
    EXPECT_EQ(run({"kohakuriver.runner", "--version"}), 0);
    EXPECT_EQ(out_, kr::cli::version_string() + "\n");
}

}  // namespace

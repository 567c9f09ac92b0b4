// Loading runner_config.py files that are valid Python: defaults, the
// shipped shapes, every literal form, warnings and overrides.
#include "source_dir.hpp"
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli/init_commands.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"

namespace fs = std::filesystem;
using kr::config::ConfigError;
using kr::config::LogLevel;
using kr::config::parse_config_text;
using kr::config::RunnerConfig;

namespace {

fs::path fixtures_dir() {
    return fs::path(kr_source_dir()) / "tests" / "fixtures" / "configs";
}

RunnerConfig parse(std::string_view text) { return parse_config_text(text, "runner_config.py").config; }

}  // namespace

TEST(ConfigDefaults, MatchUpstreamTable) {
    RunnerConfig c;
    EXPECT_EQ(c.runner_bind_ip, "0.0.0.0");
    EXPECT_EQ(c.runner_port, 8001);
    EXPECT_EQ(c.host_address, "127.0.0.1");
    EXPECT_EQ(c.host_port, 8000);
    EXPECT_EQ(c.shared_dir, "/mnt/cluster-share");
    EXPECT_EQ(c.local_temp_dir, "/tmp/kohakuriver");
    EXPECT_EQ(c.heartbeat_interval_seconds, 5);
    EXPECT_EQ(c.docker_image_sync_timeout, 600);
    EXPECT_TRUE(c.tunnel_enabled);
    EXPECT_FALSE(c.tasks_privileged);
    EXPECT_TRUE(c.additional_mounts.empty());
    EXPECT_EQ(c.log_level, LogLevel::Info);
    EXPECT_EQ(c.max_snapshots_per_vps, 3);
    EXPECT_EQ(c.vm_default_disk_size, "500G");
    EXPECT_EQ(c.overlay_subnet, "10.128.0.0/12/6/14");
    EXPECT_EQ(c.overlay_vxlan_port, 4789);
    EXPECT_EQ(c.overlay_mtu, 1450);
    EXPECT_EQ(c.state_dir, "/var/lib/kohakuriver");
    EXPECT_EQ(c.docker_socket, "/var/run/docker.sock");
    EXPECT_EQ(c.tar_dir(), "/mnt/cluster-share/kohakuriver-containers");
    c.container_tar_dir = "/srv/tars";
    EXPECT_EQ(c.tar_dir(), "/srv/tars");
    EXPECT_EQ(c.host_url(), "http://127.0.0.1:8000");
}

TEST(ConfigDefaults, KeyTableCoversEveryUpstreamKeyAndOurs) {
    auto names = kr::config::config_key_names();
    // 42 upstream keys + STATE_DIR + DOCKER_SOCKET + 12 VM_* of ours + DOCKER_REGISTRY_REFRESH_TIMEOUT
    // + API_ALLOWED_CLIENTS, METRICS_ALLOWED_CLIENTS, MAX_BUFFERED_REQUEST_BYTES
    EXPECT_EQ(names.size(), 60u);
    for (std::string key : {"RUNNER_BIND_IP", "OVERLAY_MTU", "VM_ACS_OVERRIDE", "STATE_DIR", "DOCKER_SOCKET",
                            "VM_POWERDOWN_TIMEOUT_SECONDS", "VM_SSH_RELAY_MAX_CONNECTIONS",
                            "VM_SSH_RELAY_MAX_PER_SOURCE", "VM_SSH_RELAY_HANDSHAKE_TIMEOUT_SECONDS",
                            "DOCKER_REGISTRY_REFRESH_TIMEOUT", "API_ALLOWED_CLIENTS", "METRICS_ALLOWED_CLIENTS",
                            "MAX_BUFFERED_REQUEST_BYTES"})
        EXPECT_NE(std::find(names.begin(), names.end(), key), names.end()) << key;
}

TEST(ConfigTemplate, LoadsBackToExactlyTheDefaults) {
    auto result = parse_config_text(kr::cli::runner_config_template(), "runner_config.py");
    EXPECT_EQ(result.config, RunnerConfig{});
    EXPECT_TRUE(result.warnings.empty());
}

TEST(ConfigTemplate, SetsTheDocumentedKeysExplicitly) {
    const std::string t = kr::cli::runner_config_template();
    for (std::string key : {"RUNNER_BIND_IP: str", "RUNNER_PORT: int", "HOST_ADDRESS: str", "HOST_PORT: int",
                            "SHARED_DIR: str", "LOCAL_TEMP_DIR: str", "CONTAINER_TAR_DIR: str", "NUMACTL_PATH: str",
                            "RUNNER_LOG_FILE: str", "HEARTBEAT_INTERVAL_SECONDS: int",
                            "RESOURCE_CHECK_INTERVAL_SECONDS: int", "RUNNER_USER: str", "DEFAULT_WORKING_DIR: str",
                            "TASKS_PRIVILEGED: bool", "ADDITIONAL_MOUNTS: list[str] = []",
                            "DOCKER_IMAGE_SYNC_TIMEOUT: int", "DOCKER_NETWORK_NAME: str", "DOCKER_NETWORK_SUBNET: str",
                            "DOCKER_NETWORK_GATEWAY: str", "TUNNEL_ENABLED: bool", "TUNNEL_CLIENT_PATH: str",
                            "LOG_LEVEL: LogLevel = LogLevel.INFO", "STATE_DIR: str", "DOCKER_SOCKET: str",
                            "DOCKER_REGISTRY_REFRESH_TIMEOUT: int",
                            "from kohakuengine import Config", "from kohakuriver.models.enums import LogLevel",
                            "def config_gen():", "return Config.from_globals()"})
        EXPECT_NE(t.find(key), std::string::npos) << key;
}

TEST(ConfigFixtures, ExampleShapeWithOldPackageImport) {
    auto r = kr::config::load_config_file(fixtures_dir() / "runner_production.py");
    EXPECT_TRUE(r.warnings.empty());
    EXPECT_EQ(r.config.runner_port, 8101);
    EXPECT_EQ(r.config.host_address, "10.20.0.1");
    EXPECT_EQ(r.config.shared_dir, "/mnt/nfs/cluster");
    EXPECT_EQ(r.config.local_temp_dir, "/scratch/kohakuriver");
    EXPECT_EQ(r.config.numactl_path, "/usr/bin/numactl");
    EXPECT_EQ(r.config.heartbeat_interval_seconds, 10);
    EXPECT_EQ(r.config.additional_mounts, (std::vector<std::string>{"/datasets:/datasets:ro", "/models:/models"}));
    EXPECT_EQ(r.config.log_level, LogLevel::Debug);
    EXPECT_EQ(r.config.tar_dir(), "/mnt/nfs/cluster/kohakuriver-containers");
}

TEST(ConfigFixtures, DefaultShapeSetsNothing) {
    auto r = kr::config::load_config_file(fixtures_dir() / "runner_minimal.py");
    EXPECT_EQ(r.config, RunnerConfig{});
    EXPECT_TRUE(r.warnings.empty());
}

TEST(ConfigLiterals, LogLevelSpellings) {
    EXPECT_EQ(parse("LOG_LEVEL = \"debug\"\n").log_level, LogLevel::Debug);
    EXPECT_EQ(parse("LOG_LEVEL = 'WARNING'\n").log_level, LogLevel::Warning);
    EXPECT_EQ(parse("LOG_LEVEL = LogLevel.FULL\n").log_level, LogLevel::Full);
    EXPECT_EQ(parse("LOG_LEVEL = LogLevel.debug\n").log_level, LogLevel::Debug);
    EXPECT_EQ(parse("LOG_LEVEL: LogLevel = kohakuriver.models.enums.LogLevel.WARNING\n").log_level,
              LogLevel::Warning);
    EXPECT_EQ(kr::config::to_string(LogLevel::Full), "full");
    EXPECT_EQ(kr::config::to_string(LogLevel::Warning), "warning");
}

TEST(ConfigLiterals, Strings) {
    EXPECT_EQ(parse("SHARED_DIR = 'single'").shared_dir, "single");
    EXPECT_EQ(parse("SHARED_DIR = \"/a\" '/b' \\\n  \"/c\"").shared_dir, "/a/b/c");
    EXPECT_EQ(parse("SHARED_DIR = ('/mnt/'\n    'share')").shared_dir, "/mnt/share");
    EXPECT_EQ(parse("SHARED_DIR = r'C:\\new'").shared_dir, "C:\\new");
    EXPECT_EQ(parse("SHARED_DIR = 'tab\\there\\x41\\u00e9\\101\\q'").shared_dir, "tab\there" "A\xC3\xA9" "A\\q");
    EXPECT_EQ(parse("SHARED_DIR = \"\"\"multi\nline\"\"\"").shared_dir, "multi\nline");
    EXPECT_EQ(parse("SHARED_DIR = 'it\\'s'").shared_dir, "it's");
    EXPECT_EQ(parse("SHARED_DIR = u'x'").shared_dir, "x");
    EXPECT_EQ(parse("SHARED_DIR = f'plain'").shared_dir, "plain");
    EXPECT_EQ(parse("SHARED_DIR = '# not a comment'  # a comment").shared_dir, "# not a comment");
}

TEST(ConfigLiterals, NumbersAndBooleans) {
    EXPECT_EQ(parse("DOCKER_IMAGE_SYNC_TIMEOUT = 1_800").docker_image_sync_timeout, 1800);
    EXPECT_EQ(parse("MAX_SNAPSHOTS_PER_VPS = -1").max_snapshots_per_vps, -1);
    EXPECT_EQ(parse("RUNNER_PORT = 0x1F41").runner_port, 8001);
    EXPECT_EQ(parse("RUNNER_PORT = +8002").runner_port, 8002);
    EXPECT_EQ(parse("RUNNER_PORT = (8003)").runner_port, 8003);
    EXPECT_TRUE(parse("TASKS_PRIVILEGED = True").tasks_privileged);
    EXPECT_FALSE(parse("TUNNEL_ENABLED = False").tunnel_enabled);
}

TEST(ConfigLiterals, ListsAndTuples) {
    auto c = parse(
        "ADDITIONAL_MOUNTS: list[str] = [\n"
        "    \"/a:/a\",  # first\n"
        "\n"
        "    \"/b:/b:ro\",\n"
        "]\n");
    EXPECT_EQ(c.additional_mounts, (std::vector<std::string>{"/a:/a", "/b:/b:ro"}));
    EXPECT_EQ(parse("ADDITIONAL_MOUNTS = ('/x:/x',)").additional_mounts, std::vector<std::string>{"/x:/x"});
    EXPECT_EQ(parse("ADDITIONAL_MOUNTS = '/x:/x', '/y:/y'").additional_mounts,
              (std::vector<std::string>{"/x:/x", "/y:/y"}));
    EXPECT_TRUE(parse("ADDITIONAL_MOUNTS = ()").additional_mounts.empty());
}

TEST(ConfigStatements, SkipsWhatFromGlobalsNeverSees) {
    auto r = parse_config_text(
        "#!/usr/bin/env python3\n"
        "\"\"\"Docstring.\"\"\"\n"
        "import os, sys as system\n"
        "from kohakuengine import (\n"
        "    Config,\n"
        "    Script as S,\n"
        ")\n"
        "from . import sibling\n"
        "_PRIVATE = 'ignored, even with a wrong type for nothing'\n"
        "_BASE = '/mnt/base'\n"
        "SHARED_DIR = _BASE\n"
        "EXTRA: dict[str, int] = {'a': 1, 'b': [2, 3]}\n"
        "RUNNER_PORT: int\n"
        "pass\n"
        "@decorator\n"
        "class Helper:\n"
        "    x = os.environ.get('X')\n"
        "\n"
        "    def method(self):\n"
        "        return os.getcwd()\n"
        "def config_gen() -> Config: return Config.from_globals()\n"
        "if __name__ == \"__main__\":\n"
        "    print(config_gen())\n"
        "else:\n"
        "    pass\n",
        "runner_config.py");
    EXPECT_EQ(r.config.shared_dir, "/mnt/base");
    EXPECT_EQ(r.config.runner_port, 8001);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_EQ(r.warnings[0], "runner_config.py:12: unknown configuration key 'EXTRA' ignored");
}

TEST(ConfigStatements, UnknownKeyWarnsWithLine) {
    auto r = parse_config_text("RUNNER_PORT = 8001\n\nHEARTBEAT_INTERVAL = 3\n", "node.py");
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_EQ(r.warnings[0], "node.py:3: unknown configuration key 'HEARTBEAT_INTERVAL' ignored");
    EXPECT_EQ(r.config.heartbeat_interval_seconds, 5);
}

TEST(ConfigStatements, LaterAssignmentWinsAndBaseIsKept) {
    RunnerConfig base;
    base.host_address = "10.9.9.9";
    base.runner_port = 9999;
    auto r = parse_config_text("RUNNER_PORT = 1\nRUNNER_PORT = 2\n", "x.py", base);
    EXPECT_EQ(r.config.runner_port, 2);
    EXPECT_EQ(r.config.host_address, "10.9.9.9");
}

TEST(ConfigStatements, WindowsLineEndingsAndBom) {
    auto c = parse("\xEF\xBB\xBF\"\"\"doc\r\nstring\"\"\"\r\nHOST_PORT = 8100\r\nHOST_ADDRESS = 'h'\r\n");
    EXPECT_EQ(c.host_port, 8100);
    EXPECT_EQ(c.host_address, "h");
}

TEST(ConfigStatements, OurOwnKeys) {
    auto c = parse("STATE_DIR = '/srv/kr-state'\nDOCKER_SOCKET = '/run/docker.sock'\n");
    EXPECT_EQ(c.state_dir, "/srv/kr-state");
    EXPECT_EQ(c.docker_socket, "/run/docker.sock");
}

TEST(ConfigFile, MissingOrDirectoryIsAnError) {
    EXPECT_THROW(kr::config::load_config_file("/nonexistent/dir/runner_config.py"), ConfigError);
    try {
        kr::config::load_config_file(fixtures_dir());
        FAIL() << "a directory loaded";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.line(), 0);
        EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
    }
}

TEST(ConfigFile, ErrorsNameThePathAsGiven) {
    fs::path dir = fs::temp_directory_path() / ("kr_cfg_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    fs::path file = dir / "runner_config.py";
    std::ofstream(file) << "RUNNER_PORT = 8001\nHOST_PORT = 'x'\n";
    try {
        kr::config::load_config_file(file);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), file.string() + ":2: HOST_PORT expects an int, got str 'x'");
        EXPECT_EQ(e.file(), file.string());
        EXPECT_EQ(e.line(), 2);
    }
    fs::remove_all(dir);
}

TEST(ConfigHelpers, Ipv4Literal) {
    EXPECT_TRUE(kr::config::is_ipv4_literal("0.0.0.0"));
    EXPECT_TRUE(kr::config::is_ipv4_literal("255.255.255.255"));
    EXPECT_TRUE(kr::config::is_ipv4_literal("10.0.0.1"));
    for (auto bad : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.", "a.b.c.d", "1..2.3", "localhost",
                     "1.2.3.4 ", "1234.1.1.1"})
        EXPECT_FALSE(kr::config::is_ipv4_literal(bad)) << bad;
    EXPECT_EQ(kr::config::log_level_from_string("Info"), LogLevel::Info);
    EXPECT_FALSE(kr::config::log_level_from_string("verbose").has_value());
}

TEST(ConfigKeys, BindAnyIpv6AndBodyBudget) {
    auto r = parse_config_text("RUNNER_BIND_IP = '::'\nMAX_BUFFERED_REQUEST_BYTES = 67108864\n", "t.py");
    EXPECT_EQ(r.config.runner_bind_ip, "::");
    EXPECT_EQ(r.config.max_buffered_request_bytes, 64 * 1024 * 1024);
    EXPECT_EQ(RunnerConfig{}.max_buffered_request_bytes, 256 * 1024 * 1024);
}

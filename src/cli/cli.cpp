#include "cli/cli.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string_view>

#include "cli/doctor.hpp"
#include "cli/init_commands.hpp"
#include "cli/launch.hpp"
#include "overlay/cleanup.hpp"

#ifndef KR_VERSION
#define KR_VERSION "0.0.0-dev"
#endif
// Set for this file only (CMakeLists.txt): the commit changes every build.
#ifndef KR_BUILD_COMMIT
#define KR_BUILD_COMMIT "unknown"
#endif
#ifndef KR_BUILD_TARGET
#define KR_BUILD_TARGET "unknown"
#endif

namespace kr::cli {

namespace {

// Commands of upstream's unified CLI that belong to the host/client side.
// They are refused by name so an operator learns why, instead of getting
// "unexpected argument".
constexpr std::string_view kUnprovided[] = {"auth", "config", "connect", "docker", "forward", "host", "node",
                                            "qemu", "ssh",  "status", "task",    "terminal", "vps"};

constexpr const char* kUnprovidedFooter =
    "Not in this runner-only build (use the upstream Python CLI): auth, config, connect, docker, "
    "forward, host, node, qemu, ssh, status, task, terminal, vps.";

// Options shared by `kohakuriver runner` and `kohakuriver.runner`.
struct RunnerFlags {
    RunnerOptions values;
    CLI::Option* config = nullptr;
    CLI::Option* bind = nullptr;
    CLI::Option* port = nullptr;

    void add_to(CLI::App& app) {
        config = app.add_option("-c,--config", values.config_path,
                       "Runner configuration file (default: ~/.kohakuriver/runner_config.py if it exists)")
            ->type_name("PATH");
        CLI::Validator ipv4(
            [](std::string& s) {
                return config::is_bind_address(s) ? std::string()
                                                  : "expected an IPv4 address such as 0.0.0.0, or ::, got '" + s + "'";
            },
            "IPv4", "IPv4");
        bind = app.add_option("--bind", values.bind, "Listen address; overrides RUNNER_BIND_IP")
                   ->type_name("IP")
                   ->check(ipv4);
        port = app.add_option("--port", values.port, "Listen port; overrides RUNNER_PORT")
                   ->type_name("N")
                   ->check(CLI::Range(1, 65535));
    }

    RunnerOptions collect() {
        values.has_config = config->count() > 0;
        values.has_bind = bind->count() > 0;
        values.has_port = port->count() > 0;
        return values;
    }
};

// CLI11 signals --help/--version through exceptions with exit code 0; every
// other parse error is a usage error, exit 2 as with Click/Typer upstream.
int parse_error(CLI::App& app, const CLI::ParseError& e, std::ostream& out, std::ostream& err) {
    app.exit(e, out, err);
    return e.get_exit_code() == 0 ? 0 : 2;
}

int launch_runner(const RunnerOptions& options, const std::function<int(RunnerLaunch&)>& start_runner,
                  std::ostream& out, std::ostream& err) {
    RunnerLaunch launch;
    if (int rc = prepare_launch(options, launch, out, err); rc != 0) return rc;
    out << "Starting KohakuRiver Runner agent..." << std::endl;
    try {
        return start_runner(launch);
    } catch (const std::exception& e) {
        err << "ERROR: " << e.what() << "\n";
        return 1;
    }
}

// `kohakuriver.runner`: upstream's single-command console script.
int run_direct(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner, std::ostream& out,
               std::ostream& err) {
    CLI::App app{"KohakuRiver runner agent: registers this node with the host and runs its tasks.",
                 "kohakuriver.runner"};
    app.set_version_flag("--version", version_string());
    RunnerFlags flags;
    flags.add_to(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return parse_error(app, e, out, err);
    }
    return launch_runner(flags.collect(), start_runner, out, err);
}

int run_unified(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner, std::ostream& out,
                std::ostream& err) {
    // The first word that is not an option is the subcommand (the program's
    // own options take no values). Refuse upstream-only commands up front,
    // whatever follows them (even --help).
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (!arg.empty() && arg[0] == '-') continue;
        if (std::find(std::begin(kUnprovided), std::end(kUnprovided), arg) != std::end(kUnprovided)) {
            err << "kohakuriver: '" << arg
                << "' is not provided by this runner-only build; use the upstream Python CLI\n";
            return 2;
        }
        break;
    }

    CLI::App app{"KohakuRiver runner (native build): the runner side of the kohakuriver command.", "kohakuriver"};
    app.set_version_flag("--version", version_string());
    app.footer(kUnprovidedFooter);

    CLI::App* runner = app.add_subcommand("runner", "Run the runner agent (what the systemd unit starts)");
    RunnerFlags flags;
    flags.add_to(*runner);

    CLI::App* init = app.add_subcommand("init", "Write the runner configuration file or systemd unit");
    init->require_subcommand(1);

    InitConfigOptions config_opts;
    CLI::App* init_cfg = init->add_subcommand("config", "Write runner_config.py with every setting at its default");
    init_cfg->add_flag("--runner", config_opts.runner, "Write the runner configuration");
    init_cfg->add_flag("-g,--generate", config_opts.generate, "Same as --runner in this build");
    init_cfg->add_flag("--host", config_opts.host, "Not provided by this build (exits with status 2)");
    init_cfg->add_option("-o,--output-dir", config_opts.output_dir, "Directory to write into (default ~/.kohakuriver)")
        ->type_name("DIR");

    InitServiceOptions svc;
    CLI::App* init_svc = init->add_subcommand("service", "Write (and install) the kohakuriver-runner systemd unit");
    init_svc->add_flag("--runner", svc.runner, "Create the runner service");
    init_svc->add_flag("--host", svc.host, "Not provided: this binary installs the runner service only (exit 2)");
    init_svc->add_flag("--all", svc.all, "Not provided: this binary installs the runner service only (exit 2)");
    init_svc->add_option("--runner-config", svc.runner_config,
                         "Config file for ExecStart (default: <working dir>/runner_config.py)")
        ->type_name("PATH");
    init_svc->add_option("--working-dir", svc.working_dir, "WorkingDirectory of the service (default ~/.kohakuriver)")
        ->type_name("DIR");
    init_svc->add_option("--python-path", svc.python_path, "Accepted for upstream compatibility; ignored")
        ->type_name("EXE");
    init_svc->add_option("--host-config", svc.host_config,
                         "Accepted for upstream compatibility; ignored (this binary installs the runner only)")
        ->type_name("PATH");
    init_svc->add_flag("--no-install", svc.no_install,
                       "Write the unit into the current directory instead of installing it");
    init_svc->add_flag("--capture-env,!--no-capture-env", svc.capture_env,
                       "Put the current PATH into the unit (default: on)");

    CLI::App* version = app.add_subcommand("version", "Print the version");

    CLI::App* overlay = app.add_subcommand("overlay", "VXLAN overlay maintenance");
    overlay->require_subcommand(1);
    RunnerOptions overlay_opts;
    CLI::App* overlay_cleanup = overlay->add_subcommand(
        "cleanup",
        "Remove the overlay's Docker network, vxlan0, the kohaku-overlay bridge, its routes and firewall rules "
        "(uses OVERLAY_SUBNET from the config; run as root with the runner stopped)");
    CLI::Option* overlay_config =
        overlay_cleanup->add_option("-c,--config", overlay_opts.config_path, "Runner configuration file")
            ->type_name("PATH");
    CLI::App* doctor = app.add_subcommand(
        "doctor", "Check this node (config, Docker, cgroups, networks, host, GPUs, VMs, state dir, port)");
    RunnerFlags doctor_flags;
    doctor_flags.add_to(*doctor);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return parse_error(app, e, out, err);
    }

    if (runner->parsed()) return launch_runner(flags.collect(), start_runner, out, err);
    if (init_cfg->parsed()) return init_config(config_opts, out, err);
    if (init_svc->parsed()) return init_service(svc, out, err);
    if (overlay_cleanup->parsed()) {
        overlay_opts.has_config = overlay_config->count() > 0;
        RunnerLaunch launch;
        if (int rc = prepare_launch(overlay_opts, launch, out, err); rc != 0) return rc;
        return overlay::cleanup_command(launch.config, out, err);
    }
    if (doctor->parsed()) return run_doctor(doctor_flags.collect(), out, err);
    if (version->parsed()) {
        out << version_string() << "\n";
        return 0;
    }
    err << app.help();
    return 2;
}

}  // namespace

std::string version_string() {
  return std::string("kohakuriver-runner ") + KR_VERSION + " (commit " + KR_BUILD_COMMIT + ", target " +
         KR_BUILD_TARGET + ")";
}

int run_cli(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner) {
    return run_cli(argc, argv, start_runner, std::cout, std::cerr);
}

int run_cli(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner, std::ostream& out,
            std::ostream& err) {
    const std::string prog = argc > 0 && argv[0] ? std::filesystem::path(argv[0]).filename().string() : "";
    if (prog == "kohakuriver.runner") return run_direct(argc, argv, start_runner, out, err);
    return run_unified(argc, argv, start_runner, out, err);
}

}  // namespace kr::cli

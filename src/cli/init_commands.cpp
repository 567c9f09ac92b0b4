#include "cli/init_commands.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <system_error>

#include "common/paths.hpp"

extern char** environ;

namespace kr::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kUnitName = "kohakuriver-runner.service";

// Writes `content` to `path` only if nothing is there yet (O_EXCL, so even a
// concurrent writer or a dangling symlink is never clobbered). Returns
// nullopt on success, EEXIST when something exists, else the errno.
std::optional<int> write_new_file(const fs::path& path, const std::string& content) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    std::size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::close(fd);
            return e;
        }
        done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0) return errno;
    return std::nullopt;
}

// Replaces `path` atomically (temp file + rename): a half-written unit in
// /etc/systemd/system would be worse than the old one.
std::optional<std::string> replace_file(const fs::path& path, const std::string& content) {
    fs::path tmp = path;
    tmp += ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) return std::strerror(errno);
        f << content;
        f.close();
        if (!f) return std::strerror(errno);
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return ec.message();
    }
    return std::nullopt;
}

// One ExecStart= argument. systemd expands %-specifiers and $VARIABLES and
// splits on whitespace, so escape those and quote when needed.
std::string exec_arg(std::string_view s) {
    std::string e;
    bool quote = s.empty();
    for (char c : s) {
        switch (c) {
            case '%': e += "%%"; break;
            case '$': e += "$$"; break;
            case '\\': e += "\\\\"; quote = true; break;
            case '"': e += "\\\""; quote = true; break;
            case '\n': e += "\\n"; quote = true; break;
            case ' ': case '\t': case '\'': case ';': e += c; quote = true; break;
            default: e += c;
        }
    }
    return quote ? "\"" + e + "\"" : e;
}

// The inside of a quoted Environment= assignment (C escapes + specifiers).
std::string env_value(std::string_view s) {
    std::string e;
    for (char c : s) {
        if (c == '%') e += "%%";
        else if (c == '\\') e += "\\\\";
        else if (c == '"') e += "\\\"";
        else e += c;
    }
    return e;
}

std::string specifiers_escaped(std::string_view s) {
    std::string e;
    for (char c : s) e += c == '%' ? std::string("%%") : std::string(1, c);
    return e;
}

// Runs `systemctl daemon-reload`; returns a warning text, empty on success.
std::string daemon_reload() {
    std::optional<fs::path> systemctl;
    if (const char* forced = std::getenv("KR_SYSTEMCTL")) {
        if (*forced) systemctl = fs::path(forced);
    } else {
        systemctl = find_in_path("systemctl");
    }
    if (!systemctl) return "systemctl not found; run 'systemctl daemon-reload' once systemd is available";
    std::string exe = systemctl->string();
    char arg1[] = "daemon-reload";
    char* argv[] = {exe.data(), arg1, nullptr};
    pid_t pid = 0;
    if (int rc = posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, environ); rc != 0)
        return "could not run " + exe + ": " + std::strerror(rc);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    return "'systemctl daemon-reload' failed (status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
           "); run it yourself";
}

void print_config_instructions(std::ostream& out, const fs::path& dir) {
    out << "KohakuRiver runner configuration\n"
        << "The runner reads a runner_config.py file made of NAME = value lines.\n\n"
        << "Write one with every setting at its default:\n"
        << "  kohakuriver init config --runner            # into " << dir.string() << "\n"
        << "  kohakuriver init config --runner -o DIR     # into DIR\n\n"
        << "Run with it:\n"
        << "  kohakuriver runner --config " << (dir / "runner_config.py").string() << "\n"
        << "Without --config the runner reads " << (dir / "runner_config.py").string() << " if it exists.\n";
}

}  // namespace

int init_config(const InitConfigOptions& options, std::ostream& out, std::ostream& err) {
    if (options.host) {
        err << "kohakuriver: the host configuration is not provided by this runner-only build; "
               "use the upstream Python CLI\n";
        return 2;
    }
    const fs::path dir = options.output_dir.empty() ? default_config_dir() : expand_user(options.output_dir);
    if (!options.generate && !options.runner) {
        print_config_instructions(out, dir);
        return 0;
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
        err << "ERROR: cannot create " << dir.string() << ": " << ec.message() << "\n";
        return 1;
    }
    const fs::path file = dir / "runner_config.py";
    if (auto e = write_new_file(file, runner_config_template())) {
        if (*e != EEXIST) {
            err << "ERROR: cannot write " << file.string() << ": " << std::strerror(*e) << "\n";
            return 1;
        }
        err << "WARNING: " << file.string() << " already exists, skipping.\n";
    } else {
        out << "Generated configuration file:\n";
    }
    out << "  " << file.string() << "\n\nUsage:\n"
        << "  kohakuriver runner --config " << file.string() << "\n"
        << "  (read automatically when it is ~/.kohakuriver/runner_config.py)\n";
    if (options.generate && !options.runner)
        out << "The host configuration is not generated: this build contains only the runner.\n";
    return 0;
}

std::string render_runner_unit(const UnitParams& p) {
    // Type=notify: the runner reports READY=1 itself (sd_notify) once it is
    // listening, so `systemctl start` returns when the API is reachable.
    // KillMode=process: containers and QEMU outlive a runner restart (V26),
    // also one caused by the watchdog.
    std::string unit =
        "[Unit]\n"
        "Description=KohakuRiver Runner Agent\n"
        "After=network.target docker.service\n"
        "Wants=docker.service\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        // The runner pings WATCHDOG=1 from its event loop (runner/watchdog):
        // a wedged loop is restarted by systemd.
        "WatchdogSec=30\n"
        "WorkingDirectory=" + specifiers_escaped(p.working_dir) + "\n"
        "ExecStart=" + exec_arg(p.exe) + " runner --config " + exec_arg(p.config_path) + "\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "KillMode=process\n";
    if (!p.path_env.empty()) unit += "Environment=\"PATH=" + env_value(p.path_env) + "\"\n";
    unit +=
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n";
    return unit;
}

std::string systemd_unit_dir() {
    const char* dir_env = std::getenv("KR_SYSTEMD_UNIT_DIR");
    return dir_env && *dir_env ? dir_env : "/etc/systemd/system";
}

int init_service(const InitServiceOptions& options, std::ostream& out, std::ostream& err) {
    if (options.host || options.all) {
        err << "kohakuriver: 'init service " << (options.all ? "--all" : "--host")
            << "' is not provided by this runner-only build: this binary installs the runner service "
               "(kohakuriver-runner.service) only. Use 'init service --runner' here, and the upstream "
               "Python CLI ('kohakuriver init service --host') on the host machine.\n";
        return 2;
    }
    if (!options.runner) {
        err << "ERROR: say which service to create: --runner (this build has no host)\n";
        return 1;
    }
    if (!options.python_path.empty())
        err << "WARNING: --python-path is ignored: this runner is a native program\n";
    if (!options.host_config.empty())
        err << "WARNING: --host-config is ignored: this binary installs the runner service only\n";

    std::error_code ec;
    const fs::path working_dir =
        fs::absolute(options.working_dir.empty() ? default_config_dir() : expand_user(options.working_dir), ec)
            .lexically_normal();
    const fs::path config = options.runner_config.empty()
                                ? working_dir / "runner_config.py"
                                : fs::absolute(expand_user(options.runner_config), ec).lexically_normal();
    if (!fs::exists(config, ec))
        err << "WARNING: " << config.string()
            << " does not exist yet; the service cannot start until it does "
               "(create it with: kohakuriver init config --runner)\n";
    if (!fs::is_directory(working_dir, ec))
        err << "WARNING: working directory " << working_dir.string()
            << " does not exist; systemd will refuse to start the service until it does\n";

    UnitParams params;
    params.exe = self_exe_path().string();
    params.config_path = config.string();
    params.working_dir = working_dir.string();
    if (const char* path = std::getenv("PATH"); options.capture_env && path) params.path_env = path;
    const std::string unit = render_runner_unit(params);

    if (options.no_install) {
        const fs::path target = fs::current_path(ec) / kUnitName;
        if (auto e = replace_file(target, unit)) {
            err << "ERROR: cannot write " << target.string() << ": " << *e << "\n";
            return 1;
        }
        out << "Wrote " << target.string() << "\n\n"
            << "To install it:\n"
            << "  sudo cp " << target.string() << " /etc/systemd/system/\n"
            << "  sudo systemctl daemon-reload\n"
            << "  sudo systemctl enable --now kohakuriver-runner\n";
        return 0;
    }

    const fs::path target = fs::path(systemd_unit_dir()) / kUnitName;
    if (auto e = replace_file(target, unit)) {
        err << "ERROR: cannot write " << target.string() << ": " << *e
            << " (installing a service needs root: run with sudo, or use --no-install)\n";
        return 1;
    }
    out << "Installed " << target.string() << "\n";
    if (std::string warning = daemon_reload(); !warning.empty()) err << "WARNING: " << warning << "\n";
    out << "\nStart it now and at every boot:\n"
        << "  sudo systemctl enable --now kohakuriver-runner\n"
        << "Or only start it:\n"
        << "  sudo systemctl start kohakuriver-runner\n"
        << "Follow its log:\n"
        << "  journalctl -u kohakuriver-runner -f\n";
    return 0;
}

}  // namespace kr::cli

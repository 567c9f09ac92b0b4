#include "cli/launch.hpp"

#include <filesystem>
#include <system_error>

#include "common/paths.hpp"

namespace kr::cli {

namespace fs = std::filesystem;

namespace {

bool load_into(const fs::path& path, RunnerLaunch& launch, std::ostream& err) {
    try {
        config::LoadResult result = config::load_config_file(path);
        launch.config = std::move(result.config);
        launch.warnings = std::move(result.warnings);
        launch.config_source = path.string();
        return true;
    } catch (const config::ConfigError& e) {
        err << "ERROR: " << e.what() << "\n";
        return false;
    }
}

}  // namespace

int prepare_launch(const RunnerOptions& options, RunnerLaunch& launch, std::ostream& out, std::ostream& err) {
    std::error_code ec;
    if (options.has_config) {
        const fs::path path = expand_user(options.config_path);
        out << "Loading configuration from: " << options.config_path << "\n";
        if (options.config_path.empty() || !fs::exists(path, ec)) {
            err << "ERROR: Config file not found: " << options.config_path << "\n";
            return 1;
        }
        if (!load_into(path, launch, err)) return 1;
    } else {
        const fs::path path = default_config_dir() / "runner_config.py";
        if (fs::exists(path, ec)) {
            out << "Loading configuration from: " << path.string() << "\n";
            // Upstream warns and falls back to the built-in defaults when this
            // file fails to load. We refuse instead: a runner silently started
            // with defaults (wrong host, wrong shared dir) is harder to notice
            // than one that exits naming the bad line.
            if (!load_into(path, launch, err)) return 1;
        } else {
            out << "No configuration file at " << path.string()
                << "; using built-in defaults (create one with: kohakuriver init config --runner)\n";
            launch.config_source = "built-in defaults";
        }
    }
    for (const std::string& w : launch.warnings) err << "WARNING: " << w << "\n";
    if (options.has_bind) launch.config.runner_bind_ip = options.bind;
    if (options.has_port) launch.config.runner_port = options.port;
    return 0;
}

}  // namespace kr::cli

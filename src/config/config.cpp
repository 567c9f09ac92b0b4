#include "config/config.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "config/config_keys.hpp"
#include "config/py_module.hpp"

namespace kr::config {

std::string to_string(LogLevel level) {
    switch (level) {
        case LogLevel::Full: return "full";
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warning: return "warning";
    }
    return "info";
}

std::optional<LogLevel> log_level_from_string(std::string_view text) {
    std::string lower;
    for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (LogLevel l : {LogLevel::Full, LogLevel::Debug, LogLevel::Info, LogLevel::Warning})
        if (lower == to_string(l)) return l;
    return std::nullopt;
}

bool is_bind_address(std::string_view text) { return text == "::" || is_ipv4_literal(text); }

bool is_ipv4_literal(std::string_view text) {
    int parts = 0;
    std::size_t i = 0;
    while (true) {
        std::size_t start = i;
        int value = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && i - start < 3)
            value = value * 10 + (text[i++] - '0');
        std::size_t len = i - start;
        if (len == 0 || value > 255 || (len > 1 && text[start] == '0')) return false;
        ++parts;
        if (i == text.size()) return parts == 4;
        if (text[i] != '.' || parts == 4) return false;
        ++i;
    }
}

std::string RunnerConfig::tar_dir() const {
    if (!container_tar_dir.empty()) return container_tar_dir;
    return (std::filesystem::path(shared_dir) / "kohakuriver-containers").string();
}

std::string RunnerConfig::host_url() const {
    return "http://" + host_address + ":" + std::to_string(host_port);
}

namespace {
std::string format_error(const std::string& file, int line, const std::string& message) {
    if (line > 0) return file + ":" + std::to_string(line) + ": " + message;
    return file + ": " + message;
}
}  // namespace

ConfigError::ConfigError(std::string file, int line, std::string message)
    : std::runtime_error(format_error(file, line, message)),
      file_(std::move(file)),
      line_(line),
      message_(std::move(message)) {}

LoadResult parse_config_text(std::string_view text, std::string_view filename, RunnerConfig base) {
    LoadResult result{std::move(base), {}};
    for (const py::Assignment& a : py::parse_module(text, filename))
        apply_assignment(result.config, a, filename, result.warnings);
    return result;
}

LoadResult load_config_file(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw ConfigError(name, 0, "cannot read configuration file: " +
                                       (ec ? ec.message() : std::string("No such file or directory")));
    if (std::filesystem::is_directory(status))
        throw ConfigError(name, 0, "is a directory, not a configuration file");
    // A runner_config.py is a few kB; refuse to slurp something unrelated.
    constexpr std::uintmax_t kMaxSize = 4 * 1024 * 1024;
    if (std::filesystem::is_regular_file(status) && std::filesystem::file_size(path, ec) > kMaxSize && !ec)
        throw ConfigError(name, 0, "file is too large to be a configuration file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(name, 0, std::string("cannot read configuration file: ") + std::strerror(errno));
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw ConfigError(name, 0, std::string("cannot read configuration file: ") + std::strerror(errno));
    return parse_config_text(buf.str(), name);
}

}  // namespace kr::config

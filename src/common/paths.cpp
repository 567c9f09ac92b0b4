#include "common/paths.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <system_error>

namespace kr {

namespace fs = std::filesystem;

fs::path home_dir() {
    if (const char* home = std::getenv("HOME"); home && *home) return home;
    if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir && *pw->pw_dir) return pw->pw_dir;
    return "/";
}

fs::path expand_user(std::string_view path) {
    if (path == "~") return home_dir();
    if (path.substr(0, 2) == "~/") return home_dir() / path.substr(2);
    return fs::path(path);
}

fs::path default_config_dir() { return home_dir() / ".kohakuriver"; }

fs::path self_exe_path() {
    std::error_code ec;
    fs::path p = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) return p;
    return fs::absolute("kohakuriver", ec);  // /proc not mounted: best guess
}

std::optional<fs::path> find_in_path(std::string_view name) {
    const char* env = std::getenv("PATH");
    std::string_view path = env ? env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (true) {
        std::size_t colon = path.find(':');
        std::string_view dir = path.substr(0, colon);
        if (!dir.empty()) {
            fs::path candidate = fs::path(dir) / name;
            std::error_code ec;
            if (fs::is_regular_file(candidate, ec) && access(candidate.c_str(), X_OK) == 0) return candidate;
        }
        if (colon == std::string_view::npos) return std::nullopt;
        path.remove_prefix(colon + 1);
    }
}

}  // namespace kr

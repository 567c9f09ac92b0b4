#pragma once
// Shared helpers of the monitor tests: a scratch directory tree that plays
// the role of a filesystem root (/proc, /sys, /dev) for the readers.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace kr::monitor::testing {

struct TempTree {
  std::filesystem::path dir;
  TempTree() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kr-monitor-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
  }
  TempTree(TempTree&& other) noexcept : dir(std::move(other.dir)) { other.dir.clear(); }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  ~TempTree() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
  void write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << text;
  }
};

}  // namespace kr::monitor::testing

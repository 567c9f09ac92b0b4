#pragma once
// Shared helpers of the VM tests: a scratch directory and PyYAML (what
// cloud-init itself parses the seed with) as the reference YAML reader.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "vm/process.hpp"

namespace kr::vm::testing {

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kr-vm-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel, std::ios::binary) << text;
    return dir / rel;
  }
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Parses `yaml` with python3's yaml.safe_load and returns it as JSON. A
// missing python3-yaml (scripts/install-deps.sh --test installs it) fails
// the test loudly rather than skipping it.
inline nlohmann::json pyyaml_load(const std::string& yaml) {
  TempDir tmp;
  const auto file = tmp.write("doc.yaml", yaml);
  ProcessOptions o;
  o.timeout = std::chrono::seconds(30);
  auto r = run_process({"python3", "-c",
                        "import json,sys,yaml\n"
                        "print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))",
                        file.string()},
                       o);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "PyYAML could not load the document (is python3-yaml installed?): " << r.output;
    return nullptr;
  }
  return nlohmann::json::parse(r.output);
}

}  // namespace kr::vm::testing

// The include order of src/ (src/DEPS, docs/architecture.md): every
// `#include "dir/file"` of every source file must be allowed for the folder
// that holds the file, the allowed-folder graph must have no cycle, and every
// folder must have a rule. A failure names the file, the line and the rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "source_dir.hpp"

namespace {

namespace fs = std::filesystem;

struct Rule {
  std::set<std::string> folders;  // whole folders
  std::set<std::string> headers;  // single headers, "dir/file" without extension
  bool libc_only = false;         // angle includes limited to the standard library / libc
  int line = 0;                   // where in DEPS
};

struct Rules {
  std::map<std::string, Rule> by_folder;
  std::vector<std::string> order;  // as listed
  std::vector<std::string> errors;
};

Rules parse_rules(std::istream& in) {
  Rules r;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    const auto colon = line.find(':');
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (colon == std::string::npos) {
      r.errors.push_back("DEPS:" + std::to_string(n) + ": no ':' in \"" + line + "\"");
      continue;
    }
    const std::string folder = line.substr(0, colon);
    Rule rule;
    rule.line = n;
    std::istringstream words(line.substr(colon + 1));
    for (std::string w; words >> w;) {
      if (w == "<libc>")
        rule.libc_only = true;
      else if (w.find('/') != std::string::npos)
        rule.headers.insert(w);
      else
        rule.folders.insert(w);
    }
    if (r.by_folder.count(folder)) r.errors.push_back("DEPS:" + std::to_string(n) + ": " + folder + " listed twice");
    r.by_folder[folder] = rule;
    r.order.push_back(folder);
  }
  return r;
}

// The C++ standard library (no '/' in the name) and the libc/POSIX headers
// tunnel-client uses (sys/, netinet/, arpa/).
bool is_libc_header(const std::string& h) {
  if (h.find('/') == std::string::npos) return true;
  for (const char* p : {"sys/", "netinet/", "arpa/"})
    if (h.rfind(p, 0) == 0) return true;
  return false;
}

std::string strip_extension(const std::string& h) {
  const auto dot = h.rfind('.');
  return dot == std::string::npos ? h : h.substr(0, dot);
}

// The folder a source file belongs to ("main.cpp" for files at the top).
std::string folder_of(const std::string& rel) {
  const auto slash = rel.find('/');
  return slash == std::string::npos ? rel : rel.substr(0, slash);
}

// Every include of `text` (file `rel`, relative to src/) checked against the
// rules: one message per broken rule, "<file>:<line>: ...".
std::vector<std::string> check_file(const Rules& rules, const std::string& rel, const std::string& text) {
  std::vector<std::string> out;
  const std::string folder = folder_of(rel);
  const auto it = rules.by_folder.find(folder);
  if (it == rules.by_folder.end()) {
    out.push_back("src/" + rel + ": folder " + folder + "/ has no rule in src/DEPS");
    return out;
  }
  const Rule& rule = it->second;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] != '#') continue;
    const auto inc = line.find("include", start);
    if (inc == std::string::npos || line.find_first_not_of(" \t", start + 1) != inc) continue;
    const auto open = line.find_first_of("\"<", inc + 7);
    if (open == std::string::npos) continue;
    const char close = line[open] == '"' ? '"' : '>';
    const auto end = line.find(close, open + 1);
    if (end == std::string::npos) continue;
    const std::string target = line.substr(open + 1, end - open - 1);
    const std::string where = "src/" + rel + ":" + std::to_string(n) + ": #include " + line[open] + target +
                              close + ": ";
    if (close == '>') {
      if (rule.libc_only && !is_libc_header(target))
        out.push_back(where + folder + "/ may use only the standard library and libc (src/DEPS:" +
                      std::to_string(rule.line) + ")");
      continue;
    }
    const auto slash = target.find('/');
    if (slash == std::string::npos) {
      out.push_back(where + "a project include names its folder (\"dir/file.hpp\")");
      continue;
    }
    const std::string to = target.substr(0, slash);
    if (to == folder || rule.folders.count(to) || rule.headers.count(strip_extension(target))) continue;
    std::string allowed;
    for (const auto& f : rule.folders) allowed += " " + f;
    for (const auto& h : rule.headers) allowed += " " + h;
    out.push_back(where + folder + "/ may not include " + to + "/ (src/DEPS:" + std::to_string(rule.line) + " " +
                  folder + ":" + allowed + ")");
  }
  return out;
}

// A folder (or header rule) naming a folder that is not listed before it:
// with that, the listed order is a topological order and there is no cycle.
std::vector<std::string> check_order(const Rules& rules) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& folder : rules.order) {
    const Rule& rule = rules.by_folder.at(folder);
    std::set<std::string> deps = rule.folders;
    for (const auto& h : rule.headers) deps.insert(h.substr(0, h.find('/')));
    for (const auto& d : deps) {
      if (d == folder)
        continue;
      else if (!rules.by_folder.count(d))
        out.push_back("src/DEPS:" + std::to_string(rule.line) + ": " + folder + " names " + d +
                      ", which has no rule");
      else if (!seen.count(d))
        out.push_back("src/DEPS:" + std::to_string(rule.line) + ": " + folder + " may include " + d +
                      ", which is listed after it (a layer may include only layers below it; a cycle "
                      "or an upward include)");
    }
    seen.insert(folder);
  }
  return out;
}

Rules load_rules() {
  std::ifstream in(fs::path(kr_source_dir()) / "src" / "DEPS");
  EXPECT_TRUE(in) << "src/DEPS not found";
  return parse_rules(in);
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v) s += l + "\n";
  return s;
}

TEST(Layering, RulesParseAndFormOneOrder) {
  const Rules rules = load_rules();
  EXPECT_TRUE(rules.errors.empty()) << join_lines(rules.errors);
  EXPECT_GT(rules.by_folder.size(), 10u);
  const auto bad = check_order(rules);
  EXPECT_TRUE(bad.empty()) << join_lines(bad);
}

TEST(Layering, EveryFolderHasARule) {
  const Rules rules = load_rules();
  std::vector<std::string> missing;
  for (const auto& e : fs::directory_iterator(fs::path(kr_source_dir()) / "src"))
    if (e.is_directory() && !rules.by_folder.count(e.path().filename().string()))
      missing.push_back("src/" + e.path().filename().string() + "/ has no rule in src/DEPS");
  EXPECT_TRUE(missing.empty()) << join_lines(missing);
}

TEST(Layering, EveryIncludeOfSrcFollowsDeps) {
  const Rules rules = load_rules();
  const fs::path src = fs::path(kr_source_dir()) / "src";
  std::vector<std::string> bad;
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    const std::string name = e.path().filename().string();
    if (ext != ".cpp" && ext != ".hpp" && ext != ".h" && name.find(".cpp.in") == std::string::npos) continue;
    ++files;
    const auto found = check_file(rules, fs::relative(e.path(), src).generic_string(), read_all(e.path()));
    bad.insert(bad.end(), found.begin(), found.end());
  }
  EXPECT_GT(files, 100u);
  std::sort(bad.begin(), bad.end());
  EXPECT_TRUE(bad.empty()) << bad.size() << " include(s) against src/DEPS:\n" << join_lines(bad);
}

// Files a reader can hold (issue 20): none over 600 lines. Split by
// responsibility where a file grows past it, not by line count.
TEST(Layering, NoSourceFileOver600Lines) {
  const fs::path src = fs::path(kr_source_dir()) / "src";
  std::vector<std::string> big;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".cpp" && ext != ".hpp" && ext != ".h") continue;
    const std::string text = read_all(e.path());
    const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
    if (lines > 600)
      big.push_back("src/" + fs::relative(e.path(), src).generic_string() + ": " + std::to_string(lines) + " lines");
  }
  EXPECT_TRUE(big.empty()) << join_lines(big);
}

// The checker itself: each kind of breach is reported with file, line, rule.
TEST(Layering, CheckerReportsEachBreach) {
  std::istringstream deps(
      "common:\n"
      "docker: common\n"
      "tunnel: common\n"
      "tunnel_client: tunnel/frame <libc>\n"
      "vm: common docker\n"
      "bad: vm tasks\n");
  const Rules rules = parse_rules(deps);
  ASSERT_TRUE(rules.errors.empty());
  EXPECT_TRUE(check_file(rules, "vm/a.cpp", "#include \"vm/b.hpp\"\n#include \"docker/c.hpp\"\n#include <vector>\n")
                  .empty());
  auto up = check_file(rules, "docker/x.cpp", "// one\n  #  include \"vm/vm_service.hpp\"\n");
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0],
            "src/docker/x.cpp:2: #include \"vm/vm_service.hpp\": docker/ may not include vm/ (src/DEPS:2 docker: "
            "common)");
  auto tc = check_file(rules, "tunnel_client/c.cpp",
                       "#include \"tunnel/frame.hpp\"\n#include \"tunnel/relay.hpp\"\n#include <sys/socket.h>\n"
                       "#include <boost/asio.hpp>\n");
  ASSERT_EQ(tc.size(), 2u);
  EXPECT_NE(tc[0].find("c.cpp:2:"), std::string::npos) << tc[0];
  EXPECT_NE(tc[1].find("c.cpp:4:"), std::string::npos) << tc[1];
  EXPECT_EQ(check_file(rules, "store/s.cpp", "").size(), 1u);  // no rule for store/
  auto order = check_order(rules);
  ASSERT_EQ(order.size(), 1u) << join_lines(order);  // "bad" names vm (above: fine) and tasks (no rule)
  EXPECT_NE(order[0].find("bad names tasks"), std::string::npos) << order[0];
  std::istringstream cyc("a: b\nb: a\n");
  EXPECT_EQ(check_order(parse_rules(cyc)).size(), 1u);
}

}  // namespace

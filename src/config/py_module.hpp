// Statement-level reader for runner_config.py files: turns the logical lines
// of py_lexer into the module-level assignments of literal values, the only
// thing KohakuEngine's Config.from_globals() can hand to the runner that we
// can reproduce without a Python interpreter (protocol.md §4.2, D24).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kr::config::py {

// A literal value as Python would have evaluated it.
struct Value {
    enum class Kind { None, Bool, Int, Float, Str, List, Tuple, Dict, LogLevelMember };
    Kind kind = Kind::None;
    int line = 0;  // where the value starts (elements carry their own line)
    bool b = false;
    std::int64_t i = 0;
    double f = 0;
    std::string s;             // Str: the text; LogLevelMember: "FULL"/"DEBUG"/"INFO"/"WARNING"
    std::vector<Value> items;  // List/Tuple elements; Dict: key, value, key, value...
};

// "str 'abc'", "int 5", "bool True", "None", "list of 2 items", ... for messages.
std::string describe(const Value& v);

struct Assignment {
    std::string name;
    Value value;
    int line;
};

// Parses a whole module. Skips docstrings, imports, `def`/`class` blocks
// (with decorators) and `if __name__ == "__main__":` blocks; returns the
// module-level assignments in source order. Anything else throws ConfigError
// with "<filename>:<line>: ...".
std::vector<Assignment> parse_module(std::string_view source, std::string_view filename);

}  // namespace kr::config::py

// Tokenizer for the Python subset found in runner_config.py files.
// It follows Python's own lexical rules closely enough that every file the
// interpreter accepts (within the subset) tokenizes the same way, and the
// errors name the line Python would name: implicit line joining inside
// brackets, backslash continuation, comments, string literals with prefixes
// and escapes, and the INDENT/DEDENT consistency checks (tabs vs spaces).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kr::config::py {

enum class TokKind { Name, Number, String, Op };

struct Token {
    TokKind kind;
    // Name/Number/Op: the source text. String: the decoded value (UTF-8).
    std::string text;
    int line;
    // String only: lower-cased prefix letters ("", "r", "b", "f", "rb", ...).
    std::string prefix;
};

// One logical line (a statement): physical lines joined by brackets or
// backslashes. `depth` is the indentation level (0 = module level).
struct LogicalLine {
    int line;
    int depth;
    std::vector<Token> tokens;
};

// Throws ConfigError("<filename>:<line>: ...") on lexical errors.
std::vector<LogicalLine> tokenize(std::string_view source, std::string_view filename);

}  // namespace kr::config::py

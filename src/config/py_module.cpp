#include "config/py_module.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <map>
#include <utility>

#include "config/config.hpp"
#include "config/py_lexer.hpp"

namespace kr::config::py {
namespace {

constexpr std::string_view kKeywords[] = {
    "False", "None",   "True",    "and",      "as",       "assert", "async",  "await", "break",
    "class", "continue", "def",   "del",      "elif",     "else",   "except", "finally", "for",
    "from",  "global", "if",      "import",   "in",       "is",     "lambda", "nonlocal", "not",
    "or",    "pass",   "raise",   "return",   "try",      "while",  "with",   "yield"};

bool is_keyword(std::string_view w) {
    return std::find(std::begin(kKeywords), std::end(kKeywords), w) != std::end(kKeywords);
}
bool is_op(const Token& t, std::string_view op) { return t.kind == TokKind::Op && t.text == op; }
bool is_name(const Token& t, std::string_view n) { return t.kind == TokKind::Name && t.text == n; }

std::string shown(const Token& t) {
    if (t.kind == TokKind::String) return t.prefix + "\"" + t.text.substr(0, 30) + "\"";
    return t.text;
}

// The token list of one statement with a read position.
struct Cursor {
    const std::vector<Token>& toks;
    std::size_t pos;
    bool end() const { return pos >= toks.size(); }
    const Token* peek(std::size_t off = 0) const {
        return pos + off < toks.size() ? &toks[pos + off] : nullptr;
    }
    bool next_is_op(std::string_view op) const { return !end() && is_op(toks[pos], op); }
};

class ModuleParser {
public:
    ModuleParser(std::vector<LogicalLine> lines, std::string_view file)
        : lines_(std::move(lines)), file_(file) {}

    std::vector<Assignment> run() {
        std::size_t i = 0;
        while (i < lines_.size()) statement(i);
        return std::move(out_);
    }

private:
    [[noreturn]] void fail(int line, std::string message) const {
        throw ConfigError(std::string(file_), line, std::move(message));
    }

    void statement(std::size_t& i) {
        const LogicalLine& l = lines_[i];
        const Token& t0 = l.tokens.front();
        if (l.depth > 0) fail(l.line, "unexpected indent");
        if (t0.kind == TokKind::String) {  // module docstring or any bare string
            for (const Token& t : l.tokens)
                if (t.kind != TokKind::String)
                    fail(t.line, "unexpected '" + shown(t) + "' after a bare string statement");
            ++i;
        } else if (is_op(t0, "@")) {  // decorator: must lead to def/class
            if (i + 1 >= lines_.size() || lines_[i + 1].depth != 0 ||
                !(is_name(lines_[i + 1].tokens[0], "def") || is_name(lines_[i + 1].tokens[0], "class") ||
                  is_name(lines_[i + 1].tokens[0], "async") || is_op(lines_[i + 1].tokens[0], "@")))
                fail(l.line, "a decorator must be followed by 'def' or 'class'");
            ++i;
        } else if (is_name(t0, "import") || is_name(t0, "from")) {
            import_statement(l);
            ++i;
        } else if (is_name(t0, "def") || is_name(t0, "class") || is_name(t0, "async")) {
            skip_block(i);
        } else if (is_name(t0, "if")) {
            if (!is_main_guard(l.tokens))
                fail(l.line,
                     "'if' statements are not supported in configuration files (only an "
                     "'if __name__ == \"__main__\":' block is allowed, and it is skipped)");
            skip_block(i);
            while (i < lines_.size() && lines_[i].depth == 0 &&
                   (is_name(lines_[i].tokens[0], "elif") || is_name(lines_[i].tokens[0], "else")))
                skip_block(i);
        } else if (is_name(t0, "pass") && l.tokens.size() == 1) {
            ++i;
        } else if (t0.kind == TokKind::Name && !is_keyword(t0.text)) {
            assignment(l);
            ++i;
        } else {
            fail(l.line, "unsupported statement starting with '" + shown(t0) +
                             "' (a configuration file may only contain NAME = value lines, imports, "
                             "comments and the config_gen() function)");
        }
    }

    static bool is_main_guard(const std::vector<Token>& t) {
        auto is_main_str = [](const Token& x) { return x.kind == TokKind::String && x.text == "__main__"; };
        return t.size() >= 5 && is_op(t[2], "==") && is_op(t[4], ":") &&
               ((is_name(t[1], "__name__") && is_main_str(t[3])) || (is_main_str(t[1]) && is_name(t[3], "__name__")));
    }

    // Skips a compound statement (header line + indented body) without
    // looking inside: function bodies are never run by Config.from_globals().
    void skip_block(std::size_t& i) {
        const LogicalLine& h = lines_[i];
        const std::string kw = h.tokens[0].text;
        int depth = 0;
        std::size_t colon = 0;
        for (std::size_t k = 1; k < h.tokens.size() && colon == 0; ++k) {
            const Token& t = h.tokens[k];
            if (t.kind != TokKind::Op) continue;
            if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
            else if (t.text == ")" || t.text == "]" || t.text == "}") --depth;
            else if (t.text == ":" && depth == 0) colon = k;
        }
        if (colon == 0) fail(h.line, "expected ':' at the end of the '" + kw + "' statement");
        ++i;
        if (colon + 1 < h.tokens.size()) return;  // one-line body: `def f(): return 1`
        if (i >= lines_.size() || lines_[i].depth == 0)
            fail(i < lines_.size() ? lines_[i].line : h.line,
                 "expected an indented block after the '" + kw + "' statement on line " + std::to_string(h.line));
        while (i < lines_.size() && lines_[i].depth > 0) ++i;
    }

    // Imports are not executed (the runner needs neither KohakuEngine nor the
    // enum module); they are only checked to be well-formed.
    void import_statement(const LogicalLine& l) {
        Cursor c{l.tokens, 1};
        auto bad = [&] { fail(l.line, "malformed import statement"); };
        auto dotted = [&] {
            if (c.end() || c.peek()->kind != TokKind::Name) bad();
            ++c.pos;
            while (c.next_is_op(".")) {
                ++c.pos;
                if (c.end() || c.peek()->kind != TokKind::Name) bad();
                ++c.pos;
            }
        };
        auto alias = [&] {
            if (!c.end() && is_name(*c.peek(), "as")) {
                ++c.pos;
                if (c.end() || c.peek()->kind != TokKind::Name) bad();
                ++c.pos;
            }
        };
        if (is_name(l.tokens[0], "import")) {
            do {
                dotted();
                alias();
            } while (c.next_is_op(",") && (++c.pos, true));
        } else {
            bool relative = false;
            while (c.next_is_op(".") || c.next_is_op("...")) ++c.pos, relative = true;
            if (!relative || (!c.end() && !is_name(*c.peek(), "import"))) dotted();
            if (c.end() || !is_name(*c.peek(), "import")) bad();
            ++c.pos;
            if (c.next_is_op("*")) {
                ++c.pos;
            } else {
                bool paren = c.next_is_op("(");
                if (paren) ++c.pos;
                while (true) {
                    if (c.end() || c.peek()->kind != TokKind::Name) bad();
                    ++c.pos;
                    alias();
                    if (!c.next_is_op(",")) break;
                    ++c.pos;
                    if (paren && c.next_is_op(")")) break;  // trailing comma
                }
                if (paren) {
                    if (!c.next_is_op(")")) bad();
                    ++c.pos;
                }
            }
        }
        if (!c.end()) bad();
    }

    void assignment(const LogicalLine& l) {
        const auto& toks = l.tokens;
        const std::string& name = toks[0].text;
        if (toks.size() == 1) fail(l.line, "expected '=' after '" + name + "' (configuration lines look like NAME = value)");
        std::size_t p = 1;
        const Token& t1 = toks[1];
        if (is_op(t1, ":")) {  // annotated: NAME: type = value
            int depth = 0;
            for (p = 2; p < toks.size(); ++p) {
                const Token& t = toks[p];
                if (t.kind != TokKind::Op) continue;
                if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
                else if (t.text == ")" || t.text == "]" || t.text == "}") --depth;
                else if (t.text == "=" && depth == 0) break;
            }
            if (p == 2) fail(t1.line, "expected a type annotation after ':'");
            if (p == toks.size()) return;  // `NAME: type` alone binds nothing in Python
        } else if (is_op(t1, "(")) {
            fail(l.line, "unsupported statement: '" + name +
                             "(...)' is a function call; configuration files may only assign literal values");
        } else if (is_op(t1, ",")) {
            fail(l.line, "assigning to several names at once is not supported");
        } else if (t1.kind == TokKind::Op && t1.text.size() >= 2 && t1.text.back() == '=' && t1.text != "==") {
            fail(t1.line, "augmented assignment '" + t1.text + "' is not supported");
        } else if (!is_op(t1, "=")) {
            fail(t1.line, "expected '=' after '" + name + "', got '" + shown(t1) + "'");
        }
        const Token& eq = toks[p];
        int depth = 0;
        for (std::size_t k = p + 1; k < toks.size(); ++k) {  // `A = B = 1` would fail later, less clearly
            const Token& t = toks[k];
            if (is_op(t, "(") || is_op(t, "[") || is_op(t, "{")) ++depth;
            else if (is_op(t, ")") || is_op(t, "]") || is_op(t, "}")) --depth;
            else if (is_op(t, "=") && depth == 0) fail(t.line, "chained assignment (A = B = value) is not supported");
        }
        Cursor c{toks, p + 1};
        if (c.end()) fail(eq.line, "expected a value after '=' for " + name);
        Value v = parse_expression(c);
        if (!c.end()) {
            const Token& t = *c.peek();
            static constexpr std::string_view binary[] = {"+", "-", "*", "/", "%", "**", "//", "|",
                                                          "&", "^", "<<", ">>", "@", "==", "!=", "<",
                                                          ">", "<=", ">="};
            bool is_operator = (t.kind == TokKind::Op &&
                                std::find(std::begin(binary), std::end(binary), t.text) != std::end(binary)) ||
                               is_name(t, "and") || is_name(t, "or") || is_name(t, "if") ||
                               is_name(t, "in") || is_name(t, "is") || is_name(t, "not");
            if (is_operator)
                fail(t.line, "unsupported expression: operators are not evaluated ('" + t.text +
                                 "'); write the resulting literal value for " + name);
            fail(t.line, "unexpected '" + shown(t) + "' after the value of " + name);
        }
        globals_[name] = v;
        out_.push_back(Assignment{name, std::move(v), l.line});
    }

    // value [, value ...] — a bare comma list is a tuple in Python.
    Value parse_expression(Cursor& c) {
        Value first = parse_value(c, 0);
        if (!c.next_is_op(",")) return first;
        Value tuple;
        tuple.kind = Value::Kind::Tuple;
        tuple.line = first.line;
        tuple.items.push_back(std::move(first));
        while (c.next_is_op(",")) {
            ++c.pos;
            if (c.end()) break;
            tuple.items.push_back(parse_value(c, 0));
        }
        return tuple;
    }

    Value parse_value(Cursor& c, int depth) {
        if (c.end()) fail(c.toks.back().line, "expected a value after '" + shown(c.toks.back()) + "'");
        const Token& t = c.toks[c.pos++];
        if (depth > 64) fail(t.line, "values are nested too deeply");
        Value v;
        v.line = t.line;
        if (t.kind == TokKind::String) return parse_strings(c, t);
        if (t.kind == TokKind::Number) return parse_number(t);
        if (is_op(t, "-") || is_op(t, "+")) {
            if (c.end() || c.peek()->kind != TokKind::Number)
                fail(t.line, "unsupported expression: unary '" + t.text + "' only applies to a number");
            v = parse_number(c.toks[c.pos++]);
            v.line = t.line;
            if (t.text == "-") {
                if (v.kind == Value::Kind::Float) v.f = -v.f;
                else v.i = -v.i;  // magnitude was checked against INT64_MAX
            }
            return v;
        }
        if (t.kind == TokKind::Name) return parse_name(c, t);
        if (is_op(t, "[")) return parse_sequence(c, t, Value::Kind::List, "]", depth);
        if (is_op(t, "(")) {
            if (c.next_is_op(")")) {
                ++c.pos;
                v.kind = Value::Kind::Tuple;
                return v;
            }
            Value inner = parse_value(c, depth + 1);
            if (c.next_is_op(")")) {  // parentheses around a value
                ++c.pos;
                return inner;
            }
            Value tuple = parse_sequence(c, t, Value::Kind::Tuple, ")", depth, &inner);
            return tuple;
        }
        if (is_op(t, "{")) return parse_dict(c, t, depth);
        fail(t.line, "expected a value, got '" + shown(t) + "'");
    }

    Value parse_strings(Cursor& c, const Token& first) {
        Value v;
        v.kind = Value::Kind::Str;
        v.line = first.line;
        const Token* t = &first;
        while (true) {
            if (t->prefix.find('b') != std::string::npos)
                fail(t->line, "bytes literals (b'...') are not supported; use a plain string");
            if (t->prefix.find('f') != std::string::npos && t->text.find('{') != std::string::npos)
                fail(t->line, "f-strings are not evaluated; write the final string");
            v.s += t->text;
            if (c.end() || c.peek()->kind != TokKind::String) break;  // adjacent literals concatenate
            t = &c.toks[c.pos++];
        }
        return v;
    }

    Value parse_number(const Token& t) const {
        const std::string& s = t.text;
        Value v;
        v.line = t.line;
        if (s.back() == 'j' || s.back() == 'J') fail(t.line, "complex numbers are not supported");
        int base = 10;
        std::size_t start = 0;
        if (s.size() > 1 && s[0] == '0' && std::string_view("xXoObB").find(s[1]) != std::string_view::npos) {
            base = (s[1] | 0x20) == 'x' ? 16 : (s[1] | 0x20) == 'o' ? 8 : 2;
            start = 2;
        }
        const char* kind = base == 16 ? "hexadecimal" : base == 8 ? "octal" : base == 2 ? "binary" : "decimal";
        std::string digits;
        for (std::size_t k = start; k < s.size(); ++k) {
            if (s[k] != '_') {
                digits += s[k];
                continue;
            }
            // An underscore must sit between two digits (or right after 0x).
            auto digit = [&](char ch) {
                return base == 10 ? std::isdigit(static_cast<unsigned char>(ch)) != 0
                                  : std::isxdigit(static_cast<unsigned char>(ch)) != 0;
            };
            bool before_ok = k == start ? base != 10 : digit(s[k - 1]);
            bool after_ok = k + 1 < s.size() && digit(s[k + 1]);
            if (!before_ok || !after_ok) fail(t.line, std::string("invalid ") + kind + " literal '" + s + "'");
        }
        bool is_float = base == 10 && digits.find_first_of(".eE") != std::string::npos;
        if (is_float) {
            v.kind = Value::Kind::Float;
            char* endp = nullptr;
            v.f = std::strtod(digits.c_str(), &endp);
            if (*endp != '\0') fail(t.line, "invalid decimal literal '" + s + "'");
            return v;
        }
        if (digits.empty()) fail(t.line, std::string("invalid ") + kind + " literal '" + s + "'");
        if (base == 10 && digits.size() > 1 && digits[0] == '0' && digits.find_first_not_of('0') != std::string::npos)
            fail(t.line, "leading zeros in decimal integer literals are not permitted ('" + s + "')");
        std::uint64_t value = 0;
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
        if (ec == std::errc::result_out_of_range ||
            (ec == std::errc{} && value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())))
            fail(t.line, "integer literal '" + s + "' is too large");
        if (ec != std::errc{} || ptr != digits.data() + digits.size())
            fail(t.line, std::string("invalid ") + kind + " literal '" + s + "'");
        v.kind = Value::Kind::Int;
        v.i = static_cast<std::int64_t>(value);
        return v;
    }

    Value parse_name(Cursor& c, const Token& t) {
        Value v;
        v.line = t.line;
        if (t.text == "True" || t.text == "False") {
            v.kind = Value::Kind::Bool;
            v.b = t.text == "True";
            return v;
        }
        if (t.text == "None") return v;
        if (is_keyword(t.text)) fail(t.line, "expected a value, got the keyword '" + t.text + "'");
        std::vector<std::string> parts{t.text};
        while (c.next_is_op(".") && c.peek(1) && c.peek(1)->kind == TokKind::Name) {
            parts.push_back(c.peek(1)->text);
            c.pos += 2;
        }
        std::string dotted = parts[0];
        for (std::size_t k = 1; k < parts.size(); ++k) dotted += "." + parts[k];
        if (c.next_is_op("("))
            fail(t.line, "unsupported expression: function calls such as '" + dotted +
                             "(...)' are not evaluated; write the literal value");
        if (c.next_is_op("[")) fail(t.line, "unsupported expression: subscripts such as '" + dotted + "[...]' are not evaluated");
        if (parts.size() >= 2 && parts[parts.size() - 2] == "LogLevel") {
            auto level = log_level_from_string(parts.back());
            if (!level)
                fail(t.line, "LogLevel has no member '" + parts.back() + "' (expected FULL, DEBUG, INFO or WARNING)");
            v.kind = Value::Kind::LogLevelMember;
            v.s = to_string(*level);
            for (char& ch : v.s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            return v;
        }
        if (parts.size() == 1) {
            auto it = globals_.find(t.text);
            if (it == globals_.end())
                fail(t.line, "name '" + t.text +
                                 "' is not defined (values must be literals or names assigned earlier in this file)");
            v = it->second;
            v.line = t.line;
            return v;
        }
        fail(t.line, "unsupported expression '" + dotted + "' (only literals and LogLevel.<member> are understood)");
    }

    // Elements up to `close`, comma separated, trailing comma allowed.
    Value parse_sequence(Cursor& c, const Token& open, Value::Kind kind, std::string_view close, int depth,
                         Value* first = nullptr) {
        Value v;
        v.kind = kind;
        v.line = open.line;
        const char* what = kind == Value::Kind::List ? "list" : "tuple";
        if (first) {
            v.items.push_back(std::move(*first));
            if (!c.next_is_op(",")) expect_separator(c, close, what);
            ++c.pos;
        }
        while (true) {
            if (c.next_is_op(close)) {
                ++c.pos;
                return v;
            }
            v.items.push_back(parse_value(c, depth + 1));
            if (c.next_is_op(close)) continue;
            expect_separator(c, close, what);
            ++c.pos;
        }
    }

    void expect_separator(const Cursor& c, std::string_view close, const char* what) const {
        if (c.next_is_op(",")) return;
        const Token& t = c.end() ? c.toks.back() : *c.peek();
        fail(t.line, std::string("expected ',' or '") + std::string(close) + "' in " + what + ", got '" + shown(t) + "'");
    }

    Value parse_dict(Cursor& c, const Token& open, int depth) {
        Value v;
        v.kind = Value::Kind::Dict;
        v.line = open.line;
        while (true) {
            if (c.next_is_op("}")) {
                ++c.pos;
                return v;
            }
            v.items.push_back(parse_value(c, depth + 1));
            if (!c.next_is_op(":")) {
                const Token& t = c.end() ? c.toks.back() : *c.peek();
                if (is_op(t, ",") || is_op(t, "}")) fail(t.line, "sets ({a, b}) are not supported");
                fail(t.line, "expected ':' in dict, got '" + shown(t) + "'");
            }
            ++c.pos;
            v.items.push_back(parse_value(c, depth + 1));
            if (c.next_is_op("}")) continue;
            expect_separator(c, "}", "dict");
            ++c.pos;
        }
    }

    std::vector<LogicalLine> lines_;
    std::string_view file_;
    std::map<std::string, Value> globals_;
    std::vector<Assignment> out_;
};

}  // namespace

std::string describe(const Value& v) {
    switch (v.kind) {
        case Value::Kind::None: return "None";
        case Value::Kind::Bool: return v.b ? "bool True" : "bool False";
        case Value::Kind::Int: return "int " + std::to_string(v.i);
        case Value::Kind::Float: {
            char buf[64];
            auto res = std::to_chars(buf, buf + sizeof buf, v.f);
            return "float " + std::string(buf, res.ptr);
        }
        case Value::Kind::Str: {
            std::string shown;
            for (char ch : v.s.substr(0, 40)) shown += ch == '\n' ? std::string("\\n") : std::string(1, ch);
            return "str '" + shown + (v.s.size() > 40 ? "...'" : "'");
        }
        case Value::Kind::List: return "list";
        case Value::Kind::Tuple: return "tuple";
        case Value::Kind::Dict: return "dict";
        case Value::Kind::LogLevelMember: return "LogLevel." + v.s;
    }
    return "value";
}

std::vector<Assignment> parse_module(std::string_view source, std::string_view filename) {
    return ModuleParser(tokenize(source, filename), filename).run();
}

}  // namespace kr::config::py

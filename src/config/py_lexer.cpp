#include "config/py_lexer.hpp"

#include <cstdint>
#include <cstdio>
#include <utility>

#include "config/config.hpp"

namespace kr::config::py {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    return (c | 0x20) - 'a' + 10;
}

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Decodes the UTF-8 sequence at s[pos] (best effort; invalid bytes yield the
// byte value) and stores its length in `len`.
std::uint32_t decode_utf8(std::string_view s, std::size_t pos, std::size_t& len) {
    auto b = static_cast<unsigned char>(s[pos]);
    int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : 0;
    std::uint32_t cp = extra == 3 ? (b & 0x07) : extra == 2 ? (b & 0x0F) : extra == 1 ? (b & 0x1F) : b;
    len = 1;
    for (int i = 0; i < extra && pos + len < s.size(); ++i, ++len) {
        auto c = static_cast<unsigned char>(s[pos + len]);
        if ((c & 0xC0) != 0x80) break;
        cp = (cp << 6) | (c & 0x3F);
    }
    return cp;
}

// Non-ASCII characters that are punctuation or spaces, not letters: the usual
// result of pasting from a word processor ("smart" quotes, no-break spaces).
// Python rejects them outside strings and comments; so do we, by name.
bool is_unicode_punctuation(std::uint32_t cp) {
    return cp == 0x00A0 || cp == 0x00AB || cp == 0x00BB || (cp >= 0x2000 && cp <= 0x206F) ||
           cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFF01 && cp <= 0xFF0F);
}

bool is_string_prefix(std::string_view p) {
    std::string lower;
    for (char c : p) lower += static_cast<char>(c | 0x20);
    for (std::string_view ok : {"r", "u", "b", "f", "br", "rb", "fr", "rf"})
        if (lower == ok) return true;
    return false;
}

class Lexer {
public:
    Lexer(std::string_view src, std::string_view file) : src_(src), file_(file) {}

    std::vector<LogicalLine> run() {
        // A UTF-8 byte order mark is allowed by Python at the very start.
        if (src_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
        while (true) {
            if (!in_line_ && !begin_logical_line()) break;
            if (at_end()) break;
            char c = peek();
            if (c == ' ' || c == '\t' || c == '\f') {
                ++pos_;
            } else if (c == '#') {
                skip_comment();
            } else if (at_newline()) {
                consume_newline();
                if (parens_.empty()) end_logical_line();
            } else if (c == '\\') {
                continue_line();
            } else if (c == '"' || c == '\'') {
                lex_string("");
            } else if (is_digit(c) || (c == '.' && is_digit(peek(1)))) {
                lex_number();
            } else if (is_alpha(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80) {
                lex_name_or_string();
            } else {
                lex_op();
            }
        }
        if (!parens_.empty()) {
            auto [open, line] = parens_.back();
            fail(line, std::string("'") + open + "' was never closed" + what_unclosed(open));
        }
        end_logical_line();
        return std::move(out_);
    }

private:
    [[noreturn]] void fail(int line, std::string message) const {
        throw ConfigError(std::string(file_), line, std::move(message));
    }

    static std::string what_unclosed(char open) {
        if (open == '[') return " (unterminated list)";
        if (open == '(') return " (unterminated parenthesis)";
        return " (unterminated dict)";
    }

    char peek(std::size_t off = 0) const { return pos_ + off < src_.size() ? src_[pos_ + off] : '\0'; }
    bool at_end(std::size_t off = 0) const { return pos_ + off >= src_.size(); }
    bool at_newline(std::size_t off = 0) const {
        return !at_end(off) && (peek(off) == '\n' || peek(off) == '\r');
    }
    void consume_newline() {
        if (peek() == '\r' && peek(1) == '\n') ++pos_;
        ++pos_;
        ++line_;
    }
    void skip_comment() {
        while (!at_end() && !at_newline()) ++pos_;
    }

    // At the start of a physical line that may begin a statement: skips blank
    // and comment-only lines (their indentation is irrelevant, as in Python),
    // then checks the indentation. Returns false at end of input.
    bool begin_logical_line() {
        while (true) {
            int col = 0, alt = 0;  // alt counts a tab as one column (TabError check)
            for (; !at_end(); ++pos_) {
                char c = peek();
                if (c == ' ') {
                    ++col, ++alt;
                } else if (c == '\t') {
                    col = (col / 8 + 1) * 8, ++alt;
                } else if (c == '\f') {
                    col = alt = 0;
                } else {
                    break;
                }
            }
            if (at_end()) return false;
            if (peek() == '#') skip_comment();
            if (at_end()) return false;
            if (at_newline()) {
                consume_newline();
                continue;
            }
            cur_ = LogicalLine{line_, indent(col, alt), {}};
            in_line_ = true;
            return true;
        }
    }

    // Python's indentation stack: equal columns must also agree when tabs
    // count as 1 column, otherwise the meaning depends on the tab size.
    int indent(int col, int alt) {
        const char* tab_error = "inconsistent use of tabs and spaces in indentation";
        if (col == indents_.back().first) {
            if (alt != indents_.back().second) fail(line_, tab_error);
        } else if (col > indents_.back().first) {
            if (alt <= indents_.back().second) fail(line_, tab_error);
            indents_.emplace_back(col, alt);
        } else {
            while (indents_.size() > 1 && col < indents_.back().first) indents_.pop_back();
            if (col != indents_.back().first)
                fail(line_, "unindent does not match any outer indentation level");
            if (alt != indents_.back().second) fail(line_, tab_error);
        }
        return static_cast<int>(indents_.size()) - 1;
    }

    void end_logical_line() {
        if (in_line_ && !cur_.tokens.empty()) out_.push_back(std::move(cur_));
        cur_ = {};
        in_line_ = false;
    }

    void push(TokKind kind, std::string text, int line, std::string prefix = {}) {
        cur_.tokens.push_back(Token{kind, std::move(text), line, std::move(prefix)});
    }

    void continue_line() {
        if (!at_newline(1)) {
            if (at_end(1)) fail(line_, "unexpected end of file after line continuation character");
            fail(line_, "unexpected character after line continuation character");
        }
        ++pos_;
        consume_newline();
        if (at_end()) fail(line_ - 1, "unexpected end of file after line continuation character");
    }

    void lex_name_or_string() {
        std::size_t start = pos_;
        while (!at_end()) {
            char c = peek();
            if (static_cast<unsigned char>(c) >= 0x80) {
                std::size_t len = 0;
                std::uint32_t cp = decode_utf8(src_, pos_, len);
                if (is_unicode_punctuation(cp)) {
                    std::string shown(src_.substr(pos_, len));
                    char hex[16];
                    std::snprintf(hex, sizeof hex, "U+%04X", cp);
                    fail(line_, "invalid character '" + shown + "' (" + hex + ")");
                }
                pos_ += len;
            } else if (is_alpha(c) || is_digit(c) || c == '_') {
                ++pos_;
            } else {
                break;
            }
        }
        std::string_view word = src_.substr(start, pos_ - start);
        if ((peek() == '"' || peek() == '\'') && is_string_prefix(word)) {
            std::string prefix;
            for (char c : word) prefix += static_cast<char>(c | 0x20);
            lex_string(std::move(prefix));
            return;
        }
        push(TokKind::Name, std::string(word), line_);
    }

    void lex_number() {
        std::size_t start = pos_;
        if (peek() == '0' && std::string_view("xXoObB").find(peek(1)) != std::string_view::npos) {
            pos_ += 2;
            while (is_alpha(peek()) || is_digit(peek()) || peek() == '_') ++pos_;
        } else {
            auto digits = [&] {
                while (is_digit(peek()) || peek() == '_') ++pos_;
            };
            digits();
            if (peek() == '.') {
                ++pos_;
                digits();
            }
            if ((peek() == 'e' || peek() == 'E') &&
                (is_digit(peek(1)) || ((peek(1) == '+' || peek(1) == '-') && is_digit(peek(2))))) {
                pos_ += 2;
                digits();
            }
            if (peek() == 'j' || peek() == 'J') ++pos_;
            if (is_alpha(peek()) || peek() == '_') fail(line_, "invalid decimal literal");
        }
        push(TokKind::Number, std::string(src_.substr(start, pos_ - start)), line_);
    }

    void lex_string(std::string prefix) {
        const int start_line = line_;
        const char q = peek();
        const bool triple = peek(1) == q && peek(2) == q;
        const bool raw = prefix.find('r') != std::string::npos;
        const bool bytes = prefix.find('b') != std::string::npos;
        pos_ += triple ? 3 : 1;
        std::string out;
        while (true) {
            if (at_end() || (!triple && at_newline())) {
                fail(start_line, std::string(triple ? "unterminated triple-quoted string literal"
                                                    : "unterminated string literal") +
                                     " (detected at line " + std::to_string(line_) + ")");
            }
            char c = peek();
            if (c == q && (!triple || (peek(1) == q && peek(2) == q))) {
                pos_ += triple ? 3 : 1;
                break;
            }
            if (at_newline()) {  // inside a triple-quoted string
                out += '\n';
                consume_newline();
            } else if (c == '\\') {
                escape(out, raw, bytes);
            } else {
                out += c;
                ++pos_;
            }
        }
        push(TokKind::String, std::move(out), start_line, std::move(prefix));
    }

    // Handles a backslash inside a string literal (pos_ is on the backslash).
    void escape(std::string& out, bool raw, bool bytes) {
        if (at_end(1)) {
            ++pos_;  // the loop then reports the unterminated string
            return;
        }
        if (at_newline(1)) {  // backslash-newline: continuation inside the string
            ++pos_;
            if (raw) out += "\\\n";
            consume_newline();
            return;
        }
        char n = peek(1);
        pos_ += 2;
        if (raw) {  // raw strings keep the backslash; it only protects the quote
            out += '\\';
            out += n;
            return;
        }
        switch (n) {
            case '\\': out += '\\'; return;
            case '\'': out += '\''; return;
            case '"': out += '"'; return;
            case 'n': out += '\n'; return;
            case 't': out += '\t'; return;
            case 'r': out += '\r'; return;
            case 'a': out += '\a'; return;
            case 'b': out += '\b'; return;
            case 'f': out += '\f'; return;
            case 'v': out += '\v'; return;
            default: break;
        }
        if (n >= '0' && n <= '7') {
            std::uint32_t v = static_cast<std::uint32_t>(n - '0');
            for (int i = 0; i < 2 && peek() >= '0' && peek() <= '7'; ++i, ++pos_) v = v * 8 + (peek() - '0');
            if (bytes) out += static_cast<char>(v & 0xFF);
            else append_utf8(out, v);
            return;
        }
        if (n == 'x' || ((n == 'u' || n == 'U') && !bytes)) {
            int want = n == 'x' ? 2 : n == 'u' ? 4 : 8;
            std::uint32_t v = 0;
            for (int i = 0; i < want; ++i, ++pos_) {
                if (!is_hex(peek()))
                    fail(line_, std::string("truncated \\") + n + std::string(want, 'X') + " escape");
                v = v * 16 + static_cast<std::uint32_t>(hex_value(peek()));
            }
            if (v > 0x10FFFF) fail(line_, "illegal Unicode character in \\U escape");
            if (bytes) out += static_cast<char>(v);
            else append_utf8(out, v);
            return;
        }
        if (n == 'N' && !bytes) fail(line_, "\\N{...} escapes are not supported in configuration files");
        out += '\\';  // unknown escapes are kept verbatim, as Python does
        out += n;
    }

    void lex_op() {
        static constexpr std::string_view ops3[] = {"**=", "//=", ">>=", "<<=", "..."};
        static constexpr std::string_view ops2[] = {"->", "==", "!=", "<=", ">=", "**", "//", "+=", "-=", "*=",
                                                    "/=", "%=", "&=", "|=", "^=", ":=", "<<", ">>", "@="};
        static constexpr std::string_view ops1 = "()[]{},:.;@=+-*/%&|^~<>";
        std::string_view rest = src_.substr(pos_);
        for (auto op : ops3)
            if (rest.substr(0, 3) == op) return push_op(op);
        for (auto op : ops2)
            if (rest.substr(0, 2) == op) return push_op(op);
        char c = peek();
        if (ops1.find(c) == std::string_view::npos) {
            char buf[32];
            if (c > 0x20 && c < 0x7F) std::snprintf(buf, sizeof buf, "'%c'", c);
            else std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned char>(c));
            fail(line_, std::string("invalid character ") + buf);
        }
        if (c == '(' || c == '[' || c == '{') parens_.emplace_back(c, line_);
        if (c == ')' || c == ']' || c == '}') {
            if (parens_.empty()) fail(line_, std::string("unmatched '") + c + "'");
            auto [open, open_line] = parens_.back();
            char want = open == '(' ? ')' : open == '[' ? ']' : '}';
            if (c != want)
                fail(line_, std::string("closing parenthesis '") + c + "' does not match opening parenthesis '" +
                                open + "' on line " + std::to_string(open_line));
            parens_.pop_back();
        }
        push_op(rest.substr(0, 1));
    }

    void push_op(std::string_view op) {
        push(TokKind::Op, std::string(op), line_);
        pos_ += op.size();
    }

    std::string_view src_, file_;
    std::size_t pos_ = 0;
    int line_ = 1;
    std::vector<std::pair<int, int>> indents_{{0, 0}};
    std::vector<std::pair<char, int>> parens_;
    std::vector<LogicalLine> out_;
    LogicalLine cur_{};
    bool in_line_ = false;
};

}  // namespace

std::vector<LogicalLine> tokenize(std::string_view source, std::string_view filename) {
    return Lexer(source, filename).run();
}

}  // namespace kr::config::py

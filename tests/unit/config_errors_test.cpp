// Malformed runner_config.py files: each must fail with ConfigError whose
// message is "runner_config.py:<line>: <what was expected>".
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "config/config.hpp"

namespace {

struct BadFile {
    const char* name;
    const char* text;
    int line;
    const char* expected;  // substring of the message after "file:line: "
};

std::ostream& operator<<(std::ostream& os, const BadFile& b) { return os << b.name; }

const BadFile kBadFiles[] = {
    // Types
    {"StrForInt", "\"\"\"doc\"\"\"\nRUNNER_PORT = 'abc'\n", 2, "RUNNER_PORT expects an int, got str 'abc'"},
    {"BoolIsNotInt", "HOST_PORT = True\n", 1, "HOST_PORT expects an int, got bool True"},
    {"FloatForInt", "HEARTBEAT_INTERVAL_SECONDS = 2.5\n", 1, "HEARTBEAT_INTERVAL_SECONDS expects an int, got float 2.5"},
    {"IntForStr", "HOST_ADDRESS = 10\n", 1, "HOST_ADDRESS expects a str, got int 10"},
    {"NoneForStr", "SHARED_DIR = None\n", 1, "SHARED_DIR expects a str, got None"},
    {"IntForBool", "TASKS_PRIVILEGED = 1\n", 1, "TASKS_PRIVILEGED expects True or False, got int 1"},
    {"StrForBool", "TUNNEL_ENABLED = 'yes'\n", 1, "TUNNEL_ENABLED expects True or False, got str 'yes'"},
    {"StrForList", "ADDITIONAL_MOUNTS = '/a:/b'\n", 1, "ADDITIONAL_MOUNTS expects a list of str, got str '/a:/b'"},
    {"ListItemType", "ADDITIONAL_MOUNTS = [\n    '/a:/a',\n    5,\n]\n", 3, "ADDITIONAL_MOUNTS[1] expects a str, got int 5"},
    {"DictForList", "ADDITIONAL_MOUNTS = {}\n", 1, "ADDITIONAL_MOUNTS expects a list of str, got dict"},
    {"UnknownLogLevelMember", "from kohakuriver.models.enums import LogLevel\nLOG_LEVEL = LogLevel.VERBOSE\n", 2,
     "LogLevel has no member 'VERBOSE' (expected FULL, DEBUG, INFO or WARNING)"},
    {"UnknownLogLevelString", "LOG_LEVEL = 'loud'\n", 1, "LOG_LEVEL expects LogLevel.FULL"},
    {"IntForLogLevel", "LOG_LEVEL = 20\n", 1, "got int 20"},
    {"BindNotIpv4", "RUNNER_BIND_IP = 'localhost'\n", 1, "RUNNER_BIND_IP expects an IPv4 address"},
    {"BindIpv6NotAny", "RUNNER_BIND_IP = '::1'\n", 1, "or \"::\" (all IPv6 and IPv4 addresses)"},
    {"BodyBudgetTooSmall", "MAX_BUFFERED_REQUEST_BYTES = 1024\n", 1,
     "MAX_BUFFERED_REQUEST_BYTES must be at least 8388608, got 1024"},
    // Ranges
    {"PortTooLarge", "RUNNER_PORT = 70000\n", 1, "RUNNER_PORT must be a port number between 1 and 65535, got 70000"},
    {"PortNegative", "HOST_PORT = -1\n", 1, "HOST_PORT must be a port number between 1 and 65535, got -1"},
    {"PortZero", "OVERLAY_VXLAN_PORT = 0\n", 1, "OVERLAY_VXLAN_PORT must be a port number between 1 and 65535"},
    {"ZeroInterval", "HEARTBEAT_INTERVAL_SECONDS = 0\n", 1, "HEARTBEAT_INTERVAL_SECONDS must be at least 1, got 0"},
    {"VniRange", "OVERLAY_VXLAN_ID = 16777216\n", 1, "OVERLAY_VXLAN_ID must be between 1 and 16777215"},
    {"HugeInt", "RUNNER_PORT = 99999999999999999999999\n", 1, "is too large"},
    // Lexical
    {"UnterminatedString", "HOST_ADDRESS = \"10.0.0.1\nHOST_PORT = 8000\n", 1, "unterminated string literal"},
    {"UnterminatedTripleString", "X = 1\n\n\"\"\"Docstring that\nnever ends.\n", 3,
     "unterminated triple-quoted string literal"},
    {"UnterminatedList", "RUNNER_PORT = 8001\nADDITIONAL_MOUNTS = [\n    '/a:/a',\nHOST_PORT = 8000\n", 2,
     "'[' was never closed (unterminated list)"},
    {"UnterminatedParen", "SHARED_DIR = ('/mnt'\n", 1, "'(' was never closed"},
    {"UnmatchedClose", "RUNNER_PORT = 8001)\n", 1, "unmatched ')'"},
    {"MismatchedClose", "ADDITIONAL_MOUNTS = [\n  '/a:/a')\n", 2,
     "closing parenthesis ')' does not match opening parenthesis '[' on line 1"},
    {"InvalidCharacter", "RUNNER_PORT = $8001\n", 1, "invalid character '$'"},
    {"SmartQuotes", "HOST_ADDRESS = \xE2\x80\x9C" "10.0.0.1\xE2\x80\x9D\n", 1, "invalid character '\xE2\x80\x9C' (U+201C)"},
    {"LeadingZero", "RUNNER_PORT = 08001\n", 1, "leading zeros in decimal integer literals are not permitted"},
    {"BadUnderscore", "RUNNER_PORT = 8__001\n", 1, "invalid decimal literal '8__001'"},
    {"BackslashGarbage", "RUNNER_PORT = 8001 \\ # comment\n", 1, "unexpected character after line continuation character"},
    {"TruncatedHexEscape", "SHARED_DIR = '\\x4'\n", 1, "truncated \\xXX escape"},
    // Indentation
    {"UnexpectedIndent", "RUNNER_PORT = 8001\n    HOST_PORT = 8000\n", 2, "unexpected indent"},
    {"TabsAndSpaces", "def config_gen():\n        x = 1\n\treturn x\n", 3, "inconsistent use of tabs and spaces in indentation"},
    {"BadDedent", "def config_gen():\n    x = 1\n  return x\n", 3, "unindent does not match any outer indentation level"},
    {"MissingBlock", "def config_gen():\nRUNNER_PORT = 8001\n", 2,
     "expected an indented block after the 'def' statement on line 1"},
    {"MissingColon", "def config_gen()\n    return 1\n", 1, "expected ':' at the end of the 'def' statement"},
    // Statements and expressions
    {"GarbageStatement", "\"\"\"doc\"\"\"\n\nthis is not python\n", 3, "expected '=' after 'this'"},
    {"BareName", "RUNNER_PORT\n", 1, "expected '=' after 'RUNNER_PORT'"},
    {"FunctionCallStatement", "print('hello')\n", 1, "'print(...)' is a function call"},
    {"IfStatement", "if True:\n    RUNNER_PORT = 1\n", 1, "'if' statements are not supported"},
    {"ForLoop", "for i in range(3):\n    pass\n", 1, "unsupported statement starting with 'for'"},
    {"EnvironLookup", "import os\nHOST_ADDRESS = os.environ.get('HOST', '10.0.0.1')\n", 2,
     "function calls such as 'os.environ.get(...)' are not evaluated"},
    {"Arithmetic", "RUNNER_PORT = 8000 + 1\n", 1, "operators are not evaluated ('+')"},
    {"UndefinedName", "HOST_ADDRESS = HOSTNAME\n", 1, "name 'HOSTNAME' is not defined"},
    {"AttributeValue", "SHARED_DIR = os.sep\n", 1, "unsupported expression 'os.sep'"},
    {"FString", "X = 'a'\nSHARED_DIR = f'/mnt/{X}'\n", 2, "f-strings are not evaluated"},
    {"Bytes", "SHARED_DIR = b'/mnt'\n", 1, "bytes literals (b'...') are not supported"},
    {"MissingComma", "ADDITIONAL_MOUNTS = [\n  '/a:/a'\n  3,\n]\n", 3, "expected ',' or ']' in list, got '3'"},
    {"SetLiteral", "ADDITIONAL_MOUNTS = {'/a:/a'}\n", 1, "sets ({a, b}) are not supported"},
    {"ChainedAssignment", "RUNNER_PORT = HOST_PORT = 8000\n", 1, "chained assignment"},
    {"AugmentedAssignment", "RUNNER_PORT = 1\nRUNNER_PORT += 1\n", 2, "augmented assignment '+=' is not supported"},
    {"TupleTarget", "RUNNER_PORT, HOST_PORT = 1, 2\n", 1, "assigning to several names at once is not supported"},
    {"MissingValue", "RUNNER_PORT =\n", 1, "expected a value after '=' for RUNNER_PORT"},
    {"MalformedImport", "import\n", 1, "malformed import statement"},
    {"DanglingDecorator", "@decorator\nRUNNER_PORT = 1\n", 1, "a decorator must be followed by 'def' or 'class'"},
    {"ComplexNumber", "RUNNER_PORT = 3j\n", 1, "complex numbers are not supported"},
    {"ErrorAfterMultilineDocstring", "\"\"\"\nline 2\nline 3\n\"\"\"\nX = 1\nRUNNER_PORT = '8001'\n", 6,
     "RUNNER_PORT expects an int, got str '8001'"},
};

class ConfigErrors : public ::testing::TestWithParam<BadFile> {};

TEST_P(ConfigErrors, NamesFileLineAndExpectation) {
    const BadFile& b = GetParam();
    try {
        kr::config::parse_config_text(b.text, "runner_config.py");
        FAIL() << "accepted: " << b.text;
    } catch (const kr::config::ConfigError& e) {
        const std::string prefix = "runner_config.py:" + std::to_string(b.line) + ": ";
        const std::string what = e.what();
        EXPECT_EQ(what.substr(0, prefix.size()), prefix) << what;
        EXPECT_NE(what.find(b.expected), std::string::npos) << what;
        EXPECT_EQ(e.line(), b.line);
        EXPECT_EQ(e.file(), "runner_config.py");
    }
}

INSTANTIATE_TEST_SUITE_P(Malformed, ConfigErrors, ::testing::ValuesIn(kBadFiles),
                         [](const ::testing::TestParamInfo<BadFile>& info) { return std::string(info.param.name); });

}  // namespace

// shell_quote / build_task_script (execution.md §1.5.2) and the Python
// string helpers; expected values taken from CPython 3.11.
#include <gtest/gtest.h>

#include "tasks/shell.hpp"

using kr::tasks::build_task_script;
using kr::tasks::decode_utf8_lossy;
using kr::tasks::python_strip;
using kr::tasks::shell_quote;
using kr::tasks::utf8_prefix;

TEST(TaskShellQuote, MatchesShlexQuote) {
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("abc"), "abc");
  EXPECT_EQ(shell_quote("a@b%c+d=e:f,g./h-i_j"), "a@b%c+d=e:f,g./h-i_j");
  EXPECT_EQ(shell_quote("1e-3"), "1e-3");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\"'\"'s'");
  EXPECT_EQ(shell_quote("''"), "''\"'\"''\"'\"''");
  EXPECT_EQ(shell_quote("\"q\""), "'\"q\"'");
  EXPECT_EQ(shell_quote("a\nb"), "'a\nb'");
  EXPECT_EQ(shell_quote("\t"), "'\t'");
  EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
  EXPECT_EQ(shell_quote("`id`"), "'`id`'");
  EXPECT_EQ(shell_quote("*"), "'*'");
  EXPECT_EQ(shell_quote("~user"), "'~user'");
  EXPECT_EQ(shell_quote("x;rm -rf /"), "'x;rm -rf /'");
  // Non-ASCII is never "safe" (re.ASCII), so it is quoted.
  EXPECT_EQ(shell_quote("h\xc3\xa9llo"), "'h\xc3\xa9llo'");
  EXPECT_EQ(shell_quote("\xe6\x97\xa5\xe6\x9c\xac"), "'\xe6\x97\xa5\xe6\x9c\xac'");
}

TEST(TaskShellScript, PlainCommandWithArguments) {
  EXPECT_EQ(build_task_script("python train.py", {"--lr", "1e-3", "two words", "it's"},
                              "/kohakuriver-logs/7/stdout.log", "/kohakuriver-logs/7/stderr.log", false),
            "exec python train.py --lr 1e-3 'two words' 'it'\"'\"'s' > /kohakuriver-logs/7/stdout.log"
            " 2> /kohakuriver-logs/7/stderr.log");
}

TEST(TaskShellScript, CommandIsRawAndStripped) {
  // No arguments: no trailing blank; surrounding whitespace of the raw
  // command is stripped like Python's str.strip().
  EXPECT_EQ(build_task_script("  echo $HOME && ls\n", {}, "/o", "/e", false), "exec echo $HOME && ls > /o 2> /e");
  EXPECT_EQ(build_task_script("\xe3\x80\x80sleep 1", {}, "/o", "/e", false), "exec sleep 1 > /o 2> /e");
  // An empty argument is still an argument.
  EXPECT_EQ(build_task_script("printf", {""}, "/o", "/e", false), "exec printf '' > /o 2> /e");
  // Log paths are quoted.
  EXPECT_EQ(build_task_script("true", {}, "/logs/a b/out", "/logs/it's", false),
            "exec true > '/logs/a b/out' 2> '/logs/it'\"'\"'s'");
}

TEST(TaskShellScript, TunnelWrapperExactText) {
  EXPECT_EQ(build_task_script("sleep", {"5"}, "/kohakuriver-logs/1/stdout.log", "/kohakuriver-logs/1/stderr.log", true),
            "(nohup /usr/local/bin/tunnel-client --runner-url \"$KOHAKURIVER_TUNNEL_URL\" --container-id "
            "\"$KOHAKURIVER_CONTAINER_ID\" --log-level info > /tmp/tunnel-client.log 2>&1 &) && sleep 0.1 && "
            "exec sleep 5 > /kohakuriver-logs/1/stdout.log 2> /kohakuriver-logs/1/stderr.log");
}

TEST(TaskShellPython, StripUsesPythonWhitespace) {
  EXPECT_EQ(python_strip(" \t\n\v\f\r\x1c\x1f cmd \x1e"), "cmd");
  EXPECT_EQ(python_strip("\xc2\x85\xc2\xa0" "a b" "\xe2\x80\xa8\xe3\x80\x80"), "a b");  // U+0085 U+00A0 … U+2028 U+3000
  EXPECT_EQ(python_strip("\xe2\x80\x8b" "x"), "\xe2\x80\x8b" "x");  // U+200B is not whitespace
  EXPECT_EQ(python_strip("   "), "");
  EXPECT_EQ(python_strip(""), "");
  EXPECT_EQ(python_strip("\xff x \xff"), "\xff x \xff");  // invalid UTF-8 edges stay
}

TEST(TaskShellPython, DecodeReplacesLikeCPython) {
  // b'abc\xff\xe2\x82def\xf0\x9f\x98'.decode(errors='replace') == 'abc\ufffd\ufffddef\ufffd'
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(decode_utf8_lossy("abc\xff\xe2\x82" "def\xf0\x9f\x98"), "abc" + r + r + "def" + r);
  // Surrogates and overlongs: one U+FFFD per byte (b'\xed\xa0\x80x\xc0\xaf').
  EXPECT_EQ(decode_utf8_lossy("\xed\xa0\x80x\xc0\xaf"), r + r + r + "x" + r + r);
  EXPECT_EQ(decode_utf8_lossy("\xf4\x90\x80\x80"), r + r + r + r);
  EXPECT_EQ(decode_utf8_lossy("ok \xe6\x97\xa5"), "ok \xe6\x97\xa5");
}

TEST(TaskShellPython, PrefixCountsCodePoints) {
  EXPECT_EQ(utf8_prefix("h\xc3\xa9llo", 2), "h\xc3\xa9");
  EXPECT_EQ(utf8_prefix("abc", 10), "abc");
  EXPECT_EQ(utf8_prefix("\xf0\x9f\x98\x80z", 1), "\xf0\x9f\x98\x80");
}

#include <gtest/gtest.h>

#include "fs/fs_parse.hpp"

using namespace kr::fs;

TEST(FsParse, GnuLsWithEpochTimes) {
  const std::string out =
      "total 12\n"
      "drwxr-xr-x 2 root root 4096 1700000000 dir with  spaces\n"
      "-rw-r--r-- 1 root root 1234 1700000001 a|b ü.txt\n"
      "lrwxrwxrwx 1 root root    7 1700000002 link -> target\n"
      "crw-rw-rw- 1 root root 1, 3 1700000003 null\n";
  auto e = parse_ls(out, "/tmp", "NOW");
  ASSERT_EQ(e.size(), 3u);  // the device line has a "1," size column: dropped as upstream
  EXPECT_EQ(e[0]["name"], "dir with spaces");  // runs of spaces collapse (upstream)
  EXPECT_EQ(e[0]["type"], "directory");
  EXPECT_EQ(e[0]["size"], -1);
  EXPECT_EQ(e[0]["path"], "/tmp/dir with spaces");
  EXPECT_EQ(e[1]["name"], "a|b ü.txt");
  EXPECT_EQ(e[1]["size"], 1234);
  EXPECT_EQ(e[1]["permissions"], "rw-r--r--");
  EXPECT_NE(e[1]["mtime"], "NOW");
  EXPECT_EQ(e[2]["name"], "link");
  EXPECT_EQ(e[2]["type"], "symlink");
}

TEST(FsParse, BusyBoxLs) {
  const std::string out =
      "drwxr-xr-x    2 root     root          4096 Nov 30 00:25 bin\n"
      "-rw-r--r--    1 root     root            12 Nov 30 00:25 hello world.txt\n";
  auto e = parse_ls(out, "/", "NOW");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0]["path"], "/bin");
  EXPECT_EQ(e[1]["name"], "hello world.txt");
  EXPECT_EQ(e[1]["size"], 12);
  EXPECT_EQ(e[1]["mtime"], "NOW");
}

TEST(FsParse, ParentAndStat) {
  EXPECT_TRUE(parent_of("/").is_null());
  EXPECT_EQ(parent_of("/a"), "/");
  EXPECT_EQ(parent_of("/a/b"), "/a");
  auto s = parse_stat_full("regular file|10|1700000000|root|root|644\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->size, 10);
  EXPECT_EQ(stat_kind(s->type_text), "file");
  EXPECT_EQ(stat_kind("regular empty file"), "file");
  EXPECT_EQ(stat_kind("directory"), "directory");
  EXPECT_EQ(stat_kind("symbolic link"), "symlink");
  EXPECT_EQ(stat_kind("character special file"), "other");
  EXPECT_FALSE(parse_stat_full("a|b|c"));
  EXPECT_THROW(parse_stat_full("file|x|1|a|b|644"), std::invalid_argument);
  EXPECT_EQ(mode_to_rwx("755"), "rwxr-xr-x");
  EXPECT_EQ(mode_to_rwx("4755"), "rwxr-xr-x");
  EXPECT_EQ(mode_to_rwx("zz"), "zz");
  auto [t, n] = parse_stat_type_size("directory|4096\n");
  EXPECT_EQ(t, "directory");
  EXPECT_EQ(n, 4096);
}

TEST(FsParse, BinaryExtensions) {
  EXPECT_TRUE(is_binary_name("/a/b.PNG"));
  EXPECT_TRUE(is_binary_name("/a/x.tar.gz"));
  EXPECT_FALSE(is_binary_name("/a/.so"));
  EXPECT_FALSE(is_binary_name("/a.b/c"));
  EXPECT_FALSE(is_binary_name("/a/readme.txt"));
}

TEST(FsParse, CommandBuilders) {
  EXPECT_EQ(ls_argv("/x", false, true), (std::vector<std::string>{"ls", "-lA", "--time-style=+%s", "/x"}));
  EXPECT_EQ(ls_argv("/x", true, false), (std::vector<std::string>{"ls", "-la", "/x"}));
  EXPECT_EQ(stat_type_size_argv("/f", false), (std::vector<std::string>{"stat", "-c", "%F|%s", "/f"}));
  EXPECT_EQ(head_argv("/f", 10), (std::vector<std::string>{"head", "-c", "10", "/f"}));
  // The path is an argument of its own: no quoting, no size limit on content.
  EXPECT_EQ(write_argv("/a b/$(x)"), (std::vector<std::string>{"sh", "-c", "cat > \"$1\"", "sh", "/a b/$(x)"}));
  auto fa = find_snapshot_argv("/w", true);
  EXPECT_EQ(fa.back(), "%p|%T@\\n");
  EXPECT_EQ(inotify_argv({"/a"}).back(), "/a");
}

TEST(FsParse, InotifyLines) {
  EXPECT_FALSE(parse_inotify_line("Setting up watches.  Beware: since -r was given, this may take a while!"));
  EXPECT_FALSE(parse_inotify_line("   "));
  auto c = parse_inotify_line("CREATE|/w/new file|CREATE\n");
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)["event"], "CREATE");
  EXPECT_EQ((*c)["path"], "/w/new file");
  EXPECT_EQ((*c)["is_dir"], false);
  auto d = parse_inotify_line("CREATE,ISDIR|/w/d|CREATE:ISDIR");
  EXPECT_EQ((*d)["is_dir"], true);
  EXPECT_EQ((*parse_inotify_line("MOVED_TO|/w/x|MOVED_TO"))["event"], "MOVE");
  EXPECT_EQ((*parse_inotify_line("CLOSE_WRITE,CLOSE|/w/x|x"))["event"], "MODIFY");
  EXPECT_EQ((*parse_inotify_line("DELETE|/w/x"))["is_dir"], false);
}

TEST(FsParse, FindSnapshots) {
  auto s = parse_find_snapshot("/w|1700000000.5\n/w/a|b|1700000001.0\n", true);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s["/w/a|b"], "1700000001.0");
  auto t = parse_find_snapshot("/w\n/w/x\n", false);
  EXPECT_EQ(t["/w/x"], "0");
}

TEST(FsParse, PlainStringMemberFastPath) {
  std::string rest;
  auto v = take_plain_string_member(R"({"path": "/a", "content": "QUJD", "encoding": "base64"})", "content", rest);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "QUJD");
  EXPECT_EQ(rest, R"({"path": "/a", "content": "", "encoding": "base64"})");
  // Nested "content" keys and strings that look like keys are not taken.
  v = take_plain_string_member(R"({"x": {"content": "no"}, "y": "content", "content" : "yes"})", "content", rest);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "yes");
  v = take_plain_string_member(R"({"x": ["content", "a\"b"], "content":"ok"})", "content", rest);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "ok");
  // Escapes, control bytes, invalid UTF-8, non-strings: the normal parser decides.
  EXPECT_FALSE(take_plain_string_member(R"({"content": "a\nb"})", "content", rest));
  EXPECT_FALSE(take_plain_string_member("{\"content\": \"a\tb\"}", "content", rest));
  EXPECT_FALSE(take_plain_string_member("{\"content\": \"\xff\"}", "content", rest));
  EXPECT_FALSE(take_plain_string_member(R"({"content": 5})", "content", rest));
  EXPECT_FALSE(take_plain_string_member(R"(["content", "x"])", "content", rest));
  EXPECT_FALSE(take_plain_string_member(R"({"other": "x"})", "content", rest));
  // Duplicate keys: the last one wins, as in the JSON parser.
  v = take_plain_string_member(R"({"content": "a", "content": "b"})", "content", rest);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "b");
}

// A control character anywhere in a long value (word-at-a-time scan) sends
// the body to the JSON parser; printable ASCII and UTF-8 do not.
TEST(FsParse, PlainStringMemberRefusesControlCharactersAtAnyOffset) {
  std::string rest;
  const std::string base(100, 'A');
  for (std::size_t pos = 0; pos < 20; ++pos) {
    for (char ctl : {'\x01', '\x1f', '\n'}) {
      std::string value = base;
      value[pos] = ctl;
      EXPECT_FALSE(take_plain_string_member(R"({"content":")" + value + R"("})", "content", rest)) << pos;
    }
  }
  auto v = take_plain_string_member(R"({"content":")" + base + " ~\xC3\xA9\x7F" + R"("})", "content", rest);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, base + " ~\xC3\xA9\x7F");
}

// The view form points into the body (no copy of a large value); invalid
// UTF-8 is still refused at any offset, valid multi-byte text accepted,
// whether or not a word of it is pure ASCII.
TEST(FsParse, PlainStringMemberViewAndUtf8AtAnyOffset) {
  std::string rest;
  const std::string base(40, 'B');
  for (std::size_t pos = 0; pos < 24; ++pos) {
    std::string bad = base;
    bad[pos] = '\xff';
    EXPECT_FALSE(find_plain_string_member(R"({"content":")" + bad + R"("})", "content", rest)) << pos;
    std::string cut = base;
    cut[pos] = '\xC3';  // a lead byte without its continuation
    EXPECT_FALSE(find_plain_string_member(R"({"content":")" + cut + R"("})", "content", rest)) << pos;
    std::string good = base;
    good.replace(pos, 2, "\xC3\xA9");
    const std::string body = R"({"path":"/x","content":")" + good + R"("})";
    auto v = find_plain_string_member(body, "content", rest);
    ASSERT_TRUE(v) << pos;
    EXPECT_EQ(*v, good);
    EXPECT_EQ(v->data(), body.data() + body.find(good));
    EXPECT_EQ(rest, R"({"path":"/x","content":""})");
  }
}

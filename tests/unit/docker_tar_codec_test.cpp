#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "docker/tar_codec.hpp"

using namespace kr::docker;

namespace {

// A header block written field by field (independent of the codec's writer).
std::string raw_block(const std::string& name, char type, std::uint64_t size, const char* magic = "ustar\0" "00") {
  std::string b(kTarBlock, '\0');
  b.replace(0, name.size(), name);
  auto octal = [&](std::size_t off, std::size_t len, std::uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(len - 1), static_cast<unsigned long long>(v));
    b.replace(off, len - 1, buf);
  };
  octal(100, 8, 0640);
  octal(108, 8, 1000);
  octal(116, 8, 1001);
  octal(124, 12, size);
  octal(136, 12, 1700000000);
  b[156] = type;
  b.replace(257, 8, std::string(magic, 8));
  b.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  octal(148, 7, sum);
  return b;
}

std::string padded(std::string data) {
  data.append(tar_padding(data.size()), '\0');
  return data;
}

std::string one_file_archive(const TarEntry& e, const std::string& content) {
  return tar_file_header(e) + padded(content) + tar_end();
}

}  // namespace

TEST(TarCodec, WrittenHeaderParsesBack) {
  TarEntry e;
  e.name = "w.bin";
  e.size = 20000000;
  e.mode = 04755;
  e.uid = 1000;
  e.gid = 100;
  e.mtime = 1764470000;
  const std::string h = tar_file_header(e);
  ASSERT_EQ(h.size(), kTarBlock);
  EXPECT_EQ(h.substr(257, 6), std::string("ustar\0", 6));
  TarEntry back;
  std::string err;
  ASSERT_TRUE(parse_tar_header(h, back, err)) << err;
  EXPECT_EQ(back.type, '0');
  EXPECT_EQ(back.name, "w.bin");
  EXPECT_EQ(back.size, 20000000u);
  EXPECT_EQ(back.mode, 04755u);
  EXPECT_EQ(back.uid, 1000u);
  EXPECT_EQ(back.gid, 100u);
  EXPECT_EQ(back.mtime, 1764470000);
}

TEST(TarCodec, PaddingAndEnd) {
  EXPECT_EQ(tar_padding(0), 0u);
  EXPECT_EQ(tar_padding(1), 511u);
  EXPECT_EQ(tar_padding(512), 0u);
  EXPECT_EQ(tar_padding(513), 511u);
  EXPECT_EQ(tar_end(), std::string(1024, '\0'));
}

TEST(TarCodec, LongNameAndLargeIdsGoThroughPax) {
  TarEntry e;
  e.name = std::string(150, 'n') + " \xC3\xA9|x";
  e.size = 3;
  e.uid = 5000000;
  e.gid = 4000000000ull;
  const std::string archive = one_file_archive(e, "abc");
  EXPECT_EQ(archive[156], 'x');  // the PAX entry comes first
  TarFirstEntryReader r(100);
  r.feed(archive);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.entry().name, e.name);
  EXPECT_EQ(r.entry().uid, 5000000u);
  EXPECT_EQ(r.entry().gid, 4000000000ull);
  EXPECT_EQ(r.content(), "abc");
}

TEST(TarCodec, ReaderTakesBytesInAnyPiecesAndStopsAtTheLimit) {
  TarEntry e;
  e.name = "f";
  std::string content;
  for (int i = 0; i < 3000; ++i) content += static_cast<char>(i * 7);
  e.size = content.size();
  const std::string archive = one_file_archive(e, content);
  for (std::size_t piece : {1u, 7u, 511u, 512u, 4096u}) {
    TarFirstEntryReader all(1u << 20), part(1000);
    for (std::size_t i = 0; i < archive.size(); i += piece) {
      all.feed(std::string_view(archive).substr(i, piece));
      part.feed(std::string_view(archive).substr(i, piece));
    }
    ASSERT_TRUE(all.done());
    EXPECT_EQ(all.content(), content);
    ASSERT_TRUE(part.done());
    EXPECT_EQ(part.content(), content.substr(0, 1000));
    EXPECT_EQ(part.entry().size, 3000u);
  }
}

TEST(TarCodec, DirectoryAndSymlinkEntriesCarryNoContent) {
  TarFirstEntryReader dir(100);
  dir.feed(raw_block("d/", '5', 0));
  EXPECT_TRUE(dir.done());
  EXPECT_EQ(dir.entry().type, '5');
  EXPECT_EQ(dir.entry().mode, 0640u);
  EXPECT_EQ(dir.entry().uid, 1000u);
  EXPECT_EQ(dir.entry().gid, 1001u);

  std::string link = raw_block("l", '2', 0);
  link.replace(157, 6, "target");
  // fix the checksum after the edit
  link.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : link) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  link.replace(148, 7, std::string(buf, 6) + '\0');
  TarFirstEntryReader r(100);
  r.feed(link);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.entry().type, '2');
  EXPECT_EQ(r.entry().linkname, "target");
  EXPECT_TRUE(r.content().empty());
}

TEST(TarCodec, GnuLongNameAndGlobalHeadersAreApplied) {
  const std::string long_name = std::string(200, 'q');
  std::string archive = raw_block("././@LongLink", 'L', long_name.size() + 1, "ustar  \0") + padded(long_name + '\0');
  const std::string global = "15 comment=hi\n";
  archive = raw_block("g", 'g', global.size()) + padded(global) + archive;
  archive += raw_block("short", '0', 2) + padded("hi") + tar_end();
  TarFirstEntryReader r(10);
  r.feed(archive);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.entry().name, long_name);
  EXPECT_EQ(r.content(), "hi");
}

TEST(TarCodec, UstarPrefixCompletesTheName) {
  std::string b = raw_block("file", '0', 0);
  b.replace(345, 3, "dir");
  b.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  b.replace(148, 7, std::string(buf, 6) + '\0');
  TarEntry e;
  std::string err;
  ASSERT_TRUE(parse_tar_header(b, e, err)) << err;
  EXPECT_EQ(e.name, "dir/file");
}

TEST(TarCodec, MalformedStreamsAreRejected) {
  std::string bad = raw_block("f", '0', 1);
  bad[0] = 'g';  // checksum no longer matches
  TarFirstEntryReader r1(10);
  EXPECT_THROW(r1.feed(bad), std::runtime_error);
  TarFirstEntryReader r2(10);
  EXPECT_THROW(r2.feed(tar_end()), std::runtime_error);  // empty archive
  TarEntry e;
  EXPECT_FALSE(apply_pax_records("5 x=1\n", e));     // length does not match
  EXPECT_FALSE(apply_pax_records("8 uid=x\n", e));  // not a number
  EXPECT_TRUE(apply_pax_records("11 uid=123\n19 mtime=17.500000\n", e));
  EXPECT_EQ(e.uid, 123u);
  EXPECT_EQ(e.mtime, 17);
  std::string b256 = raw_block("f", '0', 0);
  // base-256 size (GNU): 0x80 then big-endian bytes
  std::string size_field(12, '\0');
  size_field[0] = static_cast<char>(0x80);
  size_field[11] = 5;
  b256.replace(124, 12, size_field);
  b256.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : b256) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  b256.replace(148, 7, std::string(buf, 6) + '\0');
  std::string err;
  ASSERT_TRUE(parse_tar_header(b256, e, err)) << err;
  EXPECT_EQ(e.size, 5u);
}

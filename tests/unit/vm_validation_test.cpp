// Disk sizes (V12) and image names (V13).
#include <gtest/gtest.h>

#include "vm/validation.hpp"

using namespace kr::vm;

TEST(VmDiskSize, UnitsArePowersOf1024) {
  std::string err;
  EXPECT_EQ(parse_disk_size("500G", err), 500ULL << 30);
  EXPECT_EQ(parse_disk_size("50g", err), 50ULL << 30);
  EXPECT_EQ(parse_disk_size("1T", err), 1ULL << 40);
  EXPECT_EQ(parse_disk_size("1.5T", err), 3ULL << 39);
  EXPECT_EQ(parse_disk_size("512M", err), 512ULL << 20);
  EXPECT_EQ(parse_disk_size("64k", err), 64ULL << 10);
  EXPECT_EQ(parse_disk_size("7E", err), 7ULL << 60);
}

TEST(VmDiskSize, RefusesBareNumbersAndJunk) {
  for (const char* bad : {"", "100", "G", "-5G", "+5G", "5 G", "5GB", "1.G", ".5G", "0G", "0.0M", "5X", "8E",
                          "99999999999999999999G", "1e3G"}) {
    std::string err;
    EXPECT_FALSE(parse_disk_size(bad, err)) << bad;
    EXPECT_NE(err.find("invalid disk size"), std::string::npos) << bad;
  }
  std::string err;
  parse_disk_size("100", err);
  EXPECT_NE(err.find("a unit is required"), std::string::npos) << err;
}

TEST(VmImageName, RefusesPathEscapes) {
  EXPECT_FALSE(image_name_error("ubuntu-24.04"));
  EXPECT_FALSE(image_name_error("debian-12-kr"));
  for (const char* bad : {"", "../etc/passwd", "a/b", ".hidden", "..", ".", "x\ny"}) EXPECT_TRUE(image_name_error(bad)) << bad;
  EXPECT_TRUE(image_name_error(std::string(201, 'a')));
}

// Pure tests of src/docker/names.{hpp,cpp}: container name and image
// reference grammars (S-ARGV).

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "docker/names.hpp"

using namespace kr::docker;

TEST(DockerNames, ManagedContainerNames) {
  EXPECT_TRUE(is_managed_container_name("kohakuriver-task-1"));
  EXPECT_TRUE(is_managed_container_name("kohakuriver-task-7312345678901234567"));
  EXPECT_TRUE(is_managed_container_name("kohakuriver-vps-42"));
  EXPECT_TRUE(is_managed_container_name("vm-9"));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-task-"));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-task-12a"));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-task--1"));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-task-1 "));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-job-1"));
  EXPECT_FALSE(is_managed_container_name("xkohakuriver-task-1"));
  EXPECT_FALSE(is_managed_container_name("vm-"));
  EXPECT_FALSE(is_managed_container_name("vm-1/../x"));
  EXPECT_FALSE(is_managed_container_name("kohakuriver-task-12345678901234567890"));  // > int64
  EXPECT_FALSE(is_managed_container_name(""));
}

TEST(DockerNames, GeneralContainerNames) {
  EXPECT_TRUE(is_valid_container_name("a"));
  EXPECT_TRUE(is_valid_container_name("krtest-1_2.3"));
  EXPECT_TRUE(is_valid_container_name("/leading-slash-as-docker-prints"));
  EXPECT_TRUE(is_valid_container_name(std::string(64, 'f')));  // an id
  EXPECT_FALSE(is_valid_container_name(""));
  EXPECT_FALSE(is_valid_container_name("/"));
  EXPECT_FALSE(is_valid_container_name("-x"));
  EXPECT_FALSE(is_valid_container_name(".x"));
  EXPECT_FALSE(is_valid_container_name("_x"));
  EXPECT_FALSE(is_valid_container_name("a/b"));
  EXPECT_FALSE(is_valid_container_name("a?b"));
  EXPECT_FALSE(is_valid_container_name("a b"));
  EXPECT_FALSE(is_valid_container_name("a%2f"));
  EXPECT_FALSE(is_valid_container_name("..%2F"));
  EXPECT_FALSE(is_valid_container_name(std::string("a\0b", 3)));
  EXPECT_TRUE(is_valid_container_name(std::string(255, 'a')));
  EXPECT_FALSE(is_valid_container_name(std::string(256, 'a')));
  EXPECT_NO_THROW(validate_container_name("kohakuriver-task-5"));
  EXPECT_THROW(validate_container_name("bad name"), std::invalid_argument);
}

TEST(DockerNames, ImageReferencesValid) {
  for (const char* ok : {
           "busybox",
           "busybox:latest",
           "kr-test/busybox:latest",
           "kohakuriver/my_env:base",
           "kohakuriver/env-1.2:base",
           "kohakuriver-snapshot/vps-123:1700000000",
           "library/ubuntu:24.04",
           "docker.io/library/ubuntu:24.04",
           "ghcr.io/org/sub/image:v1.2.3-rc_1",
           "localhost/foo",
           "localhost:5000/foo/bar:tag",
           "registry.example.com:443/a__b/c.d/e--f",
           "[::1]:5000/foo:bar",
           "ubuntu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
           "ubuntu:22.04@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
           "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
           "3471bcba18fe",
           "Registry.Example.com/foo",  // upper case allowed in the domain only
       }) {
    EXPECT_TRUE(is_valid_image_reference(ok)) << ok;
  }
}

TEST(DockerNames, ImageReferencesInvalid) {
  for (const char* bad : {
           "",
           "Busybox",  // upper case path
           "foo/Bar",
           "foo//bar",
           "/foo",
           "foo/",
           "foo:",
           "foo:-tag",
           "foo:.tag",
           "foo bar",
           "foo?x=1",
           "foo/../bar",
           "foo/.bar",
           "foo_/bar",
           "foo___bar",
           "foo.-bar",
           "foo@sha256:abc",                       // digest too short
           "foo@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",  // upper hex
           "foo@md5",
           "-foo",
           "localhost:port/foo",
           "a:b:c",
           "sha256:xyz",
       }) {
    EXPECT_FALSE(is_valid_image_reference(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_image_reference("foo:" + std::string(129, 'a')));
  EXPECT_TRUE(is_valid_image_reference("foo:" + std::string(128, 'a')));
  EXPECT_TRUE(is_valid_image_reference(std::string(255, 'a')));
  EXPECT_FALSE(is_valid_image_reference(std::string(256, 'a')));
  EXPECT_THROW(validate_image_reference("Bad"), std::invalid_argument);
}

TEST(DockerNames, ImageReferenceParts) {
  auto r = parse_image_reference("localhost:5000/foo/bar:tag");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->domain, "localhost:5000");
  EXPECT_EQ(r->path, "foo/bar");
  EXPECT_EQ(r->tag, "tag");
  EXPECT_EQ(r->name(), "localhost:5000/foo/bar");
  EXPECT_EQ(r->str(), "localhost:5000/foo/bar:tag");

  r = parse_image_reference("kohakuriver/env:base");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->domain, "");  // no '.', ':' or localhost: a path component
  EXPECT_EQ(r->path, "kohakuriver/env");
  EXPECT_EQ(r->tag, "base");

  r = parse_image_reference("localhost:5000");  // Docker reads this as name:tag
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, "localhost");
  EXPECT_EQ(r->tag, "5000");

  const std::string digest = "sha256:" + std::string(64, 'a');
  r = parse_image_reference("ghcr.io/x/y@" + digest);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->domain, "ghcr.io");
  EXPECT_EQ(r->path, "x/y");
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->digest, digest);

  r = parse_image_reference("UPPER.io/x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->domain, "UPPER.io");
}

TEST(DockerNames, Tags) {
  EXPECT_TRUE(is_valid_tag("base"));
  EXPECT_TRUE(is_valid_tag("1700000000"));
  EXPECT_TRUE(is_valid_tag("_x.Y-z"));
  EXPECT_FALSE(is_valid_tag(""));
  EXPECT_FALSE(is_valid_tag(".x"));
  EXPECT_FALSE(is_valid_tag("a/b"));
  EXPECT_FALSE(is_valid_tag(std::string(129, 'a')));
}

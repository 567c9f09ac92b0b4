// Integration tests of DockerClient's image, network and event calls
// against the real dockerd (skipped loudly when it is absent). Set-up uses
// the docker CLI (`docker save`, `docker tag`); the client never does.

#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "../fixtures/docker/docker_test_support.hpp"
#include "docker/docker_client.hpp"

using namespace kr::docker;
using kr::CancelToken;
using namespace kr::docker::test;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

class DockerImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KR_REQUIRE_DOCKER();
    client_ = std::make_unique<DockerClient>(ioc_.get_executor());
    dir_ = fs::temp_directory_path() / unique_name("images");
    fs::create_directories(dir_);
    // Repositories may not contain the pid-style name's upper bits; keep it
    // lower-case and unique.
    repo_ = "krtest/img-" + std::to_string(::getpid());
  }
  void TearDown() override {
    client_.reset();
    for (const auto& c : containers_) sh("docker rm -f " + c);
    for (const auto& i : images_) sh("docker rmi " + i);
    for (const auto& n : networks_) sh("docker network rm " + n);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  asio::io_context ioc_;
  std::unique_ptr<DockerClient> client_;
  fs::path dir_;
  std::string repo_;
  std::vector<std::string> containers_, images_, networks_;
};

}  // namespace

TEST_F(DockerImageTest, LoadTaggedTarballAnnouncesReference) {
  const std::string ref = repo_ + ":saved";
  images_.push_back(ref);
  ASSERT_EQ(sh(std::string("docker tag ") + kTestImage + " " + ref), 0);
  const fs::path tar = dir_ / "saved.tar";
  ASSERT_EQ(sh("docker save -o " + tar.string() + " " + ref), 0);
  ASSERT_EQ(sh("docker rmi " + ref), 0);  // only the tag goes; layers stay
  ASSERT_FALSE(run(ioc_, client_->inspect_image(ref)));

  auto loaded = run(ioc_, client_->load_image(tar, 60s));
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0], ref);
  auto info = run(ioc_, client_->inspect_image(ref));
  ASSERT_TRUE(info);
  EXPECT_FALSE((*info)["Created"].get<std::string>().empty());

  // The sync step then adds its own tag and can drop it again.
  run(ioc_, client_->tag_image(ref, repo_, "base"));
  images_.push_back(repo_ + ":base");
  auto tagged = run(ioc_, client_->inspect_image(repo_ + ":base"));
  ASSERT_TRUE(tagged);
  EXPECT_EQ((*tagged)["Id"], (*info)["Id"]);
  run(ioc_, client_->remove_image(repo_ + ":base"));
  EXPECT_FALSE(run(ioc_, client_->inspect_image(repo_ + ":base")));
  run(ioc_, client_->remove_image(ref));
  try {
    run(ioc_, client_->remove_image(ref));
    FAIL() << "expected 404";
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.not_found()) << e.message;
  }
}

TEST_F(DockerImageTest, LoadUntaggedTarballAnnouncesId) {
  const std::string id = sh_out(std::string("docker image inspect -f '{{.Id}}' ") + kTestImage);
  ASSERT_EQ(id.rfind("sha256:", 0), 0u) << id;
  const fs::path tar = dir_ / "by-id.tar";
  ASSERT_EQ(sh("docker save -o " + tar.string() + " " + id), 0);
  auto loaded = run(ioc_, client_->load_image(tar, 60s));
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0], id);
}

TEST_F(DockerImageTest, LoadErrors) {
  const fs::path garbage = dir_ / "garbage.tar";
  std::ofstream(garbage) << "this is not a tarball\n";
  try {
    run(ioc_, client_->load_image(garbage, 30s));
    FAIL() << "expected an error";
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::Stream) << e.message;
    EXPECT_NE(e.message.find("image load failed"), std::string::npos) << e.message;
  }
  try {
    run(ioc_, client_->load_image(dir_ / "missing.tar", 30s));
    FAIL() << "expected an error";
  } catch (const DockerError& e) {
    EXPECT_EQ(e.kind, DockerError::Kind::InvalidArgument) << e.message;
  }
  EXPECT_EQ(client_->stats().active_calls, 0u);
  run(ioc_, client_->ping());  // still healthy
}

TEST_F(DockerImageTest, InspectAndListImages) {
  auto info = run(ioc_, client_->inspect_image(kTestImage));
  ASSERT_TRUE(info);
  EXPECT_TRUE((*info)["Id"].get<std::string>().rfind("sha256:", 0) == 0);
  // by id works as well
  EXPECT_TRUE(run(ioc_, client_->inspect_image((*info)["Id"].get<std::string>())));
  EXPECT_FALSE(run(ioc_, client_->inspect_image("krtest/definitely-missing:nope")));
  json list = run(ioc_, client_->list_images());
  bool found = false;
  for (const auto& img : list)
    for (const auto& t : img.value("RepoTags", json::array()))
      if (t == kTestImage) found = true;
  EXPECT_TRUE(found);
}

TEST_F(DockerImageTest, PullFromUnreachableRegistryFailsWithinDeadline) {
  auto t0 = std::chrono::steady_clock::now();
  try {
    run(ioc_, client_->pull_image("krtest-nonexistent.invalid/foo/bar:1", 15s));
    FAIL() << "expected an error";
  } catch (const DockerError& e) {
    // Either dockerd's own error (DNS failure) or our deadline.
    EXPECT_TRUE(e.kind == DockerError::Kind::Http || e.kind == DockerError::Kind::Stream ||
                e.timed_out())
        << e.message;
    EXPECT_FALSE(e.message.empty());
  }
  EXPECT_LT(seconds_since(t0), 16.0);
  EXPECT_THROW(run(ioc_, client_->pull_image("Not A Ref", 5s)), DockerError);
}

TEST_F(DockerImageTest, CommitContainer) {
  const std::string name = unique_name("commit");
  containers_.push_back(name);
  run(ioc_, client_->create_container(
                name, json{{"Image", kTestImage}, {"Cmd", {"/bin/sh", "-c", "echo hi > /marker"}}}));
  run(ioc_, client_->start_container(name));
  EXPECT_EQ(run(ioc_, client_->wait_container(name, 20s)).status_code, 0);
  const std::string tag = std::to_string(std::time(nullptr));
  images_.push_back(repo_ + "-snap:" + tag);
  std::string id = run(ioc_, client_->commit_container(name, repo_ + "-snap", tag));
  EXPECT_EQ(id.rfind("sha256:", 0), 0u) << id;
  auto info = run(ioc_, client_->inspect_image(repo_ + "-snap:" + tag));
  ASSERT_TRUE(info);
  EXPECT_EQ((*info)["Id"], id);
  run(ioc_, client_->remove_image(repo_ + "-snap:" + tag));
}

TEST_F(DockerImageTest, NetworkCreateInspectRemove) {
  const std::string name = unique_name("net");
  networks_.push_back(name);
  EXPECT_FALSE(run(ioc_, client_->inspect_network(name)));
  std::string id = run(ioc_, client_->create_network(
                                 json{{"Name", name},
                                      {"Driver", "bridge"},
                                      {"CheckDuplicate", true},
                                      {"Labels", {{"krtest", "1"}}}}));
  EXPECT_FALSE(id.empty());
  auto info = run(ioc_, client_->inspect_network(name));
  ASSERT_TRUE(info);
  EXPECT_EQ((*info)["Name"], name);
  EXPECT_EQ((*info)["Id"], id);
  EXPECT_EQ((*info)["Driver"], "bridge");
  try {
    run(ioc_, client_->create_network(json{{"Name", name}, {"CheckDuplicate", true}}));
    FAIL() << "expected a conflict";
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.conflict()) << e.status << " " << e.message;
  }
  run(ioc_, client_->remove_network(name));
  EXPECT_FALSE(run(ioc_, client_->inspect_network(name)));
  try {
    run(ioc_, client_->remove_network(name));
    FAIL() << "expected 404";
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.not_found()) << e.message;
  }
}

TEST_F(DockerImageTest, EventStreamSeesDie) {
  const std::string name = unique_name("events");
  containers_.push_back(name);
  CancelToken stop;
  std::vector<std::string> actions;
  int exit_code = -1;
  bool stream_returned = false;
  // `since` covers events that happen before the subscription is live.
  const long long since = static_cast<long long>(std::time(nullptr)) - 1;
  asio::co_spawn(
      ioc_,
      client_->stream_events(
          json{{"type", {"container"}}, {"container", {name}}},
          [&](const json& ev) {
            actions.push_back(ev.value("Action", ""));
            if (ev.value("Action", "") == "die") {
              exit_code = std::stoi(ev["Actor"]["Attributes"].value("exitCode", "-1"));
              stop.cancel();  // stopping from inside the callback is fine
            }
          },
          since, stop),
      [&](std::exception_ptr e) {
        EXPECT_FALSE(e) << "stream_events threw";
        stream_returned = true;
      });
  run(ioc_, client_->create_container(
                name, json{{"Image", kTestImage}, {"Cmd", {"/bin/sh", "-c", "exit 7"}}}));
  run(ioc_, client_->start_container(name));
  // Let the stream deliver; give up after 20 s.
  auto t0 = std::chrono::steady_clock::now();
  ioc_.restart();
  while (!stream_returned && seconds_since(t0) < 20) ioc_.run_one_for(100ms);
  EXPECT_TRUE(stream_returned);
  EXPECT_EQ(exit_code, 7);
  ASSERT_GE(actions.size(), 3u);
  EXPECT_EQ(actions.front(), "create");
  EXPECT_EQ(actions.back(), "die");
  EXPECT_EQ(client_->stats().active_calls, 0u);
}

TEST_F(DockerImageTest, IdleEventStreamEndsOnCancel) {
  // A stream that sees no event (dockerd has not even sent the response
  // header yet) still ends promptly: by its token (normal return) ...
  CancelToken stop;
  asio::steady_timer t1(ioc_, 200ms);
  t1.async_wait([&](auto) { stop.cancel(); });
  const json nothing{{"container", {unique_name("never-exists")}}};
  auto t0 = std::chrono::steady_clock::now();
  run(ioc_, client_->stream_events(nothing, [](const json&) {}, std::nullopt, stop));
  EXPECT_LT(seconds_since(t0), 2.0);
  // ... or by cancel_all (shutdown), as Kind::Cancelled.
  asio::steady_timer t2(ioc_, 200ms);
  t2.async_wait([&](auto) { client_->cancel_all(); });
  t0 = std::chrono::steady_clock::now();
  try {
    run(ioc_, client_->stream_events(nothing, [](const json&) {}));
    FAIL() << "expected cancellation";
  } catch (const DockerError& e) {
    EXPECT_TRUE(e.cancelled()) << e.message;
  }
  EXPECT_LT(seconds_since(t0), 2.0);
}

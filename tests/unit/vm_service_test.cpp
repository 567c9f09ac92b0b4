// Pure parts of the VM service: the agent heartbeat body as the runner
// validates it (vm.md §8.3, pydantic-shaped 422s) and the §14 instance
// listing (V11: a live pid that is not this instance's QEMU is not running).
#include <gtest/gtest.h>
#include <unistd.h>

#include "vm/vm_service.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::TempDir;
using nlohmann::json;

namespace {
json error_of(std::string_view body) {
  auto r = parse_vm_heartbeat(body);
  if (auto* e = std::get_if<json>(&r)) return *e;
  return nullptr;
}
}  // namespace

TEST(VmHeartbeatBody, CapturedGuestBodyParses) {
  auto r = parse_vm_heartbeat(
      R"({"task_id": 42, "timestamp": 1795747734.7937644, "gpus": [], "system": {"memory_total_bytes": 1005015040,)"
      R"( "load_1m": 0.31}, "status": "healthy", "extra": 1})");
  ASSERT_TRUE(std::holds_alternative<VmHeartbeat>(r));
  const auto& hb = std::get<VmHeartbeat>(r);
  EXPECT_EQ(hb.task_id, 42);
  EXPECT_DOUBLE_EQ(*hb.timestamp, 1795747734.7937644);
  EXPECT_TRUE(hb.gpus.is_array() && hb.gpus.empty());
  EXPECT_EQ(hb.system["load_1m"], 0.31);
  EXPECT_EQ(hb.status, "healthy");
}

TEST(VmHeartbeatBody, DefaultsAndLaxValues) {
  auto r = parse_vm_heartbeat(R"({"task_id": "7", "timestamp": "12.5", "gpus": null, "system": null})");
  ASSERT_TRUE(std::holds_alternative<VmHeartbeat>(r));
  const auto& hb = std::get<VmHeartbeat>(r);
  EXPECT_EQ(hb.task_id, 7);
  EXPECT_DOUBLE_EQ(*hb.timestamp, 12.5);
  EXPECT_EQ(hb.status, "healthy");
  EXPECT_TRUE(hb.system.is_null());
  auto n = parse_vm_heartbeat(R"({"task_id": 7, "timestamp": null})");
  ASSERT_TRUE(std::holds_alternative<VmHeartbeat>(n));
  EXPECT_FALSE(std::get<VmHeartbeat>(n).timestamp.has_value());
}

TEST(VmHeartbeatBody, ErrorsInFastApiShape) {
  json e = error_of(R"({"timestamp": [1], "gpus": [{}, 3], "system": "x", "status": null})");
  ASSERT_TRUE(e.is_object());
  std::map<std::string, std::string> got;
  for (const auto& d : e["detail"]) got[d["loc"].dump()] = d["type"];
  std::map<std::string, std::string> want{{R"(["body","task_id"])", "missing"},
                                          {R"(["body","timestamp"])", "float_type"},
                                          {R"(["body","gpus",1])", "dict_type"},
                                          {R"(["body","system"])", "dict_type"},
                                          {R"(["body","status"])", "string_type"}};
  EXPECT_EQ(got, want) << e.dump();
  EXPECT_EQ(error_of("")["detail"][0]["loc"], json::array({"body"}));
  EXPECT_EQ(error_of("[1]")["detail"][0]["type"], "model_attributes_type");
  EXPECT_EQ(error_of(R"({"task_id": 1.5})")["detail"][0]["type"], "int_from_float");
  EXPECT_EQ(error_of(R"({"task_id": 1, "timestamp": "nan"})")["detail"][0]["type"], "float_parsing");
}

TEST(VmInstancesListing, Section14Shape) {
  TempDir tmp;
  auto inst = tmp.dir / "instances";
  tmp.write("instances/10/root.qcow2", std::string(5000, 'x'));
  tmp.write("instances/10/qemu.pid", std::to_string(::getpid()) + "\n");  // alive, but not a QEMU
  tmp.write("instances/2/seed.iso", "iso");
  tmp.write("instances/2/sub/deep.txt", "not listed");
  tmp.write("instances/abc/root.qcow2", "ignored: not an id");
  tmp.write("instances/11", "a file, not a directory");
  json l = vm_instances_listing(inst, tmp.dir / "run", {10});
  EXPECT_EQ(l["instances_dir"], inst.string());
  ASSERT_EQ(l["instances"].size(), 2u) << l.dump();
  EXPECT_EQ(l["instances"][0]["task_id"], "2");  // numeric order, ids as strings
  EXPECT_EQ(l["instances"][1]["task_id"], "10");
  EXPECT_EQ(l["instances"][0]["files"], json::array({"seed.iso"}));
  EXPECT_EQ(l["instances"][1]["files"], json::array({"qemu.pid", "root.qcow2"}));
  EXPECT_EQ(l["instances"][1]["qemu_running"], false);
  EXPECT_TRUE(l["instances"][1]["qemu_pid"].is_null());
  EXPECT_EQ(l["instances"][1]["in_task_store"], true);
  EXPECT_EQ(l["instances"][0]["in_task_store"], false);
  const auto total = l["instances"][0]["disk_usage_bytes"].get<std::uint64_t>() +
                     l["instances"][1]["disk_usage_bytes"].get<std::uint64_t>();
  EXPECT_EQ(l["total_disk_usage_bytes"], total);
  EXPECT_GE(l["instances"][1]["disk_usage_bytes"].get<std::uint64_t>(), 4096u);
  json none = vm_instances_listing(tmp.dir / "missing", tmp.dir / "run", {});
  EXPECT_TRUE(none["instances"].empty());
  EXPECT_EQ(none["total_disk_usage_bytes"], 0);
}

TEST(VmTaskId, TakesTheHostsNineteenDigitSnowflakes) {
  // The upstream host's ids are 19-digit snowflakes (seen in the interop run).
  EXPECT_EQ(parse_vm_task_id("7535496149256372224"), 7535496149256372224LL);
  EXPECT_EQ(parse_vm_task_id("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(parse_vm_task_id("42"), 42);
  EXPECT_FALSE(parse_vm_task_id("9223372036854775808"));  // overflow
  EXPECT_FALSE(parse_vm_task_id("99999999999999999999"));
  EXPECT_FALSE(parse_vm_task_id(""));
  EXPECT_FALSE(parse_vm_task_id("-1"));
  EXPECT_FALSE(parse_vm_task_id("+1"));
  EXPECT_FALSE(parse_vm_task_id("1 "));
  EXPECT_FALSE(parse_vm_task_id("abc"));
}

TEST(VmInstancesListing, ListsSnowflakeIds) {
  TempDir tmp;
  auto inst = tmp.dir / "instances";
  tmp.write("instances/7535496149256372224/root.qcow2", "disk");
  tmp.write("instances/99999999999999999999/root.qcow2", "not an int64: ignored");
  json l = vm_instances_listing(inst, tmp.dir / "run", {7535496149256372224LL});
  ASSERT_EQ(l["instances"].size(), 1u) << l.dump();
  EXPECT_EQ(l["instances"][0]["task_id"], "7535496149256372224");
  EXPECT_EQ(l["instances"][0]["in_task_store"], true);
}

TEST(OverlayReservation, ParsesTheHostsReply) {
  auto r = kr::vm::parse_overlay_reservation(
      R"({"ip": "10.128.64.77", "runner": "node1", "token": "abc.def", "expires_at": "2026-01-01T00:30:00",
          "ttl_seconds": 1800})");
  EXPECT_EQ(r.ip, "10.128.64.77");
  EXPECT_EQ(r.token, "abc.def");
  EXPECT_EQ(r.ttl_seconds, 1800);
  // Missing ttl: the requested maximum; absurd ttl: at least a minute.
  EXPECT_EQ(kr::vm::parse_overlay_reservation(R"({"ip": "10.0.0.2", "token": "t"})").ttl_seconds, 1800);
  EXPECT_EQ(kr::vm::parse_overlay_reservation(R"({"ip": "10.0.0.2", "token": "t", "ttl_seconds": 0})").ttl_seconds, 60);
  EXPECT_THROW(kr::vm::parse_overlay_reservation(R"({"token": "t"})"), std::invalid_argument);
  EXPECT_THROW(kr::vm::parse_overlay_reservation(R"({"ip": "10.0.0.2", "token": ""})"), std::invalid_argument);
  EXPECT_THROW(kr::vm::parse_overlay_reservation("not json"), std::invalid_argument);
  EXPECT_THROW(kr::vm::parse_overlay_reservation("[]"), std::invalid_argument);
}

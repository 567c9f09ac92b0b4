// How a VM ends (issue 16 point 5): which ending stands, and its record in
// the store row.
#include <gtest/gtest.h>

#include "vm/vm_ending.hpp"
#include "vm/vm_state.hpp"

using namespace kr::vm;
using nlohmann::json;

TEST(VmEnding, TheFirstEndingStandsExceptThatTheHostsReplacesAFailure) {
  EXPECT_TRUE(ending_replaces(std::nullopt, stop_ending()));
  EXPECT_TRUE(ending_replaces(std::nullopt, failure_ending("x")));
  // A repeat, or a kill after a stop (and the reverse): already being ended.
  EXPECT_FALSE(ending_replaces(stop_ending(), stop_ending()));
  EXPECT_FALSE(ending_replaces(stop_ending(), kill_ending()));
  EXPECT_FALSE(ending_replaces(kill_ending(), stop_ending()));
  // The watchdog's failure waits for QEMU; the host's stop then wins.
  EXPECT_TRUE(ending_replaces(failure_ending("Cloud-init timed out after 300s"), kill_ending()));
  EXPECT_FALSE(ending_replaces(stop_ending(), failure_ending("VM restart failed: x")));
  EXPECT_EQ(stop_ending().status, "stopped");
  EXPECT_EQ(kill_ending().status, "killed");
  EXPECT_EQ(failure_ending("m").status, "failed");
}

TEST(VmEnding, StoreRowRoundTripKeepsTheVmState) {
  VmState s;
  s.task_id = 7;
  s.container_name = "vm-7";
  s.vm_ip = "10.200.0.10";
  s.tap_device = "tap-x";
  const auto extra = with_ending(to_json(s), kill_ending());
  const json parsed = json::parse(extra.dump());
  EXPECT_EQ(ending_from_extra(parsed), kill_ending());
  EXPECT_EQ(vm_state_from_json(parsed), s);  // the state reader ignores the extra key
  EXPECT_EQ(ending_from_extra(json::parse(to_json(s).dump())), std::nullopt);
}

TEST(VmEnding, MalformedRecordsCountAsAbsent) {
  for (const char* text : {R"(null)", R"([])", R"({"ending": 1})", R"({"ending": {}})",
                           R"({"ending": {"status": "running"}})", R"({"ending": {"status": 3}})"})
    EXPECT_EQ(ending_from_extra(json::parse(text)), std::nullopt) << text;
  auto e = ending_from_extra(json::parse(R"({"ending": {"status": "failed", "message": 5}})"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, "failed");
  EXPECT_EQ(e->message, "");
  EXPECT_FALSE(e->by_host);
}

// parse_task_request / parse_task_control: pydantic-lax wire rules of
// execution.md §1.1 and §2, expected 422 items checked against pydantic 2.
#include <gtest/gtest.h>

#include "tasks/task_request.hpp"

using kr::tasks::parse_task_control;
using kr::tasks::parse_task_request;
using kr::tasks::TaskControl;
using kr::tasks::TaskRequest;
using nlohmann::json;

namespace {

const char* kMinimal =
    R"({"task_id": 7, "command": "echo", "container_name": "env", "stdout_path": "/s/logs/7/stdout.log",
        "stderr_path": "/s/logs/7/stderr.log"})";

TaskRequest ok(std::string_view body) {
  auto r = parse_task_request(body);
  if (auto* err = std::get_if<json>(&r)) ADD_FAILURE() << err->dump();
  return std::holds_alternative<TaskRequest>(r) ? std::get<TaskRequest>(r) : TaskRequest{};
}

json errors(std::string_view body) {
  auto r = parse_task_request(body);
  EXPECT_TRUE(std::holds_alternative<json>(r)) << "expected a 422 body";
  return std::holds_alternative<json>(r) ? std::get<json>(r) : json();
}

}  // namespace

TEST(TaskRequestParse, DefaultsOfTheModel) {
  TaskRequest r = ok(kMinimal);
  EXPECT_EQ(r.task_id, 7);
  EXPECT_EQ(r.command, "echo");
  EXPECT_TRUE(r.arguments.empty());
  EXPECT_TRUE(r.env_vars.empty());
  EXPECT_EQ(r.required_cores, 1);
  EXPECT_TRUE(r.required_gpus.empty());
  EXPECT_FALSE(r.required_memory_bytes);
  EXPECT_FALSE(r.target_numa_node_id);
  EXPECT_EQ(r.container_name, "env");
  EXPECT_FALSE(r.registry_image);
  EXPECT_FALSE(r.reserved_ip);
  EXPECT_EQ(r.working_dir, "/shared");
  EXPECT_EQ(r.stdout_path, "/s/logs/7/stdout.log");
  EXPECT_EQ(r.stderr_path, "/s/logs/7/stderr.log");
}

TEST(TaskRequestParse, FullHostRequest) {
  // What the host sends: 14 keys, task_id as the snowflake *string*.
  TaskRequest r = ok(R"({"task_id": "7199539478398935040", "command": "python train.py", "arguments": ["--lr", "1e-3"],
    "env_vars": {"ZED": "1", "ALPHA": "2"}, "required_cores": "4", "required_gpus": [0, "1"],
    "required_memory_bytes": 1073741824, "target_numa_node_id": 1, "container_name": "kohakuriver-base",
    "registry_image": null, "working_dir": "/shared", "stdout_path": "/o", "stderr_path": "/e",
    "reserved_ip": "10.128.0.5", "unknown_extra": true})");
  EXPECT_EQ(r.task_id, 7199539478398935040LL);
  EXPECT_EQ(r.arguments, (std::vector<std::string>{"--lr", "1e-3"}));
  EXPECT_EQ(r.required_cores, 4);
  EXPECT_EQ(r.required_gpus, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(r.required_memory_bytes, 1073741824);
  EXPECT_EQ(r.target_numa_node_id, 1);
  EXPECT_EQ(r.reserved_ip, "10.128.0.5");
  // Request order, not sorted.
  ASSERT_EQ(r.env_vars.size(), 2u);
  EXPECT_EQ(r.env_vars.begin()->first, "ZED");
  EXPECT_EQ(std::next(r.env_vars.begin())->first, "ALPHA");
}

TEST(TaskRequestParse, DuplicateEnvKeysActLikeAPythonDict) {
  TaskRequest r = ok(R"({"task_id": 1, "command": "c", "container_name": "e", "stdout_path": "/o", "stderr_path": "/e",
    "env_vars": {"Z": "1", "A": "2", "Z": "3"}})");
  ASSERT_EQ(r.env_vars.size(), 2u);
  EXPECT_EQ(r.env_vars.begin()->first, "Z");
  EXPECT_EQ(r.env_vars.begin()->second, "3");
  EXPECT_EQ(std::next(r.env_vars.begin())->first, "A");
}

TEST(TaskRequestParse, NullsBecomeDefaults) {
  TaskRequest r = ok(R"({"task_id": 1, "command": "c", "arguments": null, "env_vars": null, "required_gpus": null,
    "required_memory_bytes": null, "target_numa_node_id": null, "container_name": "e", "registry_image": null,
    "stdout_path": "/o", "stderr_path": "/e", "reserved_ip": null})");
  EXPECT_TRUE(r.arguments.empty());
  EXPECT_TRUE(r.env_vars.empty());
  EXPECT_TRUE(r.required_gpus.empty());
}

TEST(TaskRequestParse, TaskIdForms) {
  auto with_id = [](const std::string& id) {
    return R"({"task_id": )" + id + R"(, "command": "c", "container_name": "e", "stdout_path": "/o", "stderr_path": "/e"})";
  };
  EXPECT_EQ(ok(with_id("\"9223372036854775807\"")).task_id, INT64_MAX);
  EXPECT_EQ(ok(with_id("9223372036854775807")).task_id, INT64_MAX);
  EXPECT_EQ(ok(with_id("5.0")).task_id, 5);
  EXPECT_EQ(ok(with_id("\" 12 \"")).task_id, 12);

  json e = errors(with_id("\"9223372036854775808\""));
  EXPECT_EQ(e["detail"][0]["type"], "int_parsing_size");
  EXPECT_EQ(e["detail"][0]["loc"], json::parse(R"(["body", "task_id"])"));
  EXPECT_EQ(errors(with_id("99999999999999999999"))["detail"][0]["type"], "int_parsing_size");
  EXPECT_EQ(errors(with_id("1.5"))["detail"][0],
            json::parse(R"({"type": "int_from_float", "loc": ["body", "task_id"],
              "msg": "Input should be a valid integer, got a number with a fractional part", "input": 1.5})"));
  EXPECT_EQ(errors(with_id("null"))["detail"][0]["type"], "int_type");
}

TEST(TaskRequestParse, ErrorsInModelFieldOrder) {
  // Same items pydantic 2 produces (FastAPI prefixes "body").
  json e = errors(R"({"task_id": "12a", "container_name": "e", "stdout_path": "a"})");
  json input = json::parse(R"({"task_id": "12a", "container_name": "e", "stdout_path": "a"})");
  json expected = json::parse(R"({"detail": [
    {"type": "int_parsing", "loc": ["body", "task_id"],
     "msg": "Input should be a valid integer, unable to parse string as an integer", "input": "12a"},
    {"type": "missing", "loc": ["body", "command"], "msg": "Field required", "input": null},
    {"type": "missing", "loc": ["body", "stderr_path"], "msg": "Field required", "input": null}]})");
  expected["detail"][1]["input"] = input;
  expected["detail"][2]["input"] = input;
  EXPECT_EQ(e, expected);
}

TEST(TaskRequestParse, WrongTypesInsideContainers) {
  json e = errors(R"({"task_id": 1, "command": 5, "container_name": "e", "stdout_path": "a", "stderr_path": "b",
    "working_dir": null, "env_vars": {"A": 1}, "required_gpus": ["x", 1], "arguments": [1]})");
  EXPECT_EQ(e, json::parse(R"({"detail": [
    {"type": "string_type", "loc": ["body", "command"], "msg": "Input should be a valid string", "input": 5},
    {"type": "string_type", "loc": ["body", "arguments", 0], "msg": "Input should be a valid string", "input": 1},
    {"type": "string_type", "loc": ["body", "env_vars", "A"], "msg": "Input should be a valid string", "input": 1},
    {"type": "int_parsing", "loc": ["body", "required_gpus", 0],
     "msg": "Input should be a valid integer, unable to parse string as an integer", "input": "x"},
    {"type": "string_type", "loc": ["body", "working_dir"], "msg": "Input should be a valid string", "input": null}]})"));
}

TEST(TaskRequestParse, NullableIntsAndDefaults) {
  json e = errors(R"({"task_id": 1, "command": "c", "container_name": "e", "stdout_path": "a", "stderr_path": "b",
    "required_cores": null, "required_memory_bytes": "x"})");
  ASSERT_EQ(e["detail"].size(), 2u);
  EXPECT_EQ(e["detail"][0]["type"], "int_type");  // int = 1 rejects an explicit null
  EXPECT_EQ(e["detail"][0]["loc"], json::parse(R"(["body", "required_cores"])"));
  EXPECT_EQ(e["detail"][1]["type"], "int_parsing");
}

TEST(TaskRequestParse, EmptyWorkingDirMeansShared) {
  TaskRequest r = ok(R"({"task_id": 1, "command": "c", "container_name": "e", "stdout_path": "/o",
    "stderr_path": "/e", "working_dir": ""})");
  EXPECT_EQ(r.working_dir, "/shared");
  r = ok(R"({"task_id": 1, "command": "c", "container_name": "e", "stdout_path": "/o", "stderr_path": "/e",
    "working_dir": "/work"})");
  EXPECT_EQ(r.working_dir, "/work");
}

TEST(TaskRequestParse, NullContainerNameNeedsARegistryImage) {
  // D13: the host sends container_name null for registry-image tasks.
  TaskRequest r = ok(R"({"task_id": 1, "command": "c", "container_name": null, "registry_image": "ubuntu:22.04",
    "stdout_path": "/o", "stderr_path": "/e"})");
  EXPECT_FALSE(r.container_name);
  EXPECT_EQ(r.registry_image, "ubuntu:22.04");

  const json null_item = json::parse(
      R"({"type": "string_type", "loc": ["body", "container_name"], "msg": "Input should be a valid string", "input": null})");
  for (const char* reg : {"", R"(, "registry_image": null)", R"(, "registry_image": "")"}) {
    std::string body = std::string(R"({"task_id": 1, "command": "c", "container_name": null, "stdout_path": "/o",
      "stderr_path": "/e")") + reg + "}";
    json e = errors(body);
    ASSERT_EQ(e["detail"].size(), 1u) << body;
    EXPECT_EQ(e["detail"][0], null_item) << body;
  }
  // A non-string registry image is its own error and does not excuse null.
  json e = errors(R"({"task_id": 1, "command": "c", "container_name": null, "registry_image": 5,
    "stdout_path": "/o", "stderr_path": "/e"})");
  ASSERT_EQ(e["detail"].size(), 2u);
  EXPECT_EQ(e["detail"][0], null_item);
  EXPECT_EQ(e["detail"][1]["loc"], json::parse(R"(["body", "registry_image"])"));
  // Absent stays "missing" even with a registry image.
  e = errors(R"({"task_id": 1, "command": "c", "registry_image": "ubuntu", "stdout_path": "/o", "stderr_path": "/e"})");
  EXPECT_EQ(e["detail"][0]["type"], "missing");
  EXPECT_EQ(e["detail"][0]["loc"], json::parse(R"(["body", "container_name"])"));
}

TEST(TaskRequestParse, BodyLevelErrors) {
  EXPECT_EQ(errors("")["detail"][0]["type"], "missing");
  EXPECT_EQ(errors("[1]")["detail"][0]["type"], "model_attributes_type");
  EXPECT_EQ(errors("{bad")["detail"][0]["type"], "json_invalid");
}

TEST(TaskControlParse, BothFieldsRequired) {
  auto r = parse_task_control(R"({"task_id": "7199539478398935040", "container_name": "kohakuriver-task-1"})");
  ASSERT_TRUE(std::holds_alternative<TaskControl>(r));
  EXPECT_EQ(std::get<TaskControl>(r).task_id, 7199539478398935040LL);
  EXPECT_EQ(std::get<TaskControl>(r).container_name, "kohakuriver-task-1");

  auto e = parse_task_control(R"({"task_id": 1})");
  ASSERT_TRUE(std::holds_alternative<json>(e));
  EXPECT_EQ(std::get<json>(e), json::parse(R"({"detail": [{"type": "missing", "loc": ["body", "container_name"],
    "msg": "Field required", "input": {"task_id": 1}}]})"));

  e = parse_task_control(R"({"task_id": "x", "container_name": null})");
  ASSERT_TRUE(std::holds_alternative<json>(e));
  ASSERT_EQ(std::get<json>(e)["detail"].size(), 2u);
  EXPECT_EQ(std::get<json>(e)["detail"][0]["type"], "int_parsing");
  EXPECT_EQ(std::get<json>(e)["detail"][1]["type"], "string_type");
}

// The Engine API create body of a command task: the same observable
// container as upstream's `docker run` argv (execution.md §1.4–1.6,
// protocol.md A.1) plus labels, no auto-remove and cpuset NUMA binding.
#include <gtest/gtest.h>

#include "tasks/container_spec.hpp"

using namespace kr::tasks;
using kr::config::RunnerConfig;
using nlohmann::json;

namespace {

TaskRequest sample_request() {
  TaskRequest r;
  r.task_id = 7199539478398935040LL;
  r.command = "python train.py";
  r.arguments = {"--epochs", "3", "it's"};
  r.env_vars["FOO"] = "bar";
  r.env_vars["KOHAKURIVER_TASK_ID"] = "user-value";
  r.env_vars["ALPHA"] = "1";
  r.required_cores = 4;
  r.required_gpus = {0, 1};
  r.required_memory_bytes = 1572864;  // 1.5 MiB → "2m"
  r.target_numa_node_id = 1;
  r.container_name = "kohakuriver-base";
  r.reserved_ip = "10.128.0.5";
  r.stdout_path = "/mnt/cluster-share/logs/7199539478398935040/stdout.log";
  r.stderr_path = "/mnt/cluster-share/logs/7199539478398935040/stderr.log";
  return r;
}

RunnerConfig sample_config() {
  RunnerConfig c;
  c.additional_mounts = {"/data:/data:ro", "/scratch:/scratch", "bad-entry", "/a:/b:bind-propagation=RSHARED,readonly=false"};
  return c;
}

TaskContainerContext sample_context() {
  TaskContainerContext ctx;
  ctx.hostname = "node1";
  ctx.network = "kohakuriver-net";
  ctx.container_gateway = "172.30.0.1";
  ctx.tunnel_client_path = "/opt/kohakuriver/libexec/tunnel-client";
  ctx.numa_cpus = {{0, {0, 1, 2, 3}}, {1, {7, 4, 5, 6, 12}}};
  return ctx;
}

}  // namespace

TEST(TaskContainerSpec, FullCreateBody) {
  std::vector<std::string> warnings;
  json body = build_task_create_body(sample_request(), sample_config(), sample_context(), &warnings);
  json expected = json::parse(R"({
    "Image": "kohakuriver/kohakuriver-base:base",
    "Cmd": ["/bin/sh", "-c", "(nohup /usr/local/bin/tunnel-client --runner-url \"$KOHAKURIVER_TUNNEL_URL\" --container-id \"$KOHAKURIVER_CONTAINER_ID\" --log-level info > /tmp/tunnel-client.log 2>&1 &) && sleep 0.1 && exec python train.py --epochs 3 'it'\"'\"'s' > /kohakuriver-logs/7199539478398935040/stdout.log 2> /kohakuriver-logs/7199539478398935040/stderr.log"],
    "Env": [
      "FOO=bar",
      "KOHAKURIVER_TASK_ID=7199539478398935040",
      "ALPHA=1",
      "KOHAKURIVER_LOCAL_TEMP_DIR=/tmp/kohakuriver",
      "KOHAKURIVER_SHARED_DIR=/mnt/cluster-share",
      "KOHAKURIVER_TARGET_NUMA_NODE=1",
      "KOHAKURIVER_TUNNEL_URL=ws://172.30.0.1:8001",
      "KOHAKURIVER_CONTAINER_ID=kohakuriver-task-7199539478398935040"
    ],
    "WorkingDir": "/shared",
    "Labels": {"kohakuriver.task_id": "7199539478398935040", "kohakuriver.kind": "task", "kohakuriver.node": "node1"},
    "HostConfig": {
      "NetworkMode": "kohakuriver-net",
      "Privileged": false,
      "CapAdd": ["SYS_NICE"],
      "Mounts": [
        {"Type": "bind", "Source": "/mnt/cluster-share/shared_data", "Target": "/shared", "ReadOnly": false},
        {"Type": "bind", "Source": "/mnt/cluster-share/logs", "Target": "/kohakuriver-logs", "ReadOnly": false},
        {"Type": "bind", "Source": "/tmp/kohakuriver", "Target": "/local_temp", "ReadOnly": false},
        {"Type": "bind", "Source": "/data", "Target": "/data", "ReadOnly": true},
        {"Type": "bind", "Source": "/scratch", "Target": "/scratch", "ReadOnly": false},
        {"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": false, "BindOptions": {"Propagation": "rshared"}},
        {"Type": "bind", "Source": "/opt/kohakuriver/libexec/tunnel-client", "Target": "/usr/local/bin/tunnel-client", "ReadOnly": true}
      ],
      "NanoCpus": 4000000000,
      "Memory": 2097152,
      "DeviceRequests": [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]], "Options": {}}],
      "CpusetCpus": "4-7,12",
      "CpusetMems": "1",
      "AutoRemove": false
    },
    "NetworkingConfig": {"EndpointsConfig": {"kohakuriver-net": {"IPAMConfig": {"IPv4Address": "10.128.0.5"}}}}
  })");
  EXPECT_EQ(body, expected) << body.dump(2);
  EXPECT_EQ(warnings, (std::vector<std::string>{"Invalid mount format: 'bad-entry'. Skipping."}));
}

TEST(TaskContainerSpec, MinimalRequestWithoutOptionalGroups) {
  TaskRequest r;
  r.task_id = 5;
  r.command = "true";
  r.container_name = "env";
  r.required_cores = 0;
  r.stdout_path = "/mnt/cluster-share/logs/5/stdout.log";
  r.stderr_path = "/mnt/cluster-share/logs/5/stderr.log";
  RunnerConfig c;
  c.tunnel_enabled = false;
  c.tasks_privileged = true;
  TaskContainerContext ctx;  // network/gateway fall back to the configuration
  ctx.hostname = "h";
  ctx.tunnel_client_path = "/usr/bin/tunnel-client";  // ignored: tunnel disabled
  json body = build_task_create_body(r, c, ctx);
  EXPECT_EQ(body["Cmd"][2], "exec true > /kohakuriver-logs/5/stdout.log 2> /kohakuriver-logs/5/stderr.log");
  EXPECT_EQ(body["Env"], json::parse(R"(["KOHAKURIVER_TASK_ID=5", "KOHAKURIVER_LOCAL_TEMP_DIR=/tmp/kohakuriver",
    "KOHAKURIVER_SHARED_DIR=/mnt/cluster-share"])"));
  const json& h = body["HostConfig"];
  EXPECT_EQ(h["Privileged"], true);
  EXPECT_FALSE(h.contains("CapAdd"));
  EXPECT_EQ(h["NetworkMode"], "kohakuriver-net");
  EXPECT_EQ(h["Mounts"].size(), 3u);
  for (const char* k : {"NanoCpus", "Memory", "DeviceRequests", "CpusetCpus", "CpusetMems"})
    EXPECT_FALSE(h.contains(k)) << k;
  EXPECT_EQ(body["NetworkingConfig"], json::parse(R"({"EndpointsConfig": {"kohakuriver-net": {}}})"));
}

TEST(TaskContainerSpec, TunnelVariablesWithoutBinary) {
  // §1.8: variables whenever TUNNEL_ENABLED; mount and wrapper only with a binary.
  TaskRequest r = sample_request();
  TaskContainerContext ctx = sample_context();
  ctx.tunnel_client_path.reset();
  ctx.container_gateway = "10.128.0.1";  // overlay gateway
  json body = build_task_create_body(r, sample_config(), ctx);
  EXPECT_EQ(body["Cmd"][2].get<std::string>().rfind("exec python", 0), 0u);
  EXPECT_EQ(body["Env"][6], "KOHAKURIVER_TUNNEL_URL=ws://10.128.0.1:8001");
  EXPECT_EQ(body["HostConfig"]["Mounts"].size(), 6u);
}

TEST(TaskContainerSpec, EnvOverridesKeepUserPositions) {
  TaskRequest r;
  r.task_id = 9;
  r.env_vars["KOHAKURIVER_CONTAINER_ID"] = "mine";
  r.env_vars["B"] = "x=y";
  r.env_vars["KOHAKURIVER_SHARED_DIR"] = "/elsewhere";
  r.env_vars["KOHAKURIVER_TARGET_NUMA_NODE"] = "3";  // no NUMA requested: stays the user's
  RunnerConfig c;
  c.runner_port = 9001;
  EXPECT_EQ(build_task_env(r, c, "172.30.0.1"),
            (std::vector<std::string>{"KOHAKURIVER_CONTAINER_ID=kohakuriver-task-9", "B=x=y",
                                      "KOHAKURIVER_SHARED_DIR=/mnt/cluster-share", "KOHAKURIVER_TARGET_NUMA_NODE=3",
                                      "KOHAKURIVER_TASK_ID=9", "KOHAKURIVER_LOCAL_TEMP_DIR=/tmp/kohakuriver",
                                      "KOHAKURIVER_TUNNEL_URL=ws://172.30.0.1:9001"}));
  r.env_vars[""] = "v";
  EXPECT_THROW(build_task_env(r, c, ""), SpecError);
}

TEST(TaskContainerSpec, MemoryRounding) {
  EXPECT_EQ(task_memory_limit(std::nullopt), 0);
  EXPECT_EQ(task_memory_limit(0), 0);
  EXPECT_EQ(task_memory_limit(-5), 0);
  EXPECT_EQ(task_memory_limit(1), 0);
  EXPECT_EQ(task_memory_limit(524287), 0);        // < 0.5 MiB → "0m": no limit
  EXPECT_EQ(task_memory_limit(524288), 0);        // exactly 0.5 → half-to-even 0
  EXPECT_EQ(task_memory_limit(524289), 1 << 20);  // just above half
  EXPECT_EQ(task_memory_limit(1572864), 2 << 20);  // 1.5 MiB → 2m
  EXPECT_EQ(task_memory_limit(2621440), 2 << 20);  // 2.5 MiB → 2m
  EXPECT_EQ(task_memory_limit(3670016), 4 << 20);  // 3.5 MiB → 4m
  EXPECT_EQ(task_memory_limit(1073741824), 1073741824);
  EXPECT_THROW(task_memory_limit(INT64_MAX), SpecError);
  TaskRequest r = sample_request();
  r.required_memory_bytes = 1000;
  EXPECT_FALSE(build_task_create_body(r, RunnerConfig{}, sample_context())["HostConfig"].contains("Memory"));
}

TEST(TaskContainerSpec, CpusetFormatting) {
  EXPECT_EQ(format_cpuset({}), "");
  EXPECT_EQ(format_cpuset({3}), "3");
  EXPECT_EQ(format_cpuset({0, 1, 2, 3, 8, 9, 11}), "0-3,8-9,11");
  EXPECT_EQ(format_cpuset({5, 4, 4, -1, 6}), "4-6");
}

TEST(TaskContainerSpec, NumaNodeOutsideTopologyRunsUnbound) {
  TaskRequest r = sample_request();
  r.target_numa_node_id = 3;
  std::vector<std::string> warnings;
  json body = build_task_create_body(r, RunnerConfig{}, sample_context(), &warnings);
  EXPECT_FALSE(body["HostConfig"].contains("CpusetCpus"));
  EXPECT_FALSE(body["HostConfig"].contains("CpusetMems"));
  EXPECT_EQ(body["Env"][5], "KOHAKURIVER_TARGET_NUMA_NODE=3");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "NUMA node 3 is not in the detected topology; the task runs without NUMA binding.");
  TaskContainerContext no_topology = sample_context();
  no_topology.numa_cpus.clear();
  r.target_numa_node_id = 0;
  EXPECT_FALSE(build_task_create_body(r, RunnerConfig{}, no_topology)["HostConfig"].contains("CpusetCpus"));
}

TEST(TaskContainerSpec, AdditionalMountOptions) {
  auto mount = [](std::string_view spec) { return parse_additional_mount(spec, nullptr); };
  EXPECT_EQ(*mount("/h:/c"), json::parse(R"({"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": false})"));
  EXPECT_EQ((*mount("/h:/c:readonly"))["ReadOnly"], true);
  EXPECT_EQ((*mount("/h:/c:rw"))["ReadOnly"], false);
  EXPECT_EQ((*mount("/h:/c:ro=true"))["ReadOnly"], true);
  EXPECT_EQ((*mount("/h:/c:ro,rw"))["ReadOnly"], false);
  EXPECT_EQ((*mount("/h:/c:bind-nonrecursive"))["BindOptions"], json::parse(R"({"NonRecursive": true})"));
  EXPECT_EQ((*mount("/h:/c:ro:bind-propagation=slave"))["BindOptions"]["Propagation"], "slave");
  EXPECT_EQ((*mount("/h:/c:consistency=Cached"))["Consistency"], "cached");
  EXPECT_EQ((*mount("/h:/c:target=/d"))["Target"], "/d");
  EXPECT_EQ(mount("/only-one-part"), std::nullopt);
  EXPECT_EQ(mount(""), std::nullopt);
  for (const char* bad : {"/h:/c:z", "/h:/c:", "/h:/c:ro=maybe", "/h:/c:bind-propagation=weird", "/h:/c:type=volume",
                          "/h:/c:volume-nocopy", "/h:/c:tmpfs-size=1m", "/h::ro", ":/c", "/h:/c:RO"}) {
    try {
      mount(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const SpecError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  try {
    mount("/h:/c:z");
  } catch (const SpecError& e) {
    EXPECT_STREQ(e.what(), "ADDITIONAL_MOUNTS entry '/h:/c:z': invalid field 'z' must be a key=value pair");
  }
  RunnerConfig c;
  c.additional_mounts = {"/x:/y:bogus"};
  EXPECT_THROW(build_task_create_body(sample_request(), c, sample_context()), SpecError);
}

TEST(TaskContainerSpec, ImageReferences) {
  EXPECT_EQ(task_container_name(42), "kohakuriver-task-42");
  EXPECT_EQ(env_image_reference("kohakuriver-base"), "kohakuriver/kohakuriver-base:base");
  EXPECT_THROW(env_image_reference("MyEnv"), SpecError);  // verbatim: upper case is no valid reference
  EXPECT_THROW(env_image_reference("a:b"), SpecError);
  EXPECT_THROW(env_image_reference(""), SpecError);
  TaskRequest r;
  r.container_name = std::nullopt;
  r.registry_image = "ghcr.io/org/image:1.2";
  EXPECT_EQ(task_image_reference(r), "ghcr.io/org/image:1.2");
  r.registry_image = "--help";  // S-ARGV
  EXPECT_THROW(task_image_reference(r), SpecError);
  r.registry_image = "";
  EXPECT_THROW(task_image_reference(r), SpecError);  // neither given
  r.container_name = "env";
  EXPECT_EQ(task_image_reference(r), "kohakuriver/env:base");

  TaskRequest reg = sample_request();
  reg.container_name.reset();
  reg.registry_image = "ubuntu:22.04";
  EXPECT_EQ(build_task_create_body(reg, RunnerConfig{}, sample_context())["Image"], "ubuntu:22.04");
  TaskContainerContext ctx = sample_context();
  ctx.image = "Bad Image";
  EXPECT_THROW(build_task_create_body(reg, RunnerConfig{}, ctx), SpecError);
}

TEST(TaskContainerSpec, RejectsBadValues) {
  TaskRequest r = sample_request();
  r.reserved_ip = "10.0.0.300";
  EXPECT_THROW(build_task_create_body(r, RunnerConfig{}, sample_context()), SpecError);
  r.reserved_ip = "";  // empty means none, like upstream's truthiness test
  EXPECT_EQ(build_task_create_body(r, RunnerConfig{}, sample_context())["NetworkingConfig"]["EndpointsConfig"]
                ["kohakuriver-net"],
            json::object());
  r = sample_request();
  r.arguments.push_back(std::string("a\0b", 3));
  try {
    build_task_create_body(r, RunnerConfig{}, sample_context());
    ADD_FAILURE();
  } catch (const SpecError& e) {
    EXPECT_STREQ(e.what(), "embedded null byte");  // upstream's ValueError text
  }
  r = sample_request();
  r.required_cores = INT64_MAX / 10;
  EXPECT_THROW(build_task_create_body(r, RunnerConfig{}, sample_context()), SpecError);
}

TEST(TaskContainerSpec, UntranslatedLogPathsStayAsUpstream) {
  TaskRequest r = sample_request();
  r.stdout_path = "/other-share/logs/1/stdout.log";
  json body = build_task_create_body(r, RunnerConfig{}, sample_context());
  EXPECT_NE(body["Cmd"][2].get<std::string>().find("> /other-share/logs/1/stdout.log 2>"), std::string::npos);
}

#include <gtest/gtest.h>

#include <unistd.h>

#include "metrics/metrics.hpp"

using kr::metrics::docker_operation;

TEST(Metrics, DockerOperationLabelsAreBounded) {
  EXPECT_EQ(docker_operation("POST", "/containers/create?name=kohakuriver-task-1"), "container_create");
  EXPECT_EQ(docker_operation("POST", "/containers/kohakuriver-task-1/start"), "container_start");
  EXPECT_EQ(docker_operation("POST", "/containers/abc/wait?condition=not-running"), "container_wait");
  EXPECT_EQ(docker_operation("GET", "/containers/abc/json"), "container_inspect");
  EXPECT_EQ(docker_operation("DELETE", "/containers/abc?force=1"), "container_remove");
  EXPECT_EQ(docker_operation("GET", "/containers/json?all=1"), "container_list");
  EXPECT_EQ(docker_operation("POST", "/images/create?fromImage=x&tag=y"), "image_pull");
  EXPECT_EQ(docker_operation("POST", "/images/load?quiet=1"), "image_load");
  EXPECT_EQ(docker_operation("GET", "/images/sha256:abc/json"), "image_inspect");
  EXPECT_EQ(docker_operation("POST", "/images/a/tag?repo=b"), "image_tag");
  EXPECT_EQ(docker_operation("GET", "/networks/kohakuriver-net"), "network_inspect");
  EXPECT_EQ(docker_operation("POST", "/networks/create"), "network_create");
  EXPECT_EQ(docker_operation("GET", "/_ping"), "ping");
  EXPECT_EQ(docker_operation("GET", "/events?filters=x"), "events");
  EXPECT_EQ(docker_operation("POST", "/commit?container=x"), "container_commit");
  EXPECT_EQ(docker_operation("POST", "/exec/abcd/start"), "exec_start");
  EXPECT_EQ(docker_operation("POST", "/containers/x/y/z/evil"), "container_other");
  EXPECT_EQ(docker_operation("GET", "/whatever/x"), "other");
}

TEST(Metrics, ProcessStatsArePlausible) {
  auto p = kr::metrics::read_process_stats();
  EXPECT_GT(p.resident_bytes, 1024 * 1024);
  EXPECT_GE(p.cpu_seconds, 0);
  EXPECT_GE(p.open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GT(p.start_time_unix, 1.5e9);
  EXPECT_LE(p.start_time_unix, static_cast<double>(time(nullptr)) + 1);
}

TEST(Metrics, RenderHasTheFamilies) {
  kr::metrics::task_finished("task", "completed");
  kr::metrics::task_finished("task", "completed");
  kr::metrics::docker_request("container_start", 0.02);
  kr::metrics::ScrapeState st;
  st.tasks[{"task", "running"}] = 2;
  st.outbox_pending = 3;
  st.last_heartbeat_success_unix = 1700000000.5;
  st.gpu_info = nlohmann::json::parse(
      R"([{"gpu_id":0,"gpu_utilization":50,"memory_used_mib":1024,"temperature":40},
          {"gpu_id":1,"gpu_utilization":-1,"memory_used_mib":0,"temperature":-1}])");
  const std::string text = kr::metrics::render(st);
  for (const char* want : {
           "# TYPE kohakuriver_runner_info gauge", "kohakuriver_runner_info{version=\"",
           "kohakuriver_runner_tasks{kind=\"task\",state=\"running\"} 2",
           "kohakuriver_runner_tasks_finished_total{kind=\"task\",status=\"completed\"} 2",
           "# TYPE kohakuriver_runner_tasks_finished_total counter", "kohakuriver_runner_outbox_pending 3",
           "kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds 1700000000.5",
           "# TYPE kohakuriver_runner_docker_request_duration_seconds histogram",
           "kohakuriver_runner_docker_request_duration_seconds_bucket{operation=\"container_start\",le=\"0.025\"} 1",
           "kohakuriver_runner_gpu_utilization_ratio{gpu=\"0\"} 0.5",
           "kohakuriver_runner_gpu_memory_used_bytes{gpu=\"0\"} 1073741824",
           "kohakuriver_runner_gpu_memory_used_bytes{gpu=\"1\"} 0",
           "kohakuriver_runner_gpu_temperature_celsius{gpu=\"0\"} 40", "# TYPE process_resident_memory_bytes gauge",
           "# TYPE process_cpu_seconds_total counter", "process_open_fds ", "process_start_time_seconds "})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  // Readings NVML could not take are left out, not exported as -1.
  EXPECT_EQ(text.find("kohakuriver_runner_gpu_utilization_ratio{gpu=\"1\"}"), std::string::npos);
  EXPECT_EQ(text.find("kohakuriver_runner_gpu_temperature_celsius{gpu=\"1\"}"), std::string::npos);
}

TEST(Metrics, NoGpuFamiliesWithoutGpus) {
  const std::string text = kr::metrics::render({});
  EXPECT_EQ(text.find("kohakuriver_runner_gpu_"), std::string::npos);
  EXPECT_NE(text.find("kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds 0"), std::string::npos);
}

TEST(Metrics, SshRelayFamiliesArePresentFromTheStart) {
  const std::string before = kr::metrics::render({});
  EXPECT_NE(before.find("kohakuriver_runner_vm_ssh_relay_connections_total{outcome=\"handshake_timeout\"} 0"),
            std::string::npos)
      << before;
  EXPECT_NE(before.find("# TYPE kohakuriver_runner_vm_ssh_relay_open_connections gauge"), std::string::npos);
  kr::metrics::ssh_relay_event("refused_per_source");
  kr::metrics::ssh_relay_open_changed(+1);
  kr::metrics::ssh_relay_open_changed(+1);
  kr::metrics::ssh_relay_open_changed(-1);
  const std::string after = kr::metrics::render({});
  EXPECT_NE(after.find("kohakuriver_runner_vm_ssh_relay_connections_total{outcome=\"refused_per_source\"} 1"),
            std::string::npos)
      << after;
  EXPECT_NE(after.find("kohakuriver_runner_vm_ssh_relay_open_connections 1"), std::string::npos) << after;
}

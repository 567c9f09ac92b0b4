#include "metrics/metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#ifndef KR_VERSION
#define KR_VERSION "0.0.0-dev"
#endif

namespace kr::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Registry {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& finished =
      prometheus::BuildCounter()
          .Name("kohakuriver_runner_tasks_finished_total")
          .Help("Tasks and VPS that reached a final status, by kind and status")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& docker =
      prometheus::BuildHistogram()
          .Name("kohakuriver_runner_docker_request_duration_seconds")
          .Help("Duration of Docker Engine API requests, by operation")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& relay_events =
      prometheus::BuildCounter()
          .Name("kohakuriver_runner_vm_ssh_relay_connections_total")
          .Help("Connections to the VM SSH port relays, by outcome (accepted, refused_total, refused_per_source, "
                "handshake_timeout)")
          .Register(*registry);
  prometheus::Gauge& relay_open = prometheus::BuildGauge()
                                      .Name("kohakuriver_runner_vm_ssh_relay_open_connections")
                                      .Help("Connections the VM SSH port relays hold open now")
                                      .Register(*registry)
                                      .Add({});
  Registry() {
    for (const char* o : {"accepted", "refused_total", "refused_per_source", "handshake_timeout"})
      relay_events.Add({{"outcome", o}});
  }
};

Registry& reg() {
  static Registry r;
  return r;
}

const prometheus::Histogram::BucketBoundaries& docker_buckets() {
  // From a cached inspect (~1 ms) to an image pull or load (minutes).
  static const prometheus::Histogram::BucketBoundaries b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                            1,     2.5,  5,     10,   30,  60,  300};
  return b;
}

ClientMetric gauge(double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  return m;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

double clock_ticks() {
  static const double t = static_cast<double>(sysconf(_SC_CLK_TCK));
  return t > 0 ? t : 100.0;
}

double boot_time_unix() {
  std::ifstream f("/proc/stat");
  std::string key;
  double value = 0;
  while (f >> key) {
    if (key == "btime") {
      f >> value;
      return value;
    }
    f.ignore(1 << 16, '\n');
  }
  return 0;
}

}  // namespace

void task_finished(std::string_view kind, std::string_view status) {
  reg().finished.Add({{"kind", std::string(kind)}, {"status", std::string(status)}}).Increment();
}

void declare_finished_statuses(std::string_view kind, const std::vector<std::string>& statuses) {
  for (const auto& st : statuses) reg().finished.Add({{"kind", std::string(kind)}, {"status", st}});
}

void docker_request(std::string_view operation, double seconds) {
  reg().docker.Add({{"operation", std::string(operation)}}, docker_buckets()).Observe(seconds);
}

void ssh_relay_event(std::string_view outcome) {
  reg().relay_events.Add({{"outcome", std::string(outcome)}}).Increment();
}

void ssh_relay_open_changed(int delta) { reg().relay_open.Increment(delta); }

std::string docker_operation(std::string_view method, std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string_view> seg;
  while (!target.empty()) {
    if (target.front() == '/') {
      target.remove_prefix(1);
      continue;
    }
    auto slash = target.find('/');
    seg.push_back(target.substr(0, slash));
    target = slash == std::string_view::npos ? std::string_view() : target.substr(slash);
  }
  if (seg.empty()) return "other";
  const std::string_view res = seg[0];
  // Resource name → singular label; ids and names never become labels.
  std::string kind;
  if (res == "containers") kind = "container";
  else if (res == "images") kind = "image";
  else if (res == "networks") kind = "network";
  else if (res == "exec") kind = "exec";
  else if (res == "volumes") kind = "volume";
  else if (res == "_ping") return "ping";
  else if (res == "version") return "version";
  else if (res == "info") return "info";
  else if (res == "events") return "events";
  else if (res == "commit") return "container_commit";
  else return "other";

  if (seg.size() == 1) return kind + (method == "POST" ? "_create" : "_other");
  const std::string_view second = seg[1];
  if (seg.size() == 2) {
    // /containers/json, /images/json, /containers/create, /images/create (pull),
    // /images/load, /networks/create, /containers/prune.
    if (second == "json") return kind + "_list";
    if (kind == "image" && second == "create") return "image_pull";
    if (second == "create" || second == "load" || second == "prune") return kind + "_" + std::string(second);
    if (method == "DELETE") return kind + "_remove";
    if (method == "GET") return kind + "_inspect";  // /networks/{id}
    return kind + "_other";
  }
  // /{kind}/{id}/{action}[/...]: the action names the operation.
  std::string_view action = seg[2];
  if (action == "json") return kind + "_inspect";
  static constexpr std::string_view known[] = {"start",  "stop",    "kill",   "wait",   "pause",   "unpause",
                                               "exec",   "attach",  "logs",   "resize", "restart", "tag",
                                               "rename", "connect", "disconnect", "top", "stats", "archive",
                                               "update", "history", "push", "get"};
  for (auto k : known)
    if (action == k) return kind + "_" + std::string(action);
  return kind + "_other";
}

ProcessStats read_process_stats() {
  ProcessStats s;
  // /proc/self/stat: the command may contain spaces, so fields are counted
  // after the last ')'. utime, stime are fields 14, 15; starttime is 22;
  // rss (pages) is 24.
  std::ifstream f("/proc/self/stat");
  std::string line;
  std::getline(f, line);
  auto close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(line.substr(close + 2));
    std::vector<std::string> fields;
    std::string tok;
    while (in >> tok) fields.push_back(tok);
    // fields[0] is field 3 (state).
    auto field = [&](int n) { return n - 3 < static_cast<int>(fields.size()) ? std::stod(fields[n - 3]) : 0.0; };
    try {
      s.cpu_seconds = (field(14) + field(15)) / clock_ticks();
      s.start_time_unix = boot_time_unix() + field(22) / clock_ticks();
      s.resident_bytes = field(24) * static_cast<double>(sysconf(_SC_PAGESIZE));
    } catch (const std::exception&) {
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int n = 0;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    s.open_fds = n - 1;  // the directory stream's own descriptor
  }
  return s;
}

std::string render(const ScrapeState& state) {
  std::vector<MetricFamily> out;

  auto info = family("kohakuriver_runner_info", "Runner build information (always 1)", MetricType::Gauge);
  info.metric.push_back(gauge(1, {{"version", KR_VERSION}}));
  out.push_back(std::move(info));

  auto tasks = family("kohakuriver_runner_tasks", "Tasks and VPS this runner tracks now, by kind and state",
                      MetricType::Gauge);
  for (const auto& [key, n] : state.tasks)
    tasks.metric.push_back(gauge(static_cast<double>(n), {{"kind", key.first}, {"state", key.second}}));
  out.push_back(std::move(tasks));

  auto pending = family("kohakuriver_runner_outbox_pending",
                        "Status reports durably queued and not yet accepted by the host", MetricType::Gauge);
  pending.metric.push_back(gauge(static_cast<double>(state.outbox_pending)));
  out.push_back(std::move(pending));

  auto hb = family("kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds",
                   "Unix time of the last heartbeat the host accepted (0: none yet)", MetricType::Gauge);
  hb.metric.push_back(gauge(state.last_heartbeat_success_unix.value_or(0)));
  out.push_back(std::move(hb));

  if (state.gpu_info.is_array() && !state.gpu_info.empty()) {
    auto util = family("kohakuriver_runner_gpu_utilization_ratio", "GPU utilisation (0..1)", MetricType::Gauge);
    auto mem = family("kohakuriver_runner_gpu_memory_used_bytes", "GPU memory in use", MetricType::Gauge);
    auto temp = family("kohakuriver_runner_gpu_temperature_celsius", "GPU temperature", MetricType::Gauge);
    for (const auto& g : state.gpu_info) {
      if (!g.is_object() || !g.contains("gpu_id")) continue;
      const std::string id = g["gpu_id"].dump();
      auto num = [&](const char* k) -> std::optional<double> {
        auto it = g.find(k);
        // NVML readings it could not take are -1 in gpu_info: no sample.
        if (it == g.end() || !it->is_number() || it->get<double>() < 0) return std::nullopt;
        return it->get<double>();
      };
      if (auto v = num("gpu_utilization")) util.metric.push_back(gauge(*v / 100.0, {{"gpu", id}}));
      if (auto v = num("memory_used_mib")) mem.metric.push_back(gauge(*v * 1024.0 * 1024.0, {{"gpu", id}}));
      if (auto v = num("temperature")) temp.metric.push_back(gauge(*v, {{"gpu", id}}));
    }
    for (auto* f : {&util, &mem, &temp})
      if (!f->metric.empty()) out.push_back(std::move(*f));
  }

  for (auto& f : reg().registry->Collect()) out.push_back(std::move(f));

  const ProcessStats p = read_process_stats();
  auto rss = family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge);
  rss.metric.push_back(gauge(p.resident_bytes));
  out.push_back(std::move(rss));
  auto cpu = family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                    MetricType::Counter);
  ClientMetric c;
  c.counter.value = p.cpu_seconds;
  cpu.metric.push_back(c);
  out.push_back(std::move(cpu));
  auto fds = family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
  fds.metric.push_back(gauge(p.open_fds));
  out.push_back(std::move(fds));
  auto start = family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                      MetricType::Gauge);
  start.metric.push_back(gauge(p.start_time_unix));
  out.push_back(std::move(start));

  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, out);
  return text.str();
}

}  // namespace kr::metrics

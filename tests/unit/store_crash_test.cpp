// Crash safety: a child process pushes reports and finishes tasks, then
// SIGKILLs itself while more writes are queued or in progress. The parent
// reopens the store and checks that everything the child was told is
// durable is there, and that finish_task was all-or-nothing.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "store/outbox.hpp"
#include "store_test_util.hpp"

namespace asio = boost::asio;
using namespace kr::store;
using namespace kr::store::test;

namespace {

constexpr int kTasks = 40;
constexpr int kReportsPerTask = 5;
constexpr int32_t kFinished = -1;  // ack for finish_task instead of a report number

struct Ack {
  int64_t task_id;
  int32_t n;  // report number, or kFinished
  int32_t pad = 0;
};

void write_ack(int fd, Ack a) {
  // 16 bytes < PIPE_BUF: the write is atomic.
  if (::write(fd, &a, sizeof a) != static_cast<ssize_t>(sizeof a)) ::_exit(4);
}

asio::awaitable<void> one_task(Outbox& outbox, StateStore& store, int64_t id, int fd, int& acks, int kill_after) {
  auto ack = [&](Ack a) {
    write_ack(fd, a);
    if (++acks == kill_after) ::kill(::getpid(), SIGKILL);  // the other tasks' writes are mid-flight
  };
  for (int n = 0; n < kReportsPerTask; ++n) {
    co_await outbox.push(id, report(id, n), false);
    ack({id, n});
  }
  if (co_await store.finish_task(id, report(id, kReportsPerTask, "completed")) == FinishOutcome::Reported)
    ack({id, kFinished});
}

[[noreturn]] void child(const std::filesystem::path& dir, int fd, int kill_after) {
  try {
    asio::io_context ioc;
    StateStore store(dir);
    // Never started: this is about durability, not delivery.
    Outbox outbox(store, ioc.get_executor(), [](const std::string&) -> asio::awaitable<int> { co_return 200; });
    int acks = 0;
    auto setup = [&]() -> asio::awaitable<void> {
      for (int64_t id = 1; id <= kTasks; ++id) {
        TaskRecord r;
        r.task_id = id;
        r.kind = "task";
        r.container_name = "kohakuriver-task-" + std::to_string(id);
        r.phase = "running";
        co_await store.insert_task(r);
      }
      for (int64_t id = 1; id <= kTasks; ++id)
        asio::co_spawn(ioc, one_task(outbox, store, id, fd, acks, kill_after), asio::detached);
    };
    asio::co_spawn(ioc, setup(), asio::detached);
    ioc.run();
  } catch (...) {
    ::_exit(2);
  }
  ::_exit(3);  // finished without being killed: kill_after was too large
}

void crash_and_check(int kill_after) {
  TempDir tmp;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(tmp.state(), fds[1], kill_after);
  }
  ::close(fds[1]);
  std::vector<Ack> acks;
  Ack a;
  while (::read(fds[0], &a, sizeof a) == static_cast<ssize_t>(sizeof a)) acks.push_back(a);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  ASSERT_EQ(static_cast<int>(acks.size()), kill_after);

  asio::io_context ioc;
  StateStore store(tmp.state());
  auto outbox = run_co(ioc, store.load_outbox());
  std::map<int64_t, std::vector<int>> stored;  // per task, n in seq order
  std::set<int64_t> final_reported;
  for (auto& e : outbox) {
    auto r = parse_report(e.payload);
    EXPECT_EQ(r.task_id, e.task_id);
    stored[e.task_id].push_back(r.n);
    if (e.is_final) final_reported.insert(e.task_id);
  }
  // Every acknowledged write is durable.
  for (auto& ack : acks) {
    auto& v = stored[ack.task_id];
    int n = ack.n == kFinished ? kReportsPerTask : ack.n;
    EXPECT_NE(std::find(v.begin(), v.end(), n), v.end()) << "task " << ack.task_id << " report " << n << " lost";
  }
  // Per task: a gap-free prefix in enqueue order (n+1 never without n).
  for (auto& [id, v] : stored)
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<int>(i)) << "task " << id;
  // finish_task is atomic: the row is gone exactly when the final report exists.
  auto tasks = run_co(ioc, store.load_tasks());
  std::set<int64_t> rows;
  for (auto& t : tasks) rows.insert(t.task_id);
  for (int64_t id = 1; id <= kTasks; ++id)
    EXPECT_NE(rows.count(id) == 1, final_reported.count(id) == 1) << "task " << id;
}

}  // namespace

// Three kill points: early (mostly reports), middle, late (mostly finishes).
TEST(StoreCrash, EarlyKillLosesNothingAcknowledged) { crash_and_check(30); }
TEST(StoreCrash, MidwayKillLosesNothingAcknowledged) { crash_and_check(120); }
TEST(StoreCrash, LateKillKeepsFinishAtomic) { crash_and_check(230); }

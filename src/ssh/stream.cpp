#include "ssh/stream.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <deque>
#include <mutex>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "ssh/session.hpp"

namespace kr::ssh {

namespace asio = boost::asio;

namespace {
// Output queued for the I/O thread beyond this: the channel is not read
// until it drains (SSH flow control then holds the remote side).
constexpr std::size_t kMaxQueued = 1u << 20;
}  // namespace

struct SshStream::Shared : std::enable_shared_from_this<SshStream::Shared> {
  explicit Shared(asio::any_io_executor ex) : timer(ex) {}
  ~Shared() {
    if (wake[0] >= 0) ::close(wake[0]);
    if (wake[1] >= 0) ::close(wake[1]);
  }

  asio::steady_timer timer;  // I/O thread only
  // Held by the worker while it runs: the io_context keeps running (and
  // exists) until the worker's last post has been delivered.
  asio::any_io_executor work;
  int wake[2] = {-1, -1};

  mutable std::mutex mu;
  // worker -> I/O thread
  bool opened = false;
  bool ended = false;
  std::string error;
  std::deque<SshChunk> out;
  std::size_t queued = 0;
  // I/O thread -> worker
  std::deque<std::string> writes;
  std::optional<std::pair<int, int>> resize;  // rows, cols
  bool closing = false;

  void poke_worker() {
    char c = 1;
    [[maybe_unused]] auto n = ::write(wake[1], &c, 1);
  }
  // From the worker: wake the awaiting coroutine.
  void poke_reader() {
    auto self = shared_from_this();
    asio::post(work, [self] { self->timer.cancel(); });
  }

  // `self` is the worker's reference: handed to the I/O thread at the end
  // (finish) so the timer is destroyed there, while its io_context exists.
  void run(SshStreamSpec spec, std::shared_ptr<Shared> self);
  void serve(SshStreamSpec spec);
  void finish(std::shared_ptr<Shared> self);
};

void SshStream::Shared::finish(std::shared_ptr<Shared> self) {
  // The worker must not hold the last reference: once `work` is released
  // the io_context may end and be destroyed, and a timer destroyed after
  // that touches a freed service (UBSan saw it in VmSshServer tests).
  asio::any_io_executor w = std::move(work);
  asio::post(w, [self = std::move(self), w]() mutable { self.reset(); });
}

void SshStream::Shared::run(SshStreamSpec spec, std::shared_ptr<Shared> self) {
  // The connection is closed and freed before the work guard goes: an
  // io_context that ran out of work (a test ending, the process exiting)
  // must not find the worker still inside libssh's teardown (LeakSanitizer
  // reported its OpenSSL objects as leaked when the process exited first).
  serve(std::move(spec));
  finish(std::move(self));
}

void SshStream::Shared::serve(SshStreamSpec spec) {
  SshConnection c;
  std::string why = c.open(spec.target, spec.connect_timeout);
  if (why.empty()) {
    if (spec.command.empty())
      c.open_shell(spec.term, spec.cols, spec.rows, why);
    else
      c.open_exec(spec.command, why);
  }
  {
    std::lock_guard lk(mu);
    opened = why.empty();
    if (!opened) {
      ended = true;
      error = why;
    }
  }
  poke_reader();
  if (!why.empty()) return;

  ssh_channel ch = c.channel();
  char buf[16384];
  std::string failure;
  for (;;) {
    std::deque<std::string> w;
    std::optional<std::pair<int, int>> rs;
    bool stop = false, throttled = false;
    {
      std::lock_guard lk(mu);
      w.swap(writes);
      rs = resize;
      resize.reset();
      stop = closing;
      throttled = queued >= kMaxQueued;
    }
    if (stop) break;
    for (const auto& data : w) {
      std::size_t off = 0;
      while (off < data.size()) {
        int n = ssh_channel_write(ch, data.data() + off, static_cast<uint32_t>(data.size() - off));
        if (n == SSH_ERROR) {
          failure = c.error();
          break;
        }
        off += static_cast<std::size_t>(n);
      }
      if (!failure.empty()) break;
    }
    if (!failure.empty()) break;
    if (rs && ssh_channel_change_pty_size(ch, rs->second, rs->first) != SSH_OK)
      spdlog::warn("ssh: window change failed: {}", c.error());

    int got = 0;
    if (!throttled) {
      for (int is_stderr = 0; is_stderr <= 1; ++is_stderr) {
        int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, is_stderr);
        if (n == SSH_ERROR) {
          failure = c.error();
          break;
        }
        if (n > 0) {
          got += n;
          {
            std::lock_guard lk(mu);
            out.push_back(SshChunk{is_stderr == 1, std::string(buf, static_cast<std::size_t>(n))});
            queued += static_cast<std::size_t>(n);
          }
          poke_reader();
        }
      }
      if (!failure.empty()) break;
      if (got == 0 && (ssh_channel_is_eof(ch) || ssh_channel_is_closed(ch))) break;
    }
    if (got > 0) continue;
    pollfd fds[2] = {{wake[0], POLLIN, 0}, {ssh_get_fd(c.session()), POLLIN, 0}};
    ::poll(fds, throttled ? 1 : 2, throttled ? 20 : 200);
    if (fds[0].revents & POLLIN) {
      char drain[64];
      while (::read(wake[0], drain, sizeof drain) > 0) {
      }
    }
  }
  {
    std::lock_guard lk(mu);
    ended = true;
    error = failure;
  }
  poke_reader();
  // ~SshConnection closes the channel (the remote shell gets SIGHUP) and
  // disconnects.
}

SshStream::SshStream(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
SshStream::~SshStream() { close(); }

asio::awaitable<std::unique_ptr<SshStream>> SshStream::open(SshStreamSpec spec) {
  auto sh = std::make_shared<Shared>(co_await asio::this_coro::executor);
  if (::pipe2(sh->wake, O_CLOEXEC | O_NONBLOCK) != 0) throw SshStreamError("cannot create a pipe");
  sh->work = asio::prefer(co_await asio::this_coro::executor, asio::execution::outstanding_work.tracked);
  std::thread([sh, spec = std::move(spec)]() mutable {
    Shared* p = sh.get();
    p->run(std::move(spec), std::move(sh));  // keeps it alive, then hands it to the I/O thread
  }).detach();
  for (;;) {
    {
      std::lock_guard lk(sh->mu);
      if (sh->opened) break;
      if (sh->ended) throw SshStreamError(sh->error);
    }
    sh->timer.expires_after(std::chrono::hours(1));
    co_await sh->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return std::make_unique<SshStream>(std::move(sh));
}

asio::awaitable<std::optional<SshChunk>> SshStream::read() {
  auto sh = shared_;
  for (;;) {
    {
      std::lock_guard lk(sh->mu);
      if (!sh->out.empty()) {
        SshChunk c = std::move(sh->out.front());
        sh->out.pop_front();
        const bool was_throttled = sh->queued >= kMaxQueued;
        sh->queued -= c.data.size();
        if (was_throttled && sh->queued < kMaxQueued) sh->poke_worker();
        co_return c;
      }
      if (sh->ended) co_return std::nullopt;
    }
    sh->timer.expires_after(std::chrono::hours(1));
    co_await sh->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void SshStream::write(std::string data) {
  if (data.empty()) return;
  std::lock_guard lk(shared_->mu);
  if (shared_->ended || shared_->closing) return;
  shared_->writes.push_back(std::move(data));
  shared_->poke_worker();
}

void SshStream::resize(int rows, int cols) {
  std::lock_guard lk(shared_->mu);
  shared_->resize = std::make_pair(rows, cols);
  shared_->poke_worker();
}

void SshStream::close() {
  if (!shared_) return;
  std::lock_guard lk(shared_->mu);
  if (shared_->closing) return;
  shared_->closing = true;
  shared_->poke_worker();
  // A reader waiting on the timer wakes when the worker reports the end.
}

std::string SshStream::end_error() const {
  std::lock_guard lk(shared_->mu);
  return shared_->error;
}

}  // namespace kr::ssh

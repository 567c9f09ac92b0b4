#pragma once
// DockerError: the one exception type every kr::docker call throws. Kept in
// its own header (std only) so code that merely catches Docker failures does
// not pull in Asio.

#include <stdexcept>
#include <string>

namespace kr::docker {

class DockerError : public std::runtime_error {
 public:
  // Why the call failed. `status` alone cannot say it: a timeout, an absent
  // daemon and an error reported inside a 200 progress stream all have no
  // HTTP error status.
  enum class Kind {
    Http,             // dockerd answered with status >= 400 (status set)
    Stream,           // error object inside a 200 stream (pull/load), status 0
    Timeout,          // the call's deadline expired; socket closed, status 0
    Cancelled,        // cancel_all() or a CancelToken aborted it, status 0
    Unreachable,      // connect() to the socket failed (ENOENT, ECONNREFUSED…)
    Transport,        // connection broke mid-call (daemon restart, EOF…)
    Protocol,         // unparsable / unexpected response
    InvalidArgument,  // a name/ref failed validation; nothing was sent
  };

  DockerError(Kind kind, int status, std::string message)
      : std::runtime_error(message), kind(kind), status(status), message(std::move(message)) {}

  Kind kind;
  int status;           // HTTP status for Kind::Http, else 0
  std::string message;  // dockerd's {"message":…} text, or our description

  bool not_found() const { return kind == Kind::Http && status == 404; }
  bool conflict() const { return kind == Kind::Http && status == 409; }
  bool timed_out() const { return kind == Kind::Timeout; }
  bool cancelled() const { return kind == Kind::Cancelled; }
  // True when dockerd could not be talked to at all (absent, restarting,
  // connection dropped): the caller may retry later.
  bool daemon_unavailable() const {
    return kind == Kind::Unreachable || kind == Kind::Transport;
  }
};

}  // namespace kr::docker

// QEMU Machine Protocol client (decision V4, vm.md §11.1).
//
// One session per command, as upstream: connect the UNIX socket, read the
// greeting, negotiate capabilities, send the command, read its answer.
// Unlike upstream it reads line by line, skips asynchronous events (QEMU
// sends POWERDOWN before the return of system_powerdown, sometimes in the
// same read), matches the reply by id, and bounds the whole exchange with a
// deadline.
#pragma once

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

namespace kr::vm {

class QmpError : public std::runtime_error {
public:
  enum class Kind {
    Connect,   // socket missing / refused
    Timeout,   // deadline passed
    Protocol,  // closed early, not JSON, no greeting, oversized line
    Command,   // QEMU answered {"error": ...}
  };
  QmpError(Kind kind, std::string message, std::string error_class = {})
      : std::runtime_error(std::move(message)), kind_(kind), error_class_(std::move(error_class)) {}
  Kind kind() const noexcept { return kind_; }
  // QEMU's error class ("GenericError", "CommandNotFound") for Kind::Command.
  const std::string& error_class() const noexcept { return error_class_; }

private:
  Kind kind_;
  std::string error_class_;
};

// Runs `command` (with `arguments` when not null) and returns the value of
// its "return" member. Throws QmpError. Must run on an executor whose
// io_context is being run; awaiting it never blocks the thread.
boost::asio::awaitable<nlohmann::json> qmp_execute(std::filesystem::path socket_path, std::string command,
                                                   nlohmann::json arguments = nullptr,
                                                   std::chrono::milliseconds deadline = std::chrono::seconds(5));

}  // namespace kr::vm

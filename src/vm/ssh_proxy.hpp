// The VM's SSH port (vm.md §11.4, decision V25): a plain TCP relay from
// {bind_ip}:{ssh_port} (the address the host reaches the runner on,
// RUNNER_BIND_IP) to {vm_ip}:22. Binding happens in the constructor, so a
// port already taken fails the create (upstream only logged it). Each
// accepted connection dials the VM (10 s limit; failure closes the client)
// and copies bytes both ways in 64 KiB reads. Runs on the I/O thread.
// Bounded by the runner's SshRelayGuard (issue 16 point 4): connections over
// the total or per-source caps are closed at once, a connection that has
// not exchanged SSH identification lines within the handshake timeout is
// closed, established sessions get TCP keepalive and no idle timeout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>

namespace kr::vm {

class SshRelayGuard;

class SshProxy {
 public:
  // Throws std::runtime_error("cannot listen on <ip>:<port>: <reason>").
  SshProxy(boost::asio::any_io_executor ex, std::shared_ptr<SshRelayGuard> guard, const std::string& bind_ip,
           std::uint16_t port, std::string target_ip, std::uint16_t target_port = 22);
  ~SshProxy();
  SshProxy(const SshProxy&) = delete;
  SshProxy& operator=(const SshProxy&) = delete;

  void start();
  // Closes the listener and every relayed connection.
  void stop();
  std::uint16_t port() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace kr::vm

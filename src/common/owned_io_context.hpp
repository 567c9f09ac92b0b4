#pragma once
// An io_context whose pending handlers can be destroyed before the objects
// they refer to.
//
// A service's coroutines (connection sessions, relays) are suspended inside
// the io_context when run() returns after stop(). The io_context destructor
// destroys those coroutine frames, and with them their locals (connection
// slots, registrations, shared_ptrs), whose destructors touch the objects
// that own them: the HTTP server, the tunnel hub. The io_context is declared
// first so that those objects can be bound to it, so it is destroyed last,
// after them: a use-after-free at every shutdown with an open WebSocket
// (valgrind showed it; once glibc aborted with "corrupted size vs.
// prev_size"). destroy_pending_handlers() runs that part of the destructor
// early, while every object is still alive. What remains afterwards
// (sockets, timers owned by objects) is closed by their own destructors, as
// Asio allows after a shutdown.
#include <boost/asio/io_context.hpp>

namespace kr {

class OwnedIoContext : public boost::asio::io_context {
 public:
  using boost::asio::io_context::io_context;
  // Idempotent (the destructor repeats it, doing nothing the second time).
  void destroy_pending_handlers() { shutdown(); }
};

}  // namespace kr

#pragma once
// Minimal leveled logging to stderr for the static tunnel-client (no spdlog:
// the binary must stay small). Level from RUST_LOG when set, like upstream's
// EnvFilter, else from --log-level.
#include <cstdarg>
#include <string>

namespace kr::tunnel_client {

enum class Level { Trace = 0, Debug, Info, Warn, Error, Off };

// "debug", "info", ..., or an EnvFilter string such as "tunnel_client=debug"
// or "warn,tunnel_client=trace" (the most verbose level named wins).
Level parse_level(const std::string& text, Level fallback);
void set_level(Level level);
bool enabled(Level level);
void log(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace kr::tunnel_client

#define TC_LOG(level, ...)                                                              \
  do {                                                                                  \
    if (::kr::tunnel_client::enabled(level)) ::kr::tunnel_client::log(level, __VA_ARGS__); \
  } while (0)
#define TC_TRACE(...) TC_LOG(::kr::tunnel_client::Level::Trace, __VA_ARGS__)
#define TC_DEBUG(...) TC_LOG(::kr::tunnel_client::Level::Debug, __VA_ARGS__)
#define TC_INFO(...) TC_LOG(::kr::tunnel_client::Level::Info, __VA_ARGS__)
#define TC_WARN(...) TC_LOG(::kr::tunnel_client::Level::Warn, __VA_ARGS__)
#define TC_ERROR(...) TC_LOG(::kr::tunnel_client::Level::Error, __VA_ARGS__)

#include "tunnel/client_options.hpp"

#include <limits>

namespace kr::tunnel {

namespace {

const char* kUsage = "Usage: tunnel-client [OPTIONS] --runner-url <RUNNER_URL> --container-id <CONTAINER_ID>";

std::string help_text() {
  std::string h;
  h += "KohakuRiver Tunnel Client - Port forwarding for containers\n\n";
  h += kUsage;
  h += "\n\nOptions:\n";
  h += "  -r, --runner-url <RUNNER_URL>            Runner WebSocket URL (e.g., ws://192.168.1.100:8001) [env: RUNNER_URL=]\n";
  h += "  -c, --container-id <CONTAINER_ID>        Container ID or name (used to identify this tunnel) [env: CONTAINER_ID=]\n";
  h += "      --reconnect-delay <RECONNECT_DELAY>  Reconnect delay in seconds [env: RECONNECT_DELAY=] [default: 5]\n";
  h += "      --max-reconnect <MAX_RECONNECT>      Maximum reconnect attempts (0 = infinite) [env: MAX_RECONNECT=] [default: 0]\n";
  h += "      --log-level <LOG_LEVEL>              Log level (trace, debug, info, warn, error) [env: LOG_LEVEL=] [default: info]\n";
  h += "  -h, --help                               Print help\n";
  h += "  -V, --version                            Print version\n";
  return h;
}

template <typename T>
bool parse_unsigned(const std::string& s, T* out) {
  if (s.empty()) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<T>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = static_cast<T>(v);
  return true;
}

ClientParse error(std::string text) {
  ClientParse p;
  p.action = ClientParse::Action::Error;
  p.exit_code = 2;
  p.message = "error: " + text + "\n\n" + kUsage + "\n\nFor more information, try '--help'.\n";
  return p;
}

}  // namespace

ClientParse parse_client_args(const std::vector<std::string>& args, const EnvLookup& env) {
  struct Spec {
    char short_name;
    const char* long_name;
    const char* env_name;
    const char* value_name;
  };
  static const Spec specs[] = {
      {'r', "runner-url", "RUNNER_URL", "<RUNNER_URL>"},
      {'c', "container-id", "CONTAINER_ID", "<CONTAINER_ID>"},
      {0, "reconnect-delay", "RECONNECT_DELAY", "<RECONNECT_DELAY>"},
      {0, "max-reconnect", "MAX_RECONNECT", "<MAX_RECONNECT>"},
      {0, "log-level", "LOG_LEVEL", "<LOG_LEVEL>"},
  };
  constexpr std::size_t kSpecs = sizeof(specs) / sizeof(specs[0]);
  std::optional<std::string> values[kSpecs];

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      ClientParse p;
      p.action = ClientParse::Action::Help;
      p.message = help_text();
      return p;
    }
    if (a == "-V" || a == "--version") {
      ClientParse p;
      p.action = ClientParse::Action::Version;
      p.message = std::string("kohakuriver-tunnel ") + kClientVersion + "\n";
      return p;
    }
    const Spec* spec = nullptr;
    std::optional<std::string> inline_value;
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      for (const auto& s : specs)
        if (name == s.long_name) spec = &s;
      if (!spec) return error("unexpected argument '" + a + "' found");
    } else if (a.size() >= 2 && a[0] == '-' && a[1] != '-') {
      for (const auto& s : specs)
        if (s.short_name && a[1] == s.short_name) spec = &s;
      if (!spec) return error("unexpected argument '" + a + "' found");
      if (a.size() > 2) inline_value = a[2] == '=' ? a.substr(3) : a.substr(2);
    } else {
      return error("unexpected argument '" + a + "' found");
    }
    std::size_t idx = static_cast<std::size_t>(spec - specs);
    std::string shown = spec->short_name ? std::string("--") + spec->long_name : std::string("--") + spec->long_name;
    if (values[idx]) return error("the argument '" + shown + " " + spec->value_name + "' cannot be used multiple times");
    if (inline_value) {
      values[idx] = *inline_value;
    } else {
      if (i + 1 >= args.size())
        return error("a value is required for '" + shown + " " + spec->value_name + "' but none was supplied");
      values[idx] = args[++i];
    }
  }
  // Environment fallbacks (an empty variable counts as unset).
  for (std::size_t k = 0; k < kSpecs; ++k) {
    if (values[k]) continue;
    if (auto v = env(specs[k].env_name); v && !v->empty()) values[k] = *v;
  }

  std::string missing;
  if (!values[0]) missing += "  --runner-url <RUNNER_URL>\n";
  if (!values[1]) missing += "  --container-id <CONTAINER_ID>\n";
  if (!missing.empty()) {
    ClientParse p = error("the following required arguments were not provided:\n" + missing);
    // clap prints the list without the blank line before Usage doubled.
    p.message = "error: the following required arguments were not provided:\n" + missing + "\n" + kUsage +
                "\n\nFor more information, try '--help'.\n";
    return p;
  }
  ClientParse p;
  p.options.runner_url = *values[0];
  p.options.container_id = *values[1];
  if (values[2] && !parse_unsigned(*values[2], &p.options.reconnect_delay_s))
    return error("invalid value '" + *values[2] + "' for '--reconnect-delay <RECONNECT_DELAY>': invalid digit found in string");
  if (values[3] && !parse_unsigned(*values[3], &p.options.max_reconnect))
    return error("invalid value '" + *values[3] + "' for '--max-reconnect <MAX_RECONNECT>': invalid digit found in string");
  if (values[4]) p.options.log_level = *values[4];
  return p;
}

}  // namespace kr::tunnel

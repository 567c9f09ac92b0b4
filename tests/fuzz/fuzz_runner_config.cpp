// libFuzzer target: the runner_config.py reader (tokenizer, the Python
// subset evaluator, the key table). ConfigError is the expected rejection of
// bad input; anything else escaping, or a crash, is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto r = kr::config::parse_config_text(text, "runner_config.py");
    (void)r.config.host_url();
  } catch (const kr::config::ConfigError&) {
  }
  return 0;
}

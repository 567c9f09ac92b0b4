// The VM guest agent (vm.md §8): src/vm/guest_agent.py, embedded into the
// binary at build time and shipped to the guest in the seed's write_files
// (never read from a share that tasks can write, issue 10).
#pragma once

#include <string_view>

namespace kr::vm {

// The agent program, byte for byte as in src/vm/guest_agent.py.
std::string_view guest_agent_source();

}  // namespace kr::vm

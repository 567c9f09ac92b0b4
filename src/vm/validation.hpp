// Checks on VM request values (decisions V12, V13).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr::vm {

// V12: a disk size is a positive number with a unit, as the host and CLI send
// it ("50G", "500G", "1.5T"): digits, optional fraction, one of K M G T P E
// (either case; powers of 1024, what qemu-img means). Bare numbers (bytes to
// qemu-img, so "100" was a failed shrink upstream) are refused. Returns the
// size in bytes, or nullopt with `error` set.
std::optional<std::uint64_t> parse_disk_size(std::string_view text, std::string& error);

// V13: a base image name is joined into {VM_IMAGES_DIR}/{name}.qcow2, so it
// must not contain '/', start with '.', be empty or hold control characters.
// Empty optional when valid, else the reason.
std::optional<std::string> image_name_error(std::string_view name);

}  // namespace kr::vm

#pragma once
// Validation of the names and references the runner puts into Engine API
// URLs (S-ARGV). Pure functions, no I/O.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kr::docker {

// Docker's own limits: a repository name is at most 255 characters
// (distribution/reference NameTotalLengthMax); tags are at most 128.
inline constexpr std::size_t kMaxRepositoryLength = 255;
inline constexpr std::size_t kMaxTagLength = 128;
// Docker sets no explicit limit on container names; 255 keeps URLs sane.
inline constexpr std::size_t kMaxContainerNameLength = 255;

// `kohakuriver-task-<id>`, `kohakuriver-vps-<id>` or `vm-<id>`, id = 1..19
// decimal digits (task ids are int64 snowflakes).
bool is_managed_container_name(std::string_view name);

// The id in a managed container name (any of the three prefixes); nullopt
// when `name` is not one or the id does not fit an int64.
std::optional<long long> managed_container_id(std::string_view name);

// Docker's container name grammar `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (one leading
// `/` as Docker prints names is accepted). One character is allowed so that
// container id prefixes, which share the URL slot, pass too.
bool is_valid_container_name(std::string_view name);

// Network names follow the same grammar as container names.
inline bool is_valid_network_name(std::string_view name) { return is_valid_container_name(name); }

// A parsed reference per distribution/reference:
//   reference := name [":" tag] ["@" digest]
//   name      := [domain "/"] path-component ("/" path-component)*
struct ImageReference {
  std::string domain;  // empty when the name has no domain part
  std::string path;    // e.g. "library/ubuntu" or "kohakuriver/env"
  std::string tag;     // empty when absent
  std::string digest;  // e.g. "sha256:<64 hex>", empty when absent

  // domain + "/" + path (or just path): what the Engine API calls fromImage.
  std::string name() const;
  // name + ":" tag + "@" digest, as given.
  std::string str() const;
};

// Parses `ref`; nullopt when it violates the grammar or the length limits.
// As Docker does, the first component is a domain only when it contains
// '.' or ':' or is "localhost" (or is needed to make the name valid,
// e.g. an upper-case registry host).
std::optional<ImageReference> parse_image_reference(std::string_view ref);

// True for a valid reference (see above) or an image id
// (`sha256:<64 hex>`, or a bare hex id/prefix, which the grammar covers).
bool is_valid_image_reference(std::string_view ref);

// Tag alone: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
bool is_valid_tag(std::string_view tag);

// Throwing forms (std::invalid_argument with a message naming the value).
void validate_container_name(std::string_view name);
void validate_image_reference(std::string_view ref);

}  // namespace kr::docker

// A small block-style YAML emitter for the cloud-init seed (vm.md §7).
//
// Every string is quoted or a literal block, never a plain scalar: YAML 1.1
// (PyYAML, which cloud-init uses) reads plain `52:54:00:12:34:56` as a base-60
// integer and `0755` as octal (vm.md §7.3). Multi-line strings become literal
// blocks (`|`, `|-`, `|+` by their trailing newlines) when that is exact,
// double-quoted otherwise. Object keys keep the json's order (ordered_json).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kr::vm {

// The document as YAML, ending in a newline. Only objects, arrays, strings,
// booleans, integers, floats and null are accepted; an empty object or array
// is written in flow form ({} / []).
std::string to_yaml(const nlohmann::ordered_json& document);

// A double-quoted YAML scalar for `s` (JSON-style escapes, valid YAML).
std::string yaml_quote(const std::string& s);

}  // namespace kr::vm

#pragma once
// Request validation with FastAPI/pydantic-v2 "lax" semantics (protocol.md
// §0.3–0.4, execution.md §0.2): task ids arrive as JSON strings or numbers and
// must round-trip as exact int64; errors are reported as a 422 list in
// FastAPI's shape ({"type","loc","msg","input"[,"ctx"]}).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::api {

using json = nlohmann::json;

// One pydantic error item; `loc` is e.g. ["body","task_id"] or ["path","task_id"].
struct FieldError {
  std::string type;
  std::string msg;
  std::optional<json> ctx;
};

// Lax conversions. On failure they fill `err` and return nullopt.
std::optional<int64_t> lax_int(const json& v, FieldError& err);
std::optional<int64_t> lax_int_text(std::string_view s, FieldError& err);
std::optional<bool> lax_bool(const json& v, FieldError& err);
std::optional<bool> lax_bool_text(std::string_view s, FieldError& err);

// Collects errors for one request and renders the 422 body. Bounded: each
// item's `input` is echoed up to limits::kMaxEchoedInputBytes (a longer
// string is cut, a larger array/object is described instead), and at most
// limits::kMaxValidationItems items are kept.
class Validation {
 public:
  void add(json loc, const FieldError& e, const json& input);
  void add(json loc, std::string type, std::string msg, const json& input);
  bool ok() const { return !failed_; }
  json body() const { return json{{"detail", items_}}; }

 private:
  json items_ = json::array();
  bool failed_ = false;
};

// What a 422 item echoes of `input`: the value itself when it serialises to
// at most `max_bytes`, else a cut string or a short description.
json echoed_input(const json& input, std::size_t max_bytes);

// Offset of the first '[' or '{' that opens a level deeper than `max_depth`
// in JSON text (strings skipped), or nullopt. Linear, no recursion: run
// before parsing so deep input never reaches recursive code.
std::optional<std::size_t> json_too_deep(std::string_view text, std::size_t max_depth);

// Parses a JSON request body the way FastAPI does for a single pydantic model:
// empty body → missing ["body"]; malformed → json_invalid with char offset;
// non-object → model_attributes_type; nesting deeper than
// limits::kMaxJsonDepth → json_invalid at the offending offset.
// Returns nullopt (and fills `v`) on error.
std::optional<json> parse_body_object(std::string_view body, Validation& v);

// Typed field readers for a body object. `Req` = required, otherwise the
// default applies when the key is absent (or null where the type is optional).
class BodyFields {
 public:
  BodyFields(const json& obj, Validation& v) : obj_(obj), v_(v) {}

  std::optional<int64_t> req_int(const std::string& key);
  std::optional<int64_t> opt_int(const std::string& key);  // null/absent → nullopt, error → nullopt + recorded
  int64_t int_or(const std::string& key, int64_t dflt);     // explicit null is an error (non-null default)
  std::optional<std::string> req_str(const std::string& key);
  std::optional<std::string> opt_str(const std::string& key);  // str | None
  std::string str_or(const std::string& key, const std::string& dflt);
  bool bool_or(const std::string& key, bool dflt);
  std::vector<std::string> str_list(const std::string& key);  // list[str] | None → [] when null/absent
  std::vector<int64_t> int_list(const std::string& key);      // list[int] | None
  std::map<std::string, std::string> str_dict(const std::string& key);  // dict[str,str] | None
  // `str | None` where null is allowed but absence is an error.
  bool has(const std::string& key) const { return obj_.contains(key); }

 private:
  const json* get(const std::string& key) const;
  void missing(const std::string& key);
  const json& obj_;
  Validation& v_;
};

// Path parameter `name` declared as int (loc ["path", name]).
std::optional<int64_t> path_int(std::string_view text, const std::string& name, Validation& v);

}  // namespace kr::api

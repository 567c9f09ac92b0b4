#include "api/validation.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

#include "api/limits.hpp"

namespace kr::api {
namespace {

const char* kIntType = "Input should be a valid integer";
const char* kIntParsing = "Input should be a valid integer, unable to parse string as an integer";
const char* kIntFraction = "Input should be a valid integer, got a number with a fractional part";
const char* kIntSize = "Input should be a valid integer, unable to parse input as an integer of this size";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

FieldError fe(const char* type, const char* msg) { return FieldError{type, msg, std::nullopt}; }

}  // namespace

std::optional<int64_t> lax_int_text(std::string_view raw, FieldError& err) {
  // Python int() rules as pydantic applies them: surrounding whitespace,
  // optional sign, '_' only between digits; "5.0" style zero fractions too.
  std::string_view s = trim(raw);
  bool neg = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  std::string_view frac;
  if (auto dot = s.find('.'); dot != std::string_view::npos) {
    frac = s.substr(dot + 1);
    s = s.substr(0, dot);
  }
  std::string digits;
  digits.reserve(s.size() + 1);
  bool prev_digit = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
      prev_digit = true;
    } else if (c == '_' && prev_digit && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      prev_digit = false;
    } else {
      err = fe("int_parsing", kIntParsing);
      return std::nullopt;
    }
  }
  if (digits.empty() || !std::all_of(frac.begin(), frac.end(), [](char c) { return c == '0'; })) {
    err = frac.empty() || digits.empty() ? fe("int_parsing", kIntParsing) : fe("int_from_float", kIntFraction);
    if (!digits.empty() && !std::all_of(frac.begin(), frac.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      err = fe("int_parsing", kIntParsing);
    return std::nullopt;
  }
  if (neg) digits.insert(digits.begin(), '-');
  int64_t out = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  if (ec == std::errc::result_out_of_range) {
    err = fe("int_parsing_size", kIntSize);
    return std::nullopt;
  }
  if (ec != std::errc() || p != digits.data() + digits.size()) {
    err = fe("int_parsing", kIntParsing);
    return std::nullopt;
  }
  return out;
}

std::optional<int64_t> lax_int(const json& v, FieldError& err) {
  switch (v.type()) {
    case json::value_t::number_integer:
      return v.get<int64_t>();
    case json::value_t::number_unsigned: {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        err = fe("int_parsing_size", kIntSize);
        return std::nullopt;
      }
      return static_cast<int64_t>(u);
    }
    case json::value_t::number_float: {
      double d = v.get<double>();
      if (!std::isfinite(d)) {
        err = fe("finite_number", "Input should be a finite number");
        return std::nullopt;
      }
      if (d != std::floor(d)) {
        err = fe("int_from_float", kIntFraction);
        return std::nullopt;
      }
      if (d >= 9.2233720368547758e18 || d < -9.2233720368547758e18) {
        err = fe("int_parsing_size", kIntSize);
        return std::nullopt;
      }
      return static_cast<int64_t>(d);
    }
    case json::value_t::boolean:
      return v.get<bool>() ? 1 : 0;
    case json::value_t::string:
      return lax_int_text(v.get_ref<const std::string&>(), err);
    default:
      err = fe("int_type", kIntType);
      return std::nullopt;
  }
}

std::optional<bool> lax_bool_text(std::string_view raw, FieldError& err) {
  std::string s(raw);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* kTrue[] = {"true", "1", "yes", "on", "t", "y"};
  static const char* kFalse[] = {"false", "0", "no", "off", "f", "n"};
  for (auto t : kTrue)
    if (s == t) return true;
  for (auto f : kFalse)
    if (s == f) return false;
  err = fe("bool_parsing", "Input should be a valid boolean, unable to interpret input");
  return std::nullopt;
}

std::optional<bool> lax_bool(const json& v, FieldError& err) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() || v.is_number_unsigned()) {
    auto i = v.get<int64_t>();
    if (i == 0 || i == 1) return i == 1;
    err = fe("bool_parsing", "Input should be a valid boolean, unable to interpret input");
    return std::nullopt;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == 0.0 || d == 1.0) return d == 1.0;
    err = fe("bool_parsing", "Input should be a valid boolean, unable to interpret input");
    return std::nullopt;
  }
  if (v.is_string()) return lax_bool_text(v.get_ref<const std::string&>(), err);
  err = fe("bool_type", "Input should be a valid boolean");
  return std::nullopt;
}

namespace {

// Serialised size of `v`, counted only up to `cap` (returns > cap early).
// Iterative: the value may be as deep as the parser allowed.
std::size_t bounded_size(const json& v, std::size_t cap) {
  std::size_t total = 0;
  std::vector<const json*> todo{&v};
  while (!todo.empty() && total <= cap) {
    const json* j = todo.back();
    todo.pop_back();
    switch (j->type()) {
      case json::value_t::string:
        total += j->get_ref<const std::string&>().size() + 2;
        break;
      case json::value_t::array:
        total += 2 + j->size();
        for (const auto& e : *j) todo.push_back(&e);
        break;
      case json::value_t::object:
        total += 2 + j->size();
        for (auto it = j->begin(); it != j->end(); ++it) {
          total += it.key().size() + 3;
          todo.push_back(&*it);
        }
        break;
      default:
        total += 24;  // numbers, booleans, null: small
    }
  }
  return total;
}

// Longest prefix of `s` of at most `n` bytes that does not split a UTF-8
// sequence.
std::string_view utf8_prefix(std::string_view s, std::size_t n) {
  if (s.size() <= n) return s;
  std::size_t cut = n;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

}  // namespace

json echoed_input(const json& input, std::size_t max_bytes) {
  if (bounded_size(input, max_bytes) <= max_bytes) return input;
  if (input.is_string()) {
    const auto& s = input.get_ref<const std::string&>();
    return std::string(utf8_prefix(s, max_bytes)) + "... (" + std::to_string(s.size()) + " bytes, cut)";
  }
  const char* kind = input.is_array() ? "array" : "object";
  return "(" + std::string(kind) + " of " + std::to_string(input.size()) + " items, larger than " +
         std::to_string(max_bytes) + " bytes, not echoed)";
}

std::optional<std::size_t> json_too_deep(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return i;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

void Validation::add(json loc, const FieldError& e, const json& input) {
  failed_ = true;
  if (items_.size() >= limits::kMaxValidationItems) return;
  json item{{"type", e.type}, {"loc", std::move(loc)}, {"msg", e.msg},
            {"input", echoed_input(input, limits::kMaxEchoedInputBytes)}};
  if (e.ctx) item["ctx"] = *e.ctx;
  items_.push_back(std::move(item));
}

void Validation::add(json loc, std::string type, std::string msg, const json& input) {
  add(std::move(loc), FieldError{std::move(type), std::move(msg), std::nullopt}, input);
}

std::optional<json> parse_body_object(std::string_view body, Validation& v) {
  if (trim(body).empty()) {
    v.add(json::array({"body"}), "missing", "Field required", nullptr);
    return std::nullopt;
  }
  if (auto at = json_too_deep(body, limits::kMaxJsonDepth)) {
    FieldError err{"json_invalid", "JSON decode error",
                   json{{"error", "nesting deeper than " + std::to_string(limits::kMaxJsonDepth) + " levels"}}};
    v.add(json::array({"body", *at}), err, json::object());
    return std::nullopt;
  }
  json parsed;
  try {
    parsed = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    // nlohmann reports a 1-based byte position of the offending character.
    auto offset = e.byte > 0 ? e.byte - 1 : 0;
    FieldError err{"json_invalid", "JSON decode error", json{{"error", "Expecting value"}}};
    std::string what = e.what();
    if (auto pos = what.find("syntax error"); pos != std::string::npos) err.ctx = json{{"error", what.substr(pos)}};
    v.add(json::array({"body", offset}), err, json::object());
    return std::nullopt;
  } catch (const json::exception& e) {
    // Not a syntax error but still undecodable, e.g. a number literal beyond
    // double range ("1e999", out_of_range.406); found by fuzz_task_request.
    FieldError err{"json_invalid", "JSON decode error", json{{"error", e.what()}}};
    v.add(json::array({"body", 0}), err, json::object());
    return std::nullopt;
  }
  if (!parsed.is_object()) {
    v.add(json::array({"body"}), "model_attributes_type",
          "Input should be a valid dictionary or object to extract fields from", parsed);
    return std::nullopt;
  }
  return parsed;
}

const json* BodyFields::get(const std::string& key) const {
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &*it;
}

void BodyFields::missing(const std::string& key) {
  v_.add(json::array({"body", key}), "missing", "Field required", obj_);
}

std::optional<int64_t> BodyFields::req_int(const std::string& key) {
  const json* j = get(key);
  if (!j) {
    missing(key);
    return std::nullopt;
  }
  FieldError err;
  auto r = lax_int(*j, err);
  if (!r) v_.add(json::array({"body", key}), err, *j);
  return r;
}

std::optional<int64_t> BodyFields::opt_int(const std::string& key) {
  const json* j = get(key);
  if (!j || j->is_null()) return std::nullopt;
  FieldError err;
  auto r = lax_int(*j, err);
  if (!r) v_.add(json::array({"body", key}), err, *j);
  return r;
}

int64_t BodyFields::int_or(const std::string& key, int64_t dflt) {
  const json* j = get(key);
  if (!j) return dflt;
  FieldError err;
  auto r = lax_int(*j, err);
  if (!r) {
    v_.add(json::array({"body", key}), err, *j);
    return dflt;
  }
  return *r;
}

std::optional<std::string> BodyFields::req_str(const std::string& key) {
  const json* j = get(key);
  if (!j) {
    missing(key);
    return std::nullopt;
  }
  if (!j->is_string()) {
    v_.add(json::array({"body", key}), "string_type", "Input should be a valid string", *j);
    return std::nullopt;
  }
  return j->get<std::string>();
}

std::optional<std::string> BodyFields::opt_str(const std::string& key) {
  const json* j = get(key);
  if (!j || j->is_null()) return std::nullopt;
  if (!j->is_string()) {
    v_.add(json::array({"body", key}), "string_type", "Input should be a valid string", *j);
    return std::nullopt;
  }
  return j->get<std::string>();
}

std::string BodyFields::str_or(const std::string& key, const std::string& dflt) {
  const json* j = get(key);
  if (!j) return dflt;
  if (!j->is_string()) {
    v_.add(json::array({"body", key}), "string_type", "Input should be a valid string", *j);
    return dflt;
  }
  return j->get<std::string>();
}

bool BodyFields::bool_or(const std::string& key, bool dflt) {
  const json* j = get(key);
  if (!j) return dflt;
  FieldError err;
  auto r = lax_bool(*j, err);
  if (!r) {
    v_.add(json::array({"body", key}), err, *j);
    return dflt;
  }
  return *r;
}

std::vector<std::string> BodyFields::str_list(const std::string& key) {
  std::vector<std::string> out;
  const json* j = get(key);
  if (!j || j->is_null()) return out;
  if (!j->is_array()) {
    v_.add(json::array({"body", key}), "list_type", "Input should be a valid list", *j);
    return out;
  }
  for (size_t i = 0; i < j->size(); ++i) {
    const json& e = (*j)[i];
    if (!e.is_string())
      v_.add(json::array({"body", key, i}), "string_type", "Input should be a valid string", e);
    else
      out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> BodyFields::int_list(const std::string& key) {
  std::vector<int64_t> out;
  const json* j = get(key);
  if (!j || j->is_null()) return out;
  if (!j->is_array()) {
    v_.add(json::array({"body", key}), "list_type", "Input should be a valid list", *j);
    return out;
  }
  for (size_t i = 0; i < j->size(); ++i) {
    FieldError err;
    auto r = lax_int((*j)[i], err);
    if (!r)
      v_.add(json::array({"body", key, i}), err, (*j)[i]);
    else
      out.push_back(*r);
  }
  return out;
}

std::map<std::string, std::string> BodyFields::str_dict(const std::string& key) {
  std::map<std::string, std::string> out;
  const json* j = get(key);
  if (!j || j->is_null()) return out;
  if (!j->is_object()) {
    v_.add(json::array({"body", key}), "dict_type", "Input should be a valid dictionary", *j);
    return out;
  }
  for (auto it = j->begin(); it != j->end(); ++it) {
    if (!it->is_string())
      v_.add(json::array({"body", key, it.key()}), "string_type", "Input should be a valid string", *it);
    else
      out[it.key()] = it->get<std::string>();
  }
  return out;
}

std::optional<int64_t> path_int(std::string_view text, const std::string& name, Validation& v) {
  FieldError err;
  auto r = lax_int_text(text, err);
  if (!r) v.add(json::array({"path", name}), err, std::string(text));
  return r;
}

}  // namespace kr::api

#include <gtest/gtest.h>

#include "api/validation.hpp"

using kr::api::BodyFields;
using kr::api::FieldError;
using kr::api::json;
using kr::api::Validation;

TEST(LaxInt, AcceptsPydanticLaxForms) {
  FieldError e;
  EXPECT_EQ(kr::api::lax_int(json(5), e), 5);
  EXPECT_EQ(kr::api::lax_int(json(5.0), e), 5);
  EXPECT_EQ(kr::api::lax_int(json(true), e), 1);
  EXPECT_EQ(kr::api::lax_int(json(false), e), 0);
  EXPECT_EQ(kr::api::lax_int(json(" 12 "), e), 12);
  EXPECT_EQ(kr::api::lax_int(json("1_000"), e), 1000);
  EXPECT_EQ(kr::api::lax_int(json("+5"), e), 5);
  EXPECT_EQ(kr::api::lax_int(json("-7"), e), -7);
  EXPECT_EQ(kr::api::lax_int(json("5.0"), e), 5);
}

TEST(LaxInt, SnowflakeIdsStayExact) {
  FieldError e;
  // Above 2^53: a detour through double would change the value.
  const int64_t id = 7312345678901234567LL;
  EXPECT_EQ(kr::api::lax_int(json::parse("7312345678901234567"), e), id);
  EXPECT_EQ(kr::api::lax_int(json("7312345678901234567"), e), id);
  EXPECT_EQ(kr::api::lax_int(json::parse("9223372036854775807"), e), INT64_MAX);
  EXPECT_FALSE(kr::api::lax_int(json::parse("9223372036854775808"), e));
  EXPECT_EQ(e.type, "int_parsing_size");
  EXPECT_FALSE(kr::api::lax_int(json("99999999999999999999"), e));
  EXPECT_EQ(e.type, "int_parsing_size");
}

TEST(LaxInt, RejectsWhatPydanticRejects) {
  FieldError e;
  EXPECT_FALSE(kr::api::lax_int(json(5.5), e));
  EXPECT_EQ(e.type, "int_from_float");
  EXPECT_FALSE(kr::api::lax_int(json("5.5"), e));
  EXPECT_EQ(e.type, "int_from_float");
  EXPECT_FALSE(kr::api::lax_int(json("0x10"), e));
  EXPECT_EQ(e.type, "int_parsing");
  EXPECT_EQ(e.msg, "Input should be a valid integer, unable to parse string as an integer");
  EXPECT_FALSE(kr::api::lax_int(json(""), e));
  EXPECT_EQ(e.type, "int_parsing");
  EXPECT_FALSE(kr::api::lax_int(json("1__0"), e));
  EXPECT_FALSE(kr::api::lax_int(json("_1"), e));
  EXPECT_FALSE(kr::api::lax_int(json("1_"), e));
  EXPECT_FALSE(kr::api::lax_int(json(nullptr), e));
  EXPECT_EQ(e.type, "int_type");
  EXPECT_EQ(e.msg, "Input should be a valid integer");
  EXPECT_FALSE(kr::api::lax_int(json::array({1}), e));
  EXPECT_EQ(e.type, "int_type");
}

TEST(LaxBool, AcceptsQueryAndBodySpellings) {
  FieldError e;
  for (const char* t : {"true", "TRUE", "1", "yes", "on", "t", "y"}) EXPECT_EQ(kr::api::lax_bool_text(t, e), true) << t;
  for (const char* f : {"false", "0", "no", "off", "f", "N"}) EXPECT_EQ(kr::api::lax_bool_text(f, e), false) << f;
  EXPECT_FALSE(kr::api::lax_bool_text("maybe", e));
  EXPECT_EQ(e.type, "bool_parsing");
  EXPECT_EQ(kr::api::lax_bool(json(1), e), true);
  EXPECT_FALSE(kr::api::lax_bool(json(2), e));
  EXPECT_FALSE(kr::api::lax_bool(json::array(), e));
  EXPECT_EQ(e.type, "bool_type");
}

TEST(BodyParsing, EmptyBodyIsMissingBody) {
  Validation v;
  EXPECT_FALSE(kr::api::parse_body_object("", v));
  EXPECT_EQ(v.body(), json::parse(R"({"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]})"));
}

TEST(BodyParsing, MalformedJsonReportsOffset) {
  Validation v;
  EXPECT_FALSE(kr::api::parse_body_object(R"({"a": })", v));
  auto item = v.body()["detail"][0];
  EXPECT_EQ(item["type"], "json_invalid");
  EXPECT_EQ(item["loc"][0], "body");
  EXPECT_EQ(item["loc"][1], 6);
  EXPECT_EQ(item["msg"], "JSON decode error");
  EXPECT_EQ(item["input"], json::object());
  EXPECT_TRUE(item["ctx"].contains("error"));
  EXPECT_FALSE(item.contains("url"));
}

TEST(BodyParsing, NumberBeyondDoubleRangeIsJsonInvalidNotACrash) {
  // nlohmann throws out_of_range (not parse_error) for these; fuzz_task_request found it.
  for (const char* body : {R"({"task_id": 1, "x": 1073E41824})", R"({"a": -1e999})"}) {
    Validation v;
    EXPECT_FALSE(kr::api::parse_body_object(body, v)) << body;
    EXPECT_EQ(v.body()["detail"][0]["type"], "json_invalid") << body;
  }
}

TEST(BodyParsing, NonObjectBody) {
  Validation v;
  EXPECT_FALSE(kr::api::parse_body_object("[1,2]", v));
  EXPECT_EQ(v.body()["detail"][0]["type"], "model_attributes_type");
  EXPECT_EQ(v.body()["detail"][0]["loc"], json::array({"body"}));
}

TEST(BodyFields, MissingAndWrongTypesCollectedTogether) {
  Validation v;
  json body = json::parse(R"({"task_id":"abc","command":5,"arguments":["ok",3],"env_vars":{"A":"1","B":2},
                              "working_dir":null})");
  BodyFields f(body, v);
  EXPECT_FALSE(f.req_int("task_id"));
  EXPECT_FALSE(f.req_str("command"));
  EXPECT_FALSE(f.req_str("stdout_path"));
  auto args = f.str_list("arguments");
  auto env = f.str_dict("env_vars");
  f.str_or("working_dir", "/shared");  // non-null default: explicit null is an error
  ASSERT_FALSE(v.ok());
  auto d = v.body()["detail"];
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d[0]["loc"], json::parse(R"(["body","task_id"])"));
  EXPECT_EQ(d[0]["type"], "int_parsing");
  EXPECT_EQ(d[0]["input"], "abc");
  EXPECT_EQ(d[1]["type"], "string_type");
  EXPECT_EQ(d[1]["input"], 5);
  EXPECT_EQ(d[2]["type"], "missing");
  EXPECT_EQ(d[2]["loc"], json::parse(R"(["body","stdout_path"])"));
  EXPECT_EQ(d[2]["input"], body);
  EXPECT_EQ(d[3]["loc"], json::parse(R"(["body","arguments",1])"));
  EXPECT_EQ(d[4]["loc"], json::parse(R"(["body","env_vars","B"])"));
  EXPECT_EQ(d[5]["loc"], json::parse(R"(["body","working_dir"])"));
  EXPECT_EQ(args, std::vector<std::string>{"ok"});
  EXPECT_EQ(env.size(), 1u);
}

TEST(BodyFields, OptionalsAndDefaults) {
  Validation v;
  json body = json::parse(R"({"task_id":"7312345678901234567","required_gpus":[0,"1"],"registry_image":null,
                              "required_memory_bytes":null,"extra_unknown":1})");
  BodyFields f(body, v);
  EXPECT_EQ(f.req_int("task_id"), 7312345678901234567LL);
  EXPECT_EQ(f.int_list("required_gpus"), (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(f.opt_str("registry_image"));
  EXPECT_FALSE(f.opt_int("required_memory_bytes"));
  EXPECT_EQ(f.int_or("required_cores", 1), 1);
  EXPECT_EQ(f.str_or("working_dir", "/shared"), "/shared");
  EXPECT_TRUE(v.ok());
}

TEST(PathInt, LocIsPath) {
  Validation v;
  EXPECT_EQ(kr::api::path_int("42", "task_id", v), 42);
  EXPECT_FALSE(kr::api::path_int("abc", "task_id", v));
  EXPECT_EQ(v.body()["detail"][0]["loc"], json::parse(R"(["path","task_id"])"));
  EXPECT_EQ(v.body()["detail"][0]["input"], "abc");
}

// The seed's YAML emitter against PyYAML, the reader cloud-init uses.
#include <gtest/gtest.h>

#include "vm/yaml_emit.hpp"
#include "vm_test_util.hpp"

using kr::vm::to_yaml;
using kr::vm::testing::pyyaml_load;
using nlohmann::json;
using nlohmann::ordered_json;

TEST(YamlEmit, TrickyScalarsSurviveARoundTrip) {
  ordered_json doc;
  doc["mac"] = "52:54:00:12:34:56";
  doc["octal"] = "0755";
  doc["yes"] = "yes";
  doc["on"] = "off";
  doc["null-ish"] = "~";
  doc["number-ish"] = "1e3";
  doc["quote"] = "say \"hi\" \\ 'there'";
  doc["colon"] = "a: b # c";
  doc["unicode"] = "Provisioning VM \u2014 ok";
  doc["control"] = std::string("bell\a tab\t cr\r", 14);
  doc["empty"] = "";
  doc["int"] = 7;
  doc["float"] = 0.5;
  doc["bool"] = false;
  doc["null"] = nullptr;
  doc["empty list"] = json::array();
  doc["empty map"] = json::object();
  doc["nested"] = ordered_json::array({ordered_json::object({{"a", 1}, {"b", ordered_json::array({"x", "y"})}}),
                                       ordered_json::array({1, 2}), "s"});
  EXPECT_EQ(pyyaml_load(to_yaml(doc)), json::parse(doc.dump()));
}

TEST(YamlEmit, MultiLineStringsAreExact) {
  const std::vector<std::string> texts = {
      "one\ntwo\n",           // clip
      "one\ntwo",             // strip
      "one\ntwo\n\n\n",       // keep
      "a\n\n  indented\n\tb\n",  // blank line, deeper indentation, tab
      " leading space\nx\n",  // needs quoting
      "\nleading newline\n",  // needs quoting
      "spaces only\n   \nx\n",
      "trailing spaces   \nx\n",
      "#!/bin/sh\necho \"$HOME\" 'x' # not a comment\n",
  };
  for (const auto& t : texts) {
    ordered_json doc;
    doc["content"] = t;
    doc["list"] = ordered_json::array({t, ordered_json::object({{"content", t}, {"after", 1}})});
    EXPECT_EQ(pyyaml_load(to_yaml(doc)), json::parse(doc.dump())) << to_yaml(doc);
  }
}

TEST(YamlEmit, LiteralBlocksForReadableContent) {
  ordered_json doc;
  doc["content"] = "line 1\nline 2\n";
  EXPECT_EQ(to_yaml(doc), "content: |\n  line 1\n  line 2\n");
}

// Malformed, truncated and lying tokenizer.json files: each is refused with one line that names
// the file and the field, never a crash or a half-built tokenizer. Each case starts from a valid
// file (the kitchen-sink seed's shape) and breaks one thing.
#include <string>

#include "data-prep/tokenizer_json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ftune::prep {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json Valid() {
  return json::parse(R"({"version": "1.0", "added_tokens": [
      {"id": 0, "content": "[UNK]", "special": true, "normalized": false},
      {"id": 5, "content": "<mask>", "special": true, "normalized": false, "lstrip": true}],
    "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": {"type": "BertProcessing", "sep": ["b", 2], "cls": ["a", 1]},
    "model": {"type": "BPE", "vocab": {"[UNK]": 0, "a": 1, "b": 2, "ab": 3, "c": 4}, "merges": ["a b"],
              "unk_token": "[UNK]"}})");
}

struct Case {
  const char* name;
  std::function<void(json*)> breakit;
  const char* want;  // in the message, after "bad.json: "
};

class BadTokenizerJson : public ::testing::TestWithParam<Case> {};

TEST_P(BadTokenizerJson, RefusedNamingFileAndField) {
  json j = Valid();
  GetParam().breakit(&j);
  auto t = JsonTokenizer::FromJson(j.dump(), "bad.json");
  ASSERT_FALSE(t.ok()) << GetParam().name;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(t.status().message());
  EXPECT_THAT(m, HasSubstr(std::string("bad.json: ") + GetParam().want)) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(BadTokenizerJson, TheValidFileLoadsAndTruncatedOnesDoNot) {
  const std::string text = Valid().dump();
  ASSERT_TRUE(JsonTokenizer::FromJson(text, "ok.json").ok());
  for (size_t n : {size_t{0}, size_t{1}, text.size() / 2, text.size() - 1}) {
    auto t = JsonTokenizer::FromJson(text.substr(0, n), "cut.json");
    ASSERT_FALSE(t.ok()) << n;
    EXPECT_THAT(t.status().message(), HasSubstr("cut.json: not valid JSON")) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadTokenizerJson,
    ::testing::Values(
        Case{"unknown model type", [](json* j) { (*j)["model"]["type"] = "Magic"; }, "model.type: unknown model \"Magic\""},
        Case{"unknown normalizer", [](json* j) { (*j)["normalizer"]["type"] = "Upper"; }, "normalizer.type: unknown normalizer"},
        Case{"unknown pre-tokenizer", [](json* j) { (*j)["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "X"}}}}}; },
             "pre_tokenizer.pretokenizers[0].type: unknown pre-tokenizer"},
        Case{"merge names no token", [](json* j) { (*j)["model"]["merges"] = {"a zz"}; }, "model.merges[0]: the merge's second token \"zz\" is not in model.vocab"},
        Case{"merged token missing", [](json* j) { (*j)["model"]["merges"] = {"b c"}; }, "model.merges[0]: the merged token \"bc\" is not in model.vocab"},
        Case{"merge of three", [](json* j) { (*j)["model"]["merges"] = {"a b c"}; }, "model.merges[0]: \"a b c\" is not two tokens"},
        Case{"mixed merge forms", [](json* j) { (*j)["model"]["merges"] = json::parse(R"(["a b", ["a", "b"]])"); }, "model.merges[1]: a pair among"},
        Case{"vocab hole", [](json* j) { (*j)["model"]["vocab"]["c"] = 7; }, "model.vocab[\"c\"]: id 7 is not below the number of tokens"},
        Case{"duplicate id", [](json* j) { (*j)["model"]["vocab"]["c"] = 1; }, "model.vocab[\"c\"]: id 1 is also the id of \"a\""},
        Case{"negative id", [](json* j) { (*j)["model"]["vocab"]["c"] = -1; }, "model.vocab[\"c\"]: -1 is out of range"},
        Case{"unk not in vocab", [](json* j) { (*j)["model"]["unk_token"] = "<unk>"; }, "model.unk_token: unk_token \"<unk>\" is not in model.vocab"},
        Case{"added token lies about its id", [](json* j) { (*j)["added_tokens"][1]["id"] = 9; }, "added_tokens[1].id: is 9, but \"<mask>\" gets id 5"},
        Case{"added token twice", [](json* j) { (*j)["added_tokens"].push_back((*j)["added_tokens"][0]); }, "added_tokens[2].content: \"[UNK]\" is added twice"},
        Case{"post-processor id out of range", [](json* j) { (*j)["post_processor"]["sep"] = {"b", 99}; }, "post_processor.sep[1]: id 99 of \"b\" is not below the vocabulary size 6"},
        Case{"template without its special token", [](json* j) {
               (*j)["post_processor"] = json::parse(R"({"type": "TemplateProcessing", "special_tokens": {},
                 "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]})"); },
             "post_processor.single[0].SpecialToken.id: \"[CLS]\" is not in special_tokens"},
        Case{"bad regex", [](json* j) { (*j)["pre_tokenizer"] = json::parse(R"({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated", "invert": false})"); },
             "pre_tokenizer.pattern.Regex: invalid regular expression"},
        Case{"random dropout", [](json* j) { (*j)["model"]["dropout"] = 0.1; }, "model.dropout: 0.1: BPE dropout is random"},
        Case{"wrong field type", [](json* j) { (*j)["model"]["byte_fallback"] = "yes"; }, "model.byte_fallback: expected true or false"},
        Case{"no model", [](json* j) { j->erase("model"); }, "(top level): missing \"model\""},
        Case{"unknown version", [](json* j) { (*j)["version"] = "2.0"; }, "version: unknown tokenizer.json version"},
        Case{"unigram", [](json* j) { (*j)["model"] = {{"type", "Unigram"}}; }, "model.type: the Unigram model is not supported"}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string n = info.param.name;
      for (char& c : n) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return n;
    });

}  // namespace
}  // namespace ftune::prep

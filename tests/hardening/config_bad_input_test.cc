// Bad config.json files through LoadDistilBertConfig: InvalidArgument with one line naming the file
// and the field. Already covered in tests/io/hf_config_test.cc (BadConfigsAreRefusedNamingTheField),
// not repeated here: dim not divisible by n_heads, negative dim, vocab of 10^12, zero layers, a
// string for an integer, dropout >= 1, unknown activation, sinusoidal embeddings, other
// model_type, id2label with a gap, too many parameters, a non-object document, truncated JSON,
// missing file.
#include <string>

#include "gtest/gtest.h"
#include "hardening_util.h"
#include "io/hf_config.h"
#include "tests/data-prep/test_util.h"

namespace ftune::hardening {
namespace {

using ::ftune::prep::testing::TempDir;

struct BadConfig {
  const char* name;
  std::string json;
  std::string message;  // after "<path>: "
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class ConfigBadInput : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigBadInput, RefusedOnOneLineNamingFileAndField) {
  TempDir dir;
  const std::string path = dir.Write("config.json", GetParam().json);
  auto c = io::LoadDistilBertConfig(path);
  EXPECT_TRUE(IsOneLineError(c.status(), absl::StatusCode::kInvalidArgument, {path + ": " + GetParam().message}));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigBadInput,
    ::testing::Values(
        BadConfig{"EmptyFile", "", "not valid JSON"},
        BadConfig{"NulThenMoreJson", std::string("{\"dim\": 8}\0{\"dim\": 770", 23),
                  "not valid JSON (NUL byte at offset 10)"},
        BadConfig{"NumberOverflow", R"({"dropout": 1e400})", "not valid JSON"},
        BadConfig{"DeeplyNested", std::string(100000, '[') + std::string(100000, ']'), "not a JSON object"},
        BadConfig{"FloatForInteger", R"({"dim": 768.0})", "field \"dim\" must be an integer, got 768.0"},
        BadConfig{"BoolForFloat", R"({"dropout": true})", "field \"dropout\" must be a number, got true"},
        BadConfig{"ArrayForActivation", R"({"activation": ["gelu"]})", "field \"activation\" must be a string"},
        BadConfig{"StringForBool", R"({"sinusoidal_pos_embds": "no"})",
                  "field \"sinusoidal_pos_embds\" must be true or false"},
        BadConfig{"ModelTypeNumber", R"({"model_type": 5})", "field \"model_type\" is 5"},
        BadConfig{"Uint64Max", R"({"vocab_size": 18446744073709551615})",
                  "field \"vocab_size\" = 18446744073709551615 is too large"},
        BadConfig{"NegativeHeads", R"({"n_heads": -12})", "field \"n_heads\" = -12 is outside [1, 768]"},
        BadConfig{"MoreHeadsThanDim", R"({"dim": 8, "n_heads": 16})", "field \"n_heads\" = 16 is outside [1, 8]"},
        BadConfig{"PadOutsideVocab", R"({"pad_token_id": 30522})",
                  "field \"pad_token_id\" = 30522 is outside [0, 30521]"},
        BadConfig{"ZeroPositions", R"({"max_position_embeddings": 0})",
                  "field \"max_position_embeddings\" = 0 is outside"},
        BadConfig{"HugeHiddenDim", R"({"hidden_dim": 2000000})", "field \"hidden_dim\" = 2000000 is outside"},
        BadConfig{"ZeroLabels", R"({"num_labels": 0})", "field \"num_labels\" = 0 is outside"},
        BadConfig{"MillionLabels", R"({"num_labels": 1000000})", "field \"num_labels\" = 1000000 is outside"},
        BadConfig{"EmptyId2label", R"({"id2label": {}})", "field \"num_labels\" = 0 is outside"},
        BadConfig{"Id2labelArray", R"({"id2label": ["neg", "pos"]})", "field \"id2label\" must be an object"},
        BadConfig{"Id2labelNumberValue", R"({"id2label": {"0": 1}})", "field \"id2label\" needs keys \"0\"..\"0\""},
        BadConfig{"Id2labelTwoKeysOneId", R"({"id2label": {"0": "neg", "00": "pos"}})",
                  "field \"id2label\" needs keys \"0\"..\"1\""},
        BadConfig{"Id2labelSignedKey", R"({"id2label": {"+0": "neg", "1": "pos"}})", "field \"id2label\" needs keys"},
        BadConfig{"Id2labelSpaceKey", R"({"id2label": {" 0": "neg", "1": "pos"}})", "field \"id2label\" needs keys"},
        BadConfig{"ActivationWithNewline", R"({"activation": "gelu\nrelu"})",
                  R"(field "activation" "gelu\nrelu" is not supported)"},
        BadConfig{"ActivationInvalidUtf8", "{\"activation\": \"g\xff\"}", "not valid JSON"},
        BadConfig{"HugeString", R"({"dim": ")" + std::string(1 << 20, '7') + R"("})",
                  "field \"dim\" must be an integer, got \"" + std::string(79, '7') + "...("}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.name); });

TEST(ConfigEdgeInput, MissingFieldsTakeDistilBertBaseDefaults) {
  // Not an error: Hugging Face fills missing fields from DistilBertConfig's defaults, and so do we.
  auto c = io::ParseDistilBertConfig(R"({"n_layers": 2})", "sparse/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const io::DistilBertConfig d = io::DefaultDistilBertConfig();
  EXPECT_EQ(c->n_layers, 2);
  EXPECT_EQ(c->dim, d.dim);
  EXPECT_EQ(c->vocab_size, d.vocab_size);
  EXPECT_EQ(c->id2label, d.id2label);
}

}  // namespace
}  // namespace ftune::hardening

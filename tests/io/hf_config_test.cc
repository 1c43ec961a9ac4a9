#include "io/hf_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ftune::io {
namespace {

using ::testing::HasSubstr;

const std::string kFixtures = std::string(FTUNE_FIXTURES_DIR) + "/hf";

// The hub's distilbert-base-uncased config.json, verbatim.
constexpr char kHubConfig[] = R"({
  "activation": "gelu", "architectures": ["DistilBertForMaskedLM"], "attention_dropout": 0.1,
  "dim": 768, "dropout": 0.1, "hidden_dim": 3072, "initializer_range": 0.02,
  "max_position_embeddings": 512, "model_type": "distilbert", "n_heads": 12, "n_layers": 6,
  "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "sinusoidal_pos_embds": false,
  "tie_weights_": true, "transformers_version": "4.10.0.dev0", "vocab_size": 30522})";

TEST(HfConfig, ParsesTheHubConfig) {
  auto c = ParseDistilBertConfig(kHubConfig, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 30522);
  EXPECT_EQ(c->dim, 768);
  EXPECT_EQ(c->n_layers, 6);
  EXPECT_EQ(c->n_heads, 12);
  EXPECT_EQ(c->hidden_dim, 3072);
  EXPECT_EQ(c->num_labels, 2);
  EXPECT_DOUBLE_EQ(c->seq_classif_dropout, 0.2);
  EXPECT_EQ(c->head_dim(), 64);
}

TEST(HfConfig, ParsesTheTinyReference) {
  auto c = LoadDistilBertConfig(kFixtures + "/hf-tiny-cls/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 1000);
  EXPECT_EQ(c->dim, 32);
  EXPECT_EQ(c->n_layers, 2);
  EXPECT_EQ(c->n_heads, 4);
  EXPECT_EQ(c->hidden_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 64);
  EXPECT_DOUBLE_EQ(c->dropout, 0.0);
}

TEST(HfConfig, WrittenConfigIsAClassifierAndReparsesIdentically) {
  auto c = ParseDistilBertConfig(kHubConfig, "config.json");
  ASSERT_TRUE(c.ok());
  c->id2label = {"NEGATIVE", "POSITIVE"};
  std::string text = DistilBertConfigToJson(*c);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["architectures"][0], "DistilBertForSequenceClassification");
  EXPECT_EQ(j["model_type"], "distilbert");
  EXPECT_EQ(j["id2label"]["1"], "POSITIVE");
  EXPECT_EQ(j["label2id"]["NEGATIVE"], 0);
  EXPECT_EQ(j["transformers_version"], "4.10.0.dev0");  // unknown keys survive
  auto back = ParseDistilBertConfig(text, "saved");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id2label, c->id2label);
  EXPECT_EQ(back->dim, c->dim);
  EXPECT_EQ(back->num_labels, 2);
}

TEST(HfConfig, NumLabelsWithoutId2Label) {
  auto c = ParseDistilBertConfig(R"({"num_labels": 5})", "c.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_labels, 5);
  EXPECT_EQ(c->id2label.size(), 5u);
  EXPECT_EQ(c->id2label[4], "LABEL_4");
}

struct BadConfig {
  const char* json;
  const char* message;
};

TEST(HfConfig, BadConfigsAreRefusedNamingTheField) {
  const BadConfig cases[] = {
      {R"({"dim": 770, "n_heads": 12})", "\"dim\" = 770 must be divisible by n_heads (12)"},
      {R"({"dim": -4})", "\"dim\" = -4 is outside"},
      {R"({"vocab_size": 1000000000000})", "\"vocab_size\" = 1000000000000 is outside"},
      {R"({"n_layers": 0})", "\"n_layers\" = 0 is outside"},
      {R"({"dim": "768"})", "\"dim\" must be an integer"},
      {R"({"dropout": 1.5})", "\"dropout\" = 1.5 must be in [0, 1)"},
      {R"({"activation": "swish"})", "\"activation\" \"swish\" is not supported"},
      {R"({"sinusoidal_pos_embds": true})", "learned position embeddings only"},
      {R"({"model_type": "bert"})", "\"model_type\""},
      {R"({"id2label": {"0": "a", "5": "b"}})", "\"id2label\""},
      {R"({"dim": 65536, "n_heads": 1, "hidden_dim": 1048576, "n_layers": 1024})", "parameters (limit"},
      {R"([1, 2])", "not a JSON object"},
      {R"({"dim": )", "not valid JSON"},
  };
  for (const BadConfig& b : cases) {
    auto c = ParseDistilBertConfig(b.json, "bad/config.json");
    ASSERT_FALSE(c.ok()) << b.json;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << b.json;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(b.message)) << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("bad/config.json"));
  }
}

TEST(HfConfig, MissingFileIsNotFound) {
  EXPECT_EQ(LoadDistilBertConfig("/nonexistent/config.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ftune::io

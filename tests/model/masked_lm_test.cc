// DistilBertForMaskedLM against Hugging Face: the reference checkpoint (tests/fixtures/hf/
// hf-tiny-mlm, saved by transformers) loads with its head, reproduces HF's encoder output, and
// its logits equal HF's formula computed here from the file's own tensors; the projection is tied
// to the word embeddings; the loss over masked positions is HF's CrossEntropyLoss(ignore_index=
// -100); saving writes exactly HF's keys, and the classifier loader reads the result like the hub's.
#include "model/distilbert/masked_lm.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"

namespace ftune::model {
namespace {

using ::ftune::testing::HfFixture;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;

class TinyMaskedLm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = LoadMaskedLm(HfFixture("hf-tiny-mlm"), ModelOptions{false});
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    m_.model->eval();
    io_ = ReadAll(HfFixture("hf-tiny-mlm/io.safetensors"));
    file_ = ReadAll(HfFixture("hf-tiny-mlm/model.safetensors"));
  }
  LoadedMaskedLm m_;
  std::map<std::string, torch::Tensor> io_, file_;
};

TEST_F(TinyMaskedLm, LoadsEncoderAndHeadAndReproducesHuggingFaceHiddenStates) {
  EXPECT_TRUE(m_.report.fresh.empty()) << m_.report.Summary();
  EXPECT_THAT(m_.report.loaded, ::testing::Contains("vocab_transform.weight"));
  EXPECT_THAT(m_.report.loaded, ::testing::Contains("vocab_projector.bias"));
  torch::NoGradGuard g;
  torch::Tensor h = testing::AsDistilBertMlm(m_.model).distilbert(io_["input_ids"], io_["attention_mask"]);
  EXPECT_LT(MaxAbsDiff(h, io_["last_hidden_state"]), 1e-5);
}

TEST_F(TinyMaskedLm, LogitsAreHuggingFacesFormulaWithTiedProjection) {
  torch::NoGradGuard g;
  const torch::Tensor h = io_["last_hidden_state"];
  // transformers' DistilBertForMaskedLM.forward: vocab_transform -> activation (GELU, erf) ->
  // vocab_layer_norm (eps 1e-12) -> vocab_projector, whose weight is the word embedding matrix.
  torch::Tensor x = torch::nn::functional::linear(h, file_["vocab_transform.weight"], file_["vocab_transform.bias"]);
  x = torch::gelu(x);
  x = torch::nn::functional::layer_norm(x, torch::nn::functional::LayerNormFuncOptions({x.size(-1)})
                                               .weight(file_["vocab_layer_norm.weight"])
                                               .bias(file_["vocab_layer_norm.bias"])
                                               .eps(1e-12));
  torch::Tensor want = torch::nn::functional::linear(x, file_["distilbert.embeddings.word_embeddings.weight"],
                                                     file_["vocab_projector.bias"]);
  torch::Tensor got = testing::AsDistilBertMlm(m_.model).forward(io_["input_ids"], io_["attention_mask"]);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 12, 1000}));
  EXPECT_LT(MaxAbsDiff(got, want), 1e-5);
}

TEST_F(TinyMaskedLm, ProjectionIsTiedAndNotAParameterOfItsOwn) {
  std::set<std::string> names;
  for (const auto& p : m_.model->named_parameters()) names.insert(p.key());
  EXPECT_FALSE(names.count("vocab_projector.weight"));
  EXPECT_TRUE(names.count("vocab_projector.bias"));
  // The MLM loss sends gradient into the word embeddings through the projection too.
  m_.model->train();
  torch::Tensor ids = io_["input_ids"], mask = io_["attention_mask"];
  torch::Tensor labels = torch::full_like(ids, -100);
  labels.index_put_({0, 3}, 17);  // a token the input does not contain at that position
  auto [loss, correct] = m_.model->ScoredLoss({ids, mask, {}}, labels);
  loss.backward();
  torch::Tensor g = testing::AsDistilBertMlm(m_.model).distilbert->embeddings->word_embeddings->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g[17].abs().sum().item<double>(), 0.0) << "row 17 is reached only through the tied projection";
}

TEST_F(TinyMaskedLm, ScoredLossIsCrossEntropyOverTheMaskedPositionsOnly) {
  torch::NoGradGuard g;
  torch::Tensor ids = io_["input_ids"], mask = io_["attention_mask"];
  torch::manual_seed(1);
  torch::Tensor labels = torch::randint(0, 1000, ids.sizes(), torch::kLong);
  labels.masked_fill_(torch::rand(ids.sizes()).gt(0.3).logical_or(mask.eq(0)), -100);
  const int64_t n = labels.ne(-100).sum().item<int64_t>();
  ASSERT_GT(n, 3);
  // HF: CrossEntropyLoss()(logits.view(-1, V), labels.view(-1)) = mean over positions != -100.
  torch::Tensor logits = testing::AsDistilBertMlm(m_.model).forward(ids, mask);
  torch::Tensor hf_mean = torch::nn::functional::cross_entropy(
      logits.view({-1, 1000}), labels.view({-1}), torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  auto [sum, correct] = m_.model->ScoredLoss({ids, mask, {}}, labels);
  EXPECT_NEAR(sum.item<double>() / n, hf_mean.item<double>(), 1e-5);
  torch::Tensor scored = labels.ne(-100);
  const int64_t want_correct = logits.argmax(-1).eq(labels).logical_and(scored).sum().item<int64_t>();
  EXPECT_EQ(correct.item<int64_t>(), want_correct);
}

TEST_F(TinyMaskedLm, SavesHuggingFacesKeysAndTheClassifierLoaderReadsItLikeTheHubs) {
  const std::string dir = std::filesystem::temp_directory_path() / ("ftune_mlm_save_" + std::to_string(getpid()));
  ASSERT_TRUE(SavePretrained(*m_.model, dir).ok());
  std::ifstream keys_in(HfFixture("hf-tiny-mlm/keys.json"));
  std::vector<std::string> want = nlohmann::json::parse(keys_in)["keys"];
  auto saved = ReadAll(dir + "/model.safetensors");
  std::vector<std::string> got;
  for (const auto& kv : saved) got.push_back(kv.first);
  EXPECT_EQ(got, want);  // both sorted; no vocab_projector.weight (tied)
  for (const auto& kv : saved) EXPECT_TRUE(torch::equal(kv.second, file_[kv.first])) << kv.first;
  std::ifstream cfg_in(dir + "/config.json");
  nlohmann::json cfg = nlohmann::json::parse(cfg_in);
  EXPECT_EQ(cfg["architectures"][0], "DistilBertForMaskedLM");
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  auto cls = LoadPretrained(dir, ModelOptions{false});
  ASSERT_TRUE(cls.ok()) << cls.status();
  EXPECT_EQ(cls->report.ignored.size(), 5u);  // the MLM head
  EXPECT_EQ(cls->report.fresh.size(), 4u);    // pre_classifier and classifier weight + bias
  torch::NoGradGuard g;
  EXPECT_LT(MaxAbsDiff(testing::AsDistilBert(cls->model).distilbert(io_["input_ids"], io_["attention_mask"]), io_["last_hidden_state"]),
            1e-5);
  std::filesystem::remove_all(dir);
}

TEST(MaskedLm, AClassifierCheckpointContinuesWithAFreshHead) {
  auto m = LoadMaskedLm(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->report.fresh.size(), 5u) << m->report.Summary();
  EXPECT_EQ(m->report.ignored.size(), 4u);                                   // the classifier head
  EXPECT_EQ(testing::AsDistilBertMlm(m->model).vocab_layer_norm->weight.sum().item<double>(), 32.0);  // HF init: ones
}

TEST(MaskedLm, RandomInitFollowsHuggingFace) {
  io::DistilBertConfig c = io::DefaultDistilBertConfig();
  c.vocab_size = 500;
  c.dim = 64;
  c.n_layers = 1;
  c.n_heads = 4;
  c.hidden_dim = 128;
  torch::manual_seed(0);
  LoadedMaskedLm m = testing::BuildDistilBertMlm(c);
  EXPECT_NEAR(testing::AsDistilBertMlm(m.model).vocab_transform->weight.std().item<double>(), 0.02, 0.002);
  EXPECT_EQ(testing::AsDistilBertMlm(m.model).vocab_projector->bias.abs().sum().item<double>(), 0.0);
  EXPECT_EQ(testing::AsDistilBertMlm(m.model).distilbert->embeddings->word_embeddings->weight[0].abs().sum().item<double>(), 0.0);  // [PAD]
  // HF's parameter count: the tied projection adds only its bias.
  int64_t n = 0;
  for (const auto& p : m.model->parameters()) n += p.numel();
  const int64_t encoder =
      500 * 64 + 512 * 64 + 2 * 64 + (4 * (64 * 64 + 64) + 2 * 64 + 64 * 128 + 128 + 128 * 64 + 64 + 2 * 64);
  EXPECT_EQ(n, encoder + (64 * 64 + 64) + 2 * 64 + 500);
}

}  // namespace
}  // namespace ftune::model

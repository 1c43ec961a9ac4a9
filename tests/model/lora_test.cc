// LoRA, the three methods, and PEFT adapter interop against PEFT's own outputs.
#include "model/lora.h"

#include <fstream>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"
#include "model/peft_adapter.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "tests/model/reference.h"

namespace ftune::model {
namespace {

using ::ftune::testing::HfFixture;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;
using ::testing::HasSubstr;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

int64_t CountFor(Method method, LoraOptions lora = {}) {
  LoadedModel m = BuildFromConfig(io::DefaultDistilBertConfig());
  EXPECT_TRUE(SelectTrainable(m.model, method, lora).ok());
  return CountTrainableParameters(*m.model);
}

TEST(Methods, FullSizeTrainableCountsEqualHuggingFaceAndPeft) {
  auto counts = ReadJson(HfFixture("counts.json"));
  EXPECT_EQ(CountFor(Method::kFull), counts["full"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kHead), counts["head"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kLora), counts["lora_r12_qv_with_head"].get<int64_t>());
  LoraOptions r8;
  r8.rank = 8;
  r8.alpha = 16;
  EXPECT_EQ(CountFor(Method::kLora, r8), counts["lora_r8_qv_with_head"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kLora), 813314);
  EXPECT_EQ(CountFor(Method::kHead), 592130);
}

TEST(Methods, TinyLoraCountEqualsPeft) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"));
  ASSERT_TRUE(m.ok());
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  ASSERT_TRUE(SelectTrainable(m->model, Method::kLora, o).ok());
  EXPECT_EQ(CountTrainableParameters(*m->model), ReadJson(HfFixture("hf-tiny-lora/io.json"))["trainable"]);
}

TEST(Methods, UnknownMethodIsRefused) {
  auto m = ParseMethod("prefix");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("full, head, lora"));
}

TEST(Lora, ReplacesAllTwelveQueryAndValueLayersByQualifiedName) {
  LoadedModel m = BuildFromConfig(io::DefaultDistilBertConfig());
  auto replaced = ApplyLora(*m.model, LoraOptions{});
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  ASSERT_EQ(replaced->size(), 12u);
  EXPECT_EQ(replaced->front(), "distilbert.transformer.layer.0.attention.q_lin");
  EXPECT_EQ(replaced->back(), "distilbert.transformer.layer.5.attention.v_lin");
  auto params = m.model->named_parameters();
  EXPECT_NE(params.find("distilbert.transformer.layer.3.attention.q_lin.base_layer.weight"), nullptr);
  EXPECT_EQ(params["distilbert.transformer.layer.3.attention.v_lin.lora_A.weight"].sizes(),
            torch::IntArrayRef({12, 768}));
  EXPECT_EQ(params["distilbert.transformer.layer.3.attention.v_lin.lora_B.weight"].sizes(),
            torch::IntArrayRef({768, 12}));
  std::string tree = ModuleTreeString(*m.model);
  EXPECT_THAT(tree, HasSubstr("(q_lin): lora.Linear(\n"));
  EXPECT_THAT(tree, HasSubstr("(lora_A): Linear(in_features=768, out_features=12, bias=False)"));
  EXPECT_THAT(tree, HasSubstr("(k_lin): Linear(in_features=768, out_features=768, bias=True)"));
}

TEST(Lora, FreshAdapterLeavesOutputsUnchangedAndInitsLikePeft) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(m.ok());
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  m->model->eval();
  torch::NoGradGuard g;
  torch::Tensor before = m->model(io["input_ids"], io["attention_mask"]);
  ASSERT_TRUE(ApplyLora(*m->model, LoraOptions{}).ok());
  torch::Tensor after = m->model(io["input_ids"], io["attention_mask"]);
  EXPECT_TRUE(torch::equal(before, after));  // B = 0
  for (auto& [name, layer] : FindLoraLayers(*m->model)) {
    EXPECT_EQ(layer->lora_B->weight.abs().max().item<float>(), 0.0f) << name;
    // kaiming_uniform_(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)).
    double bound = 1.0 / std::sqrt(32.0);
    EXPECT_LE(layer->lora_A->weight.abs().max().item<double>(), bound) << name;
    EXPECT_GT(layer->lora_A->weight.abs().max().item<double>(), 0.5 * bound) << name;
    EXPECT_DOUBLE_EQ(layer->scaling(), 2.0);
  }
}

TEST(Lora, TargetMatchingNothingIsAnError) {
  LoadedModel m = BuildFromConfig(io::DefaultDistilBertConfig());
  LoraOptions o;
  o.targets = {"q_lin", "query"};
  auto r = ApplyLora(*m.model, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"query\" matches no Linear layer"));
  o.targets = {"q_lin"};
  o.rank = 0;
  EXPECT_EQ(ApplyLora(*m.model, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PeftAdapter, LoadsPeftAdapterAndMatchesPeftLogitsBeforeAndAfterMerge) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(m.ok());
  auto info = LoadAdapter(m->model, HfFixture("hf-tiny-lora"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->lora.rank, 4);
  EXPECT_DOUBLE_EQ(info->lora.alpha, 8.0);
  EXPECT_EQ(FindLoraLayers(*m->model).size(), 4u);
  auto io = ReadAll(HfFixture("hf-tiny-lora/io.safetensors"));
  m->model->eval();
  torch::NoGradGuard g;
  EXPECT_LT(MaxAbsDiff(m->model(io["input_ids"], io["attention_mask"]), io["logits"]), 1e-5);
  EXPECT_EQ(MergeLora(*m->model), 4);
  EXPECT_TRUE(FindLoraLayers(*m->model).empty());
  EXPECT_LT(MaxAbsDiff(m->model(io["input_ids"], io["attention_mask"]), io["logits_merged"]), 1e-5);
}

TEST(PeftAdapter, SaveLoadRoundTripWithPeftKeyNames) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(LoadAdapter(m->model, HfFixture("hf-tiny-lora")).ok());
  char tmpl[] = "/tmp/ftune_adapter.XXXXXX";
  std::string dir = std::string(mkdtemp(tmpl)) + "/adapter";
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  ASSERT_TRUE(SaveAdapter(m->model, o, "distilbert-base-uncased", dir).ok());
  // Same key set and values as PEFT's own file.
  auto ours = ReadAll(dir + "/adapter_model.safetensors");
  auto theirs = ReadAll(HfFixture("hf-tiny-lora/adapter_model.safetensors"));
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(ours.count(k)) << k;
    EXPECT_TRUE(torch::equal(ours.at(k), v)) << k;
  }
  auto cfg = ReadJson(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["modules_to_save"], nlohmann::json({"pre_classifier", "classifier"}));
  // And it loads back onto a fresh base with identical outputs.
  auto again = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(LoadAdapter(again->model, dir).ok());
  auto io = ReadAll(HfFixture("hf-tiny-lora/io.safetensors"));
  torch::NoGradGuard g;
  again->model->eval();
  EXPECT_LT(MaxAbsDiff(again->model(io["input_ids"], io["attention_mask"]), io["logits"]), 1e-5);
}

TEST(PeftAdapter, SavePretrainedRefusesUnmergedLora) {
  LoadedModel m = BuildFromConfig(io::DefaultDistilBertConfig());
  ASSERT_TRUE(ApplyLora(*m.model, LoraOptions{}).ok());
  auto st = SavePretrained(m.model, "/tmp/ftune_never_written");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ftune::model

// Method selection: the trainable set and count of every method (against HF's parameter list and
// PEFT's counts), the errors, and the frozen-prefix split the trainer uses for last_k and head.
#include "model/methods.h"

#include <fstream>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"

namespace ftune::model {
namespace {

using ::ftune::testing::HfFixture;
using ::ftune::testing::ReadJsonFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

int64_t CountFor(Method method, const MethodOptions& options = {}) {
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  absl::Status st = SelectTrainable(*m.model, method, options);
  EXPECT_TRUE(st.ok()) << st;
  return CountTrainableParameters(*m.model);
}

// Sum of numel over HF's own parameter list (counts.json, made by transformers) where `pick` holds.
int64_t HfCount(const nlohmann::json& shapes,
                const std::function<int64_t(const std::string&, const nlohmann::json&)>& pick) {
  int64_t n = 0;
  for (const auto& [name, shape] : shapes.items()) n += pick(name, shape);
  return n;
}

int64_t Numel(const nlohmann::json& shape) {
  int64_t n = 1;
  for (const auto& d : shape) n *= d.get<int64_t>();
  return n;
}

bool IsHead(const std::string& n) {
  return absl::StartsWith(n, "pre_classifier.") || absl::StartsWith(n, "classifier.");
}

TEST(Methods, FullSizeTrainableCountsEqualHuggingFaceAndPeft) {
  auto counts = ReadJsonFile(HfFixture("counts.json"));
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

TEST(Methods, NewMethodCountsEqualTheirDefinitionsOnHfsParameterList) {
  const auto counts = ReadJsonFile(HfFixture("counts.json"));
  const auto& shapes = counts["param_shapes"];
  const int64_t head = counts["head"].get<int64_t>();
  // BitFit: every bias, LayerNorm biases included, plus the head.
  const int64_t bitfit = HfCount(shapes, [](const std::string& n, const nlohmann::json& s) {
    return IsHead(n) || absl::EndsWith(n, ".bias") ? Numel(s) : 0;
  });
  // Top two of six blocks plus the head.
  const int64_t last2 = head + HfCount(shapes, [](const std::string& n, const nlohmann::json& s) {
                          return absl::StartsWith(n, "distilbert.transformer.layer.4.") ||
                                         absl::StartsWith(n, "distilbert.transformer.layer.5.")
                                     ? Numel(s)
                                     : 0;
                        });
  // IA3: one scale per output of k_lin and v_lin, one per input of lin2.
  const int64_t ia3 = head + HfCount(shapes, [](const std::string& n, const nlohmann::json& s) -> int64_t {
                        if (absl::EndsWith(n, "k_lin.weight") || absl::EndsWith(n, "v_lin.weight"))
                          return s[0].get<int64_t>();
                        if (absl::EndsWith(n, "lin2.weight")) return s[1].get<int64_t>();
                        return 0;
                      });
  // DoRA: LoRA's count plus one magnitude per output of q_lin and v_lin.
  const int64_t dora =
      counts["lora_r12_qv_with_head"].get<int64_t>() +
      HfCount(shapes, [](const std::string& n, const nlohmann::json& s) -> int64_t {
        return absl::EndsWith(n, "q_lin.weight") || absl::EndsWith(n, "v_lin.weight") ? s[0].get<int64_t>() : 0;
      });
  // bitfit and last_k only flip requires_grad, so one full-size model serves them all.
  LoadedModel plain = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  auto count = [&](Method method, const MethodOptions& options = {}) {
    EXPECT_TRUE(SelectTrainable(*plain.model, method, options).ok());
    return CountTrainableParameters(*plain.model);
  };
  EXPECT_EQ(count(Method::kBitFit), bitfit);
  EXPECT_EQ(count(Method::kLastK), last2);
  EXPECT_EQ(CountFor(Method::kIa3), ia3);
  EXPECT_EQ(CountFor(Method::kDora), dora);
  // The table.
  EXPECT_EQ(bitfit, 643586);
  EXPECT_EQ(last2, 14767874);
  EXPECT_EQ(ia3, 619778);
  EXPECT_EQ(dora, 822530);
  MethodOptions k6;
  k6.last_k_layers = 6;  // every block, not the embeddings
  EXPECT_EQ(count(Method::kLastK, k6),
            counts["full"].get<int64_t>() - HfCount(shapes, [](const std::string& n, const nlohmann::json& s) {
              return absl::StartsWith(n, "distilbert.embeddings.") ? Numel(s) : 0;
            }));
}

TEST(Methods, CountsEqualPeftsWhenItsFixtureIsPresent) {
  const std::string path = HfFixture("counts_methods.json");
  if (!std::ifstream(path).good()) {
    GTEST_SKIP() << path << " not generated yet (tests/fixtures/generate/peft_methods.py on a machine with PEFT)";
  }
  auto counts = ReadJsonFile(path);
  EXPECT_EQ(CountFor(Method::kBitFit), counts["bitfit"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kLastK), counts["last_k2"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kIa3), counts["ia3"].get<int64_t>());
  EXPECT_EQ(CountFor(Method::kDora), counts["dora_r12_qv_with_head"].get<int64_t>());
}

TEST(Methods, TinyLoraCountEqualsPeft) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"));
  ASSERT_TRUE(m.ok());
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  ASSERT_TRUE(SelectTrainable(*m->model, Method::kLora, o).ok());
  EXPECT_EQ(CountTrainableParameters(*m->model), ReadJsonFile(HfFixture("hf-tiny-lora/io.json"))["trainable"]);
}

std::vector<std::string> TrainableOnTiny(Method method, const MethodOptions& options = {}) {
  auto m = ::ftune::testing::TinyDoubleModel();
  absl::Status st = SelectTrainable(*m, method, options);
  EXPECT_TRUE(st.ok()) << st;
  std::vector<std::string> out;
  for (const auto& n : TrainableParameterNames(*m)) {
    if (!IsHead(n)) out.push_back(n);  // the head trains in every method; checked below
  }
  EXPECT_EQ(TrainableParameterNames(*m).size() - out.size(), 4u) << MethodName(method);
  return out;
}

TEST(Methods, EachMethodTrainsExactlyItsParameters) {
  const std::string l0 = "distilbert.transformer.layer.0.", l1 = "distilbert.transformer.layer.1.";
  EXPECT_TRUE(TrainableOnTiny(Method::kHead).empty());
  EXPECT_THAT(TrainableOnTiny(Method::kBitFit),
              ElementsAre("distilbert.embeddings.LayerNorm.bias", l0 + "attention.q_lin.bias",
                          l0 + "attention.k_lin.bias", l0 + "attention.v_lin.bias", l0 + "attention.out_lin.bias",
                          l0 + "sa_layer_norm.bias", l0 + "ffn.lin1.bias", l0 + "ffn.lin2.bias",
                          l0 + "output_layer_norm.bias", l1 + "attention.q_lin.bias", l1 + "attention.k_lin.bias",
                          l1 + "attention.v_lin.bias", l1 + "attention.out_lin.bias", l1 + "sa_layer_norm.bias",
                          l1 + "ffn.lin1.bias", l1 + "ffn.lin2.bias", l1 + "output_layer_norm.bias"));
  MethodOptions k1;
  k1.last_k_layers = 1;
  auto last = TrainableOnTiny(Method::kLastK, k1);
  EXPECT_EQ(last.size(), 16u);  // every parameter of block 1
  for (const auto& n : last) EXPECT_TRUE(absl::StartsWith(n, l1)) << n;
  EXPECT_THAT(TrainableOnTiny(Method::kIa3),
              ElementsAre(l0 + "attention.k_lin.ia3_l", l0 + "attention.v_lin.ia3_l", l0 + "ffn.lin2.ia3_l",
                          l1 + "attention.k_lin.ia3_l", l1 + "attention.v_lin.ia3_l", l1 + "ffn.lin2.ia3_l"));
  MethodOptions r2(LoraOptions{2, 4.0, 0.0, {"q_lin", "v_lin"}, false});
  EXPECT_THAT(TrainableOnTiny(Method::kDora, r2),
              ElementsAre(l0 + "attention.q_lin.lora_magnitude_vector", l0 + "attention.q_lin.lora_A.weight",
                          l0 + "attention.q_lin.lora_B.weight", l0 + "attention.v_lin.lora_magnitude_vector",
                          l0 + "attention.v_lin.lora_A.weight", l0 + "attention.v_lin.lora_B.weight",
                          l1 + "attention.q_lin.lora_magnitude_vector", l1 + "attention.q_lin.lora_A.weight",
                          l1 + "attention.q_lin.lora_B.weight", l1 + "attention.v_lin.lora_magnitude_vector",
                          l1 + "attention.v_lin.lora_A.weight", l1 + "attention.v_lin.lora_B.weight"));
  EXPECT_EQ(TrainableOnTiny(Method::kLora, r2).size(), 8u);  // A and B only
}

TEST(Methods, ParseAndBadSelectionsAreRefused) {
  for (Method m :
       {Method::kFull, Method::kHead, Method::kBitFit, Method::kLastK, Method::kLora, Method::kDora, Method::kIa3}) {
    auto parsed = ParseMethod(MethodName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  auto m = ParseMethod("prefix");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("full, head, bitfit, last_k, lora, dora, ia3"));

  auto tiny = ::ftune::testing::TinyDoubleModel();
  MethodOptions k;
  k.last_k_layers = 3;
  auto st = SelectTrainable(*tiny, Method::kLastK, k);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("--last_k_layers must be in [1, 2]"));
  k.last_k_layers = 0;
  EXPECT_EQ(SelectTrainable(*tiny, Method::kLastK, k).code(), absl::StatusCode::kInvalidArgument);

  // A model carrying one adapter kind cannot be trained as another.
  ASSERT_TRUE(SelectTrainable(*tiny, Method::kIa3, {}).ok());
  st = SelectTrainable(*tiny, Method::kLora, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("ia3"));
  EXPECT_EQ(SelectTrainable(*tiny, Method::kBitFit, {}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(SelectTrainable(*tiny, Method::kIa3, {}).ok());  // the loaded-adapter case: kept, not re-wrapped
  EXPECT_EQ(FindIa3Layers(*tiny).size(), 6u);
}

TEST(Methods, FrozenBlockPrefixPerMethod) {
  auto prefix = [](Method method, const MethodOptions& o = {}) {
    auto m = ::ftune::testing::TinyDoubleModel();
    EXPECT_TRUE(SelectTrainable(*m, method, o).ok());
    return FrozenBlockPrefix(*m);
  };
  EXPECT_EQ(prefix(Method::kFull), std::nullopt);
  EXPECT_EQ(prefix(Method::kBitFit), std::nullopt);  // the embedding LayerNorm's bias trains
  EXPECT_EQ(prefix(Method::kHead), 2);
  MethodOptions k1;
  k1.last_k_layers = 1;
  EXPECT_EQ(prefix(Method::kLastK, k1), 1);
  EXPECT_EQ(prefix(Method::kLastK), 0);  // K = 2 = every block
  EXPECT_EQ(prefix(Method::kLora), 0);
  EXPECT_EQ(prefix(Method::kIa3), 0);
}

TEST(Methods, SplitForwardBelowTheFrozenPrefixGivesIdenticalLogitsAndGradients) {
  for (Method method : {Method::kLastK, Method::kHead}) {
    MethodOptions k1;
    k1.last_k_layers = 1;
    auto m = ::ftune::testing::TinyDoubleModel();
    ASSERT_TRUE(SelectTrainable(*m, method, k1).ok());
    const int64_t k = *FrozenBlockPrefix(*m);
    auto b = ::ftune::testing::MakeTinyBatch();
    m->train();
    torch::Tensor logits = testing::Logits(*m, b.ids, b.mask);
    ClassificationLoss(logits, b.labels).backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : m->parameters()) {
      if (p.requires_grad()) {
        grads.push_back(p.grad().clone());
        p.mutable_grad().reset();
      }
    }
    torch::Tensor hidden;
    {
      torch::NoGradGuard g;
      hidden = m->ForwardBelow({b.ids, b.mask, {}}, k);
    }
    EXPECT_FALSE(hidden.requires_grad());
    torch::Tensor split = m->ClassifyFrom(hidden, b.mask, k);
    EXPECT_TRUE(torch::equal(split, logits)) << MethodName(method);
    ClassificationLoss(split, b.labels).backward();
    size_t i = 0;
    for (auto& p : m->parameters()) {
      if (p.requires_grad()) {
        EXPECT_TRUE(torch::equal(p.grad(), grads[i++])) << MethodName(method);
      }
    }
    EXPECT_EQ(i, grads.size());
  }
}

TEST(Methods, MergeAdaptersFoldsEveryKind) {
  for (Method method : {Method::kLora, Method::kDora, Method::kIa3}) {
    auto m = ::ftune::testing::TinyDoubleModel();
    ASSERT_TRUE(SelectTrainable(*m, method, MethodOptions(LoraOptions{2, 4.0, 0.0, {"q_lin", "v_lin"}, false})).ok());
    {
      torch::NoGradGuard g;
      for (auto& p : m->parameters()) {
        if (p.requires_grad()) p.add_(0.2 * torch::randn_like(p));
      }
    }
    auto b = ::ftune::testing::MakeTinyBatch();
    m->eval();
    torch::NoGradGuard g;
    torch::Tensor before = testing::Logits(*m, b.ids, b.mask);
    EXPECT_EQ(MergeAdapters(*m), method == Method::kIa3 ? 6 : 4);
    for (const auto& p : m->named_parameters()) EXPECT_FALSE(absl::StrContains(p.key(), "base_layer")) << p.key();
    EXPECT_LT(::ftune::testing::MaxAbsDiff(testing::Logits(*m, b.ids, b.mask), before), 1e-12) << MethodName(method);
  }
}

}  // namespace
}  // namespace ftune::model

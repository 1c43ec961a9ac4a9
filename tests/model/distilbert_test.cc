// DistilBERT against Hugging Face's own outputs for the same weights (tests/fixtures/hf).
#include "model/distilbert/modeling.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/torch_compat.h"
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
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;
using ::testing::HasSubstr;

class TinyCls : public ::testing::Test {
 protected:
  void SetUp() override {
    // Eager attention: HF's reference was made with attn_implementation="eager".
    auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{/*fused_attention=*/false});
    ASSERT_TRUE(m.ok()) << m.status();
    loaded_ = std::move(*m);
    io_ = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
    std::ifstream in(HfFixture("hf-tiny-cls/io.json"));
    scalars_ = nlohmann::json::parse(in);
  }
  DistilBertForSequenceClassificationImpl& model() { return testing::AsDistilBert(loaded_.model); }
  LoadedModel loaded_;
  std::map<std::string, torch::Tensor> io_;
  nlohmann::json scalars_;
};

TEST_F(TinyCls, LoadsEveryTensorAndNothingElse) {
  EXPECT_EQ(loaded_.report.loaded.size(), 40u);
  EXPECT_TRUE(loaded_.report.fresh.empty());
  EXPECT_TRUE(loaded_.report.unexpected.empty());
  EXPECT_TRUE(loaded_.report.ignored.empty());
}

TEST_F(TinyCls, EvalLogitsMatchHuggingFace) {
  model().eval();
  torch::NoGradGuard g;
  torch::Tensor logits = testing::Logits(model(), io_["input_ids"], io_["attention_mask"]);
  EXPECT_LT(MaxAbsDiff(logits, io_["logits"]), 1e-5);
  torch::Tensor loss = ClassificationLoss(logits, io_["labels"]);
  EXPECT_NEAR(loss.item<double>(), scalars_["loss_eval"].get<double>(), 1e-6);
}

TEST_F(TinyCls, EveryHiddenStateMatchesHuggingFace) {
  model().eval();
  torch::NoGradGuard g;
  std::vector<torch::Tensor> hidden;
  model().distilbert(io_["input_ids"], io_["attention_mask"], &hidden);
  ASSERT_EQ(hidden.size(), 3u);  // embeddings + 2 layers, as HF's hidden_states
  for (size_t i = 0; i < hidden.size(); ++i) {
    EXPECT_LT(MaxAbsDiff(hidden[i], io_["hidden." + std::to_string(i)]), 1e-5) << "hidden." << i;
  }
}

TEST_F(TinyCls, Float64LogitsMatchHuggingFaceTo1e10) {
  model().to(torch::kDouble);
  model().eval();
  torch::NoGradGuard g;
  torch::Tensor logits = testing::Logits(model(), io_["input_ids"], io_["attention_mask"]);
  ASSERT_EQ(logits.scalar_type(), torch::kDouble);
  EXPECT_LT(MaxAbsDiff(logits, io_["logits_fp64"]), 1e-10);
}

TEST_F(TinyCls, EveryParameterGradientMatchesHuggingFace) {
  model().train();  // dropouts are 0 in this config, so train mode is deterministic
  torch::Tensor loss = ClassificationLoss(testing::Logits(model(), io_["input_ids"], io_["attention_mask"]), io_["labels"]);
  EXPECT_NEAR(loss.item<double>(), scalars_["loss_train"].get<double>(), 1e-6);
  loss.backward();
  int checked = 0;
  for (const auto& p : model().named_parameters()) {
    auto it = io_.find("grad." + p.key());
    ASSERT_NE(it, io_.end()) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    const double ref_norm = it->second.norm().item<double>();
    // k_lin.bias has an exactly zero gradient (softmax ignores a per-query constant), so both sides
    // are float32 rounding noise (~1e-8); the absolute floor keeps the relative check meaningful.
    EXPECT_LE(MaxAbsDiff(p.value().grad(), it->second), std::max(1e-5 * ref_norm, 1e-7)) << p.key();
    if (absl::EndsWith(p.key(), "k_lin.bias")) {
      EXPECT_LT(p.value().grad().abs().max().item<double>(), 1e-6);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 40);
}

// The fused attention kernel (scaled_dot_product_attention, LibTorch >= 2.1; eager math on older
// LibTorch) against the same HF reference: logits and every gradient, with padding in the batch.
TEST(TinyClsFused, LogitsAndGradientsMatchHuggingFaceWithFusedAttention) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{/*fused_attention=*/true});
  ASSERT_TRUE(m.ok()) << m.status();
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  ASSERT_LT(io["attention_mask"].min().item<int64_t>(), 1) << "the reference batch should contain padding";
  m->model->train();
  torch::Tensor logits = testing::Logits(*m->model, io["input_ids"], io["attention_mask"]);
  ClassificationLoss(logits, io["labels"]).backward();
  int checked = 0;
  for (const auto& p : m->model->named_parameters()) {
    const torch::Tensor& ref = io.at("grad." + p.key());
    EXPECT_LE(MaxAbsDiff(p.value().grad(), ref), std::max(1e-5 * ref.norm().item<double>(), 1e-7)) << p.key();
    ++checked;
  }
  EXPECT_EQ(checked, 40);
  m->model->eval();
  torch::NoGradGuard g;
  EXPECT_LT(MaxAbsDiff(testing::Logits(*m->model, io["input_ids"], io["attention_mask"]), io["logits"]), 1e-5);
}

// --precision=bf16: autocast runs the matmuls in bfloat16 while parameters and gradients stay fp32
// (HF's bf16=True). The logits move by bf16 rounding only, and the loss is computed in fp32.
// On the CPU, and on CUDA where a device is visible.
class TinyClsBf16 : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyClsBf16, AutocastKeepsFp32ParametersAndGradientsAndStaysCloseToFp32) {
  const torch::Device device(GetParam());
  if (device.is_cuda() && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ModelOptions bf16;
  bf16.compute_dtype = torch::kBFloat16;
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), bf16);
  ASSERT_TRUE(m.ok()) << m.status();
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  m->model->to(device);
  m->model->train();  // dropout is 0 in this config
  torch::Tensor logits = testing::Logits(*m->model, io["input_ids"].to(device), io["attention_mask"].to(device));
  EXPECT_EQ(logits.scalar_type(), torch::kBFloat16) << "autocast is not active";
  const double diff = MaxAbsDiff(logits.to(torch::kFloat).cpu(), io["logits"]);
  EXPECT_GT(diff, 0.0) << "bf16 logits are bit-identical to fp32: autocast did nothing";
  EXPECT_LT(diff, 0.03 * std::max(1.0, io["logits"].abs().max().item<double>()));
  torch::Tensor loss = ClassificationLoss(logits, io["labels"].to(device));
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  loss.backward();
  for (const auto& p : m->model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat) << p.key();
    const torch::Tensor& ref = io.at("grad." + p.key());
    if (absl::EndsWith(p.key(), "k_lin.bias")) continue;  // exactly zero in exact arithmetic
    // bf16 has 8 mantissa bits: gradients agree with fp32 HF to a few percent of their norm.
    EXPECT_LE(MaxAbsDiff(p.value().grad().cpu(), ref), 0.1 * ref.norm().item<double>() + 1e-6) << p.key();
  }
  // The autocast state does not leak out of the forward pass.
  torch::Tensor x = io["logits"].to(device);
  EXPECT_EQ(torch::matmul(x, x.t()).scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(Devices, TinyClsBf16, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The fused kernels (scaled_dot_product_attention: flash, memory-efficient or cuDNN on CUDA) against
// the eager math, which equals HF's to 1e-5 (above), with head_dim 64 as in distilbert-base, on a
// batch of reviews padded to the lengths where the kernels change tiling (64; 192; 200, no
// multiple of 64), in fp32 and under bf16 autocast, with cuDNN attention allowed and not
// (--cudnn_sdp). A kernel that let padding leak into a shorter review's scores fails here.
struct AttentionCase {
  std::string device;
  int64_t length;
  bool bf16;
  bool cudnn;
};

void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << c.device << ", " << c.length << " tokens, " << (c.bf16 ? "bf16" : "fp32") << ", cuDNN "
      << (c.cudnn ? "allowed" : "off");
}

class FusedAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(FusedAttention, LogitsAndGradientsMatchEagerWithPadding) {
  const AttentionCase& c = GetParam();
  const torch::Device device(c.device);
  if (device.is_cuda() && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  struct RestoreCudnn {
    bool was = compat::CudnnAttentionEnabled();
    ~RestoreCudnn() { compat::SetCudnnAttention(was); }
  } restore;
  if (!compat::SetCudnnAttention(c.cudnn) && !c.cudnn) {
    GTEST_SKIP() << "LibTorch " << compat::TorchVersion() << " has no cuDNN attention to turn off";
  }
  io::DistilBertConfig config;
  config.vocab_size = 1000;
  config.dim = 128;
  config.n_heads = 2;  // head_dim 64
  config.n_layers = 2;
  config.hidden_dim = 256;
  config.max_position_embeddings = 256;
  config.dropout = config.attention_dropout = config.seq_classif_dropout = 0.0;
  ModelOptions fused, eager;
  eager.fused_attention = false;
  fused.compute_dtype = eager.compute_dtype = c.bf16 ? torch::kBFloat16 : torch::kFloat;
  ModelOptions exact = eager;  // bf16 cases: the fp32 eager model, against which both are judged
  exact.compute_dtype = torch::kFloat;
  torch::manual_seed(7);
  LoadedModel a = testing::BuildDistilBert(config, fused);
  LoadedModel b = testing::BuildDistilBert(config, eager);
  LoadedModel r = testing::BuildDistilBert(config, exact);
  {
    torch::NoGradGuard g;
    // As the HF fixtures do: noise on HF's init, so logits are O(1) and attention is peaked, and a
    // leak of padding into the scores moves them.
    for (auto& p : a.model->parameters()) p.add_(torch::randn_like(p), 0.2);
    auto from = a.model->named_parameters();
    for (auto& p : b.model->named_parameters()) p.value().copy_(*from.find(p.key()));
    for (auto& p : r.model->named_parameters()) p.value().copy_(*from.find(p.key()));
  }
  a.model->to(device);
  b.model->to(device);
  r.model->to(device);

  // Reviews of the full length, one token shorter, about half, and 3 tokens ([CLS] x [SEP]).
  const int64_t n = c.length;
  const std::vector<int64_t> lengths = {n, n - 1, n / 2 + 1, 3};
  torch::Tensor ids = torch::randint(1000, {4, n}, torch::kLong);
  torch::Tensor mask = torch::zeros({4, n}, torch::kLong);
  for (size_t i = 0; i < lengths.size(); ++i) mask[i].slice(0, 0, lengths[i]).fill_(1);
  ids = (ids * mask).to(device);  // padding id 0
  mask = mask.to(device);
  const torch::Tensor labels = torch::tensor({0, 1, 1, 0}, torch::kLong).to(device);

  torch::Tensor la = testing::Logits(*a.model, ids, mask), lb = testing::Logits(*b.model, ids, mask),
                lr = testing::Logits(*r.model, ids, mask);
  ClassificationLoss(la, labels).backward();
  ClassificationLoss(lb, labels).backward();
  ClassificationLoss(lr, labels).backward();
  // fp32: the kernels sum in other orders, so fused equals eager to 1e-4. bf16: both round every
  // matmul to 8 mantissa bits, and which of them lands nearer the exact (fp32) value differs by
  // parameter; so in bf16 the fused result must be as near to the fp32 model as the eager bf16 one
  // (twice its error, for chance), or within bf16's noise (2% of the exact gradient's norm).
  const double tol = c.bf16 ? 0.05 : 1e-4;
  const double scale = lb.abs().max().item<double>();
  ASSERT_GT(scale, 0.1) << "logits too small to compare";
  auto near = [&](const torch::Tensor& fused_x, const torch::Tensor& eager_x, const torch::Tensor& exact_x,
                  double bound) {
    return c.bf16 ? MaxAbsDiff(fused_x, exact_x) <= std::max(2 * MaxAbsDiff(eager_x, exact_x), bound)
                  : MaxAbsDiff(fused_x, eager_x) <= bound;
  };
  EXPECT_TRUE(near(la, lb, lr, tol * scale)) << "logits: fused-eager " << MaxAbsDiff(la, lb) << ", fused-exact "
                                             << MaxAbsDiff(la, lr) << ", eager-exact " << MaxAbsDiff(lb, lr);
  auto grads = a.model->named_parameters();
  auto exact_grads = r.model->named_parameters();
  int checked = 0;
  for (const auto& p : b.model->named_parameters()) {
    if (absl::EndsWith(p.key(), "k_lin.bias")) continue;  // exactly zero in exact arithmetic
    const torch::Tensor ga = grads.find(p.key())->grad(), gb = p.value().grad();
    const torch::Tensor gr = exact_grads.find(p.key())->grad();
    ASSERT_TRUE(ga.defined() && gb.defined() && gr.defined()) << p.key();
    const double bound = c.bf16 ? 0.02 * gr.norm().item<double>() + 1e-6 : 2 * tol * gb.norm().item<double>() + 1e-6;
    EXPECT_TRUE(near(ga, gb, gr, bound)) << p.key() << ": fused-eager " << MaxAbsDiff(ga, gb) << ", fused-exact "
                                         << MaxAbsDiff(ga, gr) << ", eager-exact " << MaxAbsDiff(gb, gr) << ", bound "
                                         << bound;
    ++checked;
  }
  EXPECT_GT(checked, 20);
  // The padded batch gives each review what it gets alone, unpadded (padding leaks nowhere).
  a.model->eval();
  torch::NoGradGuard g;
  const torch::Tensor batched = testing::Logits(*a.model, ids, mask);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const torch::Tensor alone =
        testing::Logits(*a.model, ids[i].slice(0, 0, lengths[i]).unsqueeze(0),
                        mask[i].slice(0, 0, lengths[i]).unsqueeze(0));
    EXPECT_LT(MaxAbsDiff(alone, batched[i].unsqueeze(0)), tol * scale) << "review " << i << " of " << lengths[i];
  }
}

std::vector<AttentionCase> AttentionCases() {
  std::vector<AttentionCase> cases;
  for (int64_t length : {64, 192, 200}) {
    for (bool bf16 : {false, true}) {
      cases.push_back({"cpu", length, bf16, true});
      for (bool cudnn : {true, false}) cases.push_back({"cuda", length, bf16, cudnn});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Padded, FusedAttention, ::testing::ValuesIn(AttentionCases()),
                         [](const ::testing::TestParamInfo<AttentionCase>& i) {
                           return absl::StrCat(i.param.device, "_", i.param.length, i.param.bf16 ? "_bf16" : "_fp32",
                                               i.param.device == "cuda" && !i.param.cudnn ? "_nocudnn" : "");
                         });

TEST_F(TinyCls, SaveLoadRoundTripIsBitExactAndHfShaped) {
  char tmpl[] = "/tmp/ftune_model_save.XXXXXX";
  std::string dir = std::string(mkdtemp(tmpl)) + "/saved";
  ASSERT_TRUE(SavePretrained(model(), dir).ok());
  auto back = LoadPretrained(dir, ModelOptions{false});
  ASSERT_TRUE(back.ok()) << back.status();
  auto a = model().named_parameters();
  for (const auto& p : back->model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), *a.find(p.key()))) << p.key();
  }
  // Same names, order and bytes as the file transformers' save_pretrained wrote.
  auto ours = ReadAll(dir + "/model.safetensors");
  auto theirs = ReadAll(HfFixture("hf-tiny-cls/model.safetensors"));
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) EXPECT_TRUE(torch::equal(ours.at(k), v)) << k;
  std::ifstream cfg(dir + "/config.json");
  auto j = nlohmann::json::parse(cfg);
  EXPECT_EQ(j["architectures"][0], "DistilBertForSequenceClassification");
  EXPECT_EQ(j["dim"], 32);
}

TEST(TinyMlm, HubLayoutLoadsEncoderIgnoresMlmHeadAndCreatesAFreshHead) {
  torch::manual_seed(0);
  auto m = LoadPretrained(HfFixture("hf-tiny-mlm"), ModelOptions{false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->report.loaded.size(), 36u);
  EXPECT_THAT(m->report.ignored, ::testing::UnorderedElementsAre("vocab_layer_norm.bias", "vocab_layer_norm.weight",
                                                                 "vocab_projector.bias", "vocab_transform.bias",
                                                                 "vocab_transform.weight"));
  EXPECT_THAT(m->report.fresh, ::testing::UnorderedElementsAre("pre_classifier.weight", "pre_classifier.bias",
                                                               "classifier.weight", "classifier.bias"));
  EXPECT_TRUE(m->report.unexpected.empty());
  // HF's fresh-head init: N(0, 0.02) weights, zero biases.
  auto params = m->model->named_parameters();
  EXPECT_EQ(params["pre_classifier.bias"].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(params["classifier.bias"].abs().max().item<float>(), 0.0f);
  EXPECT_NEAR(params["pre_classifier.weight"].std().item<float>(), 0.02, 0.002);
  EXPECT_NEAR(params["pre_classifier.weight"].mean().item<float>(), 0.0, 0.002);

  auto io = ReadAll(HfFixture("hf-tiny-mlm/io.safetensors"));
  m->model->eval();
  torch::NoGradGuard g;
  torch::Tensor h = testing::AsDistilBert(m->model).distilbert(io["input_ids"], io["attention_mask"]);
  EXPECT_LT(MaxAbsDiff(h, io["last_hidden_state"]), 1e-5);
}

TEST(FullSize, NamesShapesAndCountEqualHuggingFace) {
  std::ifstream in(HfFixture("counts.json"));
  auto counts = nlohmann::ordered_json::parse(in);
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  std::vector<std::pair<std::string, std::vector<int64_t>>> ours, theirs;
  for (const auto& p : m.model->named_parameters()) {
    ours.emplace_back(p.key(), p.value().sizes().vec());
  }
  for (auto it = counts["param_shapes"].begin(); it != counts["param_shapes"].end(); ++it) {
    theirs.emplace_back(it.key(), it.value().get<std::vector<int64_t>>());
  }
  EXPECT_EQ(ours, theirs);  // same names, same shapes, same order as HF's named_parameters()
  EXPECT_EQ(CountTrainableParameters(*m.model), counts["full"].get<int64_t>());
  EXPECT_EQ(CountTrainableParameters(*m.model), 66955010);
}

TEST(ModuleTree, PrintsLikePyTorchWithTheHeadAtTheBottom) {
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  std::string tree = ModuleTreeString(*m.model);
  EXPECT_TRUE(absl::StartsWith(tree, "DistilBertForSequenceClassification(\n  (distilbert): DistilBertModel(\n"));
  EXPECT_THAT(tree, HasSubstr("      (word_embeddings): Embedding(30522, 768, padding_idx=0)\n"));
  EXPECT_THAT(tree, HasSubstr("      (LayerNorm): LayerNorm((768,), eps=1e-12, elementwise_affine=True)\n"));
  EXPECT_THAT(tree, HasSubstr("        (0-5): 6 x TransformerBlock(\n"));
  EXPECT_THAT(tree, HasSubstr("            (q_lin): Linear(in_features=768, out_features=768, bias=True)\n"));
  EXPECT_THAT(tree, HasSubstr("            (lin1): Linear(in_features=768, out_features=3072, bias=True)\n"));
  EXPECT_THAT(tree, HasSubstr("            (activation): GELUActivation()\n"));
  EXPECT_TRUE(absl::EndsWith(tree,
                             "  (pre_classifier): Linear(in_features=768, out_features=768, bias=True)\n"
                             "  (classifier): Linear(in_features=768, out_features=2, bias=True)\n"
                             "  (dropout): Dropout(p=0.2, inplace=False)\n"
                             ")"))
      << tree;
}

TEST(LoadErrors, ClearMessagesForBadDirectories) {
  char tmpl[] = "/tmp/ftune_model_bad.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  // Missing directory / config.
  auto missing = LoadPretrained(dir + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // A pickle instead of safetensors is refused with advice.
  std::system(
      ("cp " + HfFixture("hf-tiny-cls/config.json") + " " + dir + "/ && touch " + dir + "/pytorch_model.bin").c_str());
  auto pickle = LoadPretrained(dir);
  EXPECT_EQ(pickle.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(pickle.status().message()), HasSubstr("safe_serialization=True"));
  // Weights that do not fit the config: the mismatch is named with both shapes.
  std::string cfg =
      "{\"dim\": 32, \"n_layers\": 2, \"n_heads\": 4, \"hidden_dim\": 64, "
      "\"max_position_embeddings\": 64, \"vocab_size\": 999}";
  std::ofstream(dir + "/config.json") << cfg;
  std::system(("cp " + HfFixture("hf-tiny-cls/model.safetensors") + " " + dir + "/").c_str());
  auto mismatch = LoadPretrained(dir);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(std::string(mismatch.status().message()),
              HasSubstr("\"distilbert.embeddings.word_embeddings.weight\" has shape [1000, 32] but the model's"));
  // An encoder weight missing from the file is an error listing it.
  auto full = ReadAll(HfFixture("hf-tiny-cls/model.safetensors"));
  full.erase("distilbert.transformer.layer.1.ffn.lin2.weight");
  std::vector<std::pair<std::string, torch::Tensor>> kept(full.begin(), full.end());
  ASSERT_TRUE(WriteTensors(dir + "/model.safetensors", kept).ok());
  std::system(("cp " + HfFixture("hf-tiny-cls/config.json") + " " + dir + "/").c_str());
  auto lacking = LoadPretrained(dir);
  ASSERT_FALSE(lacking.ok());
  EXPECT_THAT(std::string(lacking.status().message()), HasSubstr("distilbert.transformer.layer.1.ffn.lin2.weight"));
}

}  // namespace
}  // namespace ftune::model

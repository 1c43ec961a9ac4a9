// PEFT adapter directories: LoRA against PEFT's own files and outputs; IA3 and DoRA file layout,
// round trips and (when tests/fixtures/generate/peft_methods.py has been run) PEFT's outputs.
#include "model/peft_adapter.h"

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
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;
using ::ftune::testing::ReadJsonFile;
using ::testing::HasSubstr;

std::string TempDir() {
  char tmpl[] = "/tmp/ftune_adapter.XXXXXX";
  return std::string(mkdtemp(tmpl));
}

LoadedModel TinyCls() {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{/*fused_attention=*/false});
  EXPECT_TRUE(m.ok()) << m.status();
  m->model->eval();
  return std::move(*m);
}

torch::Tensor EvalLogits(SequenceClassifier& model, std::map<std::string, torch::Tensor>& io) {
  torch::NoGradGuard g;
  model->eval();
  return testing::Logits(*model, io["input_ids"], io["attention_mask"]);
}

TEST(PeftAdapter, LoadsPeftAdapterAndMatchesPeftLogitsBeforeAndAfterMerge) {
  LoadedModel m = TinyCls();
  auto info = LoadAdapter(*m.model, HfFixture("hf-tiny-lora"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, Method::kLora);
  EXPECT_EQ(info->lora.rank, 4);
  EXPECT_DOUBLE_EQ(info->lora.alpha, 8.0);
  EXPECT_EQ(FindLoraLayers(*m.model).size(), 4u);
  auto io = ReadAll(HfFixture("hf-tiny-lora/io.safetensors"));
  EXPECT_LT(MaxAbsDiff(EvalLogits(m.model, io), io["logits"]), 1e-5);
  EXPECT_EQ(MergeLora(*m.model), 4);
  EXPECT_TRUE(FindLoraLayers(*m.model).empty());
  EXPECT_LT(MaxAbsDiff(EvalLogits(m.model, io), io["logits_merged"]), 1e-5);
}

TEST(PeftAdapter, SaveLoadRoundTripWithPeftKeyNames) {
  LoadedModel m = TinyCls();
  ASSERT_TRUE(LoadAdapter(*m.model, HfFixture("hf-tiny-lora")).ok());
  std::string dir = TempDir() + "/adapter";
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  ASSERT_TRUE(SaveAdapter(*m.model, o, "distilbert-base-uncased", dir).ok());
  // Same key set and values as PEFT's own file.
  auto ours = ReadAll(dir + "/adapter_model.safetensors");
  auto theirs = ReadAll(HfFixture("hf-tiny-lora/adapter_model.safetensors"));
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(ours.count(k)) << k;
    EXPECT_TRUE(torch::equal(ours.at(k), v)) << k;
  }
  auto cfg = ReadJsonFile(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["use_dora"], false);
  EXPECT_EQ(cfg["modules_to_save"], nlohmann::json({"pre_classifier", "classifier"}));
  // And it loads back onto a fresh base with identical outputs.
  LoadedModel again = TinyCls();
  ASSERT_TRUE(LoadAdapter(*again.model, dir).ok());
  auto io = ReadAll(HfFixture("hf-tiny-lora/io.safetensors"));
  EXPECT_LT(MaxAbsDiff(EvalLogits(again.model, io), io["logits"]), 1e-5);
}

TEST(PeftAdapter, SavePretrainedRefusesUnmergedAdapters) {
  for (Method method : {Method::kLora, Method::kIa3}) {
    LoadedModel m = TinyCls();
    ASSERT_TRUE(SelectTrainable(*m.model, method, {}).ok());
    auto st = SavePretrained(*m.model, "/tmp/ftune_never_written");
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << MethodName(method);
    EXPECT_THAT(std::string(st.message()), HasSubstr("--merge"));
  }
}

// Applies `method` to hf-tiny-cls, moves every adapter and head weight off its init (so a
// mistake in saving or loading any of them shows in the logits), saves it, and returns the dir.
std::string SaveTrainedTiny(Method method, const MethodOptions& options, LoadedModel* m) {
  *m = TinyCls();
  EXPECT_TRUE(SelectTrainable(*m->model, method, options).ok());
  torch::manual_seed(5);
  torch::NoGradGuard g;
  for (auto& p : m->model->parameters()) {
    if (p.requires_grad()) p.add_(0.3 * torch::randn_like(p));
  }
  std::string dir = TempDir() + "/adapter";
  absl::Status st = SaveAdapter(*m->model, options, "hf-tiny-cls", dir);
  EXPECT_TRUE(st.ok()) << st;
  return dir;
}

TEST(PeftAdapter, Ia3FileLayoutIsPeftsAndRoundTrips) {
  LoadedModel m;
  const std::string dir = SaveTrainedTiny(Method::kIa3, {}, &m);
  auto cfg = ReadJsonFile(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "IA3");
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"k_lin", "v_lin", "lin2"}));
  EXPECT_EQ(cfg["feedforward_modules"], nlohmann::json({"lin2"}));
  EXPECT_EQ(cfg["modules_to_save"], nlohmann::json({"pre_classifier", "classifier"}));
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  auto file = ReadAll(dir + "/adapter_model.safetensors");
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [k, v] : file) shapes[k] = v.sizes().vec();
  const std::string p = "base_model.model.distilbert.transformer.layer.";
  EXPECT_EQ(shapes, (std::map<std::string, std::vector<int64_t>>{
                        {p + "0.attention.k_lin.ia3_l", {32, 1}},
                        {p + "0.attention.v_lin.ia3_l", {32, 1}},
                        {p + "0.ffn.lin2.ia3_l", {1, 64}},
                        {p + "1.attention.k_lin.ia3_l", {32, 1}},
                        {p + "1.attention.v_lin.ia3_l", {32, 1}},
                        {p + "1.ffn.lin2.ia3_l", {1, 64}},
                        {"base_model.model.pre_classifier.weight", {32, 32}},
                        {"base_model.model.pre_classifier.bias", {32}},
                        {"base_model.model.classifier.weight", {2, 32}},
                        {"base_model.model.classifier.bias", {2}},
                    }));
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  const torch::Tensor trained = EvalLogits(m.model, io);
  LoadedModel again = TinyCls();
  EXPECT_GT(MaxAbsDiff(EvalLogits(again.model, io), trained), 1e-2);  // the adapter matters
  auto info = LoadAdapter(*again.model, dir);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, Method::kIa3);
  EXPECT_EQ(DescribeAdapter(*info), "IA3 on k_lin,v_lin,lin2 (feedforward: lin2)");
  EXPECT_TRUE(torch::equal(EvalLogits(again.model, io), trained));
  EXPECT_EQ(MergeAdapters(*again.model), 6);
  EXPECT_LT(MaxAbsDiff(EvalLogits(again.model, io), trained), 1e-5);
}

TEST(PeftAdapter, DoraFileLayoutIsPeftsAndRoundTrips) {
  LoadedModel m;
  MethodOptions o(LoraOptions{4, 8.0, 0.0, {"q_lin", "v_lin"}, false});
  const std::string dir = SaveTrainedTiny(Method::kDora, o, &m);
  auto cfg = ReadJsonFile(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["use_dora"], true);
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  auto file = ReadAll(dir + "/adapter_model.safetensors");
  const std::string q = "base_model.model.distilbert.transformer.layer.1.attention.q_lin.";
  ASSERT_TRUE(file.count(q + "lora_magnitude_vector"));  // PEFT's key: no adapter name, no ".weight"
  EXPECT_EQ(file[q + "lora_magnitude_vector"].sizes(), torch::IntArrayRef({32}));
  EXPECT_EQ(file[q + "lora_A.weight"].sizes(), torch::IntArrayRef({4, 32}));
  EXPECT_EQ(file.size(), 4u * 3 + 4);  // 4 layers x (A, B, magnitude) + the head
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  const torch::Tensor trained = EvalLogits(m.model, io);
  LoadedModel again = TinyCls();
  auto info = LoadAdapter(*again.model, dir);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, Method::kDora);
  EXPECT_EQ(DescribeAdapter(*info), "DoRA r 4, alpha 8, dropout 0 on q_lin,v_lin");
  EXPECT_TRUE(torch::equal(EvalLogits(again.model, io), trained));
  EXPECT_EQ(MergeAdapters(*again.model), 4);
  EXPECT_LT(MaxAbsDiff(EvalLogits(again.model, io), trained), 1e-5);
}

TEST(PeftAdapter, SaveRefusesOptionsThatDoNotDescribeTheLayers) {
  LoadedModel m = TinyCls();
  ASSERT_TRUE(SelectTrainable(*m.model, Method::kIa3, {}).ok());
  MethodOptions other;
  other.ia3.targets = {"k_lin", "v_lin"};
  other.ia3.feedforward = {};
  auto st = SaveAdapter(*m.model, other, "x", TempDir() + "/a");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  MethodOptions wrong_rank;
  LoadedModel l = TinyCls();
  ASSERT_TRUE(SelectTrainable(*l.model, Method::kLora, LoraOptions{4, 8.0, 0.0, {"q_lin", "v_lin"}, false}).ok());
  st = SaveAdapter(*l.model, wrong_rank, "x", TempDir() + "/a");  // rank 12
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("rank 4"));
  LoadedModel none = TinyCls();
  EXPECT_EQ(SaveAdapter(*none.model, {}, "x", TempDir() + "/a").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PeftAdapter, ConfigsFtuneCannotReproduceAreRefusedByName) {
  auto with = [](const std::string& json_text) {
    const std::string dir = TempDir();
    std::ofstream(dir + "/adapter_config.json") << json_text;
    return ReadAdapterConfig(dir).status();
  };
  EXPECT_TRUE(with(R"({"peft_type": "IA3", "target_modules": ["k_lin"], "feedforward_modules": []})").ok());
  EXPECT_THAT(std::string(with(R"({"peft_type": "PREFIX_TUNING"})").message()), HasSubstr("\"LORA\""));
  EXPECT_THAT(std::string(with(R"({"peft_type": "IA3", "target_modules": ["k_lin"]})").message()),
              HasSubstr("feedforward_modules"));
  EXPECT_THAT(
      std::string(with(R"({"peft_type": "IA3", "target_modules": ".*k_lin", "feedforward_modules": []})").message()),
      HasSubstr("regular expression"));
  EXPECT_THAT(std::string(with(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_lin"],
                                   "use_rslora": true})")
                              .message()),
              HasSubstr("use_rslora"));
  EXPECT_THAT(std::string(with(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_lin"],
                                   "exclude_modules": ["layer.0.attention.q_lin"]})")
                              .message()),
              HasSubstr("exclude_modules"));
  const std::string dir = TempDir();
  std::ofstream(dir + "/adapter_config.json")
      << R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_lin"], "use_dora": true})";
  auto info = ReadAdapterConfig(dir);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, Method::kDora);
}

// --- Against PEFT's own IA3 / DoRA outputs (tests/fixtures/generate/peft_methods.py) ---

// Loads `fixture` (an adapter PEFT saved on hf-tiny-cls) and checks logits, trainable count,
// gradients of the mean cross-entropy, the merged logits, and that saving gives PEFT's file back.
void CheckAgainstPeft(const std::string& fixture, Method method) {
  const std::string dir = HfFixture(fixture);
  if (!std::ifstream(dir + "/io.safetensors").good()) {
    GTEST_SKIP() << dir
                 << " not generated yet: run tests/fixtures/generate/peft_methods.py tests/fixtures/hf on a "
                    "machine with transformers 5.17 + PEFT 0.21 (the GPU machine has them)";
  }
  auto io = ReadAll(dir + "/io.safetensors");
  auto scalars = ReadJsonFile(dir + "/io.json");
  LoadedModel m = TinyCls();
  auto info = LoadAdapter(*m.model, dir);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->method, method);
  EXPECT_LT(MaxAbsDiff(EvalLogits(m.model, io), io["logits"]), 1e-5);

  MethodOptions options;
  options.lora = info->lora;
  options.ia3 = info->ia3;
  ASSERT_TRUE(SelectTrainable(*m.model, method, options).ok());
  EXPECT_EQ(CountTrainableParameters(*m.model), scalars["trainable"].get<int64_t>());
  m.model->train();  // dropouts are 0
  torch::Tensor loss = ClassificationLoss(testing::Logits(*m.model, io["input_ids"], io["attention_mask"]), io["labels"]);
  EXPECT_NEAR(loss.item<double>(), scalars["loss_train"].get<double>(), 1e-6);
  loss.backward();
  int checked = 0;
  for (const auto& p : m.model->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    ASSERT_TRUE(io.count("grad." + p.key())) << p.key();
    EXPECT_LT(MaxAbsDiff(p.value().grad(), io["grad." + p.key()]), 1e-5) << p.key();
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(scalars["names"].size()));

  const std::string saved = TempDir() + "/adapter";
  ASSERT_TRUE(SaveAdapter(*m.model, options, "hf-tiny-cls", saved).ok());
  auto ours = ReadAll(saved + "/adapter_model.safetensors");
  auto theirs = ReadAll(dir + "/adapter_model.safetensors");
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(ours.count(k)) << k;
    EXPECT_TRUE(torch::equal(ours.at(k), v)) << k;
  }
  EXPECT_EQ(MergeAdapters(*m.model), static_cast<int>(method == Method::kIa3 ? 6 : 4));
  EXPECT_LT(MaxAbsDiff(EvalLogits(m.model, io), io["logits_merged"]), 1e-5);
}

TEST(PeftAdapter, Ia3MatchesPeft) { CheckAgainstPeft("hf-tiny-ia3", Method::kIa3); }

TEST(PeftAdapter, DoraMatchesPeft) { CheckAgainstPeft("hf-tiny-dora", Method::kDora); }

TEST(PeftAdapter, DoraMagnitudeInitMatchesPeft) {
  const std::string dir = HfFixture("hf-tiny-dora");
  if (!std::ifstream(dir + "/io.safetensors").good()) GTEST_SKIP() << dir << " not generated yet";
  auto io = ReadAll(dir + "/io.safetensors");
  LoadedModel m = TinyCls();
  ASSERT_TRUE(SelectTrainable(*m.model, Method::kDora, LoraOptions{4, 8.0, 0.0, {"q_lin", "v_lin"}, false}).ok());
  int checked = 0;
  for (const auto& p : m.model->named_parameters()) {
    if (!absl::EndsWith(p.key(), ".lora_magnitude_vector")) continue;
    EXPECT_LT(MaxAbsDiff(p.value(), io["init." + p.key()]), 1e-6) << p.key();
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace ftune::model

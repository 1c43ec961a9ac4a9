// Hugging Face as a live oracle (label `hf`): every reference here is made at test time by
// transformers / PEFT / safetensors themselves (tests/hf/oracle.py), on several tiny random shapes,
// and everything ftune writes is opened by those libraries. Skips, saying why, where python3 lacks
// them; tests/compat/testing-root.sh runs it in a Debian testing root that has them (CI).
//
// The bounds are those of the frozen-fixture tests (tests/model/distilbert_test.cc,
// tests/train/step_test.cc): float32 logits 1e-5, float64 logits 1e-10, gradients 1e-5 of their
// norm, three AdamW steps 1e-5 on every parameter.
#include <dirent.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "model/distilbert/family.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"
#include "model/peft_adapter.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"
#include "tests/hf/oracle_util.h"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"
#include "tests/train/train_test_env.h"
#include "train/trainer.h"

namespace ftune::hf {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::train::testing::BatchFrom;
using ::ftune::testing::ReadAll;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;

const char* const kShapes[] = {"base", "odd-head-dim", "wide-one-layer"};

// One oracle checkpoint per shape for the whole binary (each costs a Python start, ~3 s).
const std::string& HfCheckpoint(const std::string& shape) {
  static ScratchDir* root = new ScratchDir();  // kept until exit
  static std::map<std::string, std::string> made;
  auto it = made.find(shape);
  if (it != made.end()) return it->second;
  const std::string dir = *root / shape;
  OracleResult r = RunOracle("cls " + Shell(dir) + " --shape " + shape + " --seed 7");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_tail;
  return made[shape] = dir;
}

torch::Tensor EvalLogits(model::SequenceClassifierImpl& m, std::map<std::string, torch::Tensor>& io) {
  torch::NoGradGuard g;
  m.eval();
  return ::ftune::testing::Logits(m, io["input_ids"], io["attention_mask"]);
}

// Writes the inputs and ftune's logits for `oracle.py logits`.
std::string WriteFtuneLogits(const std::string& path, std::map<std::string, torch::Tensor>& io,
                             const torch::Tensor& logits) {
  absl::Status st = model::WriteTensors(
      path, {{"input_ids", io["input_ids"]}, {"attention_mask", io["attention_mask"]}, {"ftune_logits", logits}});
  EXPECT_TRUE(st.ok()) << st;
  return path;
}

class LiveCls : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    FTUNE_REQUIRE_ORACLE();
    dir_ = HfCheckpoint(GetParam());
    auto m = model::LoadPretrained(dir_, model::ModelOptions{/*fused_attention=*/false});
    ASSERT_TRUE(m.ok()) << m.status();
    loaded_ = std::move(*m);
    io_ = ReadAll(dir_ + "/io.safetensors");
    ref_ = ::ftune::testing::ReadJsonFile(dir_ + "/io.json");
  }
  std::string dir_;
  model::LoadedModel loaded_;
  std::map<std::string, torch::Tensor> io_;
  nlohmann::json ref_;
};

TEST_P(LiveCls, LoadsEveryTensorAndLogitsEqualTransformers) {
  EXPECT_TRUE(loaded_.report.fresh.empty());
  EXPECT_TRUE(loaded_.report.unexpected.empty());
  EXPECT_EQ(loaded_.report.loaded.size(), ReadAll(dir_ + "/model.safetensors").size());
  torch::Tensor logits = EvalLogits(*loaded_.model, io_);
  EXPECT_LT(MaxAbsDiff(logits, io_["logits"]), 1e-5);
  EXPECT_NEAR(model::ClassificationLoss(logits, io_["labels"]).item<double>(), ref_["loss_eval"].get<double>(), 1e-6);
  // float64: the same arithmetic, so agreement to rounding.
  loaded_.model->to(torch::kDouble);
  EXPECT_LT(MaxAbsDiff(EvalLogits(*loaded_.model, io_), io_["logits_fp64"]), 1e-10);
}

TEST_P(LiveCls, FusedAttentionLogitsEqualTransformersEager) {
  auto m = model::LoadPretrained(dir_, model::ModelOptions{/*fused_attention=*/true});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_LT(MaxAbsDiff(EvalLogits(*m->model, io_), io_["logits"]), 1e-5);
}

TEST_P(LiveCls, EveryGradientEqualsTransformers) {
  loaded_.model->train();  // every dropout is 0
  torch::Tensor loss = model::ClassificationLoss(
      ::ftune::testing::Logits(*loaded_.model, io_["input_ids"], io_["attention_mask"]), io_["labels"]);
  EXPECT_NEAR(loss.item<double>(), ref_["loss_train"].get<double>(), 1e-6);
  loss.backward();
  int checked = 0;
  for (const auto& p : loaded_.model->named_parameters()) {
    auto it = io_.find("grad." + p.key());
    ASSERT_NE(it, io_.end()) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    // k_lin.bias's gradient is exactly zero in exact arithmetic: both sides are rounding noise.
    const double bound = std::max(1e-5 * it->second.norm().item<double>(), 1e-7);
    EXPECT_LE(MaxAbsDiff(p.value().grad(), it->second), bound) << p.key();
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(ReadAll(dir_ + "/model.safetensors").size()));
}

TEST_P(LiveCls, ThreeTrainerStepsEqualHuggingFaceTrainersRecipe) {
  auto comm = dist::MakeMpiCommunicator(::ftune::train::testing::Context());
  if (comm->world_size() != 1) GTEST_SKIP() << "single-process reference";
  train::TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.max_grad_norm = 1.0;
  train::Trainer trainer(loaded_.model, o, comm.get(), comm.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(/*total_steps=*/4).ok());
  for (int s = 0; s < 3; ++s) {
    const std::string p = absl::StrCat("step", s, ".");
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]), s);
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_NEAR(st->LossSum() / st->totals.examples, ref_["step_losses"][s].get<double>(), 1e-6) << "step " << s;
    EXPECT_NEAR(st->GradNorm(), ref_["step_grad_norms_before_clip"][s].get<double>(), 1e-5) << "step " << s;
    EXPECT_DOUBLE_EQ(st->lr, ref_["step_lrs"][s].get<double>()) << "step " << s;
  }
  for (const auto& p : loaded_.model->named_parameters()) {
    const torch::Tensor& ref = io_.at("after3." + p.key());
    // k_lin.bias: a zero gradient up to rounding, which Adam turns into steps of about +-lr; each
    // side moved at most sum(lr) = 2.25e-3 from the same start (see tests/train/step_test.cc).
    const double bound = absl::StrContains(p.key(), "k_lin.bias") ? 2 * 2.25e-3 + 1e-6 : 1e-5;
    EXPECT_LT(MaxAbsDiff(p.value(), ref), bound) << p.key();
  }
}

// The other direction: what ftune saves, transformers' from_pretrained opens with ftune's logits.
TEST_P(LiveCls, ModelFtuneSavedOpensInTransformersWithFtunesLogits) {
  torch::manual_seed(3);
  {
    torch::NoGradGuard g;
    for (auto& p : loaded_.model->parameters()) p.add_(0.1 * torch::randn_like(p));  // not HF's weights any more
  }
  ScratchDir tmp;
  ASSERT_TRUE(model::SavePretrained(*loaded_.model, tmp / "saved").ok());
  const std::string io = WriteFtuneLogits(tmp / "io.safetensors", io_, EvalLogits(*loaded_.model, io_));
  OracleResult r = RunOracle("logits " + Shell(tmp / "saved") + " " + Shell(io));
  FTUNE_ORACLE_OK(r);
  EXPECT_EQ(r.out["model"], "DistilBertForSequenceClassification");
  ASSERT_TRUE(r.out["max_abs_diff"].is_number()) << r.out.dump();
  EXPECT_LT(r.out["max_abs_diff"].get<double>(), 1e-5) << r.out.dump();
}

INSTANTIATE_TEST_SUITE_P(Shapes, LiveCls, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

// --- PEFT adapters ftune saves, opened by PeftModel.from_pretrained ---------------------------

struct AdapterCase {
  const char* shape;
  model::Method method;
};

class LiveAdapter : public ::testing::TestWithParam<AdapterCase> {};

TEST_P(LiveAdapter, PeftOpensTheAdapterWithFtunesLogitsAndCount) {
  FTUNE_REQUIRE_ORACLE();
  const std::string base = HfCheckpoint(GetParam().shape);
  auto m = model::LoadPretrained(base, model::ModelOptions{false});
  ASSERT_TRUE(m.ok()) << m.status();
  model::MethodOptions o;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o = model::WithFamilyDefaults(o, model::DistilBertFamily());
  ASSERT_TRUE(model::SelectTrainable(*m->model, GetParam().method, o).ok());
  // Every trainable weight (adapter and head) off its init, so a mistake in any shows in the logits.
  torch::manual_seed(5);
  {
    torch::NoGradGuard g;
    for (auto& p : m->model->parameters()) {
      if (p.requires_grad()) p.add_(0.3 * torch::randn_like(p));
    }
  }
  ScratchDir tmp;
  ASSERT_TRUE(model::SaveAdapter(*m->model, o, base, tmp / "adapter").ok());
  auto io = ReadAll(base + "/io.safetensors");
  torch::Tensor logits = EvalLogits(*m->model, io);
  const std::string io_path = WriteFtuneLogits(tmp / "io.safetensors", io, logits);
  OracleResult r = RunOracle("logits " + Shell(base) + " " + Shell(io_path) + " --adapter " + Shell(tmp / "adapter"));
  FTUNE_ORACLE_OK(r);
  EXPECT_THAT(r.out["model"].get<std::string>(), ::testing::StartsWith("PeftModel("));
  ASSERT_TRUE(r.out["max_abs_diff"].is_number()) << r.out.dump();
  EXPECT_LT(r.out["max_abs_diff"].get<double>(), 1e-5) << r.out.dump();

  OracleResult c = RunOracle("peft-count " + Shell(base) + " " + Shell(tmp / "adapter"));
  FTUNE_ORACLE_OK(c);
  EXPECT_EQ(c.out["trainable"].get<int64_t>(), model::CountTrainableParameters(*m->model)) << c.out.dump();

  // --merge: the adapter folded in, saved as a plain model, opened by from_pretrained.
  EXPECT_GT(model::MergeAdapters(*m->model), 0);
  torch::Tensor merged = EvalLogits(*m->model, io);
  EXPECT_LT(MaxAbsDiff(merged, logits), 1e-5);
  ASSERT_TRUE(model::SavePretrained(*m->model, tmp / "merged").ok());
  OracleResult mr = RunOracle("logits " + Shell(tmp / "merged") + " " +
                              Shell(WriteFtuneLogits(tmp / "io_merged.safetensors", io, merged)));
  FTUNE_ORACLE_OK(mr);
  EXPECT_LT(mr.out["max_abs_diff"].get<double>(), 1e-5) << mr.out.dump();
}

std::vector<AdapterCase> AdapterCases() {
  std::vector<AdapterCase> out;
  for (const char* s : {"base", "odd-head-dim"}) {
    for (model::Method m : {model::Method::kLora, model::Method::kDora, model::Method::kIa3}) out.push_back({s, m});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Methods, LiveAdapter, ::testing::ValuesIn(AdapterCases()),
                         [](const ::testing::TestParamInfo<AdapterCase>& i) {
                           std::string n = absl::StrCat(i.param.shape, "_", model::MethodName(i.param.method));
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

// --- Every safetensors file a training run writes, opened by the safetensors library ----------

void FindSafetensors(const std::string& dir, std::vector<std::string>* out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = dir + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      FindSafetensors(path, out);
    } else if (absl::EndsWith(name, ".safetensors")) {
      out->push_back(path);
    }
  }
  closedir(d);
}

// Same names, dtypes, shapes and bytes.
void ExpectSameTensors(const std::string& a_path, const std::string& b_path) {
  auto a = io::SafetensorsFile::Open(a_path);
  auto b = io::SafetensorsFile::Open(b_path);
  ASSERT_TRUE(a.ok() && b.ok()) << a_path;
  ASSERT_EQ((*a)->tensors().size(), (*b)->tensors().size()) << a_path;
  for (const auto& [name, va] : (*a)->tensors()) {
    auto vb = (*b)->Get(name);
    ASSERT_TRUE(vb.ok()) << a_path << ": " << name;
    EXPECT_EQ(va.dtype, (*vb)->dtype) << name;
    EXPECT_EQ(va.shape, (*vb)->shape) << name;
    ASSERT_EQ(va.nbytes, (*vb)->nbytes) << name;
    EXPECT_EQ(std::memcmp(va.data, (*vb)->data, va.nbytes), 0) << a_path << ": " << name;
  }
}

TEST(LiveSafetensors, EveryFileATrainingRunWritesOpensInSafetensorsAndTransformers) {
  FTUNE_REQUIRE_ORACLE();
  ScratchDir dir;
  ::ftune::testing::WriteSyntheticJsonl(dir / "train.jsonl", 96, 3);
  ::ftune::testing::WriteTestVocab(dir / "vocab.txt", 64);
  CommandResult r = RunCommand(Ftune() + " prep --input_format=jsonl --input=" + dir / "train.jsonl" +
                               " --output=" + dir / "d.h5" + " --vocab=" + dir / "vocab.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ::ftune::testing::WriteTinyModelConfig(dir / "cfg.json", /*dropout=*/false);
  std::vector<std::string> files;
  for (const char* method : {"full", "lora", "ia3"}) {
    const std::string out = dir / method;
    r = RunCommand(Ftune() + " train --model_config=" + dir / "cfg.json" + " --train_data=" + dir / "d.h5" +
                   " --output_dir=" + out + " --method=" + method +
                   " --threads=1 --batch_size=16 --epochs=1 --save_strategy=steps --save_steps=3 --save_total_limit=0");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    FindSafetensors(out, &files);
  }
  std::set<std::string> kinds;
  for (const std::string& f : files) kinds.insert(f.substr(f.rfind('/') + 1));
  EXPECT_THAT(kinds, ::testing::IsSupersetOf({"model.safetensors", "adapter_model.safetensors", "trainer.safetensors"}));
  std::string pairs;
  for (const std::string& f : files) pairs += " " + Shell(f) + " " + Shell(f + ".resaved");
  OracleResult saved = RunOracle("resave" + pairs);
  FTUNE_ORACLE_OK(saved);
  ASSERT_EQ(saved.out["files"].size(), files.size());
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    ExpectSameTensors(f, f + ".resaved");
  }
  // The full run's model: transformers' from_pretrained gives ftune's logits.
  auto m = model::LoadPretrained(dir / "full/model", model::ModelOptions{false});
  ASSERT_TRUE(m.ok()) << m.status();
  std::map<std::string, torch::Tensor> io;
  io["input_ids"] = torch::tensor({1, 12, 7, 30, 2, 1, 44, 2, 0, 0}, torch::kLong).view({2, 5});
  io["attention_mask"] = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, torch::kLong).view({2, 5});
  OracleResult o = RunOracle("logits " + Shell(dir / "full/model") + " " +
                             Shell(WriteFtuneLogits(dir / "io.safetensors", io, EvalLogits(*m->model, io))));
  FTUNE_ORACLE_OK(o);
  EXPECT_LT(o.out["max_abs_diff"].get<double>(), 1e-5) << o.out.dump();
}

}  // namespace
}  // namespace ftune::hf

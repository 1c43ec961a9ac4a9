// Trainer::Step against Hugging Face Trainer's own three steps (tests/fixtures/hf/hf-tiny-cls:
// AdamW lr 1e-3, linear decay over 4 steps, clip 1.0, order backward/clip/step/schedule), the
// non-finite skip, and what crosses the wire.
#include "train/trainer.h"

#include <cmath>
#include <fstream>
#include <limits>

#include "common/torch_compat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"
#include "tests/train/train_test_env.h"

namespace ftune::train {
namespace {

using ::ftune::testing::HfFixture;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::train::testing::BatchFrom;
using ::ftune::testing::ReadAll;

class HfThreeSteps : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = model::LoadPretrained(HfFixture("hf-tiny-cls"), model::ModelOptions{false});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->model;
    io_ = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
    std::ifstream in(HfFixture("hf-tiny-cls/io.json"));
    ref_ = nlohmann::json::parse(in);
    comm_ = dist::MakeMpiCommunicator(testing::Context());
  }
  model::SequenceClassifier model_;
  std::map<std::string, torch::Tensor> io_;
  nlohmann::json ref_;
  std::unique_ptr<dist::Communicator> comm_;
};

// Both optimizer paths: ftune's own AdamW (on the CPU the one-pass host kernel, elsewhere tensor
// operations; every LibTorch) and LibTorch's fused kernel (>= 2.4).
class HfThreeStepsAdam : public HfThreeSteps, public ::testing::WithParamInterface<bool> {};

TEST_P(HfThreeStepsAdam, ParametersNormsAndLearningRatesEqualHuggingFace) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  if (GetParam() && !compat::HasFusedAdamW())
    GTEST_SKIP() << "LibTorch " << compat::TorchVersion() << " has no fused AdamW";
  TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.max_grad_norm = 1.0;
  o.optimizer.fused_adamw = GetParam();
  Trainer trainer(model_, o, comm_.get(), comm_.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(/*total_steps=*/4).ok());
  for (int s = 0; s < 3; ++s) {
    std::string p = "step" + std::to_string(s) + ".";
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]), s);
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_NEAR(st->LossSum() / st->totals.examples, ref_["step_losses"][s].get<double>(), 1e-6) << "step " << s;
    EXPECT_NEAR(st->GradNorm(), ref_["step_grad_norms_before_clip"][s].get<double>(), 1e-5) << "step " << s;
    EXPECT_FALSE(st->Skipped());
    EXPECT_DOUBLE_EQ(st->lr, ref_["step_lrs"][s].get<double>()) << "step " << s;
    // Every parameter trains, so every parameter's gradient is all-reduced (fp32).
    EXPECT_EQ(trainer.reducer().bytes_per_step(), static_cast<uint64_t>(model::CountAllParameters(*model_)) * 4u);
  }
  int checked = 0;
  for (const auto& p : model_->named_parameters()) {
    const torch::Tensor& ref = io_.at("after3." + p.key());
    if (p.key().find("k_lin.bias") != std::string::npos) {
      // k_lin.bias has an exactly zero gradient (softmax ignores a per-query constant); both sides
      // see float rounding noise (~1e-8), which Adam normalises to steps of about +-lr. So the bias
      // can only be bounded: each side moved at most sum(lr) = 2.25e-3 from the same start.
      EXPECT_LT(MaxAbsDiff(p.value(), ref), 2 * 2.25e-3 + 1e-6) << p.key();
      continue;
    }
    EXPECT_LT(MaxAbsDiff(p.value(), ref), 1e-5) << p.key();
    ++checked;
  }
  EXPECT_EQ(checked, 38);
  EXPECT_EQ(trainer.optimizer().fused(), GetParam());
  EXPECT_EQ(trainer.optimizer().step_count(), 3);
}

// The same three steps on a CUDA device (only where one is visible: the GPU machine's check,
// launch/device-check.sh): pinned asynchronous uploads, device-side clip and skip, fused kernel.
TEST_P(HfThreeStepsAdam, SameThreeStepsOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  if (GetParam() && !compat::HasFusedAdamW())
    GTEST_SKIP() << "LibTorch " << compat::TorchVersion() << " has no fused AdamW";
  const torch::Device cuda(torch::kCUDA, 0);
  model_->to(cuda);
  TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.max_grad_norm = 1.0;
  o.optimizer.fused_adamw = GetParam();
  Trainer trainer(model_, o, comm_.get(), comm_.get(), cuda);
  ASSERT_TRUE(trainer.Prepare(4).ok());
  for (int s = 0; s < 3; ++s) {
    std::string p = "step" + std::to_string(s) + ".";
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]), s);
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_NEAR(st->LossSum() / st->totals.examples, ref_["step_losses"][s].get<double>(), 1e-5) << "step " << s;
    EXPECT_NEAR(st->GradNorm(), ref_["step_grad_norms_before_clip"][s].get<double>(), 1e-4) << "step " << s;
  }
  for (const auto& p : model_->named_parameters()) {
    if (p.key().find("k_lin.bias") != std::string::npos) continue;  // see the CPU test
    EXPECT_LT(MaxAbsDiff(p.value().cpu(), io_.at("after3." + p.key())), 2e-5) << p.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, HfThreeStepsAdam, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Fused" : "Ftune"; });

// A step whose gradients are not finite changes nothing (weights, moments, step count) on either
// optimizer path, without the host having to look, and the next finite step proceeds normally.
TEST_P(HfThreeStepsAdam, NonFiniteStepIsSkippedOnTheDevice) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  if (GetParam() && !compat::HasFusedAdamW())
    GTEST_SKIP() << "LibTorch " << compat::TorchVersion() << " has no fused AdamW";
  TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.fused_adamw = GetParam();
  Trainer trainer(model_, o, comm_.get(), comm_.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(4).ok());
  data::HostBatch b = BatchFrom(io_["step0.input_ids"], io_["step0.attention_mask"], io_["step0.labels"]);
  ASSERT_TRUE(trainer.Step(b, 0).ok());
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model_->named_parameters()) before[p.key()] = p.value().detach().clone();
  std::vector<torch::Tensor> m_before, v_before;
  for (auto& t : trainer.optimizer().exp_avg()) m_before.push_back(t.clone());
  for (auto& t : trainer.optimizer().exp_avg_sq()) v_before.push_back(t.clone());
  // An infinite input to the classifier makes every head gradient NaN.
  torch::Tensor w = model_->named_parameters()["pre_classifier.weight"];
  const float saved = w[0][0].item<float>();
  {
    torch::NoGradGuard g;
    w[0][0].fill_(std::numeric_limits<float>::infinity());
  }
  before["pre_classifier.weight"][0][0].fill_(std::numeric_limits<float>::infinity());
  auto st = trainer.Step(b, 1);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_FALSE(std::isfinite(st->GradNorm()));
  EXPECT_TRUE(st->Skipped());
  for (const auto& p : model_->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << p.key();
  for (size_t i = 0; i < m_before.size(); ++i) {
    EXPECT_TRUE(torch::equal(trainer.optimizer().exp_avg()[i], m_before[i]));
    EXPECT_TRUE(torch::equal(trainer.optimizer().exp_avg_sq()[i], v_before[i]));
  }
  EXPECT_EQ(trainer.optimizer().step_count(), 1);
  {
    torch::NoGradGuard g;
    w[0][0].fill_(saved);
  }
  st = trainer.Step(b, 2);
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->Skipped());
  EXPECT_EQ(trainer.optimizer().step_count(), 2);
}

data::HostBatch Rows(const data::HostBatch& b, int64_t begin, int64_t end) {
  data::HostBatch m;
  m.rows = end - begin;
  m.seq_len = b.seq_len;
  m.global_examples = b.global_examples;
  m.input_ids.assign(b.input_ids.begin() + begin * b.seq_len, b.input_ids.begin() + end * b.seq_len);
  m.attention_mask.assign(b.attention_mask.begin() + begin * b.seq_len, b.attention_mask.begin() + end * b.seq_len);
  m.labels.assign(b.labels.begin() + begin, b.labels.begin() + end);
  for (int64_t i = begin * b.seq_len; i < end * b.seq_len; ++i) m.real_tokens += b.attention_mask[i];
  return m;
}

// Gradient accumulation is exact: the batch cut into micro-batches of unequal sizes (1 + the rest,
// and an empty one) gives the one-batch gradient and update, because each micro-batch's loss is
// divided by the examples of the whole global batch, not by its own (the per-micro-batch mean
// would weight the lone example as much as all the others together).
TEST_F(HfThreeSteps, AccumulatedMicroBatchesGiveTheWholeBatchGradient) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  const data::HostBatch whole = BatchFrom(io_["step0.input_ids"], io_["step0.attention_mask"], io_["step0.labels"]);
  ASSERT_GE(whole.rows, 3);
  TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.max_grad_norm = 0;  // the raw gradients stay in the buffers
  auto other = model::LoadPretrained(HfFixture("hf-tiny-cls"), model::ModelOptions{false});
  ASSERT_TRUE(other.ok());
  Trainer one(model_, o, comm_.get(), comm_.get(), torch::kCPU);
  Trainer accumulated(other->model, o, comm_.get(), comm_.get(), torch::kCPU);
  ASSERT_TRUE(one.Prepare(4).ok());
  ASSERT_TRUE(accumulated.Prepare(4).ok());
  auto a = one.Step(whole, 0);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::vector<data::HostBatch> micro = {Rows(whole, 0, 1), Rows(whole, 1, whole.rows), Rows(whole, 0, 0)};
  auto b = accumulated.Step(micro, 0);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NEAR(a->LossSum(), b->LossSum(), 1e-5);
  EXPECT_EQ(b->totals.examples, whole.rows);
  EXPECT_LT(MaxAbsDiff(one.flat().groups()[0].grads, accumulated.flat().groups()[0].grads), 1e-6);
  EXPECT_GT(one.flat().groups()[0].grads.abs().max().item<double>(), 1e-3) << "gradients should not be ~0";
  // (The weights after the update are not compared: Adam's first step moves each weight by about
  // lr * sign(g), which float noise flips where a gradient is ~0.)
}

// HF's label_smoothing_factor and torch's class weights, by hand: logits (0, ln 3) give
// p = (1/4, 3/4). Label 1 with smoothing 0.1: 0.9 * -ln(3/4) + 0.1 * (-ln(1/4) - ln(3/4)) / 2.
TEST(CrossEntropySum, LabelSmoothingAndClassWeightsByHand) {
  const torch::Tensor logits = torch::tensor({{0.0, std::log(3.0)}, {0.0, std::log(3.0)}}, torch::kDouble);
  const double nll0 = -std::log(0.25), nll1 = -std::log(0.75);
  EXPECT_NEAR(CrossEntropySum(logits, torch::tensor({1, 0})).item<double>(), nll1 + nll0, 1e-12);
  const double smooth = (nll0 + nll1) / 2;
  EXPECT_NEAR(CrossEntropySum(logits.narrow(0, 0, 1), torch::tensor({1}), 0.1).item<double>(),
              0.9 * nll1 + 0.1 * smooth, 1e-12);
  // Weights (1, 3): labels (0, 1) -> 1 * nll0 + 3 * nll1 (the trainer divides by 1 + 3).
  const torch::Tensor w = torch::tensor({1.0, 3.0}, torch::kDouble);
  EXPECT_NEAR(CrossEntropySum(logits, torch::tensor({0, 1}), 0.0, w).item<double>(), nll0 + 3 * nll1, 1e-12);
}

TEST_F(HfThreeSteps, ClassWeightsCountInTheUnitsAndAreChecked) {
  auto weighted = ClassificationObjective::Create(model_, ClassificationLoss{0.0, {1.0, 3.0}});
  ASSERT_TRUE(weighted.ok()) << weighted.status();
  data::HostBatch b;
  b.rows = 3;
  b.labels = {0, 1, 1};
  b.global_examples = 3;
  EXPECT_DOUBLE_EQ((*weighted)->Units(b), 7.0);
  auto global = (*weighted)->GlobalUnits(absl::MakeConstSpan(&b, 1), *comm_);
  ASSERT_TRUE(global.ok());
  EXPECT_DOUBLE_EQ(*global, 7.0 * comm_->world_size());
  EXPECT_FALSE(ClassificationObjective::Create(model_, ClassificationLoss{0.0, {1.0}}).ok());
  EXPECT_FALSE(ClassificationObjective::Create(model_, ClassificationLoss{0.0, {1.0, -1.0}}).ok());
  EXPECT_FALSE(ClassificationObjective::Create(model_, ClassificationLoss{1.0, {}}).ok());
}

// The fp16 loss scaler (GradScaler's rules) on fp32, where its arithmetic is exact with a power-of-2
// scale: scaled-then-unscaled steps equal plain steps (so the clip sees unscaled gradients), an
// injected overflow skips the step and halves the scale, and growth_interval good steps double it.
TEST_F(HfThreeSteps, LossScalerUnscalesBeforeTheClipBacksOffOnOverflowAndGrows) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  auto other = model::LoadPretrained(HfFixture("hf-tiny-cls"), model::ModelOptions{false});
  ASSERT_TRUE(other.ok());
  TrainOptions o;
  o.optimizer.learning_rate = 1e-3;
  o.optimizer.max_grad_norm = 0.5;  // clips: a clip before the unscale would give other weights
  Trainer plain(model_, o, comm_.get(), comm_.get(), torch::kCPU);
  o.optimizer.loss_scaling = true;
  o.optimizer.grad_scaler.growth_interval = 2;
  Trainer scaled(other->model, o, comm_.get(), comm_.get(), torch::kCPU);
  ASSERT_TRUE(plain.Prepare(10).ok());
  ASSERT_TRUE(scaled.Prepare(10).ok());
  ASSERT_NE(scaled.scaler(), nullptr);
  EXPECT_EQ(scaled.scaler()->scale(), 65536.0);
  const data::HostBatch b = BatchFrom(io_["step0.input_ids"], io_["step0.attention_mask"], io_["step0.labels"]);
  for (int i = 0; i < 2; ++i) {
    auto p = plain.Step(b, i), q = scaled.Step(b, i);
    ASSERT_TRUE(p.ok() && q.ok());
    EXPECT_FLOAT_EQ(static_cast<float>(p->GradNorm()), static_cast<float>(q->GradNorm())) << "step " << i;
  }
  EXPECT_LT(MaxAbsDiff(plain.flat().groups()[0].params, scaled.flat().groups()[0].params), 1e-7);
  EXPECT_EQ(scaled.scaler()->scale(), 131072.0) << "2 good steps = growth_interval: doubled";
  EXPECT_EQ(scaled.scaler()->growth_tracker(), 0);
  // Overflow: an infinite weight makes every head gradient non-finite.
  torch::Tensor w = other->model->named_parameters()["pre_classifier.weight"];
  const torch::Tensor before = scaled.flat().groups()[0].params.clone();
  const float saved = w[0][0].item<float>();
  {
    torch::NoGradGuard g;
    w[0][0].fill_(std::numeric_limits<float>::infinity());
  }
  auto q = scaled.Step(b, 2);
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->Skipped());
  EXPECT_EQ(scaled.scaler()->scale(), 65536.0) << "backed off by half";
  {
    torch::NoGradGuard g;
    w[0][0].fill_(saved);
  }
  EXPECT_TRUE(torch::equal(scaled.flat().groups()[0].params.masked_fill(before.isinf(), 0),
                           before.masked_fill(before.isinf(), 0)))
      << "a skipped step leaves the weights";
  q = scaled.Step(b, 3);
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(q->Skipped());
  EXPECT_EQ(scaled.scaler()->growth_tracker(), 1);
  scaled.scaler()->Restore(1024.0, 1);
  EXPECT_EQ(scaled.scaler()->scale(), 1024.0);
  EXPECT_EQ(scaled.scaler()->growth_tracker(), 1);
}

TEST_F(HfThreeSteps, FrozenParametersNeverMoveAndNeverCrossTheWire) {
  model::LoraOptions lora;
  lora.rank = 4;
  lora.alpha = 8;
  ASSERT_TRUE(model::SelectTrainable(*model_, model::Method::kLora, lora).ok());
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model_->named_parameters()) before[p.key()] = p.value().clone();
  TrainOptions o;
  o.optimizer.learning_rate = 1e-2;
  Trainer trainer(model_, o, comm_.get(), comm_.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(4).ok());
  std::set<std::string> in_buckets;
  for (const auto& g : trainer.flat().groups()) in_buckets.insert(g.names.begin(), g.names.end());
  EXPECT_EQ(trainer.flat().numel(), 2146);  // PEFT's count for this adapter
  for (int s = 0; s < 3; ++s) {
    std::string p = "step" + std::to_string(s) + ".";
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]), s);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(trainer.reducer().bytes_per_step(), 2146u * 4u);
  }
  for (const auto& p : model_->named_parameters()) {
    if (p.value().requires_grad()) {
      EXPECT_TRUE(in_buckets.count(p.key())) << p.key();
      if (p.key().find("lora_A") == std::string::npos) continue;  // B moves too, A surely does
      EXPECT_FALSE(torch::equal(p.value(), before[p.key()])) << p.key() << " should have trained";
    } else {
      EXPECT_FALSE(in_buckets.count(p.key())) << p.key() << " is frozen but in a gradient bucket";
      EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << p.key() << " is frozen but changed";
    }
  }
}

}  // namespace
}  // namespace ftune::train

// The training step against Hugging Face Trainer's own three steps (tests/fixtures/hf/hf-tiny-cls:
// AdamW lr 1e-3, linear decay over 4 steps, clip 1.0, order backward/clip/step/schedule), and the
// pieces it is made of.
#include "train/trainer.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "tests/model/reference.h"
#include "tests/train/train_test_env.h"

namespace ftune::train {
namespace {

using ::ftune::testing::HfFixture;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;

data::HostBatch BatchFrom(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& labels) {
  data::HostBatch b;
  b.rows = ids.size(0);
  b.seq_len = ids.size(1);
  b.global_examples = b.rows;
  torch::Tensor i = ids.to(torch::kLong).contiguous(), m = mask.to(torch::kLong).contiguous(),
                l = labels.to(torch::kLong).contiguous();
  b.input_ids.assign(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel());
  b.attention_mask.assign(m.data_ptr<int64_t>(), m.data_ptr<int64_t>() + m.numel());
  b.labels.assign(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  b.real_tokens = m.sum().item<int64_t>();
  return b;
}

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
  model::DistilBertForSequenceClassification model_{nullptr};
  std::map<std::string, torch::Tensor> io_;
  nlohmann::json ref_;
  std::unique_ptr<dist::Communicator> comm_;
};

TEST_F(HfThreeSteps, ParametersNormsAndLearningRatesEqualHuggingFace) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "single-process reference";
  TrainOptions o;
  o.learning_rate = 1e-3;
  o.max_grad_norm = 1.0;
  Trainer trainer(model_, o, comm_.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(/*total_steps=*/4).ok());
  for (int s = 0; s < 3; ++s) {
    std::string p = "step" + std::to_string(s) + ".";
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_NEAR(st->loss_sum / st->examples, ref_["step_losses"][s].get<double>(), 1e-6) << "step " << s;
    EXPECT_NEAR(st->grad_norm, ref_["step_grad_norms_before_clip"][s].get<double>(), 1e-5) << "step " << s;
    EXPECT_DOUBLE_EQ(st->lr, ref_["step_lrs"][s].get<double>()) << "step " << s;
    // Every parameter trains, so every parameter's gradient is all-reduced (fp32).
    EXPECT_EQ(st->comm_bytes, static_cast<uint64_t>(model::CountAllParameters(*model_)) * 4u);
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
}

TEST_F(HfThreeSteps, FrozenParametersNeverMoveAndNeverCrossTheWire) {
  model::LoraOptions lora;
  lora.rank = 4;
  lora.alpha = 8;
  ASSERT_TRUE(model::SelectTrainable(model_, model::Method::kLora, lora).ok());
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model_->named_parameters()) before[p.key()] = p.value().clone();
  TrainOptions o;
  o.learning_rate = 1e-2;
  Trainer trainer(model_, o, comm_.get(), torch::kCPU);
  ASSERT_TRUE(trainer.Prepare(4).ok());
  std::set<std::string> in_buckets;
  for (const auto& g : trainer.flat().groups()) in_buckets.insert(g.names.begin(), g.names.end());
  EXPECT_EQ(trainer.flat().numel(), 2146);  // PEFT's count for this adapter
  for (int s = 0; s < 3; ++s) {
    std::string p = "step" + std::to_string(s) + ".";
    auto st = trainer.Step(BatchFrom(io_[p + "input_ids"], io_[p + "attention_mask"], io_[p + "labels"]));
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->comm_bytes, 2146u * 4u);
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

TEST(Schedule, LinearWarmupAndDecayLikeHuggingFace) {
  LinearSchedule s(1.0, /*warmup=*/2, /*total=*/10);
  EXPECT_DOUBLE_EQ(s.LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(s.LearningRate(1), 0.5);
  EXPECT_DOUBLE_EQ(s.LearningRate(2), 1.0);
  EXPECT_DOUBLE_EQ(s.LearningRate(6), 0.5);
  EXPECT_DOUBLE_EQ(s.LearningRate(10), 0.0);
  EXPECT_EQ(ResolveWarmupSteps(0, 0.1, 750), 75);
  EXPECT_EQ(ResolveWarmupSteps(5, 0.1, 750), 5);
}

TEST(FlatParameters, WeightDecayGroupsExcludeBiasesAndLayerNorms) {
  auto m = model::BuildFromConfig(io::DefaultDistilBertConfig());
  ASSERT_TRUE(model::SelectTrainable(m.model, model::Method::kFull, {}).ok());
  auto flat = FlatParameters::Build(*m.model, 0.01);
  ASSERT_TRUE(flat.ok());
  ASSERT_EQ(flat->groups().size(), 2u);
  const auto& plain = flat->groups()[0];
  const auto& decay = flat->groups()[1];
  EXPECT_EQ(plain.weight_decay, 0.0);
  EXPECT_EQ(decay.weight_decay, 0.01);
  EXPECT_THAT(plain.names, ::testing::Contains("distilbert.embeddings.LayerNorm.weight"));
  EXPECT_THAT(plain.names, ::testing::Contains("distilbert.transformer.layer.0.sa_layer_norm.weight"));
  EXPECT_THAT(plain.names, ::testing::Contains("classifier.bias"));
  EXPECT_THAT(decay.names, ::testing::Contains("distilbert.transformer.layer.0.attention.q_lin.weight"));
  EXPECT_EQ(flat->numel(), 66955010);
  // Parameters are views into the flat buffers: writing the buffer moves the parameter.
  auto params = m.model->named_parameters();
  torch::NoGradGuard g;
  flat->groups()[1].params.fill_(3.0);
  EXPECT_EQ(params["classifier.weight"].max().item<float>(), 3.0f);
  flat->groups()[1].grads.fill_(2.0);
  EXPECT_EQ(params["classifier.weight"].grad().min().item<float>(), 2.0f);
}

}  // namespace
}  // namespace ftune::train

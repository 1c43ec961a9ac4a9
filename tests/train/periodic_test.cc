// The periodic concerns of a run, each on its own and without mpirun: when to log and to
// evaluate (HF's logging_steps / eval_strategy), the best model and early stopping (HF's
// TrainerState.best_metric and EarlyStoppingCallback, in their order of comparison), and the
// options' validation (each error names the flag to change).
#include <cmath>
#include <functional>
#include <tuple>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "train/best_model.h"
#include "train/evaluator.h"
#include "train/train_options.h"

namespace ftune::train {
namespace {

using At = LoopPoint::At;
using ::testing::HasSubstr;

TEST(Logging, EveryNStepsAndTheLastStepOfAnEpochOrRun) {
  LoggingOptions o;
  o.logging_steps = 4;
  EXPECT_TRUE(o.ShouldLog({At::kStep, 8, false}));
  EXPECT_FALSE(o.ShouldLog({At::kStep, 9, false}));
  EXPECT_TRUE(o.ShouldLog({At::kStep, 9, /*ends=*/true}));
  EXPECT_FALSE(o.ShouldLog({At::kEpochEnd, 8, true}));  // the epoch line is its own record
}

TEST(Evaluator, StepsEveryNStepsEpochAtEachEpochsEndNoNever) {
  EvalOptions o;
  o.strategy = IntervalStrategy::kSteps;
  o.steps = 5;
  EXPECT_FALSE(Evaluator(o, nullptr).ShouldEvaluate({At::kStep, 5, false}));  // no eval set: nothing to score
  auto ds = data::TokenDataset::Open(std::string(FTUNE_FIXTURES_DIR) + "/prep/h5py_written.h5");
  ASSERT_TRUE(ds.ok()) << ds.status();
  const data::TokenDataset* some = ds->get();
  const Evaluator steps(o, some);
  EXPECT_TRUE(steps.ShouldEvaluate({At::kStep, 10, false}));
  EXPECT_TRUE(steps.ShouldEvaluate({At::kStep, 10, true}));
  EXPECT_FALSE(steps.ShouldEvaluate({At::kStep, 11, true}));
  EXPECT_FALSE(steps.ShouldEvaluate({At::kEpochEnd, 10, true}));
  o.strategy = IntervalStrategy::kEpoch;
  const Evaluator epochs(o, some);
  EXPECT_FALSE(epochs.ShouldEvaluate({At::kStep, 10, true}));
  EXPECT_TRUE(epochs.ShouldEvaluate({At::kEpochEnd, 10, false}));
  o.strategy = IntervalStrategy::kNo;
  EXPECT_FALSE(Evaluator(o, some).ShouldEvaluate({At::kEpochEnd, 10, true}));
}

EvalStats Accuracy(int64_t correct, double loss = 0.5) {
  EvalStats e;
  e.correct = correct;
  e.total = 100;
  e.loss_sum = loss * 100;
  e.num_labels = 2;
  e.confusion = {correct, 0, 100 - correct, 0};
  return e;
}

class BestModelTest : public ::testing::Test {
 protected:
  BestModelTest() : lin_(3, 2) {
    auto flat = FlatParameters::Build(*lin_, 0.0);
    EXPECT_TRUE(flat.ok());
    flat_.emplace(std::move(*flat));
  }
  void SetWeights(float v) {
    torch::NoGradGuard g;
    for (auto& grp : flat_->groups()) grp.params.fill_(v);
  }
  torch::nn::Linear lin_;
  std::optional<FlatParameters> flat_;
};

// HF's EarlyStoppingCallback: an evaluation resets the patience only when it beats the best by more
// than the threshold; the best moves on any strict improvement (so a tiny gain is a new best that
// still counts towards stopping). Patience 2, threshold 0.015 on accuracy.
TEST_F(BestModelTest, EarlyStoppingCountsEvaluationsThatDoNotBeatTheBestByTheThreshold) {
  EvalOptions o;
  o.metric = EvalMetric::kAccuracy;
  o.early_stopping_patience = 2;
  o.early_stopping_threshold = 0.015;
  BestModel best(o);
  struct Eval {
    int64_t correct;
    bool improved, stop;
    int64_t patience;
  } evals[] = {{70, true, false, 0},   // first: the best
               {75, true, false, 0},   // +0.05: a real improvement
               {75, false, false, 1},  // equal
               {76, true, true, 2}};   // +0.01 is within the threshold: a new best, yet the 2nd miss
  int64_t step = 0;
  for (const auto& e : evals) {
    step += 10;
    auto v = best.Observe(Accuracy(e.correct), step, *flat_);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->improved, e.improved) << "step " << step;
    EXPECT_EQ(v->stop, e.stop) << "step " << step;
    EXPECT_EQ(best.state().patience_counter, e.patience) << "step " << step;
  }
  EXPECT_EQ(*best.state().best_metric, 0.76);
  EXPECT_EQ(best.state().best_step, 40);
  EXPECT_TRUE(best.state().stopped);
}

// The loss is better when lower (HF's default direction for it); load_best_model_at_end keeps the
// best step's weights and puts them back at the end, and a checkpoint carries them when they are
// not the current ones.
TEST_F(BestModelTest, KeepsTheBestWeightsAndLoadsThemAtTheEnd) {
  EvalOptions o;
  o.metric = EvalMetric::kLoss;
  o.greater_is_better = false;
  o.load_best_model_at_end = true;
  BestModel best(o);
  SetWeights(1.0f);
  ASSERT_TRUE(best.Observe(Accuracy(60, 0.40), 10, *flat_).ok());
  SetWeights(2.0f);
  auto v = best.Observe(Accuracy(90, 0.45), 20, *flat_);  // higher accuracy, but a worse loss
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->improved);
  EXPECT_EQ(best.state().best_step, 10);
  ASSERT_EQ(best.WeightsToSave(20).size(), flat_->groups().size());
  EXPECT_TRUE(best.WeightsToSave(10).empty());  // the best is the current step: nothing extra to store
  auto loaded = best.LoadInto(*flat_, 20);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(*loaded);
  EXPECT_EQ(flat_->groups()[0].params.max().item<float>(), 1.0f);
  EXPECT_FALSE(*best.LoadInto(*flat_, 10));  // the last step is the best: nothing to load
}

TEST_F(BestModelTest, StateRoundTripsThroughItsCheckpointFieldsAndRestoreChecksTheWeights) {
  EvalOptions o;
  o.metric = EvalMetric::kMacroF1;
  o.load_best_model_at_end = true;
  BestModel best(o);
  ASSERT_TRUE(best.Observe(Accuracy(80), 10, *flat_).ok());
  nlohmann::json j;
  best.state().ToJson(&j);
  EXPECT_EQ(j["best_step"], 10);
  const BestModelState back = BestModelState::FromJson(j);
  EXPECT_EQ(back.best_metric, best.state().best_metric);
  EXPECT_EQ(back.best_step, 10);
  EXPECT_FALSE(back.stopped);
  // A checkpoint written at step 20 without the best weights cannot give the best model back...
  BestModel resumed(o);
  absl::Status st = resumed.Restore(back, {}, *flat_, 20, "ckpt/step-20");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("ckpt/step-20 holds no best-model weights"));
  // ...but one written at the best step is its own best model.
  EXPECT_TRUE(resumed.Restore(back, {}, *flat_, 10, "ckpt/step-10").ok());
}

TEST(Options, EachErrorNamesTheFlag) {
  struct Case {
    std::function<void(TrainOptions&)> set;
    bool has_eval;
    const char* says;
  } cases[] = {
      {[](TrainOptions& o) { o.data.batch_size = 0; }, true, "--batch_size must be > 0"},
      {[](TrainOptions& o) { o.data.max_steps = 0; }, true, "--max_steps must be > 0"},
      {[](TrainOptions& o) { o.optimizer.max_grad_norm = -1; }, true, "--max_grad_norm must be >= 0"},
      {[](TrainOptions& o) { o.optimizer.learning_rate = NAN; }, true, "--learning_rate must be > 0"},
      {[](TrainOptions& o) { o.optimizer.adam.eps = 0; }, true, "--adam_epsilon must be > 0"},
      {[](TrainOptions& o) { o.eval.batch_size = 0; }, true, "--eval_batch_size must be > 0"},
      {[](TrainOptions& o) { o.eval.strategy = IntervalStrategy::kSteps; }, true, "--eval_steps must be > 0"},
      {[](TrainOptions& o) { o.eval.strategy = IntervalStrategy::kSteps, o.eval.steps = 5; }, false,
       "--eval_strategy=steps needs --eval_data"},
      {[](TrainOptions& o) { o.eval.load_best_model_at_end = true; }, true, "need a --metric_for_best_model"},
      {[](TrainOptions& o) { o.logging.logging_steps = -3; }, true, "--logging_steps must be > 0"},
      {[](TrainOptions& o) { o.comm.bucket_bytes = 10; }, true, "--bucket_mb"},
  };
  for (const auto& c : cases) {
    TrainOptions o;
    ASSERT_TRUE(o.Validate(true).ok());
    c.set(o);
    absl::Status st = o.Validate(c.has_eval);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.says));
  }
  TrainOptions no_eval;
  no_eval.eval.strategy = IntervalStrategy::kNo;
  EXPECT_TRUE(no_eval.Validate(false).ok());
}

TEST(Options, EnumFlagsParseHfNamesAndRefuseOthers) {
  IntervalStrategy s;
  std::string error;
  EXPECT_TRUE(AbslParseFlag("steps", &s, &error));
  EXPECT_EQ(s, IntervalStrategy::kSteps);
  EXPECT_FALSE(AbslParseFlag("step", &s, &error));
  EXPECT_EQ(error, "not one of no, steps, epoch");
  EvalMetric m;
  EXPECT_TRUE(AbslParseFlag("eval_macro_f1", &m, &error));
  EXPECT_EQ(m, EvalMetric::kMacroF1);
  EXPECT_FALSE(AbslParseFlag("f1", &m, &error));
  LrSchedulerType t;
  EXPECT_TRUE(AbslParseFlag("cosine_with_restarts", &t, &error));
  EXPECT_FALSE(AbslParseFlag("cos", &t, &error));
  EXPECT_THAT(error, HasSubstr("linear, cosine"));
  EXPECT_EQ(AbslUnparseFlag(IntervalStrategy::kEpoch), "epoch");
}

TEST(Options, SchedulerArgumentsMustBeTheSchedulesOwn) {
  auto cosine = ParseLrSchedulerKwargs(LrSchedulerType::kCosine, R"({"num_cycles": 2})");
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_EQ(*cosine->num_cycles, 2.0);
  auto poly = ParseLrSchedulerKwargs(LrSchedulerType::kPolynomial, R"({"power": 2, "lr_end": 1e-6})");
  ASSERT_TRUE(poly.ok()) << poly.status();
  EXPECT_EQ(poly->power, 2.0);
  EXPECT_EQ(poly->lr_end, 1e-6);
  for (auto [type, text, says] : std::vector<std::tuple<LrSchedulerType, const char*, const char*>>{
           {LrSchedulerType::kCosine, R"({"power": 2})", "\"power\" is not an argument of the cosine schedule"},
           {LrSchedulerType::kLinear, R"({"num_cycles": 1})", "not an argument of the linear schedule"},
           {LrSchedulerType::kPolynomial, R"({"warmup": 1})", "unknown argument \"warmup\""},
           {LrSchedulerType::kPolynomial, R"({"power": "2"})", "power must be a number"},
           {LrSchedulerType::kCosine, R"({"num_cycles": -1})", "num_cycles must be > 0"},
           {LrSchedulerType::kCosine, "[1]", "not a JSON object"}}) {
    auto o = ParseLrSchedulerKwargs(type, text);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(says));
  }
}

}  // namespace
}  // namespace ftune::train

// RunState: the position and sums a checkpoint stores, their JSON (exact round trip: a resumed run
// must report the same numbers as an uninterrupted one), and closing an epoch.
#include "train/run_state.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tests/train/train_test_env.h"

namespace ftune::train {
namespace {

RunState Sample() {
  RunState s;
  s.global_step = 17;
  s.epoch = 1;
  s.step_in_epoch = 5;
  s.eval_pending = true;
  s.epoch_totals = {12.345678901234567, 40, 4000, 4100, 40};
  s.window = {0.1 + 0.2, 8, 800, 801, 8};
  s.epoch_seconds = 1.0 / 3.0;
  s.train_seconds = 2.5;
  s.comm_seconds = 0.125;
  s.run_totals = {33.3, 96, 9000, 9300, 96};
  EpochRecord e;
  e.epoch = 1;
  e.step = 12;
  e.totals = {33.3, 96, 9000, 9300, 96};
  e.seconds = 2.5;
  EvalStats ev;
  ev.correct = 70;
  ev.total = 96;
  ev.loss_sum = 1.0 / 7.0;
  ev.seconds = 0.5;
  ev.num_labels = 2;
  ev.confusion = {40, 10, 16, 30};
  e.eval = ev;
  s.epochs.push_back(e);
  return s;
}

TEST(Totals, SumsMeansAndPadding) {
  Totals a{2, 4, 30, 40, 4}, b{1, 2, 10, 20, 2};
  a += b;
  EXPECT_DOUBLE_EQ(a.loss, 3);
  EXPECT_DOUBLE_EQ(a.MeanLoss(), 0.5);
  EXPECT_DOUBLE_EQ(a.PaddingFraction(), 1.0 - 40.0 / 60.0);
  EXPECT_EQ(Totals().MeanLoss(), 0.0);
  EXPECT_EQ(Totals().PaddingFraction(), 0.0);
  // Masked LM: the mean is per masked token, not per example.
  Totals mlm{30, 4, 400, 400, 60};
  EXPECT_DOUBLE_EQ(mlm.MeanLoss(), 0.5);
}

TEST(Totals, SumOverOneRankIsItself) {
  auto comm = dist::MakeMpiCommunicator(testing::Context());
  Totals t{1.5, 3, 7, 9, 3};
  auto s = t.SumOverRanks(*comm);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->loss * comm->world_size(), 1.5 * comm->world_size());
  if (comm->world_size() == 1) {
    EXPECT_EQ(s->padded_tokens, 9);
  }
}

TEST(RunState, JsonRoundTripIsExact) {
  const RunState s = Sample();
  auto back = RunState::FromJson(nlohmann::json::parse(s.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->global_step, 17);
  EXPECT_EQ(back->epoch, 1);
  EXPECT_EQ(back->step_in_epoch, 5);
  EXPECT_TRUE(back->eval_pending);
  EXPECT_EQ(back->epoch_totals.loss, s.epoch_totals.loss);  // bit-exact through the text
  EXPECT_EQ(back->window.loss, s.window.loss);
  EXPECT_EQ(back->epoch_seconds, s.epoch_seconds);
  EXPECT_EQ(back->run_totals.padded_tokens, 9300);
  ASSERT_EQ(back->epochs.size(), 1u);
  const EpochRecord& e = back->epochs[0];
  EXPECT_EQ(e.train_loss(), s.epochs[0].train_loss());
  ASSERT_TRUE(e.eval.has_value());
  EXPECT_EQ(e.eval->correct, 70);
  EXPECT_EQ(e.eval->loss_sum, 1.0 / 7.0);
  EXPECT_EQ(e.eval->loss(), s.epochs[0].eval->loss());
  EXPECT_EQ(e.eval->confusion, s.epochs[0].eval->confusion);
}

// Per-class precision, recall, F1 and macro-F1 from a hand-counted confusion matrix (rows: true
// label, columns: prediction), with scikit-learn's zero_division=0 for a class never predicted
// correctly nor present.
TEST(EvalStats, PerClassMetricsFromAHandCountedConfusionMatrix) {
  EvalStats e;
  e.num_labels = 3;
  e.confusion = {5, 1, 0,   // 6 of class 0: 5 right, 1 called class 1
                 2, 3, 1,   // 6 of class 1: 3 right
                 0, 0, 0};  // class 2: none, but once predicted
  e.correct = 8;
  e.total = 12;
  EXPECT_EQ(e.support(0), 6);
  EXPECT_EQ(e.support(2), 0);
  EXPECT_DOUBLE_EQ(e.precision(0), 5.0 / 7);
  EXPECT_DOUBLE_EQ(e.recall(0), 5.0 / 6);
  EXPECT_DOUBLE_EQ(e.f1(0), 10.0 / 13);  // 2 (5/7)(5/6) / (5/7 + 5/6)
  EXPECT_DOUBLE_EQ(e.precision(1), 3.0 / 4);
  EXPECT_DOUBLE_EQ(e.recall(1), 1.0 / 2);
  EXPECT_DOUBLE_EQ(e.f1(1), 3.0 / 5);
  EXPECT_EQ(e.precision(2), 0.0);
  EXPECT_EQ(e.f1(2), 0.0);
  EXPECT_DOUBLE_EQ(e.macro_f1(), (10.0 / 13 + 3.0 / 5) / 3);
  EXPECT_DOUBLE_EQ(*e.Metric("eval_macro_f1"), e.macro_f1());
  EXPECT_DOUBLE_EQ(*e.Metric("accuracy"), 8.0 / 12);
  EXPECT_FALSE(e.Metric("f1_weighted").ok());
  const nlohmann::json j = e.ToJson();
  EXPECT_EQ(j["eval_confusion_matrix"], nlohmann::json({{5, 1, 0}, {2, 3, 1}, {0, 0, 0}}));
  EXPECT_EQ(j["eval_per_class"]["support"], nlohmann::json({6, 6, 0}));
  EXPECT_DOUBLE_EQ(j["eval_per_class"]["recall"][1].get<double>(), 0.5);
  EXPECT_EQ(EvalStats::FromJson(j).confusion, e.confusion);
  // Masked LM has no classes: no macro_f1 to select.
  EvalStats mlm;
  EXPECT_FALSE(mlm.Metric("macro_f1").ok());
  EXPECT_FALSE(mlm.ToJson().contains("eval_macro_f1"));
}

TEST(EpochRecord, JsonCarriesWhatResultsReaderUse) {
  const nlohmann::json j = Sample().epochs[0].ToJson();
  EXPECT_DOUBLE_EQ(j["eval_accuracy"].get<double>(), 70.0 / 96.0);
  EXPECT_DOUBLE_EQ(j["train_loss"].get<double>(), 33.3 / 96);
  EXPECT_DOUBLE_EQ(j["samples_per_second"].get<double>(), 96 / 2.5);
  EXPECT_DOUBLE_EQ(j["padding_fraction"].get<double>(), 1.0 - 9000.0 / 9300.0);
}

// Checkpoints written before the sums and eval counts were flattened still resume.
TEST(RunState, ReadsTheEarlierCheckpointLayout) {
  auto j = nlohmann::json::parse(R"({
    "global_step": 24, "epoch": 2, "step_in_epoch": 0, "eval_pending": false,
    "epoch_loss": 0, "epoch_examples": 0, "epoch_tokens": 0, "epoch_padded_tokens": 0,
    "window_loss": 0, "window_examples": 0, "epoch_seconds": 0, "train_seconds": 4.0,
    "comm_seconds": 0.5, "examples_total": 192, "tokens_total": 18000,
    "epochs": [{"epoch": 1, "step": 12, "train_loss": 0.5, "seconds": 2.0, "samples_per_second": 48.0,
                "tokens_per_second": 4500.0, "tokens": 9000, "padded_tokens": 9300,
                "eval": {"correct": 70, "total": 96, "loss_sum": 40.0, "seconds": 0.5}},
               {"epoch": 2, "step": 24, "train_loss": 0.25, "seconds": 2.0, "samples_per_second": 48.0,
                "tokens_per_second": 4500.0, "tokens": 9000, "padded_tokens": 9300}]})");
  auto s = RunState::FromJson(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->global_step, 24);
  ASSERT_EQ(s->epochs.size(), 2u);
  EXPECT_DOUBLE_EQ(s->epochs[0].totals.examples, 96);
  EXPECT_DOUBLE_EQ(s->epochs[0].train_loss(), 0.5);
  EXPECT_EQ(s->epochs[0].eval->correct, 70);
  EXPECT_FALSE(s->epochs[1].eval.has_value());
  EXPECT_DOUBLE_EQ(s->run_totals.examples, 192);
  EXPECT_DOUBLE_EQ(s->run_totals.tokens, 18000);
}

TEST(RunState, CloseEpochRecordsAndMovesToTheNextEpoch) {
  RunState s = Sample();
  s.epochs.clear();
  s.run_totals = Totals();
  s.train_seconds = 0;
  const Totals global{20, 80, 8000, 8200, 80};
  const EpochRecord& rec = s.CloseEpoch(global, std::nullopt);
  EXPECT_EQ(rec.epoch, 2);
  EXPECT_EQ(rec.step, 17);
  EXPECT_EQ(rec.seconds, 1.0 / 3.0);
  EXPECT_EQ(s.epoch, 2);
  EXPECT_EQ(s.step_in_epoch, 0);
  EXPECT_FALSE(s.eval_pending);
  EXPECT_EQ(s.epoch_totals.examples, 0);
  EXPECT_EQ(s.epoch_seconds, 0);
  EXPECT_EQ(s.run_totals.examples, 80);
  EXPECT_EQ(s.train_seconds, 1.0 / 3.0);
}

}  // namespace
}  // namespace ftune::train

namespace ftune::train {
namespace {

// Regression metrics on hand-computed numbers: x = (1, 2, 3, 4), y = (2, 4, 5, 4).
// Pearson: mean x 2.5, mean y 3.75; cov = sum (x - 2.5)(y - 3.75) = 3.5; var x = 5, var y = 4.75;
// r = 3.5 / sqrt(5 * 4.75) = 0.718184. Spearman: y's ranks with the two 4s tied at 2.5 are
// (1, 2.5, 4, 2.5), so rho = Pearson(1..4, (1, 2.5, 4, 2.5)): deviations (-1.5, -.5, .5, 1.5) and
// (-1.5, 0, 1.5, 0), cov 2.25 + 0.75 = 3, var 5 and 4.5, rho = 3 / sqrt(5 * 4.5) = 0.632456
// (scipy.stats.spearmanr gives the same).
TEST(EvalStats, RegressionPearsonAndSpearmanByHand) {
  const std::vector<double> x = {1, 2, 3, 4}, y = {2, 4, 5, 4};
  RegressionStats r;
  for (size_t i = 0; i < x.size(); ++i) {
    r.sum_x += x[i], r.sum_y += y[i], r.sum_xx += x[i] * x[i], r.sum_yy += y[i] * y[i], r.sum_xy += x[i] * y[i];
  }
  EXPECT_NEAR(r.Pearson(4), 3.5 / std::sqrt(5 * 4.75), 1e-12);
  EXPECT_NEAR(SpearmanRho(x, y), 3.0 / std::sqrt(5 * 4.5), 1e-12);
  EXPECT_NEAR(SpearmanRho(y, x), 3.0 / std::sqrt(5 * 4.5), 1e-12);  // symmetric
  EXPECT_EQ(SpearmanRho({1, 1, 1}, {1, 2, 3}), 0.0);                 // a constant side
  // MSE is the loss, the JSON round trip keeps everything, and the metrics have their names.
  EvalStats e;
  e.total = 4;
  e.loss_sum = 1 + 4 + 4 + 0;
  r.spearman = SpearmanRho(x, y);
  e.regression = r;
  const EvalStats back = EvalStats::FromJson(nlohmann::json::parse(e.ToJson().dump()));
  ASSERT_TRUE(back.regression.has_value());
  EXPECT_EQ(back.mse(), 2.25);
  EXPECT_EQ(back.pearson(), e.pearson());
  EXPECT_EQ(back.spearmanr(), e.spearmanr());
  EXPECT_EQ(*back.Metric("eval_spearmanr"), e.spearmanr());
  EXPECT_FALSE(back.Metric("accuracy").ok());
  EXPECT_FALSE(e.ToJson().contains("eval_accuracy"));
}

}  // namespace
}  // namespace ftune::train

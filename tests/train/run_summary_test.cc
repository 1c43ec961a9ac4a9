// results.json through RunSummary: every field survives the round trip, results files of earlier
// ftune versions (the model's shape under DistilBERT's names, no seed) still read, and what is not
// a results file is refused naming it.
#include "train/run_summary.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::train {
namespace {

using ::testing::HasSubstr;

TEST(RunSummary, RoundTripKeepsEveryField) {
  RunSummary s;
  s.method = "lora";
  s.seed = 43;
  s.trainable_parameters = 813314;
  s.all_parameters = 67768322;
  s.model = {"distilbert", 128, 4, 512, 4};
  s.world_size = 2;
  s.samples_per_second = 59.8;
  s.comm_bytes_per_step = 165376;
  s.step_seconds = RunSummary::Phases{0.001, 0.2, 0.3, 0.01, 0.02, 8};
  EpochRecord e;
  e.epoch = 1;
  e.step = 125;
  e.seconds = 33.0;
  e.totals = {80, 2000, 400000, 410000, 2000};
  EvalStats ev;
  ev.correct = 400;
  ev.total = 500;
  ev.num_labels = 2;
  ev.confusion = {200, 50, 50, 200};
  e.eval = ev;
  s.epochs.push_back(e);
  s.metric_for_best_model = "accuracy";
  s.best_metric = 0.8;
  s.best_step = 125;
  s.model_step = 125;
  auto back = RunSummary::FromJson(nlohmann::json::parse(s.ToJson().dump()), "results.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), s.ToJson());
  EXPECT_EQ(back->final_eval_accuracy(), 0.8);
  EXPECT_TRUE(back->seed_recorded);
}

TEST(RunSummary, ReadsEarlierResultsFiles) {
  const nlohmann::json old = nlohmann::json::parse(R"({
    "type": "summary", "method": "full", "trainable_parameters": 4782466, "all_parameters": 4782466,
    "model": {"dim": 128, "n_layers": 4, "hidden_dim": 512, "n_heads": 4},
    "samples_per_second": 49.5, "train_seconds": 40.4, "epochs": []})");
  auto s = RunSummary::FromJson(old, "old/results.json");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->model.hidden_size, 128);
  EXPECT_EQ(s->model.num_hidden_layers, 4);
  EXPECT_EQ(s->model.intermediate_size, 512);
  EXPECT_FALSE(s->seed_recorded);
  EXPECT_EQ(s->final_eval_accuracy(), -1);
}

TEST(RunSummary, RefusesWhatIsNotAResultsFile) {
  for (const char* text : {R"({"epochs": []})", R"({"method": "full"})", R"([1, 2])",
                           R"({"method": 3, "epochs": []})", R"({"method": "full", "epochs": [{"epoch": "x"}]})"}) {
    auto s = RunSummary::FromJson(nlohmann::json::parse(text), "x/results.json");
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("x/results.json")) << text;
  }
}

}  // namespace
}  // namespace ftune::train

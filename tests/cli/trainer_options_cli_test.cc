// The Hugging Face Trainer options of `ftune train`, end to end on the synthetic task (a tiny
// model without dropout, so runs compare across rank counts):
//  - gradient accumulation: 1 rank x 4 micro-batches, 2 ranks x 2 and 1 rank with the whole
//    global batch train the same model (the loss is normalised over the global batch), and
//    --resume onto another rank count keeps the global batch by changing the accumulation;
//  - eval every N steps, the best model (load_best_model_at_end: model/ scores what the best
//    evaluation scored), early stopping, and an exact resume with all of them;
//  - the confusion matrix and F1 in metrics.jsonl / `ftune eval` equal counts from `predict`.
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/tensorboard.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"

namespace ftune {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::MaxWeightDiff;
using ::ftune::testing::Mpirun;
using ::ftune::testing::Records;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

class TrainerOptions : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    const ScratchDir& d = *dir_;
    ::ftune::testing::WriteTestVocab(d / "vocab.txt", 64);
    // 203 training examples: at a global batch of 8 the last step has 3, so micro-batches are uneven.
    ::ftune::testing::WriteSyntheticJsonl(d / "train.jsonl", 203, 5);
    ::ftune::testing::WriteSyntheticJsonl(d / "eval.jsonl", 96, 6);
    for (const char* name : {"train", "eval"}) {
      CommandResult r =
          RunCommand(Ftune() + " prep --input_format=jsonl --input=" + d / (std::string(name) + ".jsonl") +
                     " --output=" + d / (std::string(name) + ".h5") + " --vocab=" + d / "vocab.txt");
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    ::ftune::testing::WriteTinyModelConfig(d / "cfg.json", /*dropout=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string Train(const std::string& launcher, const std::string& out, const std::string& extra,
                           int expect_exit = 0) {
    const ScratchDir& d = *dir_;
    const std::string cmd = launcher + Ftune() + " train --model_config=" + d / "cfg.json" +
                            " --train_data=" + d / "train.h5" + " --eval_data=" + d / "eval.h5" +
                            " --output_dir=" + out + " --threads=1 --learning_rate=3e-3 --seed=3 " + extra;
    CommandResult r = RunCommand(cmd);
    EXPECT_EQ(r.exit_code, expect_exit) << cmd << "\n" << r.output;
    return r.output;
  }
  static json Results(const std::string& out) {
    auto text = ReadFileToString(out + "/results.json");
    EXPECT_TRUE(text.ok()) << out;
    return text.ok() ? json::parse(*text) : json();
  }
  static ScratchDir* dir_;
};
ScratchDir* TrainerOptions::dir_ = nullptr;

// 1 rank x 4 micro-batches of 2, 2 ranks x 2 micro-batches of 2, and 1 rank x 1 batch of 8 are the
// same optimisation (global batch 8, uneven last step), to float rounding.
TEST_F(TrainerOptions, GradientAccumulationEqualsTheWholeGlobalBatch) {
  const ScratchDir& d = *dir_;
  const std::string common = " --epochs=1 --logging_steps=1";
  Train("", d / "k1", "--batch_size=8" + common);
  const std::string log = Train("", d / "k4", "--batch_size=2 --gradient_accumulation_steps=4" + common);
  EXPECT_THAT(log, HasSubstr("global batch 8 (2 per rank x 1 ranks x 4 accumulated micro-batches)"));
  Train(Mpirun(2), d / "np2k2", "--batch_size=2 --gradient_accumulation_steps=2" + common);
  const auto ref = Records(d / "k1/metrics.jsonl", "train");
  ASSERT_EQ(ref.size(), 26u);  // ceil(203 / 8)
  for (const std::string run : {"k4", "np2k2"}) {
    const auto other = Records(d / (run + "/metrics.jsonl"), "train");
    ASSERT_EQ(other.size(), ref.size()) << run;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_NEAR(other[i]["loss"].get<double>(), ref[i]["loss"].get<double>(), 1e-5) << run << " step " << i + 1;
      EXPECT_NEAR(other[i]["grad_norm"].get<double>(), ref[i]["grad_norm"].get<double>(),
                  1e-4 * ref[i]["grad_norm"].get<double>())
          << run << " step " << i + 1;
    }
    EXPECT_LT(MaxWeightDiff(d / "k1/model/model.safetensors", d / (run + "/model/model.safetensors")), 2e-5) << run;
    const json r = Results(d / run);
    EXPECT_EQ(r["global_batch"], 8) << run;
    EXPECT_EQ(r["steps"], 26) << run;
  }
}

// A 2-rank checkpoint (global batch 2 x 4) resumed on one rank: accumulation 1 -> 2 keeps the
// global batch, the log says so, and the run ends where the 2-rank run ends.
TEST_F(TrainerOptions, ResumeOnFewerRanksKeepsTheGlobalBatchByAccumulating) {
  const ScratchDir& d = *dir_;
  const std::string common =
      " --batch_size=4 --max_steps=20 --save_strategy=steps --save_steps=10 --save_total_limit=0";
  Train(Mpirun(2), d / "two", common);
  ASSERT_TRUE(PathExists(d / "two/checkpoints/step-10"));
  const std::string log = Train("", d / "one", common + " --resume=" + d / "two/checkpoints/step-10");
  EXPECT_THAT(log, HasSubstr("gradient_accumulation_steps 1 -> 2 keeps the checkpoint's global batch of 8"));
  EXPECT_EQ(Results(d / "one")["gradient_accumulation_steps"], 2);
  EXPECT_LT(MaxWeightDiff(d / "two/model/model.safetensors", d / "one/model/model.safetensors"), 2e-5);
  // A global batch no batch size can make is refused with what to do.
  const std::string bad = Train(
      "", d / "bad", " --batch_size=3 --max_steps=20 --resume=" + d / "two/checkpoints/step-10", /*expect_exit=*/1);
  EXPECT_THAT(bad, HasSubstr("global batch of 8"));
}

// Evaluation every 5 steps; the best model by accuracy is what model/ holds at the end, and
// `ftune eval` on it scores exactly what the best evaluation scored.
TEST_F(TrainerOptions, EvalStepsAndLoadBestModelAtEnd) {
  const ScratchDir& d = *dir_;
  Train("", d / "best",
        "--batch_size=8 --max_steps=30 --eval_strategy=steps --eval_steps=5 --metric_for_best_model=accuracy "
        "--load_best_model_at_end --learning_rate=2e-2");  // a high rate, so accuracy wanders
  const auto evals = Records(d / "best/metrics.jsonl", "eval");
  ASSERT_EQ(evals.size(), 6u);
  size_t best = 0;
  for (size_t i = 0; i < evals.size(); ++i) {
    EXPECT_EQ(evals[i]["step"], 5 * static_cast<int64_t>(i + 1));
    if (evals[i]["eval_accuracy"].get<double>() > evals[best]["eval_accuracy"].get<double>()) best = i;
  }
  const json r = Results(d / "best");
  EXPECT_EQ(r["best_step"], evals[best]["step"]);
  EXPECT_EQ(r["model_step"], evals[best]["step"]);
  EXPECT_DOUBLE_EQ(r["best_metric"].get<double>(), evals[best]["eval_accuracy"].get<double>());
  CommandResult e = RunCommand(Ftune() + " eval --threads=1 --model_dir=" + d / "best/model" +
                               " --data=" + d / "eval.h5" + " --output=" + d / "best/eval.json");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto text = ReadFileToString(d / "best/eval.json");
  ASSERT_TRUE(text.ok());
  const json scored = json::parse(*text);
  EXPECT_EQ(scored["eval_correct"], evals[best]["eval_correct"]);
  EXPECT_EQ(scored["eval_confusion_matrix"], evals[best]["eval_confusion_matrix"]);
}

// Early stopping (HF's EarlyStoppingCallback): with a threshold nothing can beat, the run stops
// after the first evaluation plus `patience` more, and says so.
TEST_F(TrainerOptions, EarlyStoppingStopsAfterPatienceEvaluations) {
  const ScratchDir& d = *dir_;
  const std::string log = Train("", d / "early",
                                "--batch_size=8 --epochs=3 --eval_strategy=steps --eval_steps=4 "
                                "--early_stopping_patience=2 --early_stopping_threshold=100");
  EXPECT_THAT(log, HasSubstr("early stopping at step 12"));
  const json r = Results(d / "early");
  EXPECT_EQ(r["steps"], 12);
  EXPECT_EQ(r["stopped_early"], true);
  EXPECT_EQ(r["metric_for_best_model"], "loss");  // HF's default when early stopping needs one
  EXPECT_EQ(Records(d / "early/metrics.jsonl", "eval").size(), 3u);
  // Without --eval_data there is nothing to stop on.
  const std::string bad = Train("", d / "early-bad", "--eval_strategy=no --early_stopping_patience=2", 2);
  EXPECT_THAT(bad, HasSubstr("needs --eval_data and an --eval_strategy other than no"));
}

// Everything the new options keep between steps (the best metric and model, the patience count,
// the schedule) is in the checkpoint: a run resumed mid-way ends bit-identical, metrics included.
TEST_F(TrainerOptions, ResumeIsExactWithEvalStepsBestModelEarlyStoppingAndACosineSchedule) {
  const ScratchDir& d = *dir_;
  const std::string common =
      " --max_steps=40 --eval_strategy=steps --eval_steps=5 --metric_for_best_model=macro_f1 "
      "--load_best_model_at_end --early_stopping_patience=4 --lr_scheduler_type=cosine --warmup_steps=3 "
      "--label_smoothing_factor=0.1 --class_weights=1,2 --gradient_accumulation_steps=2 --batch_size=4 "
      "--learning_rate=2e-2 --logging_steps=5";
  Train("", d / "ref", common + " --save_strategy=steps --save_steps=10 --save_total_limit=0");
  ASSERT_TRUE(PathExists(d / "ref/checkpoints/step-20"));
  Train("", d / "res", common + " --resume=" + d / "ref/checkpoints/step-20");
  auto a = ReadFileToString(d / "ref/model/model.safetensors"), b = ReadFileToString(d / "res/model/model.safetensors");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "the resumed run saved other weights";
  const json ra = Results(d / "ref"), rb = Results(d / "res");
  for (const char* k : {"best_step", "best_metric", "model_step", "steps", "stopped_early"}) {
    EXPECT_EQ(ra[k], rb[k]) << k;
  }
  // The resumed run (another directory) logs from step 21 on: the same records as the reference's.
  auto after = [](std::vector<json> records) {
    std::vector<json> out;
    for (auto& r : records) {
      r.erase("eval_seconds");
      r.erase("samples_per_second");
      r.erase("comm_seconds");
      if (r["step"].get<int64_t>() > 20) out.push_back(r);
    }
    return out;
  };
  for (const char* type : {"eval", "train"}) {
    const auto a = after(Records(d / "ref/metrics.jsonl", type)), b = after(Records(d / "res/metrics.jsonl", type));
    ASSERT_FALSE(a.empty()) << type;
    EXPECT_EQ(a, b) << type;
  }
}

// configs/hf-seed.flags (the seed's TrainingArguments) and configs/real-work.flags are accepted by
// `ftune train` and resolve to what they say.
TEST_F(TrainerOptions, SeedAndRealWorkConfigFilesResolveToHfValues) {
  const ScratchDir& d = *dir_;
  const std::string configs = std::string(FTUNE_SOURCE_DIR) + "/configs/";
  Train("", d / "seed", "--flagfile=" + configs + "hf-seed.flags --max_steps=2");
  Train("", d / "real",
        "--flagfile=" + configs + "lora.flags --flagfile=" + configs + "real-work.flags --max_steps=2 --lora_rank=4");
  auto seed = ReadFileToString(d / "seed/run_config.json"), real = ReadFileToString(d / "real/run_config.json");
  ASSERT_TRUE(seed.ok() && real.ok());
  const json s = json::parse(*seed), r = json::parse(*real);
  EXPECT_EQ(s["learning_rate"], 5e-05);
  EXPECT_EQ(s["lr_scheduler_type"], "linear");
  EXPECT_EQ(s["eval_strategy"], "epoch");
  EXPECT_EQ(s["save_steps"], 500);
  EXPECT_EQ(s["logging_steps"], 500);
  EXPECT_EQ(r["method"], "lora");
  EXPECT_EQ(r["load_best_model_at_end"], true);
  EXPECT_EQ(r["eval_strategy"], "steps");
  EXPECT_EQ(r["warmup_ratio"], 0.1);
}

// --report_to=tensorboard: rank 0 writes event files whose scalars are metrics.jsonl's numbers
// under HF's tags, read back through the CRC-checking reader.
TEST_F(TrainerOptions, TensorBoardEventsCarryTheMetricsUnderHfTags) {
  const ScratchDir& d = *dir_;
  const std::string log = Train(Mpirun(2), d / "tb",
                                "--batch_size=4 --max_steps=12 --logging_steps=4 --eval_strategy=steps --eval_steps=6 "
                                "--report_to=tensorboard");
  std::string file;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find("TensorBoard: ");
    if (at != absl::string_view::npos) file = std::string(line.substr(at + 13));
  }
  ASSERT_FALSE(file.empty()) << log;
  EXPECT_EQ(file.rfind(d / "tb/tensorboard/events.out.tfevents.", 0), 0u) << file;
  auto events = io::ReadTensorBoardScalars(file);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->file_version, "brain.Event:2");
  std::map<std::pair<std::string, int64_t>, float> scalars;
  for (const auto& s : events->scalars) scalars[{s.tag, s.step}] = s.value;
  const auto train = Records(d / "tb/metrics.jsonl", "train");
  ASSERT_EQ(train.size(), 3u);
  for (const auto& r : train) {
    const int64_t step = r["step"];
    ASSERT_TRUE(scalars.count(std::make_pair(std::string("train/loss"), step))) << step;
    EXPECT_EQ(scalars[std::make_pair(std::string("train/loss"), step)], r["loss"].get<float>());
    EXPECT_EQ(scalars[std::make_pair(std::string("train/learning_rate"), step)], r["learning_rate"].get<float>());
  }
  const auto evals = Records(d / "tb/metrics.jsonl", "eval");
  ASSERT_EQ(evals.size(), 2u);
  for (const auto& r : evals) {
    const int64_t step = r["step"];
    EXPECT_EQ(scalars[std::make_pair(std::string("eval/accuracy"), step)], r["eval_accuracy"].get<float>());
    EXPECT_EQ(scalars[std::make_pair(std::string("eval/macro_f1"), step)], r["eval_macro_f1"].get<float>());
  }
}

// The confusion matrix in metrics.jsonl (2 ranks: summed counts) equals the one counted from
// `ftune predict`'s CSV, and `ftune eval` prints macro-F1 and the matrix.
TEST_F(TrainerOptions, ConfusionMatrixEqualsCountsFromPredictions) {
  const ScratchDir& d = *dir_;
  Train(Mpirun(2), d / "cm", "--batch_size=4 --max_steps=6");  // barely trained: errors both ways
  const auto evals = Records(d / "cm/metrics.jsonl", "eval");
  ASSERT_EQ(evals.size(), 1u);
  CommandResult p = RunCommand(Ftune() + " predict --threads=1 --model_dir=" + d / "cm/model" +
                               " --data=" + d / "eval.h5" + " --output=" + d / "cm/pred.csv");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto csv = ReadFileToString(d / "cm/pred.csv");
  ASSERT_TRUE(csv.ok());
  std::vector<std::vector<int64_t>> counts(2, std::vector<int64_t>(2, 0));
  int rows = 0;
  for (absl::string_view line : absl::StrSplit(*csv, '\n', absl::SkipEmpty())) {
    if (rows++ == 0) continue;  // header
    std::vector<std::string> f = absl::StrSplit(line, ',');
    ++counts[std::stoi(f[1])][std::stoi(f[2])];
  }
  EXPECT_EQ(rows, 97);
  EXPECT_EQ(evals[0]["eval_confusion_matrix"], json(counts));
  // F1 of class 1 from the counts: 2 tp / (2 tp + fp + fn).
  const double tp = counts[1][1], fp = counts[0][1], fn = counts[1][0];
  EXPECT_NEAR(evals[0]["eval_per_class"]["f1"][1].get<double>(), tp + fp + fn > 0 ? 2 * tp / (2 * tp + fp + fn) : 0,
              1e-12);
  CommandResult e =
      RunCommand(Mpirun(2) + Ftune() + " eval --threads=1 --model_dir=" + d / "cm/model" + " --data=" + d / "eval.h5");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_THAT(e.output, HasSubstr("macro-F1"));
  EXPECT_THAT(e.output, HasSubstr("predicted as"));
}

}  // namespace
}  // namespace ftune

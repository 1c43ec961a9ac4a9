// What a hostile but realistic user found (issue 28), each end to end on the built binary:
//  1. evaluation during training with fewer eval examples than ranks (and ranks whose shares need
//     different numbers of batches) completes, scoring every example once;
//  2. a sequence longer than the model's positions is refused at start-up, naming the file, the
//     length, the limit and the fix, and nothing is written;
//  3. --resume onto other training data is refused;
//  4. --resume=auto restarts a run killed before its first checkpoint;
//  5. damaged checkpoints are detected (checksums), auto falls back to the previous one saying so;
//  6. nonsense flags are a bad command line (exit 2) naming the flag, before anything is written;
//  7. a failed final save leaves the trained weights in the final checkpoint, and --resume=auto
//     then finishes the job with the same weights; a validation error leaves no output directory;
//     a flag of another command is refused (`ftune eval --learning_rate=1`).
#include <sys/mount.h>

#include <fstream>

#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"

namespace ftune {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::MaxWeightDiff;
using ::ftune::testing::Mpirun;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

class Reliability : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    const ScratchDir& d = *dir_;
    ::ftune::testing::WriteTestVocab(d / "vocab.txt", 64);
    ::ftune::testing::WriteSyntheticJsonl(d / "train.jsonl", 120, 3);
    ::ftune::testing::WriteSyntheticJsonl(d / "other.jsonl", 120, 4);
    ::ftune::testing::WriteSyntheticJsonl(d / "eval3.jsonl", 3, 5);
    ::ftune::testing::WriteSyntheticJsonl(d / "eval17.jsonl", 17, 6);
    // One example of 70 tokens: past the tiny model's 64 positions.
    ::ftune::testing::WriteSyntheticJsonl(d / "long.jsonl", 5, 7, /*spread=*/2);
    std::ofstream(d / "long.jsonl", std::ios::app)
        << json({{"ids", std::vector<int>(70, 11)}, {"label", 1}}).dump() << "\n";
    for (const char* name : {"train", "other", "eval3", "eval17", "long"}) {
      CommandResult r = RunCommand(Ftune() + " prep --input_format=jsonl --input=" + d / (std::string(name) + ".jsonl") +
                                   " --output=" + d / (std::string(name) + ".h5") + " --vocab=" + d / "vocab.txt");
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    ::ftune::testing::WriteTinyModelConfig(d / "cfg.json", /*dropout=*/false);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string Train(const std::string& out, const std::string& extra, const std::string& train = "train") {
    const ScratchDir& d = *dir_;
    return Ftune() + " train --model_config=" + d / "cfg.json" + " --train_data=" + d / (train + ".h5") +
           " --output_dir=" + out + " --threads=1 --batch_size=4 --learning_rate=2e-3 --logging_steps=5 " + extra;
  }

  static ScratchDir* dir_;
};
ScratchDir* Reliability::dir_ = nullptr;

TEST_F(Reliability, EvalWithFewerExamplesThanRanksCompletes) {
  const ScratchDir& d = *dir_;
  struct Case {
    int ranks;
    const char* eval;
    int examples;
  } cases[] = {{4, "eval3", 3}, {2, "eval17", 17}};  // 17 on 2 ranks at batch 8: 2 batches and 1
  for (const auto& c : cases) {
    const std::string out = d / ("eval_" + std::to_string(c.ranks));
    CommandResult r = RunCommand(Mpirun(c.ranks) + Train(out, "--max_steps=4 --eval_batch_size=8 --eval_strategy=steps "
                                                              "--eval_steps=2 --eval_data=" +
                                                              d / (std::string(c.eval) + ".h5")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto evals = ::ftune::testing::Records(out + "/metrics.jsonl", "eval");
    ASSERT_EQ(evals.size(), 2u) << r.output;
    for (const auto& e : evals) EXPECT_EQ(e["eval_total"], c.examples);
    EXPECT_TRUE(PathExists(out + "/results.json"));
  }
}

TEST_F(Reliability, ASequenceLongerThanThePositionsIsRefusedAtStartup) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "long_run";
  CommandResult r = RunCommand(Train(out, "--max_steps=2", "long"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("long.h5: example 5 has 70 tokens but the model takes at most 64"));
  EXPECT_THAT(r.output, HasSubstr("--max_length=64"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("terminate called")));
  EXPECT_FALSE(PathExists(out)) << "nothing is written for a run refused at start-up";
  // eval and predict check the same before scoring.
  ASSERT_EQ(RunCommand(Train(d / "short", "--max_steps=2")).exit_code, 0);
  for (const std::string& command : {std::string(" eval --data="), " predict --output=" + d / "p.csv" + " --data="}) {
    r = RunCommand(Ftune() + command + d / "long.h5" + " --model_dir=" + d / "short/model");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("has 70 tokens but the model takes at most 64"));
  }
}

TEST_F(Reliability, ResumeOntoOtherTrainingDataIsRefused) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "data_resume";
  ASSERT_EQ(RunCommand(Train(out, "--max_steps=12 --save_strategy=steps --save_steps=6")).exit_code, 0);
  std::remove((out + "/results.json").c_str());  // as if killed after its last checkpoint
  CommandResult r = RunCommand(Train(out, "--max_steps=12 --resume=auto", "other"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("was trained on other training data"));
  EXPECT_FALSE(PathExists(out + "/results.json"));
}

TEST_F(Reliability, ResumeAutoRestartsARunKilledBeforeItsFirstCheckpoint) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "early_kill";
  ASSERT_EQ(RunCommand(Train(out, "--max_steps=6")).exit_code, 0);
  // What a kill before the first checkpoint leaves: the run's files, no checkpoint, no results.
  std::remove((out + "/results.json").c_str());
  CommandResult r = RunCommand(Train(out, "--max_steps=6 --save_strategy=steps --save_steps=100 --resume=auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("done: 6 steps"));
  EXPECT_EQ(::ftune::testing::Records(out + "/metrics.jsonl", "summary").size(), 1u) << "the partial log is replaced";
}

TEST_F(Reliability, DamagedCheckpointsAreDetectedAndAutoFallsBack) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "damage";
  ASSERT_EQ(RunCommand(Train(out, "--max_steps=12 --save_strategy=steps --save_steps=4 --save_total_limit=0")).exit_code,
            0);
  std::remove((out + "/results.json").c_str());
  {  // random bytes inside the tensors, the safetensors header intact
    std::fstream f(out + "/checkpoints/step-12/trainer.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-40, std::ios::end);
    f.write("0123456789", 10);
  }
  CommandResult r = RunCommand(Train(out, "--max_steps=12 --resume=" + out + "/checkpoints/step-12"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("step-12 is damaged: trainer.safetensors does not match its checksum"));
  r = RunCommand(Train(out, "--max_steps=12 --resume=auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming from " + out + "/checkpoints/step-8 instead"));
  EXPECT_THAT(r.output, HasSubstr("resumed from " + out + "/checkpoints/step-8:"));
  // A cut state.json says the checkpoint is damaged, not that a field is missing.
  std::remove((out + "/results.json").c_str());
  auto text = ReadFileToString(out + "/checkpoints/step-4/state.json");
  ASSERT_TRUE(text.ok());
  std::ofstream(out + "/checkpoints/step-4/state.json") << text->substr(0, 100);
  r = RunCommand(Train(out, "--max_steps=12 --resume=" + out + "/checkpoints/step-4"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("step-4 is damaged"));
}

TEST_F(Reliability, NonsenseIsABadCommandLineNamingTheFlag) {
  const ScratchDir& d = *dir_;
  const std::string eval = " --eval_data=" + d / "eval17.h5";
  struct Case {
    std::string command;
    std::string says;
  } cases[] = {
      {Train(d / "x", "--eval_strategy=steps"), "--eval_strategy=steps needs --eval_data"},
      {Train(d / "x", "--eval_steps=-3" + eval), "--eval_steps must be > 0"},
      {Train(d / "x", "--max_grad_norm=-1"), "--max_grad_norm must be >= 0"},
      {Train(d / "x", "--threads=-1"), "--threads must be >= 0"},
      {Train(d / "x", "--bucket_mb=-1"), "--bucket_mb must be in (0"},
      {Train(d / "x", "--lr_scheduler_type=cosine --lr_scheduler_kwargs='{\"power\":2}'"),
       "\"power\" is not an argument of the cosine schedule"},
      {Train(d / "x", "--metric_for_best_model=f1" + eval), "--metric_for_best_model \"f1\" is not one of accuracy"},
      {Train(d / "x", "--epochs=three"), "--epochs=three: not a valid integer"},
      {Train(d / "x", "--eval_strategy=sometimes"), "not one of no, steps, epoch"},
      {Train(d / "x", "--flagfile=" + d / "missing.flags"), "--flagfile=" + d / "missing.flags"},
      {Train(d / "x", "--class_weights=0,0"), "--class_weights give every example of"},
      {Ftune() + " eval --model_dir=" + d / "short/model --data=" + d / "eval3.h5" + " --batch=0", "--batch must be > 0"},
      {Ftune() + " eval --learning_rate=1 --data=" + d / "eval3.h5", "--learning_rate is a flag of `ftune train`"},
      {Ftune() + " inspect --train_data=x", "--train_data is a flag of `ftune train`"},
  };
  for (const auto& c : cases) {
    CommandResult r = RunCommand(c.command);
    EXPECT_EQ(r.exit_code, 2) << c.command << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.says)) << c.command;
  }
  EXPECT_FALSE(PathExists(d / "x")) << "a refused command line writes nothing";
  // A flagfile line that is not a flag is named by file:line.
  std::ofstream(d / "bad.flags") << "# a comment\n--max_steps=2\nmax_grad_norm=1\n";
  CommandResult r = RunCommand(Train(d / "x", "--flagfile=" + d / "bad.flags"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(d / "bad.flags" + ":3: \"max_grad_norm=1\" is not a flag"));
}

TEST_F(Reliability, AModelThatFailsToLoadLeavesNoOutputDirectory) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "no_model";
  CommandResult r = RunCommand(Train(out, "--max_steps=2 --model_config=" + d / "nowhere.json"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_FALSE(PathExists(out));
}

// The final save fails for want of space: the error says where the trained weights are (the
// final checkpoint, written first), and --resume=auto once there is room saves the same weights as
// a run that never failed.
TEST_F(Reliability, AFailedFinalSaveLosesNothing) {
  const ScratchDir& d = *dir_;
  const std::string ref = d / "save_ref", args = "--max_steps=12 --save_strategy=steps --save_steps=100";
  ASSERT_EQ(RunCommand(Train(ref, args + " --save_total_limit=1")).exit_code, 0);
  auto du = [](const std::string& path) {
    CommandResult r = RunCommand("du -sk --apparent-size " + path + " | cut -f1");
    return std::stol(r.output);
  };
  const long model_kb = du(ref + "/model"), rest_kb = du(ref) - model_kb;
  const std::string mnt = d / "small";
  ASSERT_TRUE(MakeDirs(mnt).ok());
  // Room for everything but half of the model (and the final checkpoint's temp copy).
  const std::string size = "size=" + std::to_string(rest_kb + model_kb / 2 + 32) + "k";
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, size.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs root and mount permission)";
  }
  const std::string out = mnt + "/run";
  CommandResult r = RunCommand(Train(out, args + " --save_total_limit=1"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the newest checkpoint is " + out + "/checkpoints/step-12"));
  EXPECT_FALSE(PathExists(out + "/model"));
  EXPECT_FALSE(PathExists(out + "/results.json"));
  ASSERT_EQ(mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=8m"), 0);
  r = RunCommand(Train(out, args + " --save_total_limit=1 --resume=auto"));
  const double diff = MaxWeightDiff(ref + "/model/model.safetensors", out + "/model/model.safetensors");
  umount2(mnt.c_str(), MNT_DETACH);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(diff, 0.0) << "the saved weights are the uninterrupted run's";
}

}  // namespace
}  // namespace ftune

// Cluster life: checkpoints, exact resume, preemption signals (`ftune train` end to end).
//  - SIGKILL at a random moment, then --resume=auto: final weights bit-identical to an
//    uninterrupted run, and metrics.jsonl reads the same (timings aside);
//  - SIGTERM under mpirun -np 2: every rank stops at the same step, exit code 75, a checkpoint;
//    resuming it with ONE rank (same global batch) finishes at the same sample position;
//  - save_total_limit, `latest`, and refusals (changed global batch, --resume with --overwrite).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"

namespace ftune {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::Mpirun;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::vector<json> Metrics(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json r = json::parse(line);
    if (r["type"] == "summary") continue;
    // Timings legitimately differ between runs; everything else must not.
    for (const char* k : {"samples_per_second", "comm_seconds", "eval_seconds"}) r.erase(k);
    out.push_back(r);
  }
  return out;
}

class ResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Synthetic data: label 1 iff token 7 occurs; a tiny model WITH dropout, so exact resume
    // also proves the dropout randomness is restored.
    ::ftune::testing::WriteSyntheticJsonl(dir_ / "train.jsonl", 600, 11, /*spread=*/24);
    ::ftune::testing::WriteTestVocab(dir_ / "vocab.txt", 64);
    CommandResult r = RunCommand(Ftune() + " prep --input_format=jsonl --input=" + dir_ / "train.jsonl" +
                                 " --output=" + dir_ / "d.h5" + " --vocab=" + dir_ / "vocab.txt");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ::ftune::testing::WriteTinyModelConfig(dir_ / "cfg.json", /*dropout=*/true);
  }
  std::string Args(const std::string& out, int batch, int epochs = 3) {
    return " train --model_config=" + dir_ / "cfg.json" + " --train_data=" + dir_ / "d.h5" +
           " --eval_data=" + dir_ / "d.h5" + " --output_dir=" + out +
           " --threads=1 --learning_rate=2e-3 --logging_steps=5" + " --epochs=" + std::to_string(epochs) +
           " --batch_size=" + std::to_string(batch);
  }
  ScratchDir dir_;
};

// Masked-LM pretraining resumes exactly too: the masks are drawn from (seed, epoch, example) and
// dropout from (seed, step, rank), so continuing from a mid-run checkpoint (here in another
// directory) ends with the same weights, bit for bit, as the run that wrote it.
TEST_F(ResumeTest, MaskedLmResumedFromAMidRunCheckpointIsBitIdentical) {
  const std::string mlm = " --objective=mlm --vocab=" + dir_ / "vocab.txt";
  CommandResult ref = RunCommand(Ftune() + Args(dir_ / "ref", 4, 2) + mlm +
                                 " --save_strategy=steps --save_steps=70 --save_total_limit=0");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  ASSERT_TRUE(PathExists(dir_ / "ref/checkpoints/step-140"));  // mid-epoch of epoch 1 (150 steps each)
  CommandResult resumed =
      RunCommand(Ftune() + Args(dir_ / "resumed", 4, 2) + mlm + " --resume=" + dir_ / "ref/checkpoints/step-140");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("global step 140"));
  auto a = ReadFileToString(dir_ / "ref/model/model.safetensors");
  auto b = ReadFileToString(dir_ / "resumed/model/model.safetensors");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "the resumed masked-LM run ended with other weights";
  auto ra = Metrics(dir_ / "ref/metrics.jsonl"), rb = Metrics(dir_ / "resumed/metrics.jsonl");
  ASSERT_FALSE(ra.empty());
  EXPECT_EQ(ra.back(), rb.back());  // the final evaluation, bit for bit
}

TEST_F(ResumeTest, SigkillAtARandomStepThenResumeIsBitIdentical) {
  CommandResult ref = RunCommand(Ftune() + Args(dir_ / "ref", 4));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;

  const std::string out = dir_ / "killed";
  pid_t pid = fork();
  if (pid == 0) {
    std::string cmd =
        Ftune() + Args(out, 4) + " --save_strategy=steps --save_steps=13 --save_total_limit=2 >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for a first checkpoint, then kill after a random further delay (somewhere mid-run).
  for (int i = 0; i < 600 && !PathExists(out + "/checkpoints/latest"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::mt19937 rng(static_cast<uint32_t>(std::random_device{}()));
  const int delay_ms = static_cast<int>(rng() % 1500);
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(PathExists(out + "/checkpoints/latest")) << "no checkpoint before the kill";
  // (A kill that lands after results.json was written, e.g. during MPI_Finalize, is too late.)
  if (WIFEXITED(status) || PathExists(out + "/results.json")) {
    GTEST_SKIP() << "the run finished before the kill (" << delay_ms << " ms); nothing to test";
  }
  auto latest = ReadFileToString(out + "/checkpoints/latest");
  ASSERT_TRUE(latest.ok());

  CommandResult resumed =
      RunCommand(Ftune() + Args(out, 4) + " --save_strategy=steps --save_steps=13 --save_total_limit=2 --resume=auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output,
              HasSubstr("resumed from " + out + "/checkpoints/" + latest->substr(0, latest->size() - 1)));
  auto a = ReadFileToString(dir_ / "ref/model/model.safetensors");
  auto b = ReadFileToString(out + "/model/model.safetensors");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "final weights differ after a kill at +" << delay_ms << " ms, resumed from " << *latest;
  EXPECT_EQ(Metrics(dir_ / "ref/metrics.jsonl"), Metrics(out + "/metrics.jsonl"));
  // save_total_limit=2: at most two complete checkpoints, and `latest` names one of them.
  int kept = 0;
  for (int step = 13; step <= 450; step += 13) kept += PathExists(out + "/checkpoints/step-" + std::to_string(step));
  EXPECT_LE(kept, 2);
  // Requeued again after it finished: nothing to do, success.
  CommandResult again = RunCommand(Ftune() + Args(out, 4) + " --resume=auto");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("already finished"));
}

TEST_F(ResumeTest, SigtermStopsAllRanksWithExit75AndResumesOnOneRank) {
  CommandResult ref = RunCommand(Ftune() + Args(dir_ / "ref1", 8, 20));  // 1 rank x 8
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const std::string out = dir_ / "pre";
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    std::string cmd = Mpirun(2) + Ftune() + Args(out, 4, 20) + " > " + dir_ / "pre.log" + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 600 && !PathExists(out + "/metrics.jsonl"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // SIGTERM to the ranks only, not to mpirun (as SLURM signals a job step's tasks).
  RunCommand("for p in $(pgrep -f 'output_dir=" + out +
             " '); do [ \"$(cat /proc/$p/comm)\" = ftune ] && "
             "kill -TERM $p; done");
  int status = 0;
  waitpid(pid, &status, 0);
  auto log = ReadFileToString(dir_ / "pre.log");
  ASSERT_TRUE(log.ok());
  if (PathExists(out + "/results.json")) GTEST_SKIP() << "the run finished before the signal";
  ASSERT_TRUE(WIFEXITED(status)) << *log;
  EXPECT_EQ(WEXITSTATUS(status), 75) << *log;
  EXPECT_THAT(*log, HasSubstr("stopped by signal 15"));
  EXPECT_THAT(*log, HasSubstr("continue with --resume=auto"));
  ASSERT_TRUE(PathExists(out + "/checkpoints/latest")) << *log;

  // Resume with one rank at the same global batch (1 x 8 instead of 2 x 4).
  CommandResult resumed = RunCommand(Ftune() + Args(out, 8, 20) + " --resume=auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resuming a 2-rank checkpoint with 1 ranks"));
  auto a = Metrics(dir_ / "ref1/metrics.jsonl"), b = Metrics(out + "/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i]["step"], b[i]["step"]);
    if (a[i]["type"] == "train") {
      // Different rank counts sum in a different order: equal to float tolerance, and dropout
      // masks are drawn per rank, so only the data position is exactly shared. Loss stays close.
      EXPECT_NEAR(a[i]["learning_rate"].get<double>(), b[i]["learning_rate"].get<double>(), 1e-12);
    }
  }
  auto results = ReadFileToString(out + "/results.json");
  ASSERT_TRUE(results.ok());
  EXPECT_EQ(json::parse(*results)["steps"], json::parse(*ReadFileToString(dir_ / "ref1/results.json"))["steps"]);
}

TEST_F(ResumeTest, RefusesAChangedGlobalBatchAndContradictoryFlags) {
  const std::string out = dir_ / "r";
  CommandResult first = RunCommand(Ftune() + Args(out, 4) + " --max_steps=10 --save_strategy=steps --save_steps=5");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::remove((out + "/results.json").c_str());  // pretend it was interrupted after step 10
  CommandResult r = RunCommand(Ftune() + Args(out, 8) + " --max_steps=10 --resume=auto");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("global batch of 4"));
  r = RunCommand(Ftune() + Args(out, 4) + " --resume=auto --overwrite");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("contradict"));
  r = RunCommand(Ftune() + Args(out, 4) + " --resume=" + dir_ / "nowhere");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("not a checkpoint directory"));
  // An unfinished checkpoint write (temp directory) is never picked up.
  ASSERT_TRUE(MakeDirs(out + "/checkpoints/.tmp-step-99").ok());
  r = RunCommand(Ftune() + Args(out, 4) + " --max_steps=10 --resume=auto");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // (A save strategy also saves at the end of training, as HF's: step-10 is the newest.)
  EXPECT_THAT(r.output, HasSubstr("resumed from " + out + "/checkpoints/step-10:"));
}

}  // namespace
}  // namespace ftune

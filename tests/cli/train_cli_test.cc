// `ftune train` end to end, as users run it: one process and `mpirun -np 2`, on data made by
// `ftune prep`. These are the distributed engine's contracts:
//  - results do not depend on the number of ranks at equal global batch (losses, grad norms,
//    weights, eval accuracy), over shared memory and over TCP;
//  - a small model learns a synthetic task to 100% eval accuracy, and the tiny config learns real
//    IMDB reviews from random init (when ../shared is present);
//  - frozen weights are bit-identical after head training; comm bytes = trainable bytes.
#include <fstream>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"
#include "tests/shared_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::Mpirun;
using ::ftune::testing::ReadF32;
using ::ftune::testing::Records;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::ftune::testing::WriteSyntheticJsonl;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

std::string Fixture(const std::string& rel) { return std::string(FTUNE_FIXTURES_DIR) + "/" + rel; }

// A tiny random-init config, dropouts 0 so runs are deterministic whatever the rank count.
std::string WriteTinyConfig(const ScratchDir& dir, int vocab, int dim = 32) {
  json c = {{"vocab_size", vocab},
            {"max_position_embeddings", 128},
            {"dim", dim},
            {"n_layers", 2},
            {"n_heads", 2},
            {"hidden_dim", 2 * dim},
            {"dropout", 0.0},
            {"attention_dropout", 0.0},
            {"seq_classif_dropout", 0.0}};
  std::string path = dir / "tiny.json";
  std::ofstream(path) << c.dump();
  return path;
}

std::string WriteVocab(const ScratchDir& dir, int n) { return ::ftune::testing::WriteTestVocab(dir / "vocab.txt", n); }

void Prep(const std::string& args) {
  CommandResult r = RunCommand(Ftune() + " prep " + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

class SyntheticTask : public ::testing::Test {
 protected:
  void SetUp() override {
    vocab_ = WriteVocab(dir_, 64);
    WriteSyntheticJsonl(dir_ / "train.jsonl", 256, 1);
    WriteSyntheticJsonl(dir_ / "eval.jsonl", 96, 2);
    Prep("--input_format=jsonl --input=" + dir_ / "train.jsonl" + " --output=" + dir_ / "train.h5" +
         " --vocab=" + vocab_ + " --max_length=64");
    Prep("--input_format=jsonl --input=" + dir_ / "eval.jsonl" + " --output=" + dir_ / "eval.h5" +
         " --vocab=" + vocab_ + " --max_length=64");
    config_ = WriteTinyConfig(dir_, 64);
  }
  std::string Train(const std::string& launcher, const std::string& out, const std::string& extra) {
    std::string cmd = launcher + Ftune() + " train --model_config=" + config_ + " --train_data=" + dir_ / "train.h5" +
                      " --eval_data=" + dir_ / "eval.h5" + " --output_dir=" + out + " --threads=1 " + extra;
    CommandResult r = RunCommand(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    return r.output;
  }
  ScratchDir dir_;
  std::string vocab_, config_;
};

TEST_F(SyntheticTask, OneAndTwoRanksGiveTheSameRunAtEqualGlobalBatch) {
  const std::string common = " --max_steps=24 --learning_rate=2e-3 --logging_steps=1 --seed=7";
  Train("", dir_ / "np1", "--batch_size=8" + common);
  Train(Mpirun(2), dir_ / "np2", "--batch_size=4" + common);
  Train(Mpirun(2, "--mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo"), dir_ / "tcp",
        "--batch_size=4" + common);
  auto one = Records(dir_ / "np1/metrics.jsonl", "train");
  ASSERT_EQ(one.size(), 24u);
  for (const std::string run : {"np2", "tcp"}) {
    auto two = Records(dir_ / (run + "/metrics.jsonl"), "train");
    ASSERT_EQ(two.size(), one.size()) << run;
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_NEAR(one[i]["loss"].get<double>(), two[i]["loss"].get<double>(), 1e-5) << run << " step " << i + 1;
      EXPECT_NEAR(one[i]["grad_norm"].get<double>(), two[i]["grad_norm"].get<double>(),
                  1e-4 * one[i]["grad_norm"].get<double>() + 1e-7)
          << run << " step " << i + 1;
      EXPECT_DOUBLE_EQ(one[i]["learning_rate"].get<double>(), two[i]["learning_rate"].get<double>());
    }
    auto e1 = Records(dir_ / "np1/metrics.jsonl", "eval"), e2 = Records(dir_ / (run + "/metrics.jsonl"), "eval");
    ASSERT_EQ(e1.size(), 1u);
    ASSERT_EQ(e2.size(), 1u);
    EXPECT_EQ(e1[0]["eval_correct"], e2[0]["eval_correct"]) << run;
    EXPECT_EQ(e2[0]["eval_total"], 96) << run;  // every eval example exactly once
    auto w1 = ReadF32(dir_ / "np1/model/model.safetensors"), w2 = ReadF32(dir_ / (run + "/model/model.safetensors"));
    ASSERT_EQ(w1.size(), w2.size());
    for (const auto& [name, a] : w1) {
      const auto& b = w2.at(name);
      double worst = 0;
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(double(a[k]) - b[k]));
      EXPECT_LT(worst, 1e-5) << run << " " << name;
    }
  }
  // Gradient traffic per step is exactly the trainable bytes (every parameter trains here).
  auto summary = Records(dir_ / "np2/metrics.jsonl", "summary");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0]["comm_bytes_per_step"].get<int64_t>(), summary[0]["trainable_parameters"].get<int64_t>() * 4);
  EXPECT_EQ(summary[0]["world_size"], 2);
}

// Overlap (--overlap_comm, the default on CPU ranks): buckets start their all-reduce from the
// gradient hooks during the backward pass. With tiny buckets (many per step) the weights must be
// bit-identical to all-reducing everything after the backward pass (a sum of two ranks does not
// depend on how the buffer is cut), and the hooks must really have started buckets early.
// Every method beyond the seed's three is the same run on 1 and 2 ranks (only its trainable
// gradients cross the wire), and what it saves (a PEFT adapter for ia3 and dora, the model for
// bitfit and last_k) scores in `ftune eval` exactly what training's last evaluation scored.
TEST_F(SyntheticTask, NewMethodsAreTheSameRunOnOneAndTwoRanksAndTheirSavesReload) {
  const std::string common = " --max_steps=10 --learning_rate=5e-3 --logging_steps=1 --seed=5";
  for (const std::string method : {"bitfit", "last_k", "ia3", "dora"}) {
    const std::string m = " --method=" + method + (method == "last_k" ? " --last_k_layers=1" : "") +
                          (method == "dora" ? " --lora_rank=4" : "");
    Train("", dir_ / (method + "1"), "--batch_size=8" + m + common);
    Train(Mpirun(2), dir_ / (method + "2"), "--batch_size=4" + m + common);
    auto one = Records(dir_ / (method + "1/metrics.jsonl"), "train"),
         two = Records(dir_ / (method + "2/metrics.jsonl"), "train");
    ASSERT_EQ(one.size(), 10u) << method;
    ASSERT_EQ(two.size(), one.size()) << method;
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_NEAR(one[i]["loss"].get<double>(), two[i]["loss"].get<double>(), 1e-5) << method << " step " << i + 1;
    }
    auto summary = Records(dir_ / (method + "2/metrics.jsonl"), "summary");
    ASSERT_EQ(summary.size(), 1u);
    EXPECT_EQ(summary[0]["comm_bytes_per_step"].get<int64_t>(), summary[0]["trainable_parameters"].get<int64_t>() * 4)
        << method;
    // The saved result reloads: eval's correct count equals the run's final evaluation.
    const std::string saved = dir_ / (method + "2/model");
    const bool adapter = PathExists(saved + "/adapter_config.json");
    EXPECT_EQ(adapter, method == "ia3" || method == "dora") << method;
    // An adapter goes on its base: the run started from random init, so the base is the run's own
    // initial weights, which a 0-step run with the same seed reproduces.
    std::string model_args = " --model_dir=" + saved;
    if (adapter) {
      Train("", dir_ / (method + "-base"), "--batch_size=8 --max_steps=1 --learning_rate=1e-30 --method=full --seed=5");
      model_args = " --model_dir=" + dir_ / (method + "-base/model") + " --adapter_dir=" + saved;
    }
    CommandResult e = RunCommand(Ftune() + " eval --threads=1" + model_args + " --data=" + dir_ / "eval.h5" +
                                 " --output=" + dir_ / (method + "-eval.json"));
    ASSERT_EQ(e.exit_code, 0) << e.output;
    auto scored = ReadFileToString(dir_ / (method + "-eval.json"));
    ASSERT_TRUE(scored.ok());
    auto evals = Records(dir_ / (method + "2/metrics.jsonl"), "eval");
    ASSERT_FALSE(evals.empty());
    EXPECT_EQ(json::parse(*scored)["eval_correct"], evals.back()["eval_correct"]) << method;
  }
}

TEST_F(SyntheticTask, OverlappedBucketsGiveTheSameWeightsAsAllReduceAfterBackward) {
  const std::string common = " --batch_size=4 --max_steps=12 --learning_rate=2e-3 --seed=3 --bucket_mb=0.004";
  Train(Mpirun(2), dir_ / "overlap", "--overlap_comm=true" + common);
  Train(Mpirun(2), dir_ / "after", "--overlap_comm=false" + common);
  auto on = Records(dir_ / "overlap/metrics.jsonl", "summary"), off = Records(dir_ / "after/metrics.jsonl", "summary");
  ASSERT_EQ(on.size(), 1u);
  ASSERT_EQ(off.size(), 1u);
  EXPECT_EQ(on[0]["overlap_comm"], true);
  EXPECT_EQ(off[0]["overlap_comm"], false);
  EXPECT_GT(on[0]["gradient_buckets"].get<int64_t>(), 3);
  // All but the bucket holding the embeddings (finished last) can start inside the backward pass.
  EXPECT_GE(on[0]["buckets_started_in_backward"].get<double>(), on[0]["gradient_buckets"].get<double>() - 1);
  EXPECT_EQ(on[0]["comm_bytes_per_step"], off[0]["comm_bytes_per_step"]);
  auto a = ReadFileToString(dir_ / "overlap/model/model.safetensors"),
       b = ReadFileToString(dir_ / "after/model/model.safetensors");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "overlapped all-reduce changed the weights";
}

// --pad_to_multiple_of adds masked padding only: the run is the same (losses, grad norms, eval)
// up to float rounding, with more padding recorded.
TEST_F(SyntheticTask, PaddingToAMultipleChangesNothingButThePadding) {
  const std::string common = " --batch_size=8 --max_steps=10 --learning_rate=2e-3 --logging_steps=1 --seed=5";
  Train("", dir_ / "plain", "--pad_to_multiple_of=1" + common);
  Train("", dir_ / "m16", "--pad_to_multiple_of=16" + common);
  auto a = Records(dir_ / "plain/metrics.jsonl", "train"), b = Records(dir_ / "m16/metrics.jsonl", "train");
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << "step " << i + 1;
    EXPECT_NEAR(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>(),
                1e-4 * a[i]["grad_norm"].get<double>() + 1e-7)
        << "step " << i + 1;
  }
  auto ea = Records(dir_ / "plain/metrics.jsonl", "eval"), eb = Records(dir_ / "m16/metrics.jsonl", "eval");
  ASSERT_EQ(ea.size(), 1u);
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(ea[0]["eval_correct"], eb[0]["eval_correct"]);
  auto sa = Records(dir_ / "plain/metrics.jsonl", "summary"), sb = Records(dir_ / "m16/metrics.jsonl", "summary");
  ASSERT_EQ(sa.size(), 1u);
  ASSERT_EQ(sb.size(), 1u);
  EXPECT_GT(sb[0]["padding_fraction"].get<double>(), sa[0]["padding_fraction"].get<double>());
}

TEST_F(SyntheticTask, ASmallModelLearnsItToFullAccuracy) {
  std::string out = Train("", dir_ / "learn", "--epochs=12 --batch_size=16 --learning_rate=3e-3");
  auto evals = Records(dir_ / "learn/metrics.jsonl", "eval");
  ASSERT_EQ(evals.size(), 12u);
  EXPECT_DOUBLE_EQ(evals.back()["eval_accuracy"].get<double>(), 1.0) << out;
  EXPECT_LT(evals.back()["eval_loss"].get<double>(), evals.front()["eval_loss"].get<double>());
}

TEST_F(SyntheticTask, UnevenLastBatchIsSplitAcrossRanksWithoutDuplicates) {
  // 101 examples at global batch 5 x 2 = 10: the kept last global batch holds 1 example, so rank 1
  // has none and contributes a zero gradient; every step must still match one process.
  WriteSyntheticJsonl(dir_ / "odd.jsonl", 101, 5);
  Prep("--input_format=jsonl --input=" + dir_ / "odd.jsonl" + " --output=" + dir_ / "odd.h5" + " --vocab=" + vocab_);
  const std::string common = " --epochs=1 --learning_rate=1e-3 --logging_steps=1 --save_model=false";
  auto train = [&](const std::string& launcher, const std::string& out, const std::string& extra) {
    CommandResult r =
        RunCommand(launcher + Ftune() + " train --model_config=" + config_ + " --train_data=" + dir_ / "odd.h5" +
                   " --output_dir=" + out + " --threads=1 " + extra + common);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  };
  train("", dir_ / "u1", "--batch_size=10");
  train(Mpirun(2), dir_ / "u2", "--batch_size=5");
  auto a = Records(dir_ / "u1/metrics.jsonl", "train"), b = Records(dir_ / "u2/metrics.jsonl", "train");
  ASSERT_EQ(a.size(), 11u);  // ceil(101 / 10): the short last batch is kept
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << "step " << i + 1;
    EXPECT_NEAR(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>(),
                1e-4 * a[i]["grad_norm"].get<double>() + 1e-7)
        << "step " << i + 1;
  }
}

TEST(TrainCli, HeadTrainingLeavesEveryFrozenWeightBitIdentical) {
  ScratchDir dir;
  const std::string vocab = WriteVocab(dir, 1000);
  WriteSyntheticJsonl(dir / "train.jsonl", 64, 3);
  Prep("--input_format=jsonl --input=" + dir / "train.jsonl" + " --output=" + dir / "train.h5" + " --vocab=" + vocab);
  const std::string base = Fixture("hf/hf-tiny-cls");
  CommandResult r =
      RunCommand(Ftune() + " train --model_dir=" + base + " --method=head --train_data=" + dir / "train.h5" +
                 " --output_dir=" + dir / "head" + " --epochs=2 --learning_rate=1e-2 --threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto before = ReadF32(base + "/model.safetensors"), after = ReadF32(dir / "head/model/model.safetensors");
  ASSERT_EQ(before.size(), after.size());
  int frozen = 0;
  for (const auto& [name, w] : before) {
    const bool head = name.rfind("pre_classifier.", 0) == 0 || name.rfind("classifier.", 0) == 0;
    if (head) {
      EXPECT_NE(w, after.at(name)) << name << " should have trained";
    } else {
      EXPECT_EQ(w, after.at(name)) << name << " is frozen but changed";
      ++frozen;
    }
  }
  EXPECT_EQ(frozen, 36);
  auto summary = Records(dir / "head/metrics.jsonl", "summary");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0]["trainable_parameters"], 32 * 32 + 32 + 2 * 32 + 2);
  EXPECT_EQ(summary[0]["comm_bytes_per_step"], (32 * 32 + 32 + 2 * 32 + 2) * 4);
}

// --objective=mlm: the same engine pretrains a masked LM. Its masking depends on (seed, epoch,
// example) only and its loss is normalised by the masked tokens of the global batch, so 1 and 2
// ranks give the same run; it learns the synthetic language; it saves HF's DistilBertForMaskedLM
// layout, which classification then loads like the hub's checkpoint (fresh head).
TEST_F(SyntheticTask, MaskedLmIsTheSameRunOnOneAndTwoRanksAndFeedsClassification) {
  const std::string common =
      " --objective=mlm --vocab=" + vocab_ + " --max_steps=64 --learning_rate=3e-3 --seed=5 --logging_steps=8";
  Train("", dir_ / "mlm1", "--batch_size=8" + common);
  Train(Mpirun(2), dir_ / "mlm2", "--batch_size=4" + common);
  auto one = Records(dir_ / "mlm1/metrics.jsonl", "train"), two = Records(dir_ / "mlm2/metrics.jsonl", "train");
  ASSERT_EQ(one.size(), 8u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_NEAR(one[i]["loss"].get<double>(), two[i]["loss"].get<double>(), 1e-5) << i;
    EXPECT_NEAR(one[i]["grad_norm"].get<double>(), two[i]["grad_norm"].get<double>(), 1e-4) << i;
  }
  auto e1 = Records(dir_ / "mlm1/metrics.jsonl", "eval"), e2 = Records(dir_ / "mlm2/metrics.jsonl", "eval");
  ASSERT_EQ(e1.size(), 2u);
  ASSERT_EQ(e2.size(), 2u);
  EXPECT_EQ(e1[1]["eval_total"], e2[1]["eval_total"]);  // the same masked eval tokens
  EXPECT_EQ(e1[1]["eval_correct"], e2[1]["eval_correct"]);
  EXPECT_EQ(e1[0]["eval_total"], e1[1]["eval_total"]);  // evaluation masks are fixed
  EXPECT_GT(e1[1]["eval_total"].get<int64_t>(), 100);
  // A random init predicts about uniformly over the 64-token vocabulary (ln 64 = 4.16); the words
  // are 40 ids drawn independently, so ln 40 = 3.69 is the best any model can do.
  EXPECT_LT(e1[1]["eval_loss"].get<double>(), 3.85);
  EXPECT_LT(e1[1]["eval_loss"].get<double>(), e1[0]["eval_loss"].get<double>());
  EXPECT_NEAR(e1[1]["eval_perplexity"].get<double>(), std::exp(e1[1]["eval_loss"].get<double>()), 1e-9);
  auto summary = Records(dir_ / "mlm1/metrics.jsonl", "summary");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0]["objective"], "mlm");
  auto w = ReadF32(dir_ / "mlm1/model/model.safetensors");
  EXPECT_TRUE(w.count("vocab_projector.bias"));
  EXPECT_FALSE(w.count("vocab_projector.weight"));  // tied, as save_pretrained writes it
  EXPECT_FALSE(w.count("classifier.weight"));
  // Classification from the pretrained encoder: encoder loaded, MLM head ignored, head fresh.
  const std::string cls = Ftune() + " train --model_dir=" + dir_ / "mlm1/model" + " --train_data=" + dir_ / "train.h5" +
                          " --output_dir=" + dir_ / "cls" + " --threads=1 --max_steps=2";
  CommandResult r = RunCommand(cls);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ignored 5 masked-LM head tensors"));
  EXPECT_THAT(r.output, HasSubstr("newly initialised"));
}

TEST_F(SyntheticTask, MaskedLmRefusesWhatItCannotDo) {
  const std::string base = Ftune() + " train --objective=mlm --model_config=" + config_ +
                           " --train_data=" + dir_ / "train.h5" + " --output_dir=" + dir_ / "x" + " --threads=1";
  CommandResult r = RunCommand(base);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--objective=mlm needs the vocabulary"));
  r = RunCommand(base + " --vocab=" + vocab_ + " --method=lora");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("use --method=full"));
  r = RunCommand(base + " --vocab=" + vocab_ + " --mlm_probability=1.5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--mlm_probability must be in (0, 1)"));
  r = RunCommand(base + " --objective=generate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not one of classification, mlm"));
  // A vocabulary other than the data's: the [MASK] id would be wrong.
  const std::string other = ::ftune::testing::WriteTestVocab(dir_ / "other.txt", 65);
  r = RunCommand(base + " --vocab=" + other);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("different vocabulary"));
}

// Every command's --help groups every flag it defines by topic (none left under "other flags")
// and names no flag that does not exist.
TEST(Help, EveryCommandExplainsEveryFlagItDefines) {
  for (const char* command : {"prep", "inspect", "train", "eval", "predict", "report"}) {
    CommandResult r = RunCommand(Ftune() + " " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.output, Not(HasSubstr("other flags:"))) << command << ":\n" << r.output;
    EXPECT_THAT(r.output, Not(HasSubstr("internal error"))) << command << ":\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("  --")) << command;
  }
  CommandResult train = RunCommand(Ftune() + " train --help");
  for (const char* flag : {"--learning_rate", "--gradient_comm", "--resume", "--method", "--train_data"}) {
    EXPECT_THAT(train.output, HasSubstr(flag));
  }
}

TEST(TrainCli, RefusesBadFlagsAndAnOutputDirHoldingARun) {
  ScratchDir dir;
  const std::string vocab = WriteVocab(dir, 64);
  WriteSyntheticJsonl(dir / "t.jsonl", 16, 4);
  Prep("--input_format=jsonl --input=" + dir / "t.jsonl" + " --output=" + dir / "t.h5" + " --vocab=" + vocab);
  const std::string cfg = WriteTinyConfig(dir, 64);
  const std::string base = Ftune() + " train --threads=1 --model_config=" + cfg + " --train_data=" + dir / "t.h5";
  CommandResult r = RunCommand(base + " --output_dir=" + dir / "o" + " --batch_size=0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--batch_size must be > 0"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --model-dir=x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown flag --model-dir"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --method=prefix");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not one of full, head, bitfit, last_k, lora, dora, ia3"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --method=lora --lora_rank=0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--lora_rank must be > 0"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --method=lora --lora_targets=query");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("\"query\" matches no Linear layer"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --precision=fp8");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--precision \"fp8\" is not one of fp32, bf16"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --pad_to_multiple_of=0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--pad_to_multiple_of must be in [1, 512]"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --max_steps=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --max_steps=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("already holds a run"));
  r = RunCommand(base + " --output_dir=" + dir / "o" + " --max_steps=2 --overwrite");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A dataset from a vocabulary the model cannot embed is refused before training.
  const std::string small = WriteTinyConfig(dir, 32);
  r = RunCommand(Ftune() + " train --threads=1 --model_config=" + small + " --train_data=" + dir / "t.h5" +
                 " --output_dir=" + dir / "v");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("64-token vocabulary but the model has 32 embeddings"));
}

TEST(TrainCli, TinyConfigLearnsRealImdbReviewsFromRandomInit) {
  const std::string shared = ::ftune::testing::SharedDir();
  if (!PathExists(shared + "/data/imdb/train.csv")) GTEST_SKIP() << "needs " << shared << "/data/imdb (absent)";
  ScratchDir dir;
  const std::string vocab = shared + "/vocab/bert-base-uncased-vocab.txt";
  for (const std::string split : {"train", "eval"}) {
    Prep("--input=" + shared + "/data/imdb/" + split + ".csv --output=" + dir / (split + ".h5") + " --vocab=" + vocab +
         " --max_length=128");
  }
  CommandResult r = RunCommand(Mpirun(2) + Ftune() + " train --model_config=" + FTUNE_SOURCE_DIR +
                               "/configs/tiny.json --train_data=" + dir / "train.h5" +
                               " --eval_data=" + dir / "eval.h5" + " --output_dir=" + dir / "imdb" +
                               " --epochs=2 --batch_size=8 --learning_rate=1e-3 --threads=1 --save_model=false");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto evals = Records(dir / "imdb/metrics.jsonl", "eval");
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_GT(evals.back()["eval_accuracy"].get<double>(), 0.60) << r.output;
  EXPECT_EQ(evals.back()["eval_total"], 500);
}

}  // namespace
}  // namespace ftune

// `ftune predict` / `ftune eval` / `ftune report` and launch/compare.sh end to end:
//  - predict with a PEFT adapter reproduces PEFT's own logits for the same inputs (1e-5), and the
//    merged model's; eval agrees with predict;
//  - the head feature cache evaluates exactly like the full forward pass;
//  - the main job (launch/compare.sh) runs the three methods and writes the comparison, on the
//    embedded default and (when ../shared exists) on the real IMDB subset.
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/cli/run_util.h"

namespace ftune {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::string Hf(const std::string& rel) { return std::string(FTUNE_FIXTURES_DIR) + "/hf/" + rel; }

// The reference batch of an io.safetensors as JSONL examples (padding stripped) + a 1000-token vocab.
void WriteReferenceBatch(const ScratchDir& dir, const std::string& io_path) {
  auto f = io::SafetensorsFile::Open(io_path);
  ASSERT_TRUE(f.ok()) << f.status();
  const io::TensorView* ids = *(*f)->Get("input_ids");
  const io::TensorView* mask = *(*f)->Get("attention_mask");
  const int64_t* id = reinterpret_cast<const int64_t*>(ids->data);
  const int64_t* m = reinterpret_cast<const int64_t*>(mask->data);
  std::ofstream out(dir / "ref.jsonl");
  for (int64_t r = 0; r < ids->shape[0]; ++r) {
    std::vector<int64_t> row;
    for (int64_t t = 0; t < ids->shape[1]; ++t) {
      if (m[r * ids->shape[1] + t]) row.push_back(id[r * ids->shape[1] + t]);
    }
    out << json({{"ids", row}, {"label", r % 2}}).dump() << "\n";
  }
  out.close();
  ::ftune::testing::WriteTestVocab(dir / "vocab.txt", 1000);
  // --max_length above the reference length: JSONL ids are kept as given.
  CommandResult r = RunCommand(Ftune() + " prep --input_format=jsonl --input=" + dir / "ref.jsonl" +
                               " --output=" + dir / "ref.h5" + " --vocab=" + dir / "vocab.txt" + " --max_length=64");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

std::vector<std::vector<double>> PredictedLogits(const std::string& csv) {
  auto text = ReadFileToString(csv);
  EXPECT_TRUE(text.ok());
  std::vector<std::vector<double>> rows;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    if (header) {
      EXPECT_EQ(line, "row,label,pred,logit_0,logit_1");
      header = false;
      continue;
    }
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    std::vector<double> v;
    for (size_t k = 3; k < cells.size(); ++k) {
      double x;
      EXPECT_TRUE(absl::SimpleAtod(cells[k], &x));
      v.push_back(x);
    }
    int64_t pred;
    EXPECT_TRUE(absl::SimpleAtoi(cells[2], &pred));
    EXPECT_EQ(pred, v[1] > v[0] ? 1 : 0);
    rows.push_back(v);
  }
  return rows;
}

void ExpectLogits(const std::vector<std::vector<double>>& got, const std::string& io_path, const std::string& key) {
  auto f = io::SafetensorsFile::Open(io_path);
  ASSERT_TRUE(f.ok());
  const io::TensorView* ref = *(*f)->Get(key);
  const float* want = reinterpret_cast<const float*>(ref->data);
  ASSERT_EQ(static_cast<int64_t>(got.size()), ref->shape[0]);
  for (size_t r = 0; r < got.size(); ++r) {
    for (size_t k = 0; k < 2; ++k) EXPECT_NEAR(got[r][k], want[r * 2 + k], 1e-5) << key << " row " << r;
  }
}

TEST(PredictCli, PeftAdapterLogitsEqualPeftsOwn) {
  ScratchDir dir;
  WriteReferenceBatch(dir, Hf("hf-tiny-lora/io.safetensors"));
  CommandResult r = RunCommand(Ftune() + " predict --threads=1 --model_dir=" + Hf("hf-tiny-cls") + " --adapter_dir=" +
                               Hf("hf-tiny-lora") + " --data=" + dir / "ref.h5" + " --output=" + dir / "p.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ExpectLogits(PredictedLogits(dir / "p.csv"), Hf("hf-tiny-lora/io.safetensors"), "logits");
  // Plain model (no adapter): HF's logits for hf-tiny-cls's own reference batch.
  ScratchDir dir2;
  WriteReferenceBatch(dir2, Hf("hf-tiny-cls/io.safetensors"));
  r = RunCommand(Ftune() + " predict --threads=1 --model_dir=" + Hf("hf-tiny-cls") + " --data=" + dir2 / "ref.h5" +
                 " --output=" + dir2 / "p.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ExpectLogits(PredictedLogits(dir2 / "p.csv"), Hf("hf-tiny-cls/io.safetensors"), "logits");
  r = RunCommand(Ftune() + " eval --threads=1 --model_dir=" + Hf("hf-tiny-cls") + " --data=" + dir2 / "ref.h5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/3)"));
}

TEST(PredictCli, MissingInputsAreClearErrors) {
  CommandResult r =
      RunCommand(Ftune() + " predict --model_dir=" + Hf("hf-tiny-cls") + " --data=/nonexistent.h5 --output=/tmp/x.csv");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("/nonexistent.h5"));
  r = RunCommand(Ftune() + " eval --data=/nonexistent.h5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--model_dir is required"));
}

TEST(FeatureCache, HeadAndLastKTrainingWithCacheEvaluateExactlyAsTheFullForward) {
  // The cache is computed in eval mode, so with every dropout at 0 training on it is the same
  // computation as running the frozen layers each step: metrics must agree to float noise. head
  // caches the [CLS] features, last_k (1 of 2 blocks) the hidden states entering block 1.
  ScratchDir dir;
  std::ofstream data(dir / "t.jsonl");
  for (int i = 0; i < 96; ++i) {
    std::vector<int> ids = {1};
    for (int k = 0; k < 5 + i % 17; ++k) ids.push_back(10 + (i * 7 + k * 13) % 50);
    ids.push_back(2);
    data << json({{"ids", ids}, {"label", (i / 3) % 2}}).dump() << "\n";
  }
  data.close();
  ::ftune::testing::WriteTestVocab(dir / "vocab.txt", 64);
  ASSERT_EQ(RunCommand(Ftune() + " prep --input_format=jsonl --input=" + dir / "t.jsonl" + " --output=" + dir / "t.h5" +
                       " --vocab=" + dir / "vocab.txt")
                .exit_code,
            0);
  ::ftune::testing::WriteTinyModelConfig(dir / "c.json", /*dropout=*/false);
  for (const std::string method : {"--method=head", "--method=last_k --last_k_layers=1"}) {
    const std::string tag = method.substr(9, 4);  // head, last
    auto train = [&](const std::string& name, const std::string& extra) {
      CommandResult r =
          RunCommand(Ftune() + " train --threads=1 " + method + " --model_config=" + dir / "c.json" +
                     " --train_data=" + dir / "t.h5" + " --eval_data=" + dir / "t.h5" + " --output_dir=" + dir / name +
                     " --epochs=3 --learning_rate=1e-2 --logging_steps=1 " + extra);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      return r.output;
    };
    train(tag + "-plain", "");
    std::string out = train(tag + "-cached", "--cache_frozen_features");
    EXPECT_THAT(out, HasSubstr("feature cache: encoded 96 training + 96 eval examples"));
    auto read = [&](const std::string& name) {
      std::vector<json> v;
      std::ifstream in(dir / name + "/metrics.jsonl");
      std::string line;
      while (std::getline(in, line)) v.push_back(json::parse(line));
      return v;
    };
    auto a = read(tag + "-plain"), b = read(tag + "-cached");
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i]["type"] == "train") {
        EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << method << " " << i;
      }
      if (a[i]["type"] == "eval") {
        EXPECT_EQ(a[i]["eval_correct"], b[i]["eval_correct"]) << method;
        EXPECT_NEAR(a[i]["eval_loss"].get<double>(), b[i]["eval_loss"].get<double>(), 1e-5) << method;
      }
    }
  }
  CommandResult r =
      RunCommand(Ftune() + " train --threads=1 --method=full --cache_frozen_features --model_config=" + dir / "c.json" +
                 " --train_data=" + dir / "t.h5" + " --output_dir=" + dir / "x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--cache_frozen_features applies to --method=head and last_k only"));
}

void ExpectComparison(const std::string& out, const std::string& log) {
  auto csv = ReadFileToString(out + "/compare.csv");
  ASSERT_TRUE(csv.ok()) << log;
  std::vector<std::string> lines = absl::StrSplit(*csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << *csv;
  EXPECT_THAT(lines[1], ::testing::StartsWith("full,"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("head,"));
  EXPECT_THAT(lines[3], ::testing::StartsWith("lora,"));
  auto md = ReadFileToString(out + "/compare.md");
  ASSERT_TRUE(md.ok());
  // The embedded default's encoder (dim 128, 4 layers): head = 128 x 128 + 128 + 128 x 2 + 2.
  EXPECT_THAT(*md, HasSubstr("| full | 4782466 | 100.00% |"));
  EXPECT_THAT(*md, HasSubstr("| head | 16770 |"));
  // LoRA r 12 on q_lin/v_lin: 4 layers x 2 x 12 x (128 + 128) + the head's 16,770.
  EXPECT_THAT(*md, HasSubstr("| lora | 41346 |"));
  if (std::system("command -v gnuplot >/dev/null") == 0) {
    EXPECT_TRUE(PathExists(out + "/compare.svg"));
  }
  for (const char* m : {"full", "head", "lora"}) {
    auto r = ReadFileToString(out + "/" + m + "/results.json");
    ASSERT_TRUE(r.ok()) << m;
    EXPECT_EQ(json::parse(*r)["world_size"], 2) << m;
  }
}

// `ftune report` over seeds, on hand-made runs: full scores 0.80/0.82/0.84 over 3 seeds (mean 0.82,
// sd 0.02, t(0.975, 2) = 4.302653: interval 0.82 -/+ 0.0497), and lora differs from full on 5
// examples of seed 42, all in lora's favour: McNemar's exact p = 2 * (1/2)^5 = 0.0625.
TEST(Report, SeedsGiveIntervalsAndPairedTestsAgainstFull) {
  ScratchDir dir;
  auto make = [&](const std::string& method, int seed, double acc, const std::vector<int>& pred) {
    const std::string run = dir / (method + "-" + std::to_string(seed));
    std::system(("mkdir -p " + run).c_str());
    std::ofstream(run + "/results.json") << json({{"method", method},
                                                  {"trainable_parameters", method == "full" ? 1000 : 10},
                                                  {"all_parameters", 1000},
                                                  {"comm_bytes_per_step", method == "full" ? 4000 : 40},
                                                  {"train_seconds", 2.0},
                                                  {"epochs",
                                                   {{{"epoch", 1},
                                                     {"step", 10},
                                                     {"seconds", 2.0},
                                                     {"eval_correct", std::lround(acc * 500)},
                                                     {"eval_total", 500},
                                                     {"eval_loss_sum", 250.0}}}}})
                                                .dump();
    std::ofstream(run + "/run_config.json") << json({{"seed", std::to_string(seed)}}).dump();
    std::ofstream csv(run + "/predictions.csv");
    csv << "row,label,pred,logit_0,logit_1\n";
    for (size_t i = 0; i < pred.size(); ++i) csv << i << "," << (i % 2) << "," << pred[i] << ",0,0\n";
    return run;
  };
  std::vector<int> truth(20), five_wrong(20);
  for (int i = 0; i < 20; ++i) truth[i] = five_wrong[i] = i % 2;
  for (int i = 0; i < 5; ++i) five_wrong[i] = 1 - five_wrong[i];
  const std::string runs = make("full", 42, 0.80, five_wrong) + "," + make("full", 43, 0.82, truth) + "," +
                           make("full", 44, 0.84, truth) + "," + make("lora", 42, 0.83, truth);
  CommandResult r = RunCommand(Ftune() + " report --runs=" + runs + " --output=" + dir / "out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto md = ReadFileToString(dir / "out/compare.md");
  ASSERT_TRUE(md.ok());
  EXPECT_THAT(*md, HasSubstr("| full | 3 | 0.8200 [0.7703, 0.8697] | - | - |"));
  EXPECT_THAT(*md, HasSubstr("| lora | 1 | 0.8300 | +0.0100 | 0.0625 (no seed differs at 0.05) |"));
  EXPECT_TRUE(PathExists(dir / "out/compare-frontier.gp"));
}

// The README's main job, shortened (64 tokens, 12 steps): every method runs on 2 ranks from the
// shipped encoder and the comparison is written. (Its accuracies are a benchmark: results/, README.)
TEST(CompareJob, EmbeddedDefaultRunsAllThreeMethods) {
  ScratchDir dir;
  CommandResult r =
      RunCommand("cd " + std::string(FTUNE_SOURCE_DIR) + " && FTUNE_BIN=" + Ftune() +
                 " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 launch/compare.sh --epochs 1 "
                 "--max-length 64 --out " +
                 dir.path() + " -- --max_steps=12");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ExpectComparison(dir.path(), r.output);
}

}  // namespace
}  // namespace ftune

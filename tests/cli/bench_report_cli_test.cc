// `ftune report --bench` (the table of launch/bench.sh) on run directories written here, with
// hand-computed samples/s, ratios to the HF anchor and model TFLOP/s.
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

void Write(const std::string& path, const std::string& text) {
  ASSERT_TRUE(MakeDirs(path.substr(0, path.rfind('/'))).ok());
  ASSERT_TRUE(WriteFileAtomic(path, text).ok());
}

// The Markdown row of `run` (its cells, trimmed), or nothing.
std::vector<std::string> Row(const std::string& md, const std::string& run) {
  for (absl::string_view line : absl::StrSplit(md, '\n')) {
    if (!absl::StartsWith(line, "| " + run + " |")) continue;
    std::vector<std::string> cells;
    for (absl::string_view c : absl::StrSplit(line.substr(1, line.size() - 2), '|')) {
      cells.emplace_back(absl::StripAsciiWhitespace(c));
    }
    return cells;
  }
  return {};
}

json Results(const std::string& method, double sps, double tokens_per_s, double train_s) {
  return {{"method", method},
          {"precision", "bf16"},
          {"samples_per_second", sps},
          {"tokens_per_second", tokens_per_s},
          {"train_seconds", train_s},
          {"padding_fraction", 0.02},
          {"peak_memory_bytes", 2.0 * (1 << 30)},
          {"peak_memory_kind", "cuda"},
          {"feature_cache", false},
          {"feature_cache_seconds", 0.0},
          {"steps", 250},
          {"skipped_steps", 0},
          {"torch", "2.11.0"},
          {"device", "cuda:0"},
          {"model", {{"dim", 768}, {"n_layers", 6}, {"hidden_dim", 3072}, {"n_heads", 12}}},
          // An epoch as ftune writes it: eval accuracy 300 / 500 = 0.6.
          {"epochs", json::array({{{"epoch", 1},
                                   {"step", 250},
                                   {"seconds", train_s},
                                   {"eval_correct", 300},
                                   {"eval_total", 500},
                                   {"eval_loss_sum", 300.0}}})}};
}

json Config(const std::string& method, const std::string& pad, const std::string& cudnn) {
  return {{"method", method},
          {"precision", "bf16"},
          {"pad_to_multiple_of", pad},
          {"cudnn_sdp", cudnn},
          {"max_steps", "-1"}};
}

TEST(BenchReport, RowsRatiosAndRunsThatDidNotFinish) {
  ScratchDir d;
  // full, dynamic padding: 100 samples/s over 20 s; its --time_phases run beside it.
  Write(d / "full-bf16/results.json", Results("full", 100, 30000, 20).dump());
  Write(d / "full-bf16/run_config.json", Config("full", "1", "false").dump());
  json phases = Results("full", 90, 27000, 22);
  phases["step_seconds"] = {{"data", 0.001}, {"forward", 0.01}, {"backward", 0.02}, {"comm", 0.0005},
                            {"optimizer", 0.002}, {"steps", 20}};
  Write(d / "full-bf16-phases/results.json", phases.dump());
  // head on cached features: 1,000 samples/s over 2 s of training after 2 s of encoding = 500 end to end.
  json cache = Results("head", 1000, 300000, 2);
  cache["feature_cache"] = true;
  cache["feature_cache_seconds"] = 2.0;
  Write(d / "head-cache-bf16/results.json", cache.dump());
  Write(d / "head-cache-bf16/run_config.json", Config("head", "1", "false").dump());
  // LoRA padded to multiples of 32 with cuDNN attention (--cudnn_sdp), 150 samples/s, 3 steps skipped.
  json lora = Results("lora", 150, 45000, 13.3);
  lora["skipped_steps"] = 3;
  Write(d / "lora-bf16-pad32/results.json", lora.dump());
  Write(d / "lora-bf16-pad32/run_config.json", Config("lora", "32", "true").dump());
  // Started but cut by the time limit (run_config.json only), and never started.
  Write(d / "lora-bf16/run_config.json", Config("lora", "1", "true").dump());
  Write(d / "lora-bf16/status", "timed out after 40 s\n");
  Write(d / "full-fp32/status", "not run: 3 s of the 200 s budget left\n");
  Write(d / "hf.json",
        json({{"transformers", "5.17.0"},
              {"torch", "2.11.0"},
              {"runs",
               {{"full_dyn_bf16", {{"train_metrics", {{"train_samples_per_second", 50.0}}}, {"peak_mem_gib", 1.83}}},
                {"full_bf16", {{"train_metrics", {{"train_samples_per_second", 62.5}}}, {"peak_mem_gib", 1.8}}},
                {"head_dyn_bf16", {{"train_metrics", {{"train_samples_per_second", 250.0}}}}},
                {"head_bf16", {{"train_metrics", {{"train_samples_per_second", 320.0}}}}},
                {"lora_dyn_bf16", {{"train_metrics", {{"train_samples_per_second", 100.0}}}}},
                {"head", {{"error", "Traceback ..."}}}}}})
            .dump());
  const std::string runs =
      d / "full-bf16," + d / "head-cache-bf16," + d / "lora-bf16-pad32," + d / "lora-bf16," + d / "full-fp32";
  CommandResult r = RunCommand(Ftune() + " report --bench --runs=" + runs + " --hf_results=" + d / "hf.json" +
                               " --title='ftune training speed: NVIDIA H200' --output=" + d / "out/bench.md");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto md = ReadFileToString(d / "out/bench.md");
  ASSERT_TRUE(md.ok());
  EXPECT_THAT(*md, HasSubstr("# ftune training speed: NVIDIA H200\n\nLibTorch 2.11.0."));

  // TFLOP/s by hand: 6 x (4 x 768^2 + 2 x 768 x 3072) = 42,467,328 matmul weights; 600,000 tokens
  // / 0.98 = 612,245 padded over 2,000 reviews (306.1 each); per token 2 x 42,467,328 + 6 x 4 x
  // 306.1 x 768 = 90,577,105 FLOPs forward; x 3 (full) x 612,245 / 20 s = 8.32 TFLOP/s.
  EXPECT_THAT(Row(*md, "full-bf16"),
              ::testing::ElementsAre("full-bf16", "full", "bf16", "dynamic padding", "100", "30000", "2.0%",
                                     "2.00 cuda", "8.3", "0.600", "1.00 / 10.00 / 20.00 / 0.50 / 2.00",
                                     "2.0x (HF full_dyn_bf16: 50.0)", "1.6x (HF full_bf16: 62.5)"));
  // 500 / HF head_dyn_bf16's 250 = 2.0x; / HF's fastest head run (head_bf16, 320) = 1.6x.
  EXPECT_THAT(Row(*md, "head-cache-bf16"),
              ::testing::ElementsAre("head-cache-bf16", "head", "bf16", "feature cache, dynamic padding",
                                     "500 (training alone 1000; encoding once 2.0 s)", "", "2.0%", "2.00 cuda", "",
                                     "0.600", "", "2.0x (HF head_dyn_bf16: 250)", "1.6x (HF head_bf16: 320)"));
  const auto lora_row = Row(*md, "lora-bf16-pad32");
  ASSERT_EQ(lora_row.size(), 13u) << *md;
  EXPECT_EQ(lora_row[3], "padded to x32, cuDNN attention");
  EXPECT_EQ(lora_row[4], "150 (3 non-finite steps skipped)");
  EXPECT_EQ(lora_row[11], "1.5x (HF lora_dyn_bf16: 100)");
  EXPECT_THAT(Row(*md, "lora-bf16"), ::testing::ElementsAre("lora-bf16", "lora", "bf16", "", "timed out after 40 s", "",
                                                            "", "", "", "", "", "", ""));
  const auto unrun = Row(*md, "full-fp32");
  ASSERT_EQ(unrun.size(), 13u) << *md;
  EXPECT_EQ(unrun[4], "not run: 3 s of the 200 s budget left");
  EXPECT_THAT(*md, HasSubstr("| full_dyn_bf16 | 50.0 | 1.83 |"));
  EXPECT_THAT(*md, HasSubstr("| head | failed: see the log | | |"));

  // bench.json beside it: the same numbers, machine-readable.
  auto text = ReadFileToString(d / "out/bench.json");
  ASSERT_TRUE(text.ok());
  const json doc = json::parse(*text);
  ASSERT_EQ(doc["rows"].size(), 5u);
  const json& full = doc["rows"][0];
  EXPECT_EQ(full["run"], "full-bf16");
  EXPECT_DOUBLE_EQ(full["hf_same_config"]["ratio"].get<double>(), 2.0);
  EXPECT_EQ(full["hf_best"]["run"], "full_bf16");
  EXPECT_DOUBLE_EQ(full["hf_best"]["ratio"].get<double>(), 1.6);
  EXPECT_NEAR(full["model_tflops"].get<double>(), 8.3183, 1e-3);
  EXPECT_DOUBLE_EQ(full["step_seconds"]["backward"].get<double>(), 0.02);
  EXPECT_DOUBLE_EQ(doc["rows"][1]["samples_per_second"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(doc["rows"][1]["train_samples_per_second"].get<double>(), 1000.0);
  EXPECT_EQ(doc["rows"][2]["pad_to_multiple_of"], 32);
  EXPECT_EQ(doc["rows"][2]["cudnn_sdp"], true);
  EXPECT_EQ(doc["rows"][2]["skipped_steps"], 3);
  EXPECT_EQ(doc["rows"][3]["status"], "timed out after 40 s");
  EXPECT_EQ(doc["rows"][3]["method"], "lora");
  EXPECT_EQ(doc["rows"][4]["status"], "not run: 3 s of the 200 s budget left");
  EXPECT_EQ(doc["hf"]["transformers"], "5.17.0");
}

TEST(BenchReport, WithoutTheAnchorAndOnBadInput) {
  ScratchDir d;
  Write(d / "full-fp32/results.json", Results("full", 12.5, 3000, 20).dump());
  // An anchor cut off mid-write costs only its columns.
  Write(d / "hf.json", "{\"runs\": {\"full_dyn\": {\"train_me");
  CommandResult r = RunCommand(Ftune() + " report --bench --runs=" + d / "full-fp32" +
                               " --hf_results=" + d / "hf.json" + " --output=" + d / "bench.md");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no HF anchor in the table"));
  auto md = ReadFileToString(d / "bench.md");
  ASSERT_TRUE(md.ok());
  const auto row = Row(*md, "full-fp32");
  ASSERT_EQ(row.size(), 13u) << *md;
  EXPECT_EQ(row[4], "12.5");
  EXPECT_EQ(row[11], "");
  EXPECT_THAT(*md, ::testing::Not(HasSubstr("Hugging Face Trainer anchor")));

  r = RunCommand(Ftune() + " report --bench --runs=" + d / "full-fp32" + " --output=" + d / "bench.txt");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--output=FILE.md"));
  Write(d / "broken/results.json", "{\"method\": ");
  r = RunCommand(Ftune() + " report --bench --runs=" + d / "broken" + " --output=" + d / "b.md");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("broken/results.json is not a JSON object"));
}

}  // namespace
}  // namespace ftune

// `ftune inspect --method=...` end to end on the tiny config (configs/tiny.json: dim 64, 2 blocks,
// ffn 256): the method flags reach the model, the tree shows the adapter layers, and the printed
// count is the one computed here by hand from the config (the full-size counts of every method are
// checked in-process by tests/model/methods_test.cc).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/run_util.h"

namespace ftune::testing {
namespace {

using ::testing::HasSubstr;

CommandResult Inspect(const std::string& flags) {
  return RunCommand(Ftune() + " inspect --threads=1 --model_config=" + std::string(FTUNE_SOURCE_DIR) +
                    "/configs/tiny.json " + flags);
}

TEST(InspectCli, MethodFlagsReachTheModelAndTheCountIsComputedByHand) {
  // Head: pre_classifier 64*64 + 64, classifier 2*64 + 2.
  const int64_t head = 4160 + 130;
  // Per block: q/k/v/out 4*(64*64 + 64), two LayerNorms 2*128, lin1 64*256 + 256, lin2 256*64 + 64.
  const int64_t block = 4 * 4160 + 256 + 16640 + 16448;
  const struct {
    std::string flags;
    int64_t count;
    std::string tree_line;
  } cases[] = {
      {"--method=last_k --last_k_layers=1", head + block, "(q_lin): Linear("},
      // One scale per output of k_lin and per input of lin2, in both blocks.
      {"--method=ia3 --ia3_targets=k_lin,lin2 --ia3_feedforward=lin2", head + 2 * (64 + 256),
       "(ia3_l): Parameter containing: [torch.FloatTensor of size 1x256]"},
      // LoRA r 4 on q_lin (A 4x64, B 64x4) plus one magnitude per output, in both blocks.
      {"--method=dora --lora_rank=4 --lora_targets=q_lin", head + 2 * (4 * 64 + 64 * 4 + 64),
       "(lora_magnitude_vector): Parameter containing: [torch.FloatTensor of size 64]"},
  };
  for (const auto& c : cases) {
    CommandResult r = Inspect(c.flags);
    ASSERT_EQ(r.exit_code, 0) << c.flags << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("trainable parameters: " + std::to_string(c.count) + "\n")) << c.flags;
    EXPECT_THAT(r.output, HasSubstr(c.tree_line)) << c.flags;
  }
}

// The named runs in configs/ select the method they say (counted by hand on the tiny model).
TEST(InspectCli, ConfigFlagFilesSelectTheirMethods) {
  const int64_t head = 4160 + 130;
  const int64_t block = 4 * 4160 + 256 + 16640 + 16448;
  // Biases per block: q/k/v/out 4*64, sa_layer_norm 64, lin1 256, lin2 64, output_layer_norm 64.
  const int64_t block_biases = 4 * 64 + 64 + 256 + 64 + 64;
  const struct {
    std::string file;
    int64_t count;
  } cases[] = {
      {"full", 2090562},
      {"head", head},
      {"lora", head + 2 * 2 * (12 * 64 + 64 * 12)},
      {"bitfit", head + 64 + 2 * block_biases},  // + the embeddings' LayerNorm bias
      {"last_k", head + 2 * block},              // both blocks of the two
      {"ia3", head + 2 * (64 + 64 + 256)},       // k_lin, v_lin outputs and lin2's input
      {"dora", head + 2 * 2 * (12 * 64 + 64 * 12 + 64)},
  };
  for (const auto& c : cases) {
    CommandResult r = Inspect("--flagfile=" + std::string(FTUNE_SOURCE_DIR) + "/configs/" + c.file + ".flags");
    ASSERT_EQ(r.exit_code, 0) << c.file << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("trainable parameters: " + std::to_string(c.count) + "\n")) << c.file;
  }
}

TEST(InspectCli, BadMethodFlagsAreUsageErrors) {
  CommandResult r = Inspect("--method=last_k --last_k_layers=3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--last_k_layers must be in [1, 2]"));
}

}  // namespace
}  // namespace ftune::testing

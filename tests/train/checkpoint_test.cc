// The checkpoint format on its own: a write/read round trip restores buffers, moments and position
// exactly; a checkpoint of another run (batch, layout, weights, seed) is refused with the reason;
// nothing is left half-written; old checkpoints are pruned; `latest` and "auto" find the newest;
// a resumed run's metrics log is cut back to the checkpoint.
#include "train/checkpoint.h"

#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ftune_ckpt_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    options_.dir = (dir_ / "checkpoints").string();
    options_.total_limit = 2;
    id_ = {2, 16, 42, 0x1234, ""};
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A model with two weight-decay groups and an optimizer with non-zero moments.
  struct Setup {
    torch::nn::Linear lin{torch::nn::Linear(3, 2)};
    std::optional<FlatParameters> flat;
    std::unique_ptr<FlatAdamW> adam;
  };
  std::unique_ptr<Setup> Make(int seed) {
    auto s = std::make_unique<Setup>();
    torch::manual_seed(seed);
    s->lin = torch::nn::Linear(3, 2);
    s->flat.emplace(std::move(*FlatParameters::Build(*s->lin, 0.01)));
    s->adam = std::make_unique<FlatAdamW>(&*s->flat, AdamWOptions{}, /*fused=*/false);
    for (auto& g : s->flat->groups()) g.grads.copy_(torch::randn_like(g.grads));
    s->adam->Step(1e-2);
    s->adam->Step(1e-2);
    return s;
  }
  CheckpointState State(int64_t step) {
    CheckpointState st;
    st.run.global_step = step;
    st.run.epoch = 1;
    st.run.step_in_epoch = 3;
    st.run.epoch_totals = {1.25, 48, 4800, 5000, 48};
    return st;
  }

  fs::path dir_;
  CheckpointOptions options_;
  CheckpointIdentity id_;
};

TEST_F(CheckpointTest, RoundTripRestoresEverythingExactly) {
  auto a = Make(1);
  auto written = WriteCheckpoint(*a->flat, *a->adam, State(7), id_, options_);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, options_.dir + "/step-7");
  auto b = Make(2);  // other values everywhere
  auto st = ReadCheckpoint(*written, id_, *b->flat, *b->adam);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->run.global_step, 7);
  EXPECT_EQ(st->run.step_in_epoch, 3);
  EXPECT_EQ(st->run.epoch_totals.loss, 1.25);
  EXPECT_EQ(b->adam->step_count(), 2);
  for (size_t i = 0; i < a->flat->groups().size(); ++i) {
    EXPECT_TRUE(torch::equal(a->flat->groups()[i].params, b->flat->groups()[i].params));
    EXPECT_TRUE(torch::equal(a->adam->exp_avg()[i], b->adam->exp_avg()[i]));
    EXPECT_TRUE(torch::equal(a->adam->exp_avg_sq()[i], b->adam->exp_avg_sq()[i]));
  }
  // The parameters themselves (views into the buffers) carry the restored values.
  EXPECT_TRUE(torch::equal(a->lin->weight, b->lin->weight));
}

TEST_F(CheckpointTest, ACheckpointOfAnotherRunIsRefusedWithTheReason) {
  auto a = Make(1);
  auto written = WriteCheckpoint(*a->flat, *a->adam, State(7), id_, options_);
  ASSERT_TRUE(written.ok()) << written.status();
  struct Case {
    CheckpointIdentity id;
    const char* says;
  } cases[] = {{{4, 32, 42, 0x1234, ""}, "global batch of 16"},
               {{2, 16, 7, 0x1234, ""}, "--seed=42"},
               {{2, 16, 42, 0x9999, ""}, "different frozen weights"}};
  for (const auto& c : cases) {
    auto b = Make(2);
    auto st = ReadCheckpoint(*written, c.id, *b->flat, *b->adam);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << c.says;
    EXPECT_THAT(std::string(st.status().message()), HasSubstr(c.says));
  }
  // Another trainable layout: no weight decay gives one group instead of two.
  torch::nn::Linear other(3, 2);
  auto flat = FlatParameters::Build(*other, 0.0);
  FlatAdamW adam(&*flat, {}, false);
  auto st = ReadCheckpoint(*written, id_, *flat, adam);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("different set of parameters"));
}

TEST_F(CheckpointTest, KeepsTheNewestAndResolvesAuto) {
  auto a = Make(1);
  for (int64_t step : {5, 10, 15}) ASSERT_TRUE(WriteCheckpoint(*a->flat, *a->adam, State(step), id_, options_).ok());
  EXPECT_FALSE(PathExists(options_.dir + "/step-5"));  // total_limit = 2
  EXPECT_TRUE(PathExists(options_.dir + "/step-10"));
  auto latest = ResolveResume("auto", options_.dir);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, options_.dir + "/step-15");
  // `latest` pointing at a removed directory: the newest complete one is taken.
  fs::remove_all(options_.dir + "/step-15");
  EXPECT_EQ(*ResolveResume("auto", options_.dir), options_.dir + "/step-10");
  EXPECT_EQ(*ResolveResume("auto", (dir_ / "none").string()), "");
  EXPECT_EQ(ResolveResume((dir_ / "nope").string(), options_.dir).status().code(), absl::StatusCode::kNotFound);
}

// Damage after the write: flipped bytes inside the tensors (the safetensors header intact), a cut
// state.json, a deleted state.json. A named checkpoint is refused as damaged; auto falls back to
// the previous undamaged one (saying so), and refuses when none is left.
TEST_F(CheckpointTest, DamagedCheckpointsAreDetectedAndAutoFallsBackToThePreviousOne) {
  auto a = Make(1);
  options_.total_limit = 0;
  for (int64_t step : {5, 10}) ASSERT_TRUE(WriteCheckpoint(*a->flat, *a->adam, State(step), id_, options_).ok());
  const std::string newest = options_.dir + "/step-10", older = options_.dir + "/step-5";
  ASSERT_TRUE(VerifyCheckpoint(newest).ok());
  {
    std::fstream f(newest + "/trainer.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.write("\xff\x7f\x01", 3);
  }
  absl::Status st = VerifyCheckpoint(newest);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("step-10 is damaged: trainer.safetensors does not match"));
  auto named = ResolveResume(newest, options_.dir);
  EXPECT_EQ(named.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(*ResolveResume("auto", options_.dir), older);
  // A cut state.json: damaged too.
  auto text = ReadFileToString(older + "/state.json");
  ASSERT_TRUE(text.ok());
  std::ofstream(older + "/state.json") << text->substr(0, text->size() / 2);
  EXPECT_THAT(std::string(VerifyCheckpoint(older).message()), HasSubstr("state.json does not match"));
  auto none = ResolveResume("auto", options_.dir);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("no usable checkpoint"));
}

TEST_F(CheckpointTest, ADeletedStateJsonMakesTheCheckpointIncomplete) {
  auto a = Make(1);
  for (int64_t step : {5, 10}) ASSERT_TRUE(WriteCheckpoint(*a->flat, *a->adam, State(step), id_, options_).ok());
  fs::remove(options_.dir + "/step-10/state.json");
  EXPECT_EQ(VerifyCheckpoint(options_.dir + "/step-10").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ResolveResume("auto", options_.dir), options_.dir + "/step-5");
}

TEST_F(CheckpointTest, ACheckpointOfOtherTrainingDataIsRefused) {
  auto a = Make(1);
  id_.data_fingerprint = "2000 examples, 400000 tokens, vocab aaaa, source bbbb";
  auto written = WriteCheckpoint(*a->flat, *a->adam, State(7), id_, options_);
  ASSERT_TRUE(written.ok());
  CheckpointIdentity other = id_;
  other.data_fingerprint = "500 examples, 90000 tokens, vocab aaaa, source cccc";
  auto b = Make(2);
  auto st = ReadCheckpoint(*written, other, *b->flat, *b->adam);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("was trained on other training data"));
  EXPECT_TRUE(ReadCheckpoint(*written, id_, *b->flat, *b->adam).ok());
}

TEST_F(CheckpointTest, NonFiniteWeightsAreNeverCheckpointed) {
  auto a = Make(1);
  ASSERT_TRUE(WriteCheckpoint(*a->flat, *a->adam, State(5), id_, options_).ok());
  a->flat->groups()[0].params[0] = std::numeric_limits<float>::quiet_NaN();
  auto st = WriteCheckpoint(*a->flat, *a->adam, State(6), id_, options_);
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(PathExists(options_.dir + "/step-6"));
  EXPECT_EQ(*ResolveResume("auto", options_.dir), options_.dir + "/step-5");
}

TEST_F(CheckpointTest, MetricsAfterTheCheckpointAreDropped) {
  auto a = Make(1);
  auto written = WriteCheckpoint(*a->flat, *a->adam, State(10), id_, options_);
  ASSERT_TRUE(written.ok());
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  std::ofstream(metrics) << R"({"type":"train","step":5})"
                         << "\n"
                         << R"({"type":"eval","step":10})"
                         << "\n"
                         << R"({"type":"train","step":15})"
                         << "\n"
                         << R"({"type":"summary","step":20})"
                         << "\n";
  ASSERT_TRUE(TruncateMetricsForResume(metrics, *written).ok());
  EXPECT_EQ(*ReadFileToString(metrics), "{\"type\":\"train\",\"step\":5}\n{\"type\":\"eval\",\"step\":10}\n");
}

// HF's DefaultFlowCallback: steps saves every save_steps steps and at the last step; epoch saves at
// every epoch's end. A due step that ends its epoch saves after the epoch's evaluation instead.
TEST(CheckpointCadence, EveryNStepsAfterEpochsAndAtTheEnd) {
  using At = LoopPoint::At;
  CheckpointOptions o;
  o.strategy = IntervalStrategy::kSteps;
  o.steps = 5;
  EXPECT_FALSE(Checkpointer(o).ShouldSave({At::kStep, 10, false}));  // checkpoints off without a directory
  o.dir = "x";
  const Checkpointer steps(o);
  EXPECT_TRUE(steps.ShouldSave({At::kStep, 10, false}));
  EXPECT_FALSE(steps.ShouldSave({At::kStep, 11, false}));
  EXPECT_FALSE(steps.ShouldSave({At::kStep, 10, /*ends=*/true}));    // ...the epoch's end saves it
  EXPECT_TRUE(steps.ShouldSave({At::kEpochEnd, 10, false}));         // after the evaluation
  EXPECT_FALSE(steps.ShouldSave({At::kEpochEnd, 12, false}));        // not due
  EXPECT_TRUE(steps.ShouldSave({At::kEpochEnd, 12, /*ends=*/true}));  // the end of training
  o.strategy = IntervalStrategy::kEpoch;
  const Checkpointer epochs(o);
  EXPECT_FALSE(epochs.ShouldSave({At::kStep, 10, false}));
  EXPECT_TRUE(epochs.ShouldSave({At::kEpochEnd, 12, false}));
  EXPECT_TRUE(epochs.ShouldSave({At::kEpochEnd, 12, true}));
  o.strategy = IntervalStrategy::kNo;
  EXPECT_FALSE(Checkpointer(o).ShouldSave({At::kEpochEnd, 10, true}));
}

}  // namespace
}  // namespace ftune::train

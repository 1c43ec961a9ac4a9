#include "train/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/log.h"
#include "io/safetensors.h"
#include "model/hf_checkpoint.h"

namespace ftune::train {
namespace {

constexpr int kCheckpointVersion = 1;
constexpr char kState[] = "state.json";
constexpr char kTensors[] = "trainer.safetensors";
constexpr char kLatest[] = "latest";

using json = nlohmann::json;

json EpochToJson(const EpochRecord& e) {
  json j = {{"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss}, {"seconds", e.seconds},
            {"samples_per_second", e.samples_per_second}, {"tokens_per_second", e.tokens_per_second},
            {"tokens", e.tokens}, {"padded_tokens", e.padded_tokens}};
  if (e.eval) {
    j["eval"] = {{"correct", e.eval->correct}, {"total", e.eval->total}, {"loss_sum", e.eval->loss_sum},
                 {"seconds", e.eval->seconds}};
  }
  return j;
}

EpochRecord EpochFromJson(const json& j) {
  EpochRecord e;
  e.epoch = j.at("epoch");
  e.step = j.at("step");
  e.train_loss = j.at("train_loss");
  e.seconds = j.at("seconds");
  e.samples_per_second = j.at("samples_per_second");
  e.tokens_per_second = j.at("tokens_per_second");
  e.tokens = j.value("tokens", 0.0);
  e.padded_tokens = j.value("padded_tokens", 0.0);
  if (j.contains("eval")) {
    EvalStats s;
    s.correct = j["eval"].at("correct");
    s.total = j["eval"].at("total");
    s.loss_sum = j["eval"].at("loss_sum");
    s.seconds = j["eval"].at("seconds");
    e.eval = s;
  }
  return e;
}

// Step directories ("step-<N>") under `dir`, oldest first.
std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    absl::string_view name(e->d_name);
    int64_t step;
    if (absl::ConsumePrefix(&name, "step-") && absl::SimpleAtoi(name, &step)) out.emplace_back(step, e->d_name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

void RemoveTree(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d != nullptr) {
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::remove((path + "/" + n).c_str());
    }
    closedir(d);
  }
  rmdir(path.c_str());
}

std::string Layout(Trainer& t) {
  std::string s;
  for (const auto& g : t.flat().groups()) {
    absl::StrAppend(&s, "group wd=", g.weight_decay, ":");
    for (const auto& n : g.names) absl::StrAppend(&s, n, ",");
    absl::StrAppend(&s, ";");
  }
  return s;
}

absl::StatusOr<RunState> ReadCheckpointOrThrow(Trainer& trainer, const std::string& path, int world_size);

}  // namespace

absl::StatusOr<std::string> WriteCheckpoint(Trainer& trainer, const RunState& state, const CheckpointOptions& o,
                                            int world_size) {
  for (const auto& g : trainer.flat().groups()) {
    if (!torch::isfinite(g.params).all().item<bool>()) {
      return absl::InternalError("refusing to checkpoint non-finite weights (the previous checkpoint is kept)");
    }
  }
  FTUNE_RETURN_IF_ERROR(MakeDirs(o.dir));
  const std::string name = absl::StrFormat("step-%d", state.global_step);
  const std::string final_dir = o.dir + "/" + name;
  const std::string tmp = absl::StrFormat("%s/.tmp-%s", o.dir, name);
  RemoveTree(tmp);
  FTUNE_RETURN_IF_ERROR(MakeDirs(tmp));

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  auto& groups = trainer.flat().groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    tensors.emplace_back(absl::StrFormat("group%d.params", i), groups[i].params);
    tensors.emplace_back(absl::StrFormat("group%d.exp_avg", i), trainer.optimizer().exp_avg()[i]);
    tensors.emplace_back(absl::StrFormat("group%d.exp_avg_sq", i), trainer.optimizer().exp_avg_sq()[i]);
  }
  absl::Status st = model::WriteTensors(tmp + "/" + kTensors, tensors);
  json epochs = json::array();
  for (const auto& e : state.epochs) epochs.push_back(EpochToJson(e));
  json j = {
      {"format_version", kCheckpointVersion},
      {"global_step", state.global_step},
      {"epoch", state.epoch},
      {"step_in_epoch", state.step_in_epoch},
      {"eval_pending", state.eval_pending},
      {"epoch_loss", state.epoch_loss},
      {"epoch_examples", state.epoch_examples},
      {"epoch_tokens", state.epoch_tokens},
      {"epoch_padded_tokens", state.epoch_padded_tokens},
      {"window_loss", state.window_loss},
      {"window_examples", state.window_examples},
      {"epoch_seconds", state.epoch_seconds},
      {"train_seconds", state.train_seconds},
      {"comm_seconds", state.comm_seconds},
      {"examples_total", state.examples_total},
      {"tokens_total", state.tokens_total},
      {"epochs", epochs},
      {"optimizer_step", trainer.optimizer().step_count()},
      {"world_size", world_size},
      {"global_batch", trainer.options().batch_size * world_size},
      {"seed", trainer.options().seed},
      {"trainable_layout", Layout(trainer)},
      {"frozen_fingerprint", absl::StrFormat("%016x", trainer.FrozenFingerprint())},
      {"run_config", o.run_config},
  };
  if (st.ok()) st = WriteFileAtomic(tmp + "/" + kState, j.dump(2) + "\n");
  if (st.ok()) {
    RemoveTree(final_dir);  // a stale directory of the same step (e.g. after a resume)
    st = CommitRename(tmp, final_dir);
  }
  if (st.ok()) st = WriteFileAtomic(o.dir + "/" + kLatest, name + "\n");
  if (!st.ok()) {
    RemoveTree(tmp);
    return Annotate(st, "writing checkpoint " + final_dir + " (the previous checkpoint is intact)");
  }
  if (o.keep_last > 0) {
    auto all = ListCheckpoints(o.dir);
    for (size_t i = 0; i + o.keep_last < all.size(); ++i) RemoveTree(o.dir + "/" + all[i].second);
  }
  return final_dir;
}

absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir) {
  if (spec.empty()) return std::string();
  if (spec != "auto") {
    if (!PathExists(spec + "/" + kState)) {
      return absl::NotFoundError(absl::StrFormat("--resume=%s: no %s there (not a checkpoint directory)", spec, kState));
    }
    return spec;
  }
  auto latest = ReadFileToString(checkpoints_dir + "/" + kLatest);
  if (latest.ok()) {
    std::string name(absl::StripAsciiWhitespace(*latest));
    if (PathExists(checkpoints_dir + "/" + name + "/" + kState)) return checkpoints_dir + "/" + name;
  }
  // `latest` missing or pointing at a removed directory: take the newest complete one.
  auto all = ListCheckpoints(checkpoints_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (PathExists(checkpoints_dir + "/" + it->second + "/" + kState)) return checkpoints_dir + "/" + it->second;
  }
  return std::string();
}

absl::StatusOr<RunState> ReadCheckpoint(Trainer& trainer, const std::string& path, int world_size) {
  try {
    return ReadCheckpointOrThrow(trainer, path, world_size);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrFormat("%s/%s is damaged: %s", path, kState, e.what()));
  }
}

namespace {
absl::StatusOr<RunState> ReadCheckpointOrThrow(Trainer& trainer, const std::string& path, int world_size) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path + "/" + kState));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || j.value("format_version", 0) != kCheckpointVersion) {
    return absl::DataLossError(absl::StrFormat("%s/%s: not a version-%d ftune checkpoint", path, kState,
                                               kCheckpointVersion));
  }
  const int64_t global_batch = trainer.options().batch_size * world_size;
  if (j.value("global_batch", int64_t{-1}) != global_batch) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was written with a global batch of %d (batch_size x ranks) but this run has %d; resume with the same "
        "global batch (e.g. --batch_size=%d with %d ranks)",
        path, j.value("global_batch", int64_t{-1}), global_batch,
        j.value("global_batch", int64_t{0}) / std::max(1, world_size), world_size));
  }
  if (j.value("trainable_layout", "") != Layout(trainer)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s trains a different set of parameters (method, LoRA targets/rank or weight decay changed?)", path));
  }
  if (j.value("frozen_fingerprint", "") != absl::StrFormat("%016x", trainer.FrozenFingerprint())) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was trained on different frozen weights (another --model_dir or --seed?)", path));
  }
  if (j.value("seed", uint64_t{0}) != trainer.options().seed) {
    return absl::FailedPreconditionError(absl::StrFormat("%s used --seed=%d", path, j.value("seed", uint64_t{0})));
  }
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(path + "/" + kTensors));
  auto& groups = trainer.flat().groups();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < groups.size(); ++i) {
    std::pair<std::string, torch::Tensor*> targets[] = {
        {absl::StrFormat("group%d.params", i), &groups[i].params},
        {absl::StrFormat("group%d.exp_avg", i), &trainer.optimizer().exp_avg()[i]},
        {absl::StrFormat("group%d.exp_avg_sq", i), &trainer.optimizer().exp_avg_sq()[i]}};
    for (auto& [name, dst] : targets) {
      FTUNE_ASSIGN_OR_RETURN(const io::TensorView* v, file->Get(name));
      if (v->numel() != dst->numel()) {
        return absl::DataLossError(absl::StrFormat("%s: %s has %d elements, expected %d", file->path(), name,
                                                   v->numel(), dst->numel()));
      }
      dst->copy_(model::TensorFromView(*v).view_as(*dst));
    }
  }
  trainer.optimizer().set_step_count(j.at("optimizer_step"));
  RunState s;
  s.global_step = j.at("global_step");
  s.epoch = j.at("epoch");
  s.step_in_epoch = j.at("step_in_epoch");
  s.eval_pending = j.at("eval_pending");
  s.epoch_loss = j.at("epoch_loss");
  s.epoch_examples = j.at("epoch_examples");
  s.epoch_tokens = j.at("epoch_tokens");
  s.epoch_padded_tokens = j.value("epoch_padded_tokens", s.epoch_tokens);
  s.window_loss = j.at("window_loss");
  s.window_examples = j.at("window_examples");
  s.epoch_seconds = j.at("epoch_seconds");
  s.train_seconds = j.at("train_seconds");
  s.comm_seconds = j.at("comm_seconds");
  s.examples_total = j.at("examples_total");
  s.tokens_total = j.at("tokens_total");
  for (const auto& e : j.at("epochs")) s.epochs.push_back(EpochFromJson(e));
  trainer.set_global_step(s.global_step);
  if (j.value("world_size", world_size) != world_size) {
    LogInfo("resuming a %d-rank checkpoint with %d ranks (same global batch, same sample position)",
            j.value("world_size", 0), world_size);
  }
  return s;
}
}  // namespace

}  // namespace ftune::train

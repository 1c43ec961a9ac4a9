#include "train/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/hash.h"
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

absl::StatusOr<RunState> ReadCheckpointOrThrow(const std::string& path, const CheckpointIdentity& id,
                                               FlatParameters& flat, FlatAdamW& optimizer,
                                               std::vector<torch::Tensor>* best);

}  // namespace

bool ShouldSave(const CheckpointOptions& o, int64_t global_step, bool epoch_or_run_ends) {
  return !o.dir.empty() && o.every_steps > 0 && global_step % o.every_steps == 0 && !epoch_or_run_ends;
}

bool ShouldSaveAtEpochEnd(const CheckpointOptions& o, bool run_ends) {
  return !o.dir.empty() && o.every_epoch && !run_ends;
}

absl::StatusOr<std::string> WriteCheckpoint(const FlatParameters& flat, const FlatAdamW& optimizer,
                                            const RunState& state, const CheckpointIdentity& id,
                                            const CheckpointOptions& o, const std::vector<torch::Tensor>& best) {
  for (const auto& g : flat.groups()) {
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
  const auto& groups = flat.groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    tensors.emplace_back(absl::StrFormat("group%d.params", i), groups[i].params);
    tensors.emplace_back(absl::StrFormat("group%d.exp_avg", i), optimizer.exp_avg()[i]);
    tensors.emplace_back(absl::StrFormat("group%d.exp_avg_sq", i), optimizer.exp_avg_sq()[i]);
    if (i < best.size()) tensors.emplace_back(absl::StrFormat("group%d.best_params", i), best[i]);
  }
  absl::Status st = model::WriteTensors(tmp + "/" + kTensors, tensors);
  json j = state.ToJson();
  j["format_version"] = kCheckpointVersion;
  j["optimizer_step"] = optimizer.step_count();
  j["world_size"] = id.world_size;
  j["global_batch"] = id.global_batch;
  j["seed"] = id.seed;
  j["trainable_layout"] = flat.Layout();
  j["frozen_fingerprint"] = absl::StrFormat("%016x", id.frozen_fingerprint);
  j["run_config"] = o.run_config;
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
  if (o.total_limit > 0) {
    // The newest total_limit checkpoints stay, one of them the best model's wherever it is (as HF's
    // checkpoint rotation does: with a limit of 1 and an older best, the best and the newest stay).
    auto others = ListCheckpoints(o.dir);
    const bool keep_best = state.best_metric && !others.empty() && others.back().first != state.best_step &&
                           PathExists(absl::StrFormat("%s/step-%d", o.dir, state.best_step));
    if (keep_best) {
      others.erase(
          std::remove_if(others.begin(), others.end(), [&](const auto& c) { return c.first == state.best_step; }),
          others.end());
    }
    const size_t keep = std::max<size_t>(1, static_cast<size_t>(o.total_limit) - (keep_best ? 1 : 0));
    for (size_t i = 0; i + keep < others.size(); ++i) RemoveTree(o.dir + "/" + others[i].second);
  }
  return final_dir;
}

absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir) {
  if (spec.empty()) return std::string();
  if (spec != "auto") {
    if (!PathExists(spec + "/" + kState)) {
      return absl::NotFoundError(
          absl::StrFormat("--resume=%s: no %s there (not a checkpoint directory)", spec, kState));
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

absl::StatusOr<RunState> ReadCheckpoint(const std::string& path, const CheckpointIdentity& id, FlatParameters& flat,
                                        FlatAdamW& optimizer, std::vector<torch::Tensor>* best) {
  try {
    return ReadCheckpointOrThrow(path, id, flat, optimizer, best);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrFormat("%s/%s is damaged: %s", path, kState, e.what()));
  }
}

absl::StatusOr<int64_t> CheckpointGlobalBatch(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path + "/" + kState));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("global_batch") || !j["global_batch"].is_number_integer()) {
    return absl::DataLossError(absl::StrFormat("%s/%s has no global_batch", path, kState));
  }
  return j["global_batch"].get<int64_t>();
}

absl::Status TruncateMetricsForResume(const std::string& metrics_path, const std::string& checkpoint) {
  if (!PathExists(metrics_path)) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(std::string state_text, ReadFileToString(checkpoint + "/" + kState));
  const int64_t step = json::parse(state_text, nullptr, false).value("global_step", int64_t{-1});
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(metrics_path));
  std::string kept;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    json r = json::parse(line, nullptr, false);
    if (!r.is_object() || r.value("type", "") == "summary" || r.value("step", int64_t{0}) > step) continue;
    absl::StrAppend(&kept, line, "\n");
  }
  return WriteFileAtomic(metrics_path, kept);
}

uint64_t FrozenFingerprint(torch::nn::Module& model) {
  uint64_t h = kFnv1a64Offset;
  for (const auto& p : model.named_parameters()) {
    if (p.value().requires_grad()) continue;
    torch::Tensor t = p.value().detach().to(torch::kCPU).contiguous();
    h = Fnv1a64(p.key(), h);
    h = Fnv1a64(absl::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()), h);
  }
  return h;
}

namespace {
absl::StatusOr<RunState> ReadCheckpointOrThrow(const std::string& path, const CheckpointIdentity& id,
                                               FlatParameters& flat, FlatAdamW& optimizer,
                                               std::vector<torch::Tensor>* best) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path + "/" + kState));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || j.value("format_version", 0) != kCheckpointVersion) {
    return absl::DataLossError(
        absl::StrFormat("%s/%s: not a version-%d ftune checkpoint", path, kState, kCheckpointVersion));
  }
  if (j.value("global_batch", int64_t{-1}) != id.global_batch) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was written with a global batch of %d (batch_size x ranks x gradient_accumulation_steps) but this run "
        "has %d; resume with the same global batch",
        path, j.value("global_batch", int64_t{-1}), id.global_batch));
  }
  if (j.value("trainable_layout", "") != flat.Layout()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s trains a different set of parameters (method, LoRA targets/rank or weight decay changed?)", path));
  }
  if (j.value("frozen_fingerprint", "") != absl::StrFormat("%016x", id.frozen_fingerprint)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s was trained on different frozen weights (another --model_dir or --seed?)", path));
  }
  if (j.value("seed", uint64_t{0}) != id.seed) {
    return absl::FailedPreconditionError(absl::StrFormat("%s used --seed=%d", path, j.value("seed", uint64_t{0})));
  }
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(path + "/" + kTensors));
  auto& groups = flat.groups();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < groups.size(); ++i) {
    std::pair<std::string, torch::Tensor*> targets[] = {
        {absl::StrFormat("group%d.params", i), &groups[i].params},
        {absl::StrFormat("group%d.exp_avg", i), &optimizer.exp_avg()[i]},
        {absl::StrFormat("group%d.exp_avg_sq", i), &optimizer.exp_avg_sq()[i]}};
    for (auto& [name, dst] : targets) {
      FTUNE_ASSIGN_OR_RETURN(const io::TensorView* v, file->Get(name));
      if (v->numel() != dst->numel()) {
        return absl::DataLossError(
            absl::StrFormat("%s: %s has %d elements, expected %d", file->path(), name, v->numel(), dst->numel()));
      }
      dst->copy_(model::TensorFromView(*v).view_as(*dst));
    }
  }
  if (best != nullptr) {
    best->clear();
    for (size_t i = 0; i < groups.size() && file->Get(absl::StrFormat("group%d.best_params", i)).ok(); ++i) {
      FTUNE_ASSIGN_OR_RETURN(const io::TensorView* v, file->Get(absl::StrFormat("group%d.best_params", i)));
      if (v->numel() != groups[i].params.numel()) {
        return absl::DataLossError(absl::StrFormat("%s: group%d.best_params has %d elements, expected %d", file->path(),
                                                   i, v->numel(), groups[i].params.numel()));
      }
      best->push_back(model::TensorFromView(*v).view_as(groups[i].params).to(groups[i].params.device()));
    }
  }
  optimizer.set_step_count(j.at("optimizer_step"));
  FTUNE_ASSIGN_OR_RETURN(RunState s, RunState::FromJson(j));
  if (j.value("world_size", id.world_size) != id.world_size) {
    LogInfo("resuming a %d-rank checkpoint with %d ranks (same global batch, same sample position)",
            j.value("world_size", 0), id.world_size);
  }
  return s;
}
}  // namespace

}  // namespace ftune::train

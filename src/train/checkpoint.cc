#include "train/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
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
constexpr char kChecksums[] = "checksums.sha256";
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


absl::StatusOr<CheckpointState> ReadCheckpointOrThrow(const std::string& path, const CheckpointIdentity& id,
                                                      FlatParameters& flat, FlatAdamW& optimizer);

// checksums.sha256 for the files of `dir` (sha256sum's format: "<hex>  <name>").
absl::Status WriteChecksums(const std::string& dir) {
  std::string text;
  for (const char* name : {kState, kTensors}) {
    FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(dir + "/" + name));
    absl::StrAppend(&text, sha, "  ", name, "\n");
  }
  return WriteFileAtomic(dir + "/" + kChecksums, text);
}

}  // namespace

absl::Status CheckpointOptions::Validate() const {
  if (strategy == IntervalStrategy::kSteps && steps <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--save_steps must be > 0 (got %d)", steps));
  }
  if (total_limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--save_total_limit must be >= 0 (0 = keep all; got %d)", total_limit));
  }
  return absl::OkStatus();
}

nlohmann::json CheckpointOptions::ToJson() const {
  return {{"save_strategy", IntervalStrategyName(strategy)}, {"save_steps", steps}, {"save_total_limit", total_limit}};
}

bool Checkpointer::ShouldSave(const LoopPoint& p) const {
  if (!enabled()) return false;
  const bool due = p.global_step % options_.steps == 0;
  switch (options_.strategy) {
    case IntervalStrategy::kSteps:
      // A due step that ends its epoch saves at the epoch's end, after the evaluation.
      return p.at == LoopPoint::At::kStep ? due && !p.ends : due || p.ends;
    case IntervalStrategy::kEpoch: return p.at == LoopPoint::At::kEpochEnd;
    case IntervalStrategy::kNo: return false;
  }
  return false;
}

absl::StatusOr<std::string> Checkpointer::Save(dist::Communicator& host, const RunState& state,
                                               const FlatParameters& flat, const FlatAdamW& optimizer,
                                               const GradScaler* scaler, const BestModel& best,
                                               const CheckpointIdentity& id) const {
  if (!enabled()) return absl::FailedPreconditionError("checkpoints are off (no --output_dir)");
  CheckpointState global;
  global.run = state;
  FTUNE_ASSIGN_OR_RETURN(global.run.epoch_totals, state.epoch_totals.SumOverRanks(host));
  FTUNE_ASSIGN_OR_RETURN(global.run.window, state.window.SumOverRanks(host));
  global.best = best.state();
  global.best_weights = best.WeightsToSave(state.global_step);
  if (scaler != nullptr) global.scaler = scaler->state();
  absl::StatusOr<std::string> written = std::string();
  if (host.rank() == 0) written = WriteCheckpoint(flat, optimizer, global, id, options_);
  int64_t failed = written.ok() ? 0 : 1;
  FTUNE_RETURN_IF_ERROR(host.AllReduce(&failed, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  FTUNE_RETURN_IF_ERROR(written.status());
  if (failed) return absl::AbortedError("rank 0 could not write the checkpoint");
  return written;
}

absl::StatusOr<RunState> Checkpointer::Restore(dist::Communicator& host, const std::string& path,
                                               const CheckpointIdentity& id, FlatParameters& flat,
                                               FlatAdamW& optimizer, GradScaler* scaler, BestModel& best) const {
  FTUNE_ASSIGN_OR_RETURN(CheckpointState c, ReadCheckpoint(path, id, flat, optimizer));
  FTUNE_RETURN_IF_ERROR(best.Restore(c.best, std::move(c.best_weights), flat, c.run.global_step, path));
  if (scaler != nullptr && c.scaler.scale > 0) scaler->Restore(c.scaler);
  // Global sums were stored; rank 0 carries them, the others restart from zero.
  if (host.rank() != 0) c.run.epoch_totals = c.run.window = Totals();
  return c.run;
}

absl::StatusOr<std::string> WriteCheckpoint(const FlatParameters& flat, const FlatAdamW& optimizer,
                                            const CheckpointState& checkpoint, const CheckpointIdentity& id,
                                            const CheckpointOptions& o) {
  const RunState& state = checkpoint.run;
  const std::vector<torch::Tensor>& best = checkpoint.best_weights;
  for (const auto& g : flat.groups()) {
    if (!torch::isfinite(g.params).all().item<bool>()) {
      return absl::InternalError("refusing to checkpoint non-finite weights (the previous checkpoint is kept)");
    }
  }
  FTUNE_RETURN_IF_ERROR(MakeDirs(o.dir));
  const std::string name = absl::StrFormat("step-%d", state.global_step);
  const std::string final_dir = o.dir + "/" + name;
  const std::string tmp = absl::StrFormat("%s/.tmp-%s", o.dir, name);
  FTUNE_RETURN_IF_ERROR(RemoveTree(tmp));
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
  checkpoint.best.ToJson(&j);
  checkpoint.scaler.ToJson(&j);
  j["format_version"] = kCheckpointVersion;
  j["optimizer_step"] = optimizer.step_count();
  j["world_size"] = id.world_size;
  j["global_batch"] = id.global_batch;
  j["seed"] = id.seed;
  j["trainable_layout"] = flat.Layout();
  j["frozen_fingerprint"] = absl::StrFormat("%016x", id.frozen_fingerprint);
  j["data_fingerprint"] = id.data_fingerprint;
  j["run_config"] = o.run_config;
  if (st.ok()) st = WriteFileAtomic(tmp + "/" + kState, j.dump(2) + "\n");
  if (st.ok()) st = WriteChecksums(tmp);
  if (st.ok()) {
    st = RemoveTree(final_dir);  // a stale directory of the same step (e.g. after a resume)
    if (st.ok()) st = CommitRename(tmp, final_dir);
  }
  if (st.ok()) st = WriteFileAtomic(o.dir + "/" + kLatest, name + "\n");
  if (!st.ok()) {
    RemoveTree(tmp).IgnoreError();
    return Annotate(st, "writing checkpoint " + final_dir + " (the previous checkpoint is intact)");
  }
  if (o.total_limit > 0) {
    // The newest total_limit checkpoints stay, one of them the best model's wherever it is (as HF's
    // checkpoint rotation does: with a limit of 1 and an older best, the best and the newest stay).
    auto others = ListCheckpoints(o.dir);
    const BestModelState& b = checkpoint.best;
    const bool keep_best = b.best_metric && !others.empty() && others.back().first != b.best_step &&
                           PathExists(absl::StrFormat("%s/step-%d", o.dir, b.best_step));
    if (keep_best) {
      others.erase(std::remove_if(others.begin(), others.end(), [&](const auto& c) { return c.first == b.best_step; }),
                   others.end());
    }
    const size_t keep = std::max<size_t>(1, static_cast<size_t>(o.total_limit) - (keep_best ? 1 : 0));
    for (size_t i = 0; i + keep < others.size(); ++i) RemoveTree(o.dir + "/" + others[i].second).IgnoreError();
  }
  return final_dir;
}

absl::Status VerifyCheckpoint(const std::string& path, bool* unverified) {
  if (unverified != nullptr) *unverified = false;
  if (!PathExists(path + "/" + kState)) {
    return absl::NotFoundError(absl::StrFormat("%s is incomplete: it has no %s", path, kState));
  }
  auto sums = ReadFileToString(path + "/" + kChecksums);
  if (!sums.ok()) {
    if (!absl::IsNotFound(sums.status())) return sums.status();
    if (unverified != nullptr) *unverified = true;  // written before checksums existed
    return absl::OkStatus();
  }
  std::set<std::string> checked;
  for (absl::string_view line : absl::StrSplit(*sums, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits("  ", 1));
    if (f.size() != 2 || f[0].size() != 64 || f[1].find('/') != std::string::npos) {
      return absl::DataLossError(absl::StrFormat("checkpoint %s is damaged: %s is not sha256sum output", path,
                                                 kChecksums));
    }
    auto sha = Sha256File(path + "/" + f[1]);
    if (!sha.ok()) {
      return absl::DataLossError(absl::StrFormat("checkpoint %s is damaged: %s", path, sha.status().message()));
    }
    if (*sha != f[0]) {
      return absl::DataLossError(
          absl::StrFormat("checkpoint %s is damaged: %s does not match its checksum in %s", path, f[1], kChecksums));
    }
    checked.insert(f[1]);
  }
  for (const char* name : {kState, kTensors}) {
    if (!checked.count(name)) {
      return absl::DataLossError(absl::StrFormat("checkpoint %s is damaged: %s has no checksum of %s", path,
                                                 kChecksums, name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir) {
  if (spec.empty()) return std::string();
  auto verified = [](const std::string& path) -> absl::Status {
    bool unverified = false;
    FTUNE_RETURN_IF_ERROR(VerifyCheckpoint(path, &unverified));
    if (unverified) LogWarn("%s has no %s (written by an older ftune): its files are not verified", path, kChecksums);
    return absl::OkStatus();
  };
  if (spec != "auto") {
    if (!PathExists(spec + "/" + kState)) {
      return absl::NotFoundError(
          absl::StrFormat("--resume=%s: no %s there (not a checkpoint directory)", spec, kState));
    }
    FTUNE_RETURN_IF_ERROR(Annotate(verified(spec), absl::StrCat("--resume=", spec)));
    return spec;
  }
  // Newest first: the one `latest` names, then every step-<N> directory by step.
  std::vector<std::string> candidates;
  std::string latest_name;
  if (auto latest = ReadFileToString(checkpoints_dir + "/" + kLatest); latest.ok()) {
    latest_name = std::string(absl::StripAsciiWhitespace(*latest));
    if (!latest_name.empty() && latest_name.find('/') == std::string::npos) {
      candidates.push_back(checkpoints_dir + "/" + latest_name);
    }
  }
  auto all = ListCheckpoints(checkpoints_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string path = checkpoints_dir + "/" + it->second;
    if (candidates.empty() || path != candidates.front()) candidates.push_back(path);
  }
  std::vector<std::string> skipped;
  for (const std::string& path : candidates) {
    const bool named_by_latest = !latest_name.empty() && path == checkpoints_dir + "/" + latest_name;
    if (!PathExists(path)) {
      if (named_by_latest) skipped.push_back(absl::StrFormat("%s/latest names %s, which is gone", checkpoints_dir, latest_name));
      continue;
    }
    absl::Status st = verified(path);
    if (st.ok()) {
      for (const auto& why : skipped) LogWarn("%s; resuming from %s instead (--resume=auto)", why, path);
      return path;
    }
    skipped.push_back(std::string(st.message()));
  }
  if (!skipped.empty()) {
    bool any_damaged = false;
    for (const auto& why : skipped) any_damaged = any_damaged || absl::StrContains(why, "damaged");
    if (any_damaged) {
      return absl::DataLossError(absl::StrFormat(
          "no usable checkpoint in %s: %s. Remove the damaged checkpoints to start over (or pass --overwrite)",
          checkpoints_dir, absl::StrJoin(skipped, "; ")));
    }
    for (const auto& why : skipped) LogWarn("%s; no other checkpoint: starting fresh (--resume=auto)", why);
  }
  return std::string();
}

absl::StatusOr<CheckpointState> ReadCheckpoint(const std::string& path, const CheckpointIdentity& id,
                                               FlatParameters& flat, FlatAdamW& optimizer) {
  try {
    return ReadCheckpointOrThrow(path, id, flat, optimizer);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrFormat("%s/%s is damaged: %s", path, kState, e.what()));
  }
}

absl::StatusOr<int64_t> CheckpointGlobalBatch(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path + "/" + kState));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return absl::DataLossError(absl::StrFormat("checkpoint %s is damaged: %s is not JSON", path, kState));
  if (!j.contains("global_batch") || !j["global_batch"].is_number_integer()) {
    return absl::DataLossError(absl::StrFormat("checkpoint %s is damaged: %s has no global_batch", path, kState));
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
absl::StatusOr<CheckpointState> ReadCheckpointOrThrow(const std::string& path, const CheckpointIdentity& id,
                                                      FlatParameters& flat, FlatAdamW& optimizer) {
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
  // Checkpoints from before data fingerprints were stored cannot be checked.
  const std::string data = j.value("data_fingerprint", std::string());
  if (!data.empty() && !id.data_fingerprint.empty() && data != id.data_fingerprint) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was trained on other training data (%s; this run's --train_data is %s): resume with the same "
        "--train_data, or start a new run (--overwrite or another --output_dir)",
        path, data, id.data_fingerprint));
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
  CheckpointState c;
  for (size_t i = 0; i < groups.size() && file->Get(absl::StrFormat("group%d.best_params", i)).ok(); ++i) {
    FTUNE_ASSIGN_OR_RETURN(const io::TensorView* v, file->Get(absl::StrFormat("group%d.best_params", i)));
    if (v->numel() != groups[i].params.numel()) {
      return absl::DataLossError(absl::StrFormat("%s: group%d.best_params has %d elements, expected %d", file->path(),
                                                 i, v->numel(), groups[i].params.numel()));
    }
    c.best_weights.push_back(model::TensorFromView(*v).view_as(groups[i].params).to(groups[i].params.device()));
  }
  optimizer.set_step_count(j.at("optimizer_step"));
  FTUNE_ASSIGN_OR_RETURN(c.run, RunState::FromJson(j));
  c.best = BestModelState::FromJson(j);
  c.scaler = GradScalerState::FromJson(j);
  if (j.value("world_size", id.world_size) != id.world_size) {
    LogInfo("resuming a %d-rank checkpoint with %d ranks (same global batch, same sample position)",
            j.value("world_size", 0), id.world_size);
  }
  return c;
}
}  // namespace

}  // namespace ftune::train

// What train, eval and predict share: MPI/device/thread set-up, opening datasets with checks
// against the model, the output directory, rank agreement, and failing the whole job (never
// leaving peers hanging) when one rank fails.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "common/status.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "distributed/dist_context.h"
#include "model/hf_checkpoint.h"
#include "nlohmann/json.hpp"

namespace ftune::cli {

class RunContext {
 public:
  static absl::StatusOr<std::unique_ptr<RunContext>> Create();
  ~RunContext();

  dist::DistContext& ctx() { return ctx_; }
  // Host scalars (metrics, stop flags, agreement) and host-side collectives: always MPI.
  dist::Communicator& host_comm() { return *host_comm_; }
  // Gradients (--gradient_comm): nullptr with one rank (nothing to sum), NCCL for CUDA ranks when
  // compiled in, else MPI (then the same object as host_comm()).
  dist::Communicator* gradient_comm() { return gradient_comm_; }
  const torch::Device& device() const { return device_; }
  // From --precision (validated at start-up).
  model::ModelOptions model_options() const { return model_options_; }

  // OK on every rank only if `st` is OK on every rank (the first error is reported by its rank).
  absl::Status Agree(const absl::Status& st);
  // `*s` of rank `root` on every rank.
  absl::Status BroadcastString(std::string* s, int root);
  // Fails on every rank if ranks were started with different settings (naming each flag that
  // differs from rank 0's), models or data.
  absl::Status CheckRanksAgree(torch::nn::Module& model, const nlohmann::json& config, const data::TokenDataset& train);
  // train::ResolveResume on rank 0 (which verifies the checkpoint's checksums), its answer on
  // every rank.
  absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir);
  // Peak resident memory (CPU) or peak CUDA allocation of this process, in bytes.
  int64_t PeakMemoryBytes() const;
  absl::Status Finalize();

 private:
  RunContext(dist::DistContext ctx) : ctx_(std::move(ctx)) {}
  dist::DistContext ctx_;
  std::unique_ptr<dist::Communicator> host_comm_;
  std::unique_ptr<dist::Communicator> nccl_;     // when gradients go over NCCL
  dist::Communicator* gradient_comm_ = nullptr;  // host_comm_, nccl_ or none
  torch::Device device_ = torch::kCPU;
  model::ModelOptions model_options_;
};

// How a command that ran to its end finished: done, or stopped by a signal after writing a
// checkpoint (every rank at the same step; exit code kExitPreempted, resumable).
enum class Outcome { kDone, kPreempted };

// Runs `fn` with a RunContext; any error is printed (tagged with the rank) and, when several
// ranks run, ends the whole job with MPI_Abort so no peer waits forever. Returns the exit code.
int RunWithContext(const std::function<absl::StatusOr<Outcome>(RunContext&)>& fn);

// Token ids, vocabulary and labels of `ds` fit the model: the same vocab.txt (sha256) when the
// model directory has one, ids below the model's vocab_size; with `uses_labels`, the dataset has
// labels and they are below num_labels.
absl::Status CheckDataFitsModel(const model::ModelConfig& config, const data::TokenDataset& ds, bool uses_labels);
absl::Status CheckDataFitsModel(const model::LoadedModel& m, const data::TokenDataset& ds);

// A fresh classification head takes the dataset's label names (saved into config.json's id2label).
void AdoptLabelNames(model::LoadedModel& m, const data::TokenDataset& ds);

// Rank 0 creates `dir`. A directory holding a previous run is refused, unless `overwrite` (its
// metrics.jsonl is cleared) or `resuming` (kept, to be continued). Collective.
absl::Status PrepareOutputDir(RunContext& run, const std::string& dir, bool overwrite, bool resuming = false);

// Copies <model_dir>/vocab.txt next to a saved model so the directory is complete (if known).
absl::Status CopyVocab(const std::string& saved_dir);

// What identifies a training set in checkpoints and rank checks: its size and the hashes of its
// vocabulary and source file.
std::string DataFingerprint(const data::TokenDataset& ds);

}  // namespace ftune::cli

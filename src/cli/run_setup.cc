#include "cli/run_setup.h"

#include <sys/resource.h>

#include <cstdio>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "train/checkpoint.h"

namespace ftune::cli {

absl::StatusOr<std::unique_ptr<RunContext>> RunContext::Create() {
  FTUNE_ASSIGN_OR_RETURN(dist::DistContext ctx, dist::DistContext::Init(nullptr, nullptr));
  std::unique_ptr<RunContext> run(new RunContext(std::move(ctx)));
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0) return absl::InvalidArgumentError(absl::StrFormat("--threads must be >= 0 (0 = all cores of this rank's share; got %d)", threads));
  at::set_num_threads(threads > 0 ? threads : run->ctx_.DefaultIntraOpThreads());

  const DeviceChoice device = absl::GetFlag(FLAGS_device);
  const bool cuda = torch::cuda::is_available();
  if (device == DeviceChoice::kCuda && !cuda) {
    return absl::FailedPreconditionError("--device=cuda but LibTorch sees no CUDA device (CPU build or no GPU)");
  }
  if (cuda && device != DeviceChoice::kCpu) {
    const int index = run->ctx_.local_rank() % static_cast<int>(torch::cuda::device_count());
    run->device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  compat::SetCudnnAttention(absl::GetFlag(FLAGS_cudnn_sdp));
  switch (absl::GetFlag(FLAGS_precision)) {
    case Precision::kFp32: break;
    case Precision::kBf16: run->model_options_.compute_dtype = torch::kBFloat16; break;
    case Precision::kFp16:
      if (!run->device_.is_cuda()) {
        return absl::InvalidArgumentError(
            "--precision=fp16 needs a CUDA device (CPU autocast has no float16); use bf16 or fp32 on CPU");
      }
      run->model_options_.compute_dtype = torch::kHalf;
      break;
  }
  const double timeout = absl::GetFlag(FLAGS_comm_timeout);
  if (!(timeout >= 0)) {
    return absl::InvalidArgumentError(absl::StrFormat("--comm_timeout must be >= 0 (0 = wait forever; got %g)", timeout));
  }
  dist::MpiCommunicatorOptions mo;
  mo.timeout_seconds = absl::GetFlag(FLAGS_comm_timeout);
  run->host_comm_ = dist::MakeMpiCommunicator(run->ctx_, mo);
  const GradientComm gradient_comm = absl::GetFlag(FLAGS_gradient_comm);
  const bool several = run->ctx_.world_size() > 1;
  const bool nccl = gradient_comm == GradientComm::kNccl ||
                    (gradient_comm == GradientComm::kAuto && several && run->device_.is_cuda() && dist::NcclCompiledIn());
  if (nccl) {
    if (!run->device_.is_cuda()) return absl::InvalidArgumentError("--gradient_comm=nccl needs CUDA ranks");
    FTUNE_ASSIGN_OR_RETURN(run->nccl_, dist::MakeNcclCommunicator(run->ctx_, run->device_.index()));
    run->gradient_comm_ = run->nccl_.get();
  } else if (gradient_comm == GradientComm::kMpi || (gradient_comm == GradientComm::kAuto && several)) {
    run->gradient_comm_ = run->host_comm_.get();
  } else if (gradient_comm == GradientComm::kNone && several) {
    return absl::InvalidArgumentError("--gradient_comm=none with several ranks would train them apart");
  }
  LogInfo("ftune: %d rank(s) on %s, device %s, %d intra-op threads per rank, gradients %s, LibTorch %s",
          run->ctx_.world_size(), run->ctx_.hostname(), run->device_.str(), at::get_num_threads(),
          run->gradient_comm_ == nullptr ? "stay local (one rank)" : absl::StrCat("over ", run->gradient_comm_->name()),
          compat::TorchVersion());
  return run;
}

RunContext::~RunContext() = default;

absl::Status RunContext::Finalize() {
  gradient_comm_ = nullptr;
  nccl_.reset();
  host_comm_.reset();
  return ctx_.Finalize();
}

absl::Status RunContext::Agree(const absl::Status& st) {
  int64_t failed = st.ok() ? 0 : 1;
  FTUNE_RETURN_IF_ERROR(host_comm().AllReduce(&failed, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  if (!st.ok()) return st;
  if (failed) return absl::AbortedError("another rank failed (see its message)");
  return absl::OkStatus();
}

absl::Status RunContext::BroadcastString(std::string* s, int root) {
  int64_t size = static_cast<int64_t>(s->size());
  FTUNE_RETURN_IF_ERROR(host_comm().Broadcast(&size, 1, dist::DType::kInt64, root));
  std::vector<int64_t> words((size + 7) / 8, 0);
  if (ctx_.rank() == root) std::memcpy(words.data(), s->data(), s->size());
  if (!words.empty()) FTUNE_RETURN_IF_ERROR(host_comm().Broadcast(words.data(), words.size(), dist::DType::kInt64, root));
  s->assign(reinterpret_cast<const char*>(words.data()), static_cast<size_t>(size));
  return absl::OkStatus();
}

absl::Status RunContext::CheckRanksAgree(torch::nn::Module& model, const nlohmann::json& config,
                                         const data::TokenDataset& train) {
  nlohmann::json c = config;
  for (const char* per_rank : {"device", "intra_op_threads"}) c.erase(per_rank);  // differ legitimately
  const std::string mine = c.dump();
  int64_t h[2] = {static_cast<int64_t>(Fnv1a64(mine) >> 1), -static_cast<int64_t>(Fnv1a64(mine) >> 1)};
  FTUNE_RETURN_IF_ERROR(host_comm().AllReduce(h, 2, dist::DType::kInt64, dist::ReduceOp::kMax));
  if (h[0] != -h[1]) {
    // Some rank was started with other settings: name them, against rank 0's.
    std::string root = mine;
    FTUNE_RETURN_IF_ERROR(BroadcastString(&root, 0));
    const nlohmann::json theirs = nlohmann::json::parse(root);
    std::vector<std::string> differ;
    for (const auto& [key, value] : c.items()) {
      if (!theirs.contains(key) || theirs[key] != value) {
        differ.push_back(absl::StrFormat("--%s (%s here, %s on rank 0)", key, value.dump(),
                                         theirs.contains(key) ? theirs[key].dump() : "unset"));
      }
    }
    absl::Status st;
    if (!differ.empty()) {
      st = absl::FailedPreconditionError(absl::StrFormat(
          "rank %d was started with other settings than rank 0: %s. Every rank must get the same flags",
          ctx_.rank(), absl::StrJoin(differ, ", ")));
    }
    FTUNE_RETURN_IF_ERROR(Agree(st));
  }
  std::string shapes;
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    absl::StrAppend(&shapes, p.key(), ":", c10::toString(p.value().scalar_type()));
    for (int64_t d : p.value().sizes()) absl::StrAppend(&shapes, ",", d);
    shapes += ";";
  }
  FTUNE_RETURN_IF_ERROR(ctx_.CheckSameOnAllRanks(Fnv1a64(shapes), "trainable parameters (names/shapes/dtypes)"));
  return ctx_.CheckSameOnAllRanks(Fnv1a64(DataFingerprint(train)), "training data (" + train.path() + ")");
}

absl::StatusOr<std::string> RunContext::ResolveResume(const std::string& spec, const std::string& checkpoints_dir) {
  // Rank 0 reads and verifies (a checkpoint's files can be large); every rank gets its answer.
  absl::StatusOr<std::string> path = std::string();
  if (ctx_.is_root()) path = train::ResolveResume(spec, checkpoints_dir);
  FTUNE_RETURN_IF_ERROR(Agree(path.status()));
  std::string chosen = *path;
  FTUNE_RETURN_IF_ERROR(BroadcastString(&chosen, 0));
  return chosen;
}

std::string DataFingerprint(const data::TokenDataset& ds) {
  const auto& i = ds.info();
  return absl::StrFormat("%d examples, %d tokens, vocab %s, source %s", i.num_examples, i.num_tokens,
                         i.vocab_sha256.substr(0, 12), i.source_sha256.substr(0, 12));
}

int64_t RunContext::PeakMemoryBytes() const {
  if (device_.is_cuda()) return compat::CudaPeakAllocatedBytes(device_);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

int RunWithContext(const std::function<absl::StatusOr<Outcome>(RunContext&)>& fn) {
  auto run = RunContext::Create();
  if (!run.ok()) return ReportFailure(run.status());
  absl::StatusOr<Outcome> outcome = fn(**run);
  if (!outcome.ok()) {
    int code = ReportFailure(outcome.status());
    if ((*run)->ctx().world_size() > 1) (*run)->ctx().Abort(code);
    return code;
  }
  absl::Status st = (*run)->Finalize();
  if (!st.ok()) return ReportFailure(st);
  // Preempted: every rank stopped at the same step and rank 0 wrote the checkpoint.
  return *outcome == Outcome::kPreempted ? kExitPreempted : kExitOk;
}

absl::Status CheckDataFitsModel(const model::ModelConfig& config, const data::TokenDataset& ds, bool uses_labels) {
  const auto& info = ds.info();
  if (uses_labels && !ds.has_labels()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s has no labels (it was made by `ftune prep --label_column=`): a classifier needs labeled data; "
        "run `ftune prep` with the label column on labeled data",
        ds.path()));
  }
  // The same tokenizer file as the model's (tokenizer.json or vocab.txt, whichever prep used).
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::string tokenizer_file = model_dir + "/" + info.vocab_file;
  if (!model_dir.empty() && PathExists(tokenizer_file)) {
    FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(tokenizer_file));
    FTUNE_RETURN_IF_ERROR(ds.CheckVocab(sha, info.vocab_size));
  }
  if (info.vocab_size > config.vocab_size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was tokenized with a %d-token vocabulary but the model has %d embeddings; re-run `ftune prep` with "
        "the model's vocab.txt",
        ds.path(), info.vocab_size, config.vocab_size));
  }
  if (uses_labels && ds.is_regression() != (config.num_labels == 1)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        ds.is_regression()
            ? "%s has float labels (regression) but the model's head has %d outputs: regression takes one "
              "(--num_labels=1)"
            : "%s has class labels but the model's head has %d output (a regression head): classification takes one "
              "output per class (--num_labels)",
        ds.path(), config.num_labels));
  }
  if (uses_labels && static_cast<int64_t>(info.label_names.size()) > config.num_labels) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s has %d labels but the model's classifier has %d outputs (set --num_labels)", ds.path(),
                        info.label_names.size(), config.num_labels));
  }
  // The longest sequence is known before the first step: refuse it now rather than mid-run.
  int64_t longest = 0, at = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    if (ds.length(i) > longest) longest = ds.length(i), at = i;
  }
  if (longest > config.max_position_embeddings) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: example %d has %d tokens but the model takes at most %d (max_position_embeddings); re-run `ftune prep` "
        "with --max_length=%d",
        ds.path(), at, longest, config.max_position_embeddings, config.max_position_embeddings));
  }
  return absl::OkStatus();
}

absl::Status CheckDataFitsModel(const model::LoadedModel& m, const data::TokenDataset& ds) {
  return CheckDataFitsModel(m.model->config(), ds, /*uses_labels=*/true);
}

void AdoptLabelNames(model::LoadedModel& m, const data::TokenDataset& ds) {
  const auto& names = ds.info().label_names;
  if (m.fresh_head() && static_cast<int64_t>(names.size()) == m.model->config().num_labels) {
    m.model->SetLabelNames(names);
  }
}

absl::Status PrepareOutputDir(RunContext& run, const std::string& dir, bool overwrite, bool resuming) {
  absl::Status st;
  if (run.ctx().is_root()) {
    const bool used =
        PathExists(dir + "/metrics.jsonl") || PathExists(dir + "/results.json") || PathExists(dir + "/model");
    if (used && !overwrite && !resuming) {
      st = absl::FailedPreconditionError(absl::StrFormat(
          "%s already holds a run (metrics.jsonl/results.json/model); pass --overwrite or pick another --output_dir",
          dir));
    } else {
      st = MakeDirs(dir);
      if (st.ok() && used && !resuming) std::remove((dir + "/metrics.jsonl").c_str());
    }
  }
  return run.Agree(st);
}

absl::Status CopyVocab(const std::string& saved_dir) {
  std::string vocab = absl::GetFlag(FLAGS_vocab);
  if (vocab.empty() && !absl::GetFlag(FLAGS_model_dir).empty()) vocab = absl::GetFlag(FLAGS_model_dir) + "/vocab.txt";
  if (vocab.empty() || !PathExists(vocab)) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(vocab));
  return WriteFileAtomic(saved_dir + "/vocab.txt", text);
}

}  // namespace ftune::cli

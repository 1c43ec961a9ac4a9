#include "cli/run_setup.h"

#include <sys/resource.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/torch_compat.h"

namespace ftune::cli {

absl::StatusOr<std::unique_ptr<RunContext>> RunContext::Create() {
  FTUNE_ASSIGN_OR_RETURN(dist::DistContext ctx, dist::DistContext::Init(nullptr, nullptr));
  std::unique_ptr<RunContext> run(new RunContext(std::move(ctx)));
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads > 0 ? threads : run->ctx_.DefaultIntraOpThreads());

  const std::string device = absl::GetFlag(FLAGS_device);
  const bool cuda = torch::cuda::is_available();
  if (device == "cuda" && !cuda) {
    return absl::FailedPreconditionError("--device=cuda but LibTorch sees no CUDA device (CPU build or no GPU)");
  }
  if (device != "auto" && device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError(absl::StrFormat("--device \"%s\" is not one of auto, cpu, cuda", device));
  }
  if (cuda && device != "cpu") {
    const int index = run->ctx_.local_rank() % static_cast<int>(torch::cuda::device_count());
    run->device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  compat::SetCudnnAttention(absl::GetFlag(FLAGS_cudnn_sdp));
  const std::string precision = absl::GetFlag(FLAGS_precision);
  if (precision == "bf16") {
    run->model_options_.compute_dtype = torch::kBFloat16;
  } else if (precision == "fp16") {
    if (!run->device_.is_cuda()) {
      return absl::InvalidArgumentError(
          "--precision=fp16 needs a CUDA device (CPU autocast has no float16); use bf16 or fp32 on CPU");
    }
    run->model_options_.compute_dtype = torch::kHalf;
  } else if (precision != "fp32") {
    return absl::InvalidArgumentError(absl::StrFormat("--precision \"%s\" is not one of fp32, bf16, fp16", precision));
  }
  dist::MpiCommunicatorOptions mo;
  mo.timeout_seconds = absl::GetFlag(FLAGS_comm_timeout);
  run->host_comm_ = dist::MakeMpiCommunicator(run->ctx_, mo);
  const std::string gradient_comm = absl::GetFlag(FLAGS_gradient_comm);
  const bool nccl = gradient_comm == "nccl" || (gradient_comm == "auto" && run->ctx_.world_size() > 1 &&
                                                run->device_.is_cuda() && dist::NcclCompiledIn());
  if (nccl) {
    if (!run->device_.is_cuda()) return absl::InvalidArgumentError("--gradient_comm=nccl needs CUDA ranks");
    FTUNE_ASSIGN_OR_RETURN(run->nccl_, dist::MakeNcclCommunicator(run->ctx_, run->device_.index()));
    run->gradient_comm_ = run->nccl_.get();
  } else if (gradient_comm == "mpi" || (gradient_comm == "auto" && run->ctx_.world_size() > 1)) {
    run->gradient_comm_ = run->host_comm_.get();
  } else if (gradient_comm != "auto" && gradient_comm != "none") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--gradient_comm \"%s\" is not one of auto, none, mpi, nccl", gradient_comm));
  } else if (run->ctx_.world_size() > 1) {
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

absl::Status RunContext::CheckRanksAgree(torch::nn::Module& model, const nlohmann::json& config,
                                         const data::TokenDataset& train) {
  nlohmann::json c = config;
  c.erase("device");  // differs legitimately (cuda:0 vs cuda:1)
  FTUNE_RETURN_IF_ERROR(ctx_.CheckSameOnAllRanks(Fnv1a64(c.dump()), "configuration (flags)"));
  std::string shapes;
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    absl::StrAppend(&shapes, p.key(), ":", c10::toString(p.value().scalar_type()));
    for (int64_t d : p.value().sizes()) absl::StrAppend(&shapes, ",", d);
    shapes += ";";
  }
  FTUNE_RETURN_IF_ERROR(ctx_.CheckSameOnAllRanks(Fnv1a64(shapes), "trainable parameters (names/shapes/dtypes)"));
  const auto& i = train.info();
  return ctx_.CheckSameOnAllRanks(
      Fnv1a64(absl::StrFormat("%d/%d/%s/%s", i.num_examples, i.num_tokens, i.vocab_sha256, i.source_sha256)),
      "training data (" + train.path() + ")");
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
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (!model_dir.empty() && PathExists(model_dir + "/vocab.txt")) {
    FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(model_dir + "/vocab.txt"));
    FTUNE_RETURN_IF_ERROR(ds.CheckVocab(sha, info.vocab_size));
  }
  if (info.vocab_size > config.vocab_size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was tokenized with a %d-token vocabulary but the model has %d embeddings; re-run `ftune prep` with "
        "the model's vocab.txt",
        ds.path(), info.vocab_size, config.vocab_size));
  }
  if (uses_labels && static_cast<int64_t>(info.label_names.size()) > config.num_labels) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s has %d labels but the model's classifier has %d outputs (set --num_labels)", ds.path(),
                        info.label_names.size(), config.num_labels));
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

nlohmann::json ResolvedFlags() {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::StrContains(flag->Filename(), "src/cli/")) continue;
    j[std::string(name)] = flag->CurrentValue();
  }
  return j;
}

}  // namespace ftune::cli

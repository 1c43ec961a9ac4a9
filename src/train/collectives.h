// Torch tensors through a dist::Communicator (which moves raw buffers): the dtype mapping, and
// staging through host memory when a host-memory transport (MPI) meets a device tensor. Every
// collective on tensors in ftune goes through here, so no caller needs to know which transport
// runs underneath.
#pragma once

#include <torch/torch.h>

#include "common/status.h"
#include "distributed/communicator.h"

namespace ftune::train {

// The transport's element type for `t` (float32/64, bf16, f16, int32/64).
absl::StatusOr<dist::DType> CommDType(const torch::Tensor& t);

// In-place sum over ranks of the contiguous tensor `t`. `stream`: the CUDA stream to order a
// device transport after (nullptr = the legacy default stream; ignored by host transports).
absl::Status AllReduceSum(dist::Communicator& comm, torch::Tensor t, void* stream = nullptr);

// Copies `t` on `root` into `t` on every other rank (contiguous, same shape everywhere).
absl::Status Broadcast(dist::Communicator& comm, torch::Tensor t, int root, void* stream = nullptr);

}  // namespace ftune::train

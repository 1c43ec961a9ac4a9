// The one place where LibTorch versions differ for ftune (Debian's 1.13 CPU build vs 2.x).
// Everything else includes this header instead of testing TORCH_VERSION_* itself.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#if defined(FTUNE_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

#define FTUNE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// scaled_dot_product_attention arrived in 2.0; its `scale` argument in 2.1.
#define FTUNE_HAS_SDPA FTUNE_TORCH_AT_LEAST(2, 1)

namespace ftune::compat {

inline std::string TorchVersion() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// The cudaStream_t LibTorch is issuing work on for `device` (nullptr = legacy default stream, and
// always on CPU-only builds), so NCCL collectives are ordered after the backward kernels.
inline void* CurrentCudaStream(const torch::Device& device) {
#if defined(FTUNE_TORCH_CUDA)
  if (device.is_cuda()) return c10::cuda::getCurrentCUDAStream(device.index()).stream();
#endif
  (void)device;
  return nullptr;
}

// Peak bytes allocated by LibTorch's CUDA caching allocator on `device` (0 without CUDA).
inline int64_t CudaPeakAllocatedBytes(const torch::Device& device) {
#if defined(FTUNE_TORCH_CUDA)
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE
  }
#endif
  (void)device;
  return 0;
}

// torch.finfo(dtype).min: what Hugging Face fills masked attention scores with (finite, so a fully
// masked row gives a uniform softmax instead of NaN).
inline double LowestValue(torch::ScalarType t) {
  switch (t) {
    case torch::kDouble: return std::numeric_limits<double>::lowest();
    case torch::kHalf: return -65504.0;
    case torch::kBFloat16: return -3.3895313892515355e38;
    default: return std::numeric_limits<float>::lowest();
  }
}

// Softmax attention over keys: q, k, v are [batch, heads, seq, head_dim]; `keep` is a bool
// [batch, 1, 1, seq] mask of the keys that may be attended to. Uses the fused kernel where the
// LibTorch version has one; otherwise the eager math Hugging Face's "eager" implementation does
// (scores * 1/sqrt(d), masked to the dtype's lowest value, softmax, dropout, @ v).
inline torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& keep, double dropout_p, bool training,
                               bool prefer_fused) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if FTUNE_HAS_SDPA
  if (prefer_fused) {
    return at::scaled_dot_product_attention(q, k, v, keep, training ? dropout_p : 0.0, /*is_causal=*/false,
                                            scale);
  }
#else
  (void)prefer_fused;
#endif
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  scores = scores.masked_fill(keep.logical_not(), LowestValue(scores.scalar_type()));
  torch::Tensor weights = torch::softmax(scores, -1);
  if (training && dropout_p > 0.0) weights = torch::dropout(weights, dropout_p, /*train=*/true);
  return torch::matmul(weights, v);
}

}  // namespace ftune::compat

// The one place where LibTorch versions differ for ftune (Debian's 1.13 CPU build vs 2.x).
// Everything else includes this header instead of testing TORCH_VERSION_* itself.
#pragma once

#include <ATen/autocast_mode.h>
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
// at::_fused_adamw_ (one multi-tensor kernel per step, with a device-side skip flag) runs on CUDA
// since 2.0 and on CPU since 2.4; ftune uses it from 2.4 on, so every device shares one path.
#define FTUNE_HAS_FUSED_ADAMW FTUNE_TORCH_AT_LEAST(2, 4)
// cuDNN's kernels became one of scaled_dot_product_attention's CUDA backends in 2.3 (PyTorch picks
// them first on Hopper from 2.9 on).
#define FTUNE_HAS_CUDNN_SDPA FTUNE_TORCH_AT_LEAST(2, 3)
// The device-generic autocast API (set_autocast_enabled(device_type, ...)) replaced the per-device
// functions in 2.4.
#define FTUNE_HAS_GENERIC_AUTOCAST FTUNE_TORCH_AT_LEAST(2, 4)

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

// torch.backends.cuda.enable_cudnn_sdp(enabled), process-wide: whether scaled_dot_product_attention
// may pick cuDNN's attention kernels on CUDA. cuDNN builds an execution plan for every new input
// shape (tens of ms of host time each), which dynamic padding keeps paying for. Returns false where
// this LibTorch has no cuDNN attention backend (nothing to turn on or off there).
inline bool SetCudnnAttention(bool enabled) {
#if FTUNE_HAS_CUDNN_SDPA
  at::globalContext().setSDPUseCuDNN(enabled);
  return true;
#else
  (void)enabled;
  return false;
#endif
}

// Whether scaled_dot_product_attention may use cuDNN (false where this LibTorch has no such backend).
inline bool CudnnAttentionEnabled() {
#if FTUNE_HAS_CUDNN_SDPA
  return at::globalContext().userEnabledCuDNNSDP();
#else
  return false;
#endif
}

// torch.autocast(device_type, dtype) as a scope: inside it, matmul-heavy ops (linear, matmul,
// SDPA) run in `dtype` while parameters stay fp32 (they are cast per use, and the casts are cached
// until the outermost scope ends); precision-sensitive ops (layer_norm, softmax on CUDA, the loss)
// stay fp32. `dtype` kFloat/kDouble: the guard does nothing. Nested guards restore the previous state.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, torch::ScalarType dtype)
      : type_(device.type()), active_(dtype == torch::kBFloat16 || dtype == torch::kHalf) {
    if (!active_) return;
    prev_enabled_ = IsEnabled(type_);
    prev_dtype_ = GetDtype(type_);
    Set(type_, true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    // Like torch.autocast.__exit__: the cast cache lives until the outermost scope closes.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    Set(type_, prev_enabled_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  static bool IsEnabled(c10::DeviceType t) {
#if FTUNE_HAS_GENERIC_AUTOCAST
    return at::autocast::is_autocast_enabled(t);
#else
    return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
  }
  static torch::ScalarType GetDtype(c10::DeviceType t) {
#if FTUNE_HAS_GENERIC_AUTOCAST
    return at::autocast::get_autocast_dtype(t);
#else
    return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
  }
  static void Set(c10::DeviceType t, bool enabled, torch::ScalarType dtype) {
#if FTUNE_HAS_GENERIC_AUTOCAST
    at::autocast::set_autocast_dtype(t, dtype);
    at::autocast::set_autocast_enabled(t, enabled);
#else
    if (t == c10::DeviceType::CUDA) {
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(enabled);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
      at::autocast::set_cpu_enabled(enabled);
    }
#endif
  }

  c10::DeviceType type_;
  bool active_;
  bool prev_enabled_ = false;
  torch::ScalarType prev_dtype_ = torch::kFloat;
};

// True when FusedAdamW below is available in this LibTorch.
constexpr bool HasFusedAdamW() { return FTUNE_HAS_FUSED_ADAMW; }

// One AdamW step over flat buffers with torch's fused kernel (torch.optim.AdamW(fused=True)):
// `step` is a float32 scalar tensor on the parameters' device (steps taken so far; counted up here);
// where `found_inf` (float32 scalar, same device) is non-zero the update is skipped on the device
// and the step count restored, so the caller needs no host round-trip to decide. Only where
// HasFusedAdamW(); elsewhere it does nothing.
inline void FusedAdamW(torch::Tensor param, torch::Tensor grad, torch::Tensor exp_avg, torch::Tensor exp_avg_sq,
                       torch::Tensor step, double lr, double beta1, double beta2, double weight_decay, double eps,
                       const torch::Tensor& found_inf) {
#if FTUNE_HAS_FUSED_ADAMW
  step.add_(1);  // as torch.optim's _fused_adamw: the kernel reads the already-counted step
  at::_fused_adamw_({param}, {grad}, {exp_avg}, {exp_avg_sq}, {}, {step}, lr, beta1, beta2, weight_decay, eps,
                    /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{}, found_inf);
  step.sub_(found_inf);  // a skipped update does not count (torch.optim does the same)
#else
  (void)param, (void)grad, (void)exp_avg, (void)exp_avg_sq, (void)step, (void)lr, (void)beta1, (void)beta2,
      (void)weight_decay, (void)eps, (void)found_inf;
#endif
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

// Whether Attention() runs the fused kernel (this LibTorch has one and the model asks for it).
inline bool UsesFusedAttention(bool prefer_fused) { return FTUNE_HAS_SDPA && prefer_fused; }

// The attention mask in the form Attention() takes, made once per forward pass from the batch's
// [batch, seq] mask (1 = token, 0 = padding): for the fused kernel a bool [batch, 1, 1, seq]
// keep-mask; for the eager math an additive bias [batch, 1, 1, seq] in `dtype` (the scores' dtype:
// 0 for a key that may be attended to, the dtype's lowest value for padding), so no layer rebuilds
// or inverts it and no layer makes an extra pass over its scores to mask them.
inline torch::Tensor AttentionMask(const torch::Tensor& attention_mask, bool prefer_fused, torch::ScalarType dtype) {
  torch::Tensor keep = attention_mask.to(torch::kBool).unsqueeze(1).unsqueeze(1);
  if (UsesFusedAttention(prefer_fused)) return keep;
  return torch::zeros(keep.sizes(), torch::TensorOptions().dtype(dtype).device(keep.device()))
      .masked_fill_(keep.logical_not(), LowestValue(dtype));
}

// Softmax attention over keys: q, k, v are [batch, heads, seq, head_dim]; `mask` is AttentionMask()'s.
// Uses the fused kernel where the LibTorch version has one; otherwise the eager math of Hugging
// Face's "eager" implementation (q / sqrt(d), q @ k^T, padding at the dtype's lowest value,
// softmax, dropout, @ v), with the padding added as a bias instead of a masked_fill: the same values.
inline torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& mask, double dropout_p, bool training, bool prefer_fused) {
  const double sqrt_d = std::sqrt(static_cast<double>(q.size(-1)));
#if FTUNE_HAS_SDPA
  if (UsesFusedAttention(prefer_fused)) {
    return at::scaled_dot_product_attention(q, k, v, mask, training ? dropout_p : 0.0, /*is_causal=*/false,
                                            1.0 / sqrt_d);
  }
#else
  (void)prefer_fused;
#endif
  torch::Tensor scores = torch::matmul(q / sqrt_d, k.transpose(-2, -1));
  scores = scores + (mask.scalar_type() == scores.scalar_type() ? mask : mask.to(scores.scalar_type()));
  torch::Tensor weights = torch::softmax(scores, -1);
  if (training && dropout_p > 0.0) weights = torch::dropout(weights, dropout_p, /*train=*/true);
  return torch::matmul(weights, v);
}

}  // namespace ftune::compat

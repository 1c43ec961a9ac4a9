// Compile-only check of the CUDA-only code in src/common/torch_compat.h (the parts behind
// FTUNE_TORCH_CUDA, which no CPU build compiles, and what GPU runs call). tests/compat/torch2.sh
// compiles this file with -fsyntax-only -DFTUNE_TORCH_CUDA, in C++20 as launch/build-gpu.sh builds,
// against LibTorch 2.x's CUDA headers and the CUDA toolkit's, so an API change there shows up
// without a GPU. Not linked, never run.
#include "common/torch_compat.h"

int main() {
  const torch::Device gpu(torch::kCUDA, 0);
  void* stream = ftune::compat::CurrentCudaStream(gpu);
  const int64_t peak = ftune::compat::CudaPeakAllocatedBytes(gpu);
  ftune::compat::AutocastGuard autocast(gpu, torch::kBFloat16);
  torch::Tensor p = torch::zeros({4}, torch::TensorOptions().device(gpu));
  torch::Tensor step = torch::zeros({}, p.options());
  ftune::compat::FusedAdamW(p, p, p, p, step, 1e-3, 0.9, 0.999, 0.0, 1e-8, step);
  const bool cudnn = ftune::compat::SetCudnnAttention(false) && !ftune::compat::CudnnAttentionEnabled();
  return (stream == nullptr) + (peak == 0) + cudnn;
}

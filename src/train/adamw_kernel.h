// AdamW's update on host float32 arrays in a single pass: torch.optim.AdamW's arithmetic
// (decoupled weight decay, then the moments, then the bias-corrected step, each rounded to float
// as torch's elementwise kernels round it), read and written once per element instead of the nine
// passes and two temporaries of the tensor operations. What FlatAdamW runs on CPU where LibTorch
// has no fused AdamW of its own (< 2.4); no LibTorch here, so this file is compiled with the
// vectorizer on (see CMakeLists.txt) and the caller splits the range over its threads.
#pragma once

#include <cstdint>

namespace ftune::train {

struct AdamWScalars {
  float decay;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
};

// For i in [0, n): param, exp_avg and exp_avg_sq updated in place from grad. The arrays must not
// overlap.
void AdamWUpdate(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, const AdamWScalars& s);

}  // namespace ftune::train

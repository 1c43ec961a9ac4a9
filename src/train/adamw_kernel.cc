#include "train/adamw_kernel.h"

#include <cmath>

namespace ftune::train {

void AdamWUpdate(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                 float* __restrict exp_avg_sq, int64_t n, const AdamWScalars& scalars) {
  const AdamWScalars s = scalars;  // a local copy: no aliasing with the arrays
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float p = param[i] * s.decay;                                   // p.mul_(1 - lr * wd)
    const float m = exp_avg[i] * s.beta1 + s.one_minus_beta1 * g;         // exp_avg.mul_(b1).add_(g, 1 - b1)
    const float v = exp_avg_sq[i] * s.beta2 + s.one_minus_beta2 * g * g;  // .mul_(b2).addcmul_(g, g, 1 - b2)
    const float denom = std::sqrt(v) / s.bias_correction2_sqrt + s.eps;   // (v.sqrt() / bc2).add_(eps)
    param[i] = p + s.neg_step_size * (m / denom);                         // p.addcdiv_(m, denom, -step_size)
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

}  // namespace ftune::train

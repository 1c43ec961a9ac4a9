// Prints a module tree the way PyTorch's repr() does, so `ftune inspect` reads like `print(model)`
// in a notebook: "(name): Type(extra)" lines, two-space indents, and runs of identical children
// collapsed to "(0-5): 6 x TransformerBlock(...)". A parameter registered directly on a module with
// children (an adapter's ia3_l or lora_magnitude_vector) is listed after them the way PyTorch lists
// a ParameterDict entry: "(ia3_l): Parameter containing: [torch.FloatTensor of size 768x1]".
#pragma once

#include <string>

#include <torch/torch.h>

namespace ftune::model {

std::string ModuleTreeString(const torch::nn::Module& module);

// Number of scalars in parameters with requires_grad (the assignment's count_trainable_parameters).
int64_t CountTrainableParameters(const torch::nn::Module& module);
int64_t CountAllParameters(const torch::nn::Module& module);

}  // namespace ftune::model

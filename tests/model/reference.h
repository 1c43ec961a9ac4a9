// Test helpers: the vendored Hugging Face references (tests/fixtures/hf) as torch tensors.
#pragma once

#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "model/hf_checkpoint.h"
#include "nlohmann/json.hpp"

namespace ftune::testing {

inline std::string HfFixture(const std::string& rel) { return std::string(FTUNE_FIXTURES_DIR) + "/hf/" + rel; }

// A JSON file (io.json, adapter_config.json, counts.json), parsed.
inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

// All tensors of a safetensors file, copied out.
inline std::map<std::string, torch::Tensor> ReadAll(const std::string& path) {
  auto f = io::SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  std::map<std::string, torch::Tensor> out;
  if (!f.ok()) return out;
  for (const auto& [name, view] : (*f)->tensors()) out[name] = model::TensorFromView(view);
  return out;
}

// max |a - b| (in float64).
inline double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

}  // namespace ftune::testing

// Runs the built ftune binary (optionally under mpirun) from tests and captures what it printed.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <vector>

#include <map>
#include <string>

#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace ftune::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string Ftune() { return std::string(FTUNE_BINARY_DIR) + "/ftune"; }

#ifdef FTUNE_MPIEXEC
// mpirun with what CI needs: root allowed, oversubscription, no core binding (2 ranks, 2 cores).
inline std::string Mpirun(int np, const std::string& extra = "") {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + std::string(FTUNE_MPIEXEC) + " -np " +
         std::to_string(np) + " --oversubscribe --bind-to none " + extra + " ";
}
#endif

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/ftune_cli_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~ScratchDir() {
    if (std::getenv("FTUNE_KEEP_TEST_DIRS") == nullptr) std::system(("rm -rf " + path_).c_str());
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A WordPiece vocab.txt of `n` tokens ([PAD] [CLS] [SEP] [UNK] [MASK] then fillers) for datasets
// given as token ids (`ftune prep --input_format=jsonl` still records a vocab and its hash).
inline std::string WriteTestVocab(const std::string& path, int n) {
  std::ofstream out(path);
  out << "[PAD]\n[CLS]\n[SEP]\n[UNK]\n[MASK]\n";
  for (int i = 5; i < n; ++i) out << "tok" << i << "\n";
  return path;
}

// The synthetic task the CLI tests train on, as JSONL token ids: [CLS]=1, 4..4+spread-1 words from
// ids 10..49, [SEP]=2; label 1 iff token 7 occurs. Learnable to 100% by a tiny model; lengths vary.
inline void WriteSyntheticJsonl(const std::string& path, int n, uint32_t seed, int spread = 20) {
  std::mt19937 rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    int len = 4 + static_cast<int>(rng() % spread);
    int label = static_cast<int>(rng() % 2);
    std::vector<int> ids = {1};
    for (int k = 0; k < len; ++k) ids.push_back(10 + static_cast<int>(rng() % 40));
    if (label) ids[1 + rng() % len] = 7;
    ids.push_back(2);
    out << nlohmann::json({{"ids", ids}, {"label", label}}).dump() << "\n";
  }
}

inline std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// The records of one type ("train", "eval", "summary") of a metrics.jsonl.
inline std::vector<nlohmann::json> Records(const std::string& metrics, const std::string& type) {
  std::vector<nlohmann::json> out;
  for (auto& r : ReadJsonl(metrics)) {
    if (r["type"] == type) out.push_back(r);
  }
  return out;
}

// Every tensor of an F32 safetensors file (a saved model.safetensors) by name. Needs ftune_io.
inline std::map<std::string, std::vector<float>> ReadF32(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  auto f = io::SafetensorsFile::Open(path);
  if (!f.ok()) return out;
  for (const auto& [name, v] : (*f)->tensors()) {
    const float* p = reinterpret_cast<const float*>(v.data);
    out[name] = std::vector<float>(p, p + v.nbytes / 4);
  }
  return out;
}

// max |a - b| over all tensors of two such files (infinity when their names differ).
inline double MaxWeightDiff(const std::string& a_path, const std::string& b_path) {
  auto a = ReadF32(a_path), b = ReadF32(b_path);
  if (a.empty() || a.size() != b.size()) return 1e300;
  double worst = 0;
  for (const auto& [name, x] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.size() != x.size()) return 1e300;
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(double(x[k]) - it->second[k]));
  }
  return worst;
}

// A config.json of a tiny DistilBERT for the synthetic task (vocab 64, dim 32, 2 layers, 2 heads,
// FFN 64), with HF's default dropouts (0.1, and 0.2 before the classifier) or none.
inline std::string WriteTinyModelConfig(const std::string& path, bool dropout) {
  const double p = dropout ? 0.1 : 0.0, head = dropout ? 0.2 : 0.0;
  std::ofstream(path) << nlohmann::json({{"vocab_size", 64},
                                         {"max_position_embeddings", 64},
                                         {"dim", 32},
                                         {"n_layers", 2},
                                         {"n_heads", 2},
                                         {"hidden_dim", 64},
                                         {"dropout", p},
                                         {"attention_dropout", p},
                                         {"seq_classif_dropout", head}})
                             .dump();
  return path;
}

}  // namespace ftune::testing

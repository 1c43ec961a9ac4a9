// Hugging Face's tokenizer as a test oracle: runs tests/data-prep/hf/hf_tokenize.js (the npm
// package `tokenizers` 0.23.2 that launch/install-deps.sh installs next to it) on a batch of
// texts in one node process and returns its ids, or the normalized words, to be compared with
// WordPieceTokenizer's.
#pragma once

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status.h"

namespace ftune::prep::testing {

inline std::string HfOracleScript() { return std::string(FTUNE_SOURCE_DIR) + "/tests/data-prep/hf/hf_tokenize.js"; }

// Runs `cmd` through the shell; returns its stdout, or an error with its exit status.
inline absl::StatusOr<std::string> RunCommand(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen failed: " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (status != 0) {
    return absl::InternalError(
        absl::StrCat(cmd, " exited with status ", WIFEXITED(status) ? WEXITSTATUS(status) : status, ": ", out));
  }
  return out;
}

// "tokenizers 0.23.2, node v20..." when the oracle runs here, else nullopt and *why.
inline std::optional<std::string> HfOracleVersion(std::string* why) {
  static const auto* cached = [] {
    auto* r = new std::pair<std::optional<std::string>, std::string>();
    auto node = RunCommand("command -v node 2>&1");
    if (!node.ok()) {
      r->second = "node is not installed (Debian: apt-get install nodejs npm, or launch/install-deps.sh)";
      return r;
    }
    auto v = RunCommand("node '" + HfOracleScript() + "' --version 2>&1");
    if (!v.ok()) {
      r->second = absl::StrCat("the npm package tokenizers is missing (launch/install-deps.sh installs it): ",
                               v.status().message());
    } else if (v->rfind("tokenizers 0.23.2,", 0) != 0) {
      r->second = "expected tokenizers 0.23.2, found " + *v;
    } else {
      r->first = v->substr(0, v->find('\n'));
    }
    return r;
  }();
  if (why != nullptr) *why = cached->second;
  return cached->first;
}

#define FTUNE_SKIP_WITHOUT_HF_ORACLE()                                                    \
  do {                                                                                    \
    std::string why_;                                                                     \
    if (!::ftune::prep::testing::HfOracleVersion(&why_)) {                                \
      GTEST_SKIP() << "needs Hugging Face's tokenizer (node + npm tokenizers): " << why_; \
    }                                                                                     \
  } while (0)

// Runs hf_tokenize.js with `mode` (a vocab path, or --words) on `texts`; returns its output file.
inline absl::StatusOr<std::string> RunHfOracle(const std::string& mode, const std::vector<std::string>& texts,
                                               const std::string& dir) {
  const std::string in = dir + "/hf_in.bin", out = dir + "/hf_out.bin";
  {
    std::ofstream f(in, std::ios::binary);
    for (const std::string& t : texts) {
      const uint32_t n = static_cast<uint32_t>(t.size());
      f.write(reinterpret_cast<const char*>(&n), 4);
      f.write(t.data(), static_cast<std::streamsize>(t.size()));
    }
    if (!f.good()) return absl::InternalError("cannot write " + in);
  }
  auto run = RunCommand("node '" + HfOracleScript() + "' '" + mode + "' '" + in + "' '" + out + "' 2>&1");
  unlink(in.c_str());
  FTUNE_RETURN_IF_ERROR(run.status());
  auto bytes = ReadFileToString(out);
  unlink(out.c_str());
  return bytes;
}

// Reads the records of RunHfOracle's output: per text a uint32, then that many uint32 (ids) or
// bytes (words).
class OracleOutput {
 public:
  explicit OracleOutput(std::string bytes) : bytes_(std::move(bytes)) {}
  bool Next(uint32_t* v) {
    if (pos_ + 4 > bytes_.size()) return false;
    std::memcpy(v, bytes_.data() + pos_, 4);
    pos_ += 4;
    return true;
  }
  bool Next(size_t n, std::string* s) {
    if (pos_ + n > bytes_.size()) return false;
    s->assign(bytes_, pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  std::string bytes_;
  size_t pos_ = 0;
};

// HF's ids ([CLS] ... [SEP], no truncation) for each of `texts` with `vocab`; `dir` holds the
// exchange files.
inline absl::StatusOr<std::vector<std::vector<int32_t>>> HfEncode(const std::string& vocab,
                                                                  const std::vector<std::string>& texts,
                                                                  const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(std::string bytes, RunHfOracle(vocab, texts, dir));
  OracleOutput out(std::move(bytes));
  std::vector<std::vector<int32_t>> ids(texts.size());
  for (auto& v : ids) {
    uint32_t n, id;
    if (!out.Next(&n)) return absl::DataLossError("hf_tokenize.js: output ends early");
    v.reserve(n);
    for (uint32_t k = 0; k < n; ++k) {
      if (!out.Next(&id)) return absl::DataLossError("hf_tokenize.js: output ends early");
      v.push_back(static_cast<int32_t>(id));
    }
  }
  if (!out.done()) return absl::DataLossError("hf_tokenize.js: output has trailing bytes");
  return ids;
}

// The words HF's WordPiece would see for each of `texts` (special tokens split out, the rest
// normalized and pre-tokenized), joined by ' ': comparable with WordPieceTokenizer::SplitWords.
inline absl::StatusOr<std::vector<std::string>> HfWords(const std::vector<std::string>& texts, const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(std::string bytes, RunHfOracle("--words", texts, dir));
  OracleOutput out(std::move(bytes));
  std::vector<std::string> words(texts.size());
  for (auto& w : words) {
    uint32_t n;
    if (!out.Next(&n) || !out.Next(n, &w)) return absl::DataLossError("hf_tokenize.js: output ends early");
  }
  if (!out.done()) return absl::DataLossError("hf_tokenize.js: output has trailing bytes");
  return words;
}

// ---- tokenizer.json (tests/data-prep/hf/hf_tokenizer_json.js) ----

// Which HF runs tokenizer.json files: Python's `tokenizers` (tests/data-prep/hf/hf_tokenizer_json.py,
// run by $FTUNE_HF_PYTHON, default python3: e.g. "chroot /work/testing-root python3" with the
// repository and /tmp bind-mounted at the same paths), else the npm package
// (hf_tokenizer_json.js), which encodes single texts only: its encode() adds no special tokens,
// so sentence pairs need Python.
struct HfJsonOracle {
  std::string command;  // the interpreter and the script, quoted
  std::string version;  // "tokenizers 0.23.1, python 3.14.8"
  bool pairs = false;
};

inline const HfJsonOracle* GetHfJsonOracle(std::string* why) {
  static const auto* cached = [] {
    auto* r = new std::pair<std::optional<HfJsonOracle>, std::string>();
    const char* env = std::getenv("FTUNE_HF_PYTHON");
    const std::string py = env != nullptr && *env ? env : "python3";
    const std::string script = std::string(FTUNE_SOURCE_DIR) + "/tests/data-prep/hf/hf_tokenizer_json";
    auto v = RunCommand(py + " '" + script + ".py' --version 2>/dev/null");
    if (v.ok() && v->rfind("tokenizers 0.23.", 0) == 0) {
      r->first = HfJsonOracle{py + " '" + script + ".py'", v->substr(0, v->find('\n')), true};
      return r;
    }
    std::string why_node;
    if (auto node = HfOracleVersion(&why_node)) {
      r->first = HfJsonOracle{"node '" + script + ".js'", *node, false};
    } else {
      r->second = absl::StrCat("neither Python's tokenizers 0.23 (", py, ") nor node: ", why_node);
    }
    return r;
  }();
  if (why != nullptr) *why = cached->second;
  return cached->first ? &*cached->first : nullptr;
}

// One input: a text, or a pair of them.
struct HfInput {
  std::string a;
  std::optional<std::string> b;
};
// HF's encoding of an input: ids and token_type_ids.
struct HfEncoding {
  std::vector<int32_t> ids, type_ids;
};

inline absl::Status WriteHfInputs(const std::vector<HfInput>& inputs, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  auto put = [&](const std::string& t) {
    const uint32_t n = static_cast<uint32_t>(t.size());
    f.write(reinterpret_cast<const char*>(&n), 4);
    f.write(t.data(), static_cast<std::streamsize>(t.size()));
  };
  for (const HfInput& in : inputs) {
    put(in.a);
    if (in.b) {
      put(*in.b);
    } else {
      const uint32_t none = 0xFFFFFFFFu;
      f.write(reinterpret_cast<const char*>(&none), 4);
    }
  }
  return f.good() ? absl::OkStatus() : absl::InternalError("cannot write " + path);
}

// Tokenizer.fromFile(tokenizer_json).encodeBatch(inputs) with special tokens, truncated with
// longest_first to max_length when it is > 0; `dir` holds the exchange files.
inline absl::StatusOr<std::vector<HfEncoding>> HfJsonEncode(const std::string& tokenizer_json,
                                                            const std::vector<HfInput>& inputs, int32_t max_length,
                                                            const std::string& dir) {
  const std::string in = dir + "/hfj_in.bin", out = dir + "/hfj_out.bin";
  FTUNE_RETURN_IF_ERROR(WriteHfInputs(inputs, in));
  std::string why;
  const HfJsonOracle* oracle = GetHfJsonOracle(&why);
  if (oracle == nullptr) return absl::FailedPreconditionError(why);
  auto run = RunCommand(absl::StrCat(oracle->command, " '", tokenizer_json, "' '", in, "' '", out, "' ", max_length, " 2>&1"));
  unlink(in.c_str());
  FTUNE_RETURN_IF_ERROR(run.status());
  FTUNE_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(out));
  unlink(out.c_str());
  OracleOutput o(std::move(bytes));
  std::vector<HfEncoding> encs(inputs.size());
  for (HfEncoding& e : encs) {
    uint32_t n, v;
    if (!o.Next(&n)) return absl::DataLossError("hf_tokenizer_json.js: output ends early");
    for (auto* dst : {&e.ids, &e.type_ids}) {
      dst->reserve(n);
      for (uint32_t k = 0; k < n; ++k) {
        if (!o.Next(&v)) return absl::DataLossError("hf_tokenizer_json.js: output ends early");
        dst->push_back(static_cast<int32_t>(v));
      }
    }
  }
  if (!o.done()) return absl::DataLossError("hf_tokenizer_json.js: output has trailing bytes");
  return encs;
}

}  // namespace ftune::prep::testing

// Helpers for the data-prep tests: fixture paths, golden files, temp directories.
#pragma once

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "common/files.h"
#include "data/token_dataset.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shared_dir.h"

namespace ftune::prep::testing {

inline std::string Fixture(const std::string& name) { return std::string(FTUNE_FIXTURES_DIR) + "/tokens/" + name; }
inline std::string Shared(const std::string& rel) { return ::ftune::testing::SharedDir() + "/" + rel; }
inline bool HaveShared() {
  return PathExists(Shared("data/imdb/train.csv")) && PathExists(Shared("reference/tokens/train.jsonl")) &&
         PathExists(Shared("vocab/bert-base-uncased-vocab.txt"));
}
#define FTUNE_SKIP_WITHOUT_SHARED()                                                                    \
  do {                                                                                                 \
    if (!::ftune::prep::testing::HaveShared()) {                                                       \
      GTEST_SKIP() << "needs the shared reference data at " << ::ftune::testing::SharedDir()           \
                   << " (data/imdb/*.csv, reference/tokens/*.jsonl, vocab/); absent in this checkout";  \
    }                                                                                                  \
  } while (0)

inline std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// HF's ids truncated the way `ftune prep --max_length=n` truncates: first n-1, then [SEP].
inline std::vector<int32_t> Truncate(std::vector<int32_t> ids, size_t n) {
  if (ids.size() > n) {
    int32_t sep = ids.back();
    ids.resize(n - 1);
    ids.push_back(sep);
  }
  return ids;
}

// A fresh directory, removed (one level deep) at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) + "/ftune_prep_test.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data());
  }
  ~TempDir() {
    for (const std::string& f : Files()) unlink((path_ + "/" + f).c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  std::string Write(const std::string& name, const std::string& contents) const {
    std::ofstream(path_ + "/" + name, std::ios::binary) << contents;
    return path_ + "/" + name;
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    if (DIR* d = opendir(path_.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      closedir(d);
    }
    return out;
  }

 private:
  std::string path_;
};

// Every example of `ds`, in order (a failed read is a test failure and an empty list).
inline std::vector<data::Example> ReadAll(const data::TokenDataset& ds) {
  std::vector<int64_t> idx(static_cast<size_t>(ds.size()));
  std::iota(idx.begin(), idx.end(), 0);
  auto ex = ds.Read(idx);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return ex.ok() ? *ex : std::vector<data::Example>{};
}

}  // namespace ftune::prep::testing

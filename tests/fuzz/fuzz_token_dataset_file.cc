// libFuzzer target: data::TokenDataset::Open/Read on arbitrary file bytes (seeded with real token
// datasets written by `ftune prep` and by h5py, which the mutator then damages). This mostly
// exercises libhdf5's own parser: a crash *inside* libhdf5 is HDF5's bug (see
// tests/hardening/README.md for what was seen and what ftune guards before calling it).
//
// Invariants:
//  - Open fails with DataLoss, FailedPrecondition or ResourceExhausted and a one-line message
//    naming the file, or succeeds with a self-consistent index: lengths >= 0 that sum to
//    num_tokens, each <= max_length when one is recorded, labels in [0, len(label_names));
//  - Read of the first and last examples returns exactly length(i) ids per example, all in
//    [0, vocab_size), or DataLoss.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "fuzz_util.h"

namespace {

std::string TempPath() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  return std::string(dir) + "/ftune_fuzz_token_dataset_file." + std::to_string(getpid()) + ".h5";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  static const std::string path = TempPath();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) Fail(__FILE__, __LINE__, "fopen", path);
  if (size > 0 && std::fwrite(data, 1, size, f) != size) Fail(__FILE__, __LINE__, "fwrite", path);
  std::fclose(f);

  auto ds = data::TokenDataset::Open(path);
  if (!ds.ok()) {
    CheckError(
        ds.status(), path,
        {absl::StatusCode::kDataLoss, absl::StatusCode::kFailedPrecondition, absl::StatusCode::kResourceExhausted});
    unlink(path.c_str());
    return 0;
  }
  const data::TokenDataset& d = **ds;
  const data::DatasetInfo& info = d.info();
  FUZZ_CHECK(info.vocab_size > 0 && !info.label_names.empty() && info.max_length >= 0, "bad info");
  int64_t total = 0;
  for (int64_t i = 0; i < d.size(); ++i) {
    FUZZ_CHECK(d.length(i) >= 0 && (info.max_length == 0 || d.length(i) <= info.max_length), "bad length");
    FUZZ_CHECK(d.label(i) >= 0 && d.label(i) < static_cast<int64_t>(info.label_names.size()), "bad label");
    total += d.length(i);
  }
  FUZZ_CHECK(total == info.num_tokens, "lengths do not sum to num_tokens");
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < d.size() && i < 32; ++i) idx.push_back(i);
  for (int64_t i = std::max<int64_t>(32, d.size() - 32); i < d.size(); ++i) idx.push_back(i);
  auto ex = d.Read(idx);
  if (!ex.ok()) {
    CheckError(ex.status(), path, {absl::StatusCode::kDataLoss});
  } else {
    FUZZ_CHECK(ex->size() == idx.size(), "Read returned the wrong number of examples");
    for (size_t j = 0; j < idx.size(); ++j) {
      const data::Example& e = (*ex)[j];
      FUZZ_CHECK(
          e.index == idx[j] && e.label == d.label(idx[j]) && static_cast<int64_t>(e.ids.size()) == d.length(idx[j]),
          "example does not match the index");
      for (int32_t id : e.ids) FUZZ_CHECK(id >= 0 && id < info.vocab_size, "id outside the vocab");
    }
  }
  ds->reset();
  unlink(path.c_str());
  return 0;
}

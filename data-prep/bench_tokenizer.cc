// ftune_bench_tokenizer: tokenizer throughput on the 3,609 IMDB reviews of ../shared/data/imdb
// (train, eval, extra), or on the `review` column of --csv (plain or .gz), then `ftune prep` end to
// end (RunPrep) on each file and random-batch reads of the result with data::TokenDataset. With
// --hf, Hugging Face's tokenizer (tests/data-prep/hf/hf_tokenize.js: the npm package tokenizers,
// encodeBatch over all texts, RAYON_NUM_THREADS threads) is timed on the same texts in the same
// run, and its id count must equal ftune's. Not a test: prints reviews/s and tokens/s, and the CPU
// seconds each pass took (all threads), which a machine shared with other work disturbs less.
//
//   ftune_bench_tokenizer [--shared=DIR] [--csv=FILE] [--hf] [--threads=1,2] [--repeat=5]
//
// Tokens are counted without truncation and include [CLS]/[SEP]. Each tokenizer figure is the
// best of `repeat` timed passes after one warm-up pass.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "data-prep/csv_reader.h"
#include "data-prep/parallel.h"
#include "data-prep/prep.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "data/token_dataset.h"
#include "nlohmann/json.hpp"

namespace {

double CpuSeconds() {  // of this process, all threads
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "ftune_bench_tokenizer: %s\n", msg.c_str());
  return 1;
}

// stdout of a shell command, or an error naming it.
absl::StatusOr<std::string> Run(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("cannot run " + cmd);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return absl::InternalError("failed: " + cmd);
  return out;
}

// The `review` column of a CSV file's bytes.
absl::Status ReadReviews(const std::string& name, const std::string& data, std::vector<std::string>* texts,
                         int64_t* bytes) {
  FTUNE_ASSIGN_OR_RETURN(auto reader, ftune::prep::CsvReader::Create(name, data));
  std::vector<std::string> fields;
  int64_t line;
  int column = -1;
  while (true) {
    FTUNE_ASSIGN_OR_RETURN(bool more, reader.Next(&fields, &line));
    if (!more) break;
    if (column < 0) {
      column = static_cast<int>(std::find(fields.begin(), fields.end(), "review") - fields.begin());
      if (column == static_cast<int>(fields.size())) return absl::InvalidArgumentError(name + ": no review column");
      continue;
    }
    *bytes += static_cast<int64_t>(fields[static_cast<size_t>(column)].size());
    texts->push_back(std::move(fields[static_cast<size_t>(column)]));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ftune::prep;
  std::string shared = FTUNE_DEFAULT_SHARED_DIR;
  std::string csv;
  bool hf = false;
  std::vector<int> thread_counts = {1, ResolveThreads(0)};
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--shared=", 0) == 0) {
      shared = a.substr(9);
    } else if (a.rfind("--csv=", 0) == 0) {
      csv = a.substr(6);
    } else if (a == "--hf") {
      hf = true;
    } else if (a.rfind("--threads=", 0) == 0) {
      thread_counts.clear();
      for (absl::string_view t : absl::StrSplit(a.substr(10), ',')) {
        int n;
        if (!absl::SimpleAtoi(t, &n) || n < 1) return Fail("bad --threads");
        thread_counts.push_back(n);
      }
    } else if (a.rfind("--repeat=", 0) == 0) {
      if (!absl::SimpleAtoi(a.substr(9), &repeat) || repeat < 1) return Fail("bad --repeat");
    } else {
      std::printf(
          "usage: ftune_bench_tokenizer [--shared=DIR] [--csv=FILE[.gz]] [--hf] [--threads=1,2] [--repeat=5]\n");
      return a == "--help" ? 0 : 2;
    }
  }

  const std::string vocab = shared + "/vocab/bert-base-uncased-vocab.txt";
  auto tok = WordPieceTokenizer::FromVocabFile(vocab);
  if (!tok.ok()) return Fail(std::string(tok.status().message()));
  const std::string tmp = "/tmp/ftune_bench_tokenizer." + std::to_string(getpid());
  std::vector<std::string> texts, csv_files;
  int64_t bytes = 0;
  if (csv.empty()) {
    for (const char* split : {"train", "eval", "extra"}) csv_files.push_back(shared + "/data/imdb/" + split + ".csv");
  } else if (absl::EndsWith(csv, ".gz")) {
    if (!Run("gzip -dc '" + csv + "' > " + tmp + ".csv").ok()) return Fail("cannot decompress " + csv);
    csv_files.push_back(tmp + ".csv");
  } else {
    csv_files.push_back(csv);
  }
  for (const std::string& path : csv_files) {
    auto data = ftune::ReadFileToString(path);
    if (!data.ok()) return Fail(std::string(data.status().message()));
    if (auto st = ReadReviews(path, *data, &texts, &bytes); !st.ok()) return Fail(std::string(st.message()));
  }
  const int64_t n = static_cast<int64_t>(texts.size());
  std::printf("tokenizer benchmark: %lld reviews, %.2f MB of text, %u hardware threads\n", static_cast<long long>(n),
              bytes / 1e6, std::thread::hardware_concurrency());

  int64_t ftune_tokens = 0;
  for (int threads : thread_counts) {
    std::vector<int64_t> lengths(static_cast<size_t>(n));
    double best = 1e30, best_cpu = 0;
    for (int r = 0; r <= repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      const double c0 = CpuSeconds();
      ParallelFor(n, threads, [&](int64_t i) {
        lengths[static_cast<size_t>(i)] = static_cast<int64_t>(tok->Encode(texts[static_cast<size_t>(i)], 0).size());
      });
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0 && s < best) {  // pass 0 warms up
        best = s;
        best_cpu = CpuSeconds() - c0;
      }
    }
    int64_t tokens = 0;
    for (int64_t l : lengths) tokens += l;
    std::printf("ftune threads %2d: %8.3f s (cpu %7.3f s)  %10.0f reviews/s  %12.0f tokens/s  %7.1f MB/s\n", threads,
                best, best_cpu, n / best, tokens / best, bytes / 1e6 / best);
    ftune_tokens = tokens;
  }

  if (hf) {  // the same texts through HF's tokenizer, in this run
    {
      std::ofstream f(tmp + ".texts", std::ios::binary);
      for (const std::string& t : texts) {
        const uint32_t len = static_cast<uint32_t>(t.size());
        f.write(reinterpret_cast<const char*>(&len), 4);
        f.write(t.data(), static_cast<std::streamsize>(t.size()));
      }
    }
    for (int threads : thread_counts) {
      auto out = Run(absl::StrCat("RAYON_NUM_THREADS=", threads, " node '", FTUNE_HF_ORACLE_SCRIPT, "' --bench '",
                                  vocab, "' ", tmp, ".texts ", repeat));
      if (!out.ok()) {
        unlink((tmp + ".texts").c_str());
        return Fail(std::string(out.status().message()) +
                    " (launch/install-deps.sh installs node and the npm package)");
      }
      const auto j = nlohmann::json::parse(*out);
      const double best = j["seconds"].get<double>();
      const int64_t tokens = j["ids"].get<int64_t>();
      std::printf("HF    threads %2d: %8.3f s (cpu %7.3f s)  %10.0f reviews/s  %12.0f tokens/s  %7.1f MB/s%s\n",
                  threads, best, j["cpu_seconds"].get<double>(), n / best, tokens / best, bytes / 1e6 / best,
                  tokens == ftune_tokens ? "" : "  (ids differ!)");
    }
    unlink((tmp + ".texts").c_str());
  }

  // `ftune prep` end to end (read CSV, tokenize, write compressed HDF5) and random-batch reads.
  const std::string out = tmp + ".h5";
  for (size_t f = 0; f < csv_files.size(); ++f) {
    const std::string split = csv.empty() ? std::vector<std::string>{"train", "eval", "extra"}[f] : "csv";
    PrepOptions opt;
    opt.input = csv_files[f];
    opt.output = out;
    opt.vocab = vocab;
    opt.threads = thread_counts.back();
    auto s = RunPrep(opt);
    if (!s.ok()) return Fail(std::string(s.status().message()));
    std::printf("prep %-5s: %5lld reviews in %.3f s (%.0f reviews/s, %d threads), %.2f MB on disk\n", split.c_str(),
                static_cast<long long>(s->num_examples), s->seconds, s->num_examples / s->seconds, s->threads,
                s->output_bytes / 1e6);
    if (split != "train" && split != "csv") continue;
    auto ds = ftune::data::TokenDataset::Open(out);
    if (!ds.ok()) return Fail(std::string(ds.status().message()));
    std::mt19937 rng(1);
    for (int bs : {8, 32, 128}) {
      const int iters = 2000;
      int64_t tokens = 0;
      auto t0 = std::chrono::steady_clock::now();
      for (int it = 0; it < iters; ++it) {
        std::vector<int64_t> idx(static_cast<size_t>(bs));
        for (auto& i : idx) i = static_cast<int64_t>(rng() % static_cast<uint32_t>((*ds)->size()));
        auto ex = (*ds)->Read(idx);
        if (!ex.ok()) return Fail(std::string(ex.status().message()));
        for (const auto& e : *ex) tokens += static_cast<int64_t>(e.ids.size());
      }
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("read train.h5, random batches of %3d: %.3f ms/batch, %9.0f examples/s, %6.1f M tokens/s\n", bs,
                  sec / iters * 1e3, iters * bs / sec, tokens / sec / 1e6);
    }
  }
  unlink(out.c_str());
  if (!csv.empty() && csv_files[0] != csv) unlink(csv_files[0].c_str());
  return 0;
}

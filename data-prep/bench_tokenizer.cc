// ftune_bench_tokenizer: tokenizer throughput on the 3,609 IMDB reviews of ../shared/data/imdb
// (train, eval, extra), then `ftune prep` end to end (RunPrep) on each file and random-batch reads
// of the result with data::TokenDataset. Not a test: prints reviews/s and tokens/s.
//
//   ftune_bench_tokenizer [--shared=DIR] [--threads=1,2] [--repeat=5]
//
// Tokens are counted without truncation and include [CLS]/[SEP]. Each tokenizer figure is the
// best of `repeat` timed passes after one warm-up pass.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "data-prep/csv_reader.h"
#include "data-prep/parallel.h"
#include "data-prep/prep.h"
#include "data/token_dataset.h"
#include "data-prep/wordpiece_tokenizer.h"

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "ftune_bench_tokenizer: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ftune::prep;
  std::string shared = FTUNE_DEFAULT_SHARED_DIR;
  std::vector<int> thread_counts = {1, ResolveThreads(0)};
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--shared=", 0) == 0) {
      shared = a.substr(9);
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
      std::printf("usage: ftune_bench_tokenizer [--shared=DIR] [--threads=1,2] [--repeat=5]\n");
      return a == "--help" ? 0 : 2;
    }
  }

  auto tok = WordPieceTokenizer::FromVocabFile(shared + "/vocab/bert-base-uncased-vocab.txt");
  if (!tok.ok()) return Fail(std::string(tok.status().message()));
  std::vector<std::string> texts;
  int64_t bytes = 0;
  for (const char* split : {"train", "eval", "extra"}) {
    std::string path = shared + "/data/imdb/" + split + ".csv";
    auto data = ftune::ReadFileToString(path);
    if (!data.ok()) return Fail(std::string(data.status().message()));
    auto reader = CsvReader::Create(path, *data);
    if (!reader.ok()) return Fail(std::string(reader.status().message()));
    std::vector<std::string> fields;
    int64_t line;
    bool header = true;
    while (true) {
      auto more = reader->Next(&fields, &line);
      if (!more.ok()) return Fail(std::string(more.status().message()));
      if (!*more) break;
      if (header) {
        header = false;
        continue;
      }
      bytes += static_cast<int64_t>(fields[0].size());
      texts.push_back(std::move(fields[0]));
    }
  }
  const int64_t n = static_cast<int64_t>(texts.size());
  std::printf("tokenizer benchmark: %lld reviews, %.2f MB of text, %u hardware threads\n",
              static_cast<long long>(n), bytes / 1e6, std::thread::hardware_concurrency());

  for (int threads : thread_counts) {
    std::vector<int64_t> lengths(static_cast<size_t>(n));
    double best = 1e30;
    for (int r = 0; r <= repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      ParallelFor(n, threads, [&](int64_t i) {
        lengths[static_cast<size_t>(i)] = static_cast<int64_t>(tok->Encode(texts[static_cast<size_t>(i)], 0).size());
      });
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0 && s < best) best = s;  // pass 0 warms up
    }
    int64_t tokens = 0;
    for (int64_t l : lengths) tokens += l;
    std::printf("threads %2d: %8.3f s  %10.0f reviews/s  %12.0f tokens/s  %7.1f MB/s\n", threads, best, n / best,
                tokens / best, bytes / 1e6 / best);
  }

  // `ftune prep` end to end (read CSV, tokenize, write compressed HDF5) and random-batch reads.
  const std::string out = "/tmp/ftune_bench_tokenizer." + std::to_string(getpid()) + ".h5";
  for (const char* split : {"train", "eval", "extra"}) {
    PrepOptions opt;
    opt.input = shared + "/data/imdb/" + split + ".csv";
    opt.output = out;
    opt.vocab = shared + "/vocab/bert-base-uncased-vocab.txt";
    opt.threads = thread_counts.back();
    auto s = RunPrep(opt);
    if (!s.ok()) return Fail(std::string(s.status().message()));
    std::printf("prep %-5s: %5lld reviews in %.3f s (%.0f reviews/s, %d threads), %.2f MB on disk\n", split,
                static_cast<long long>(s->num_examples), s->seconds, s->num_examples / s->seconds, s->threads,
                s->output_bytes / 1e6);
    if (std::string(split) != "train") continue;
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
  return 0;
}

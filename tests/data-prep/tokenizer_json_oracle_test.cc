// JsonTokenizer against Hugging Face's tokenizer itself: Tokenizer.fromFile(tokenizer.json) of the
// npm package `tokenizers` 0.23.2 (tests/data-prep/hf/hf_tokenizer_json.js), live, for each
// tokenizer.json of tests/fixtures/tokenizers (made by `tokenizers` itself:
// make_tokenizers.py there): ids and token_type_ids of single texts and of pairs truncated with
// longest_first, over
//   - hand-picked edge cases (special tokens, added tokens with their options, whitespace,
//     accents, CJK, bytes, empty texts) at several max_lengths;
//   - random strings of every general category (the fuzzer of tokenizer_oracle_test);
//   - every Unicode scalar value c in "a" c "b " c " z";
//   - all 100,000 reviews of ../shared/data/aclImdb, and 25,000 pairs of them (skipped without it),
//     for the kinds the model families use (BERT's WordPiece, RoBERTa's and ModernBERT's byte-level
//     BPE); every 10th review (10,000) for the other four, all of them with FTUNE_ORACLE_FULL=1
//     (the full run's counts are in data-prep/README.md): the oracle's own time is what CI pays.
// Every test skips, saying why, without node + the npm package (launch/install-deps.sh).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data-prep/parallel.h"
#include "data-prep/tokenizer_json.h"
#include "gtest/gtest.h"
#include "hf_oracle.h"
#include "oracle_util.h"
#include "test_util.h"

namespace ftune::prep {
namespace {

using ::ftune::prep::testing::CodePoints;
using ::ftune::prep::testing::GzipCsvReviews;
using ::ftune::prep::testing::HfEncoding;
using ::ftune::prep::testing::HfInput;
using ::ftune::prep::testing::HfJsonEncode;
using ::ftune::prep::testing::IdsDiff;
using ::ftune::prep::testing::IsScalar;
using ::ftune::prep::testing::kMaxCodePoint;
using ::ftune::prep::testing::Shared;
using ::ftune::prep::testing::TempDir;
using ::ftune::prep::testing::UnicodeFuzzer;
using ::ftune::prep::testing::Utf8;

std::string TokenizerFixture(const std::string& kind) {
  return std::string(FTUNE_FIXTURES_DIR) + "/tokenizers/" + kind + ".json";
}

const char* const kKinds[] = {"bert-wordpiece-uncased", "bert-wordpiece-cased", "roberta-bpe",      "modernbert-bpe",
                              "metaspace-bpe",          "split-bpe",            "kitchen-wordlevel"};

class JsonOracleTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string why;
    oracle_ = ::ftune::prep::testing::GetHfJsonOracle(&why);
    if (oracle_ == nullptr) GTEST_SKIP() << "needs Hugging Face's tokenizers (Python or npm): " << why;
    path_ = TokenizerFixture(GetParam());
    auto t = JsonTokenizer::FromFile(path_);
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
  }

  // ftune's and HF's encodings of every input; returns how many differ (ids or type ids),
  // reporting the first few.
  size_t Differences(const std::vector<HfInput>& inputs, int32_t max_length, const std::string& what,
                     size_t report = 5) {
    std::vector<HfEncoding> ours(inputs.size());
    ParallelFor(static_cast<int64_t>(inputs.size()), 0, [&](int64_t i) {
      const HfInput& in = inputs[static_cast<size_t>(i)];
      const absl::string_view b = in.b ? absl::string_view(*in.b) : absl::string_view();
      HfEncoding& e = ours[static_cast<size_t>(i)];
      tok_->Encode(in.a, in.b ? &b : nullptr, max_length, &e.ids, &e.type_ids);
    });
    auto theirs = HfJsonEncode(path_, inputs, max_length, dir_.path());
    EXPECT_TRUE(theirs.ok()) << theirs.status();
    if (!theirs.ok()) return inputs.size();
    size_t bad = 0;
    if (const char* r = std::getenv("FTUNE_ORACLE_REPORT")) report = std::strtoul(r, nullptr, 10);  // more detail by hand
    for (size_t i = 0; i < inputs.size(); ++i) {
      const HfEncoding &o = ours[i], &h = (*theirs)[i];
      if (o.ids == h.ids && o.type_ids == h.type_ids) continue;
      if (bad++ < report) {
        if (const char* dump = std::getenv("FTUNE_ORACLE_DUMP")) {  // the texts, to look at by hand
          for (int k = 0; k < 2; ++k) {
            if (k == 1 && !inputs[i].b) break;
            auto st = WriteFileAtomic(absl::StrCat(dump, "/", GetParam(), "_", i, k ? "_b" : "_a", ".txt"),
                                        k ? *inputs[i].b : inputs[i].a);
            (void)st;
          }
        }
        const bool ids = o.ids != h.ids;
        auto [a, b] = ids ? IdsDiff(o.ids, h.ids) : IdsDiff(o.type_ids, h.type_ids);
        ADD_FAILURE() << GetParam() << ", " << what << " " << i << " (max_length " << max_length << "): "
                      << CodePoints(inputs[i].a) << (inputs[i].b ? " | " + CodePoints(*inputs[i].b) : "") << "\n  "
                      << (ids ? "ids" : "type ids") << ": ftune " << a << "\n  HF    " << b;
      }
    }
    std::printf("[ %s ] %s, max_length %d: %zu of %zu differ\n", GetParam(), what.c_str(), max_length, bad,
                inputs.size());
    return bad;
  }

  // Pairs need Python's tokenizers (the npm binding adds no special tokens to encode(a, b)).
  bool SkipPairs() {
    if (oracle_->pairs) return false;
    std::printf("[ %s ] pairs skipped: %s encodes no pairs with special tokens; set FTUNE_HF_PYTHON to a python3 "
                "with tokenizers 0.23\n", GetParam(), oracle_->version.c_str());
    return true;
  }

  const ::ftune::prep::testing::HfJsonOracle* oracle_ = nullptr;
  std::string path_;
  std::unique_ptr<JsonTokenizer> tok_;
  TempDir dir_;
};

std::vector<std::string> EdgeTexts() {
  std::vector<std::string> t = {
      "",
      " ",
      "   ",
      "\t\n\r",
      "Hello world!",
      "Hello  world",
      " leading and trailing ",
      "I'M don't you'll we've they'd she's",
      "[CLS] [SEP] [PAD] [MASK] [UNK]",
      "a[MASK]b",
      "x [MASK] y",
      "x  [MASK]  y",
      "[MASK][MASK]",
      "[mask]",
      "<s>hello</s>",
      "a <mask> b",
      "a     <mask>",
      "<mask>",
      "<pad><unk>",
      "|||IP_ADDRESS||| at |||EMAIL_ADDRESS|||",
      "x|||IP_ADDRESS|||y",
      "two  spaces, four    spaces,  eight        spaces",
      "<|endoftext|><|padding|>",
      "<|begin_of_text|>hi",
      "imdb IMDB imdbs the imdb. (imdb) _imdb",
      "rated 10/10 and 10/10! a10/10",
      "wow!!!   great !!!",
      "no  spoiler here,   spoiler",
      "line<br />break<br/>again<br >",
      "<BR />caps",
      "``quoted'' text",
      "naïve café résumé ÅNGSTRÖM Æsir œuvre straße İstanbul",
      "e\xCC\x81 a\xCC\x8A o\xCC\x88\xCC\x81",
      "\xEF\xAC\x81nance \xE2\x84\xAB \xE2\x91\xA0 \xC2\xBD \xEF\xBC\xA1\xEF\xBC\xA2",
      "\xE4\xB8\xAD\xE6\x96\x87\xE6\xB5\x8B\xE8\xAF\x95 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
      "\xE2\x96\x81 \xE2\x96\x81\xE2\x96\x81x",
      "<0x41> <0xFF>",
      "digits 12345 1,000.50 \xD9\xA1\xD9\xA2\xD9\xA3 \xE2\x85\xA7",
      "tab\there\x0bvt\x0c" "ff\x1c" "fs",
      "nbsp\xC2\xA0" "and\xE2\x80\x8Bzwsp\xEF\xBB\xBF" "bom\xE3\x80\x80" "ideo",
      "ctrl\x01\x02\x7f\xC2\x85\xC2\x9f end",
      "\xEE\x80\x80private \xEF\xBF\xBD replacement \xF4\x8F\xBF\xBF max",
      std::string(300, 'a'),
      "supercalifragilisticexpialidocious" + std::string(80, 'x'),
      "The movie's plot (if you can call it that) was... well, \"interesting\" - 3/10.",
      "ALL CAPS REVIEW!!! WORST. MOVIE. EVER.",
  };
  return t;
}

TEST_P(JsonOracleTest, EdgeCases) {
  const std::vector<std::string> texts = EdgeTexts();
  std::vector<HfInput> singles, pairs;
  for (const std::string& t : texts) singles.push_back({t, std::nullopt});
  for (size_t i = 0; i < texts.size(); ++i) {
    for (size_t j : {i, (i + 1) % texts.size(), (i * 7 + 3) % texts.size()}) pairs.push_back({texts[i], texts[j]});
  }
  const bool skip_pairs = SkipPairs();
  for (int32_t max_length : {0, 5, 16, 512}) {
    EXPECT_EQ(Differences(singles, max_length, "edge text"), 0u);
    if (!skip_pairs) EXPECT_EQ(Differences(pairs, max_length, "edge pair"), 0u);
  }
}

// Characters assigned after Unicode 14.0 (by 17.0: tests/fixtures/tokens/unicode_categories.txt;
// ICU 72 knows up to 15.0): Debian 12's Oniguruma and ICU may classify them differently from
// HF's newer tables (README.md), so the tests leave them out.
bool NewerThanExact(int32_t c) {
  static const std::vector<bool>* assigned17 = [] {
    auto* v = new std::vector<bool>(kMaxCodePoint + 1, false);
    std::ifstream in(std::string(FTUNE_FIXTURES_DIR) + "/tokens/unicode_categories.txt");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream f(line);
      std::string cat;
      int32_t lo, hi;
      f >> cat >> std::hex >> lo >> hi;
      if (cat == "Cn") continue;
      for (int32_t c = lo; c <= hi; ++c) (*v)[static_cast<size_t>(c)] = true;
    }
    return v;
  }();
  if (!(*assigned17)[static_cast<size_t>(c)]) return false;  // unassigned in every version
  const int age = UnicodeAge(c);
  return age == 0 || age > kJsonTokenizerExactUnicodeAge;
}

// Fuzz strings, without the characters assigned after Unicode 14.0.
std::string NextFuzz(UnicodeFuzzer* fuzz) {
  std::string s = fuzz->Next(), out;
  for (size_t i = 0, len; i < s.size(); i += len) {
    const int32_t c = utf8::Decode(s, i, &len);
    if (!NewerThanExact(c)) out.append(s, i, len);
  }
  return out;
}

TEST_P(JsonOracleTest, RandomUnicodeStrings) {
  UnicodeFuzzer fuzz(/*seed=*/20261201);
  std::vector<HfInput> singles, pairs;
  for (int i = 0; i < 4000; ++i) singles.push_back({NextFuzz(&fuzz), std::nullopt});
  for (int i = 0; i < 2000; ++i) pairs.push_back({NextFuzz(&fuzz), NextFuzz(&fuzz)});
  EXPECT_EQ(Differences(singles, 0, "random string"), 0u);
  EXPECT_EQ(Differences(singles, 7, "random string"), 0u);
  if (SkipPairs()) return;
  EXPECT_EQ(Differences(pairs, 24, "random pair"), 0u);
  EXPECT_EQ(Differences(pairs, 0, "random pair"), 0u);
}

// Every code point; those assigned after Unicode 14.0 are counted apart and only reported.
TEST_P(JsonOracleTest, EveryCodePointInThreePositions) {
  std::vector<HfInput> inputs, newer;
  for (int32_t c = 0; c <= kMaxCodePoint; ++c) {
    if (!IsScalar(c)) continue;
    const std::string s = Utf8(c);
    (NewerThanExact(c) ? newer : inputs).push_back({absl::StrCat("a", s, "b ", s, " z"), std::nullopt});
  }
  ASSERT_EQ(inputs.size() + newer.size(), 1112064u);
  EXPECT_EQ(Differences(inputs, 0, "code point text (Unicode <= 14.0 or unassigned)"), 0u);
  Differences(newer, 0, "code point text (assigned after 14.0: not asserted)", 0);
}

TEST_P(JsonOracleTest, AllAclImdbReviews) {
  const std::string dir = Shared("data/aclImdb");
  if (!PathExists(dir + "/train.csv.gz")) GTEST_SKIP() << "needs " << dir << "/{train,test,unsup}.csv.gz";
  const std::string kind = GetParam();
  const char* full_env = std::getenv("FTUNE_ORACLE_FULL");
  const bool all = kind == "bert-wordpiece-uncased" || kind == "roberta-bpe" || kind == "modernbert-bpe" ||
                   (full_env != nullptr && std::string(full_env) == "1");
  const size_t stride = all ? 1 : 10;
  size_t total = 0;
  for (const char* split : {"train", "test", "unsup"}) {
    std::vector<std::string> reviews = GzipCsvReviews(absl::StrCat(dir, "/", split, ".csv.gz"));
    std::vector<HfInput> inputs;
    inputs.reserve(reviews.size() / stride + 1);
    for (size_t i = 0; i < reviews.size(); i += stride) inputs.push_back({std::move(reviews[i]), std::nullopt});
    EXPECT_EQ(Differences(inputs, 0, absl::StrCat(split, " review")), 0u);
    total += inputs.size();
    if (std::string(split) == "test" && !SkipPairs()) {  // pairs, truncated as transformers' truncation=True does
      std::vector<HfInput> pairs;
      for (size_t i = 0; i < inputs.size(); ++i) pairs.push_back({inputs[i].a, inputs[(i + 1) % inputs.size()].a});
      EXPECT_EQ(Differences(pairs, 512, "test review pair"), 0u);
      EXPECT_EQ(Differences(pairs, 128, "test review pair"), 0u);
    }
  }
  EXPECT_EQ(total, 100000u / stride);
}

INSTANTIATE_TEST_SUITE_P(Kinds, JsonOracleTest, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace ftune::prep

// The tokenizer against Hugging Face's own output: every edge-case golden, the vendored review
// goldens, and (when ../shared exists) all 3,609 IMDB reviews.
#include "data-prep/wordpiece_tokenizer.h"

#include <thread>

#include "common/files.h"
#include "data-prep/csv_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ftune::prep {
namespace {

using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::ReadJsonl;
using ::ftune::prep::testing::Shared;
using ::ftune::prep::testing::Truncate;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const WordPieceTokenizer& Tok() {
  static const WordPieceTokenizer* tok = [] {
    auto t = WordPieceTokenizer::FromVocabFile(Fixture("vocab.txt"));
    EXPECT_TRUE(t.ok()) << t.status();
    return new WordPieceTokenizer(*std::move(t));
  }();
  return *tok;
}

// Column `column` of every data row of a CSV file.
std::vector<std::string> CsvColumn(const std::string& path, const std::string& column) {
  auto data = ReadFileToString(path);
  EXPECT_TRUE(data.ok()) << data.status();
  auto reader = CsvReader::Create(path, *data);
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> fields, out;
  int64_t line;
  int col = -1;
  while (true) {
    auto more = reader->Next(&fields, &line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    if (col < 0) {
      col = static_cast<int>(std::find(fields.begin(), fields.end(), column) - fields.begin());
      EXPECT_LT(col, static_cast<int>(fields.size())) << "no column " << column;
      continue;
    }
    out.push_back(fields[static_cast<size_t>(col)]);
  }
  return out;
}

// Compares Encode(texts[i], 0) with golden[i]["ids"]; reports the first few mismatches.
void ExpectGoldens(const std::vector<std::string>& texts, const std::vector<nlohmann::json>& golden,
                   const std::string& what) {
  ASSERT_EQ(texts.size(), golden.size()) << what;
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> want = golden[i]["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got = Tok().Encode(texts[i], 0);
    if (got != want && ++mismatches <= 3) {
      ADD_FAILURE() << what << " row " << i << " differs from HF (" << got.size() << " vs " << want.size()
                    << " ids): " << ::testing::PrintToString(texts[i].substr(0, 200));
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

TEST(WordPieceTokenizer, VocabIsBertBaseUncased) {
  EXPECT_EQ(Tok().vocab_size(), 30522);
  EXPECT_EQ(Tok().vocab_sha256(), "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3");
  EXPECT_EQ(Tok().pad_id(), 0);
  EXPECT_EQ(Tok().unk_id(), 100);
  EXPECT_EQ(Tok().cls_id(), 101);
  EXPECT_EQ(Tok().sep_id(), 102);
  EXPECT_EQ(Tok().mask_id(), 103);
  EXPECT_EQ(Tok().token_id("hello"), 7592);
  EXPECT_EQ(Tok().token_id("not-a-token"), -1);
  EXPECT_EQ(Tok().token(2088), "world");
}

TEST(WordPieceTokenizer, EveryEdgeGoldenMatchesHuggingFace) {
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("edge.jsonl"));
  ASSERT_EQ(golden.size(), 47u);
  for (const auto& g : golden) {
    const std::string text = g["text"].get<std::string>();
    EXPECT_EQ(Tok().Encode(text, 0), g["ids"].get<std::vector<int32_t>>())
        << "text: " << ::testing::PrintToString(text);
  }
}

TEST(WordPieceTokenizer, SharedEdgeGoldensMatchToo) {
  FTUNE_SKIP_WITHOUT_SHARED();
  for (const auto& g : ReadJsonl(Shared("reference/tokens/edge.jsonl"))) {
    const std::string text = g["text"].get<std::string>();
    EXPECT_EQ(Tok().Encode(text, 0), g["ids"].get<std::vector<int32_t>>())
        << "text: " << ::testing::PrintToString(text);
  }
}

TEST(WordPieceTokenizer, VendoredReviewGoldensMatchHuggingFace) {
  std::vector<std::string> texts = CsvColumn(Fixture("reviews.csv"), "review");
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("reviews.jsonl"));
  ASSERT_EQ(texts.size(), 200u);
  ExpectGoldens(texts, golden, "reviews.csv");
}

TEST(WordPieceTokenizer, AllImdbReviewsMatchHuggingFace) {
  FTUNE_SKIP_WITHOUT_SHARED();
  size_t total = 0;
  for (const char* split : {"train", "eval", "extra"}) {
    std::vector<std::string> texts = CsvColumn(Shared(std::string("data/imdb/") + split + ".csv"), "review");
    ExpectGoldens(texts, ReadJsonl(Shared(std::string("reference/tokens/") + split + ".jsonl")), split);
    total += texts.size();
  }
  EXPECT_EQ(total, 3609u);
}

TEST(WordPieceTokenizer, TruncationKeepsTheFirstPiecesAndSep) {
  std::vector<std::string> texts = CsvColumn(Fixture("reviews.csv"), "review");
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("reviews.jsonl"));
  int long_ones = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> want = golden[i]["ids"].get<std::vector<int32_t>>();
    int64_t full = 0;
    std::vector<int32_t> got = Tok().Encode(texts[i], 512, &full);
    EXPECT_EQ(full, static_cast<int64_t>(want.size()));
    EXPECT_EQ(got, Truncate(want, 512)) << "row " << i;
    if (want.size() > 512) {
      ++long_ones;
      EXPECT_EQ(got.size(), 512u);
      EXPECT_EQ(got.front(), 101);
      EXPECT_EQ(got.back(), 102);
    }
  }
  EXPECT_GE(long_ones, 10);  // the 10 longest reviews are vendored
  // Tiny limits still give [CLS] ... [SEP].
  EXPECT_THAT(Tok().Encode("hello world", 3), ElementsAre(101, 7592, 102));
  EXPECT_THAT(Tok().Encode("hello world", 2), ElementsAre(101, 102));
}

TEST(WordPieceTokenizer, SplitWordsShowsNormalizationAndPreTokenization) {
  EXPECT_THAT(Tok().SplitWords("Hello, World!"), ElementsAre("hello", ",", "world", "!"));
  EXPECT_THAT(Tok().SplitWords("Café\tNAÏVE"), ElementsAre("cafe", "naive"));
  EXPECT_THAT(Tok().SplitWords("mixed日本text"), ElementsAre("mixed", "日", "本", "text"));
  EXPECT_THAT(Tok().SplitWords("a[SEP]b"), ElementsAre("a", "[SEP]", "b"));
}

// Special tokens are matched case-sensitively on the raw text, before normalization (HF adds them
// with normalized=false), so a lowercase "[sep]" is ordinary punctuation and letters.
TEST(WordPieceTokenizer, LiteralSpecialTokensAreCaseSensitive) {
  const auto& t = Tok();
  EXPECT_THAT(t.Encode("x[MASK]y", 0), ElementsAre(101, t.token_id("x"), 103, t.token_id("y"), 102));
  EXPECT_THAT(t.Encode("[sep]", 0), ElementsAre(101, t.token_id("["), t.token_id("sep"), t.token_id("]"), 102));
}

// HF classifies with three Unicode versions (categories 8.0, NFD 9.0, case 17.0; see
// data-prep/gen_unicode_tables.py). One character from each end of every range where a tokenizer
// on a single current Unicode version differs from HF (private use, characters assigned after 8.0,
// case pairs added in 16.0 and 17.0, singleton decompositions), with HF's ids and words
// (tests/fixtures/tokens/README.md); tokenizer_oracle_test checks every code point where node is
// installed.
TEST(WordPieceTokenizer, CharactersWhoseClassDependsOnTheUnicodeVersion) {
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("unicode_versions.jsonl"));
  ASSERT_GE(golden.size(), 200u);
  for (const auto& g : golden) {
    const std::string text = g["text"].get<std::string>();
    EXPECT_EQ(Tok().Encode(text, 0), g["ids"].get<std::vector<int32_t>>()) << g["code_point"];
    EXPECT_EQ(Tok().SplitWords(text), g["words"].get<std::vector<std::string>>()) << g["code_point"];
  }
}

TEST(WordPieceTokenizer, CombiningMarksAreReorderedThenDropped) {
  // NFD puts marks in canonical order and Mn marks are dropped, so any order of marks on a base
  // letter gives the bare letter, and precomposed == decomposed.
  EXPECT_EQ(Tok().Encode("e\xCC\x81\xCC\xA3t\xC3\xA9", 0), Tok().Encode("et\xC3\xA9", 0));
  EXPECT_EQ(Tok().Encode("e\xCC\xA3\xCC\x81te", 0), Tok().Encode("ete", 0));
}

TEST(WordPieceTokenizer, InvalidUtf8BytesAreDroppedNotFatal) {
  // Readers reject invalid UTF-8 with file:line; Encode itself reads bad bytes as U+FFFD, which
  // clean_text drops.
  EXPECT_EQ(Tok().Encode("hel\xFFlo", 0), Tok().Encode("hello", 0));
}

TEST(WordPieceTokenizer, ConcurrentEncodingIsDeterministic) {
  std::vector<std::string> texts = CsvColumn(Fixture("reviews.csv"), "review");
  std::vector<std::vector<int32_t>> a(texts.size()), b(texts.size());
  std::thread t1([&] {
    for (size_t i = 0; i < texts.size(); ++i) a[i] = Tok().Encode(texts[i], 512);
  });
  std::thread t2([&] {
    for (size_t i = texts.size(); i-- > 0;) b[i] = Tok().Encode(texts[i], 512);
  });
  t1.join();
  t2.join();
  EXPECT_EQ(a, b);
}

TEST(WordPieceTokenizer, VocabErrors) {
  auto missing = WordPieceTokenizer::FromVocabFile("/nonexistent/vocab.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto empty = WordPieceTokenizer::FromVocabText("", "empty.txt");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty.txt"));
  auto no_unk = WordPieceTokenizer::FromVocabText("[PAD]\n[CLS]\n[SEP]\nhello\n", "small.txt");
  EXPECT_EQ(no_unk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_unk.status().message()), HasSubstr("[UNK]"));
}

TEST(WordPieceTokenizer, SmallVocabFollowsHfRules) {
  // CRLF line ends and trailing (Unicode) whitespace are trimmed; a repeated token keeps its last line.
  auto t = WordPieceTokenizer::FromVocabText("[UNK]\r\n[CLS]\n[SEP]\nun \xE3\x80\x80\n##aff\n##able\nun\n", "v.txt");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->vocab_size(), 7);
  EXPECT_EQ(t->token_id("un"), 6);
  EXPECT_THAT(t->Encode("unaffable", 0), ElementsAre(1, 6, 4, 5, 2));
  EXPECT_THAT(t->Encode("unaffablex", 0), ElementsAre(1, 0, 2));  // uncovered tail: whole word [UNK]
  EXPECT_EQ(t->pad_id(), -1);
}

}  // namespace
}  // namespace ftune::prep

// Bad CSV input through the whole `ftune prep` path (RunPrep): each case fails with
// InvalidArgument and a one-line "<file>:<line>: ..." message, and the output directory is left
// exactly as it was, whether or not an output file existed before.
// Already covered in tests/data-prep/prep_test.cc (RunPrepBadInput) and csv_reader_test.cc, not
// repeated here: unterminated quote mid-file, missing text/label column, invalid UTF-8 mid-file,
// unknown label, empty file, BOM-only file, header only, a row with too many fields, an error
// after many rows, text after a closing quote.
#include <chrono>
#include <string>

#include "data-prep/csv_reader.h"
#include "data-prep/prep.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "data/token_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hardening_util.h"
#include "tests/data-prep/test_util.h"

namespace ftune::hardening {
namespace {

using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::TempDir;
using ::testing::ElementsAre;
using namespace std::string_literals;

prep::PrepOptions Options(const std::string& input, const std::string& output) {
  prep::PrepOptions o;
  o.input = input;
  o.output = output;
  o.vocab = Fixture("vocab.txt");
  o.threads = 2;
  return o;
}

struct BadCsv {
  const char* name;
  std::string contents;
  std::string message;  // expected after "<path>:"
  prep::InputFormat format = prep::InputFormat::kCsv;
};

void PrintTo(const BadCsv& c, std::ostream* os) { *os << c.name; }

class CsvBadInput : public ::testing::TestWithParam<BadCsv> {};

TEST_P(CsvBadInput, FailsOnOneLineNamingFileAndLineAndWritesNothing) {
  const BadCsv& c = GetParam();
  for (bool existing_output : {false, true}) {
    TempDir dir;
    const std::string in = dir.Write("in.csv", c.contents);
    if (existing_output) dir.Write("out.h5", "previous contents");
    const auto before = Snapshot(dir.path());
    prep::PrepOptions o = Options(in, dir / "out.h5");
    o.input_format = c.format;
    auto s = prep::RunPrep(o);
    EXPECT_TRUE(IsOneLineError(s.status(), absl::StatusCode::kInvalidArgument, {in + ":" + c.message}));
    EXPECT_EQ(Snapshot(dir.path()), before) << "existing output: " << existing_output;
  }
}

std::string WideHeader() {
  std::string h;
  for (int i = 0; i < 1000; ++i) h += "c" + std::to_string(i) + ",";
  return h + "label\nx,1\n";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CsvBadInput,
    ::testing::Values(
        BadCsv{"UnterminatedQuoteAtEndOfFile", "review,label\nok,1\n\"no end", "3: unterminated quoted field"},
        // A pandas export of a joined table: one of the two would be read, the other ignored.
        BadCsv{"ColumnNamedTwice", "review,label,review\ngood,1,bad\n",
               "1: the header names column 'review' 2 times (columns 1, 3); rename all but one"},
        BadCsv{"ColumnNameWithNewline", "\"rev\niew\",label\nx,1\n",
               "1: no column named 'review' in the header (columns: rev\\niew, label)"},
        BadCsv{"ColumnNameWithNulAndEscape", "re\0view\x1b[31m,label\nx,1\n"s,
               "1: no column named 'review' in the header (columns: re\\x00view\\x1b[31m, label)"},
        BadCsv{"ThousandColumnsListsTen", WideHeader(),
               "1: no column named 'review' in the header (columns: c0, c1, "
               "c2, c3, c4, c5, c6, c7, c8, c9, ... (1001 columns))"},
        BadCsv{"TooFewFields", "review,label\ngood\n", "2: row has 1 fields but the header has 2"},
        BadCsv{"RaggedAfterQuotedNewline", "review,label\n\"multi\nline\",1,extra\n", "2: row has 3 fields"},
        BadCsv{"OverlongUtf8", "review,label\n\xC0\xAF,1\n", "2: invalid UTF-8 (byte 0xc0 at column 1)"},
        BadCsv{"Utf8CutAtEndOfFile", "review,label\nok,1\nend\xE2\x82", "3: invalid UTF-8 (byte 0xe2 at column 4)"},
        BadCsv{"Utf16File", "\xFF\xFEr\0e\0v\0"s, "1: invalid UTF-8 (byte 0xff at column 1)"},
        BadCsv{"UnknownLabelWithNewline", "review,label\nx,\"po\nsitive\"\n", "2: unknown label 'po\\nsitive'"},
        BadCsv{"EmptyLabel", "review,label\nx,\n", "2: unknown label ''"},
        BadCsv{"HugeUnknownLabel", "review,label\nx," + std::string(1 << 20, 'z') + "\n",
               "2: unknown label '" + std::string(64, 'z') + "...(1048576 bytes)'"},
        BadCsv{"MultibyteAfterClosingQuote", "review,label\n\"x\"\xC3\xA9,1\n", "2: unexpected character '\xC3\xA9'"},
        BadCsv{"NulAfterClosingQuote", "review,label\n\"x\"\0,1\n"s, "2: unexpected character '\\x00'"},
        BadCsv{"OnlyBlankLines", "\n\r\n  \n", "1: empty file"},
        BadCsv{"OnlyNulBytes", std::string(3, '\0'),
               "1: no column named 'review' in the header (columns: "
               "\\x00\\x00\\x00)"},
        // JSONL (`--input_format=jsonl`) goes through the same path.
        BadCsv{"JsonlNulThenGarbage", "{\"ids\": [101, 102], \"label\": 0}\0{\"ids\": [\n"s,
               "1: invalid JSON: NUL byte at column 32", prep::InputFormat::kJsonl},
        BadCsv{"JsonlHugeStringId", "{\"ids\": [\"" + std::string(1 << 20, 'x') + "\"], \"label\": 0}\n",
               "1: ids[0] = \"" + std::string(63, 'x') + "...(1048578 bytes) is not a token id",
               prep::InputFormat::kJsonl}),
    [](const ::testing::TestParamInfo<BadCsv>& info) { return std::string(info.param.name); });

// Not errors, on purpose (Hugging Face parity): what the tokenizer makes of them.
TEST(CsvEdgeInput, EmptyTextAndNulBytesAreExamples) {
  TempDir dir;
  const std::string in = dir.Write("in.csv", "review,label\n,1\n\"a\0b\",0\n\"\",1\n"s);
  auto s = prep::RunPrep(Options(in, dir / "out.h5"));
  ASSERT_TRUE(s.ok()) << s.status();
  auto ds = data::TokenDataset::Open(dir / "out.h5");
  ASSERT_TRUE(ds.ok()) << ds.status();
  auto ex = (*ds)->Read(std::vector<int64_t>{0, 1, 2});
  ASSERT_TRUE(ex.ok()) << ex.status();
  auto tok = prep::WordPieceTokenizer::FromVocabFile(Fixture("vocab.txt"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 102));  // empty text: [CLS] [SEP], as HF encodes ""
  EXPECT_EQ((*ex)[1].ids, tok->Encode("ab", 512));   // NUL dropped by clean_text: "ab"
  EXPECT_THAT((*ex)[2].ids, ElementsAre(101, 102));
}

// ---- A 100 MB field: linear time, bounded memory, clean result.

std::string Repeat(absl::string_view unit, size_t bytes) {
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() < bytes) s.append(unit.data(), unit.size());
  return s;
}

constexpr size_t k100MB = size_t{100} << 20;

TEST(CsvHugeField, HundredMegabyteReviewIsTokenizedAndTruncated) {
  TempDir dir;
  std::string csv = "review,label\n\"" + Repeat("a \"\"good\"\" movie, ", k100MB) + "\",1\nshort,0\n";
  const std::string in = dir.Write("in.csv", csv);
  csv.clear();
  csv.shrink_to_fit();
  const auto start = std::chrono::steady_clock::now();
  auto s = prep::RunPrep(Options(in, dir / "out.h5"));
  const double seconds = SecondsSince(start);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->num_examples, 2);
  EXPECT_EQ(s->num_truncated, 1);
  EXPECT_EQ(s->max_length, 512);
  EXPECT_GT(s->max_untruncated, 20'000'000);
  std::printf("[ timing   ] 100 MB review through RunPrep: %.1f s\n", seconds);
  EXPECT_LT(seconds, 300) << "far slower than linear";
}

TEST(CsvHugeField, ReaderAloneIsLinear) {
  // 100 MB of escaped quotes (the slowest path of the quoted-field loop), then 100 MB unquoted.
  for (const std::string& field : {"\"" + Repeat("\"\"", k100MB) + "\"", Repeat("x", k100MB)}) {
    const std::string data = "review,label\n" + field + ",1\n";
    const auto start = std::chrono::steady_clock::now();
    auto r = prep::CsvReader::Create("big.csv", data);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<std::string> fields;
    int64_t line;
    ASSERT_TRUE(*r->Next(&fields, &line));
    ASSERT_TRUE(*r->Next(&fields, &line));
    EXPECT_EQ(fields[0].size(), field[0] == '"' ? k100MB / 2 : k100MB);
    EXPECT_FALSE(*r->Next(&fields, &line));
    std::printf("[ timing   ] 100 MB field through CsvReader: %.2f s\n", SecondsSince(start));
    EXPECT_LT(SecondsSince(start), 60);
  }
}

TEST(CsvHugeField, UnterminatedHundredMegabyteQuoteFailsFast) {
  TempDir dir;
  const std::string in = dir.Write("in.csv", "review,label\nok,1\n\"" + Repeat("never closed ", k100MB));
  const auto before = Snapshot(dir.path());
  const auto start = std::chrono::steady_clock::now();
  auto s = prep::RunPrep(Options(in, dir / "out.h5"));
  EXPECT_TRUE(IsOneLineError(s.status(), absl::StatusCode::kInvalidArgument, {in + ":3: unterminated quoted field"}));
  EXPECT_LT(SecondsSince(start), 60);
  EXPECT_EQ(Snapshot(dir.path()), before);
}

TEST(CsvHugeField, TokenizerOnPathologicalHundredMegabyteWords) {
  auto tok = prep::WordPieceTokenizer::FromVocabFile(Fixture("vocab.txt"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  // One 100 MB word; 50M combining marks on one letter (NFD reordering buffers them); 100 MB of
  // '[' (every one a candidate special token); 100 MB of "[CLS" without the closing bracket.
  for (const char* unit : {"a", "\xCC\x81", "[", "[CLS"}) {
    const std::string text = std::string("e") + Repeat(unit, k100MB);
    const auto start = std::chrono::steady_clock::now();
    int64_t untruncated = 0;
    auto ids = tok->Encode(text, 512, &untruncated);
    EXPECT_LE(ids.size(), 512u);
    EXPECT_EQ(ids.front(), tok->cls_id());
    EXPECT_EQ(ids.back(), tok->sep_id());
    std::printf("[ timing   ] 100 MB of '%s' through the tokenizer: %.1f s, %lld pieces\n",
                utf8::Printable(unit).c_str(), SecondsSince(start), static_cast<long long>(untruncated));
    EXPECT_LT(SecondsSince(start), 120);
  }
}

}  // namespace
}  // namespace ftune::hardening

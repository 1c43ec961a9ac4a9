// RunPrep end to end: CSV/JSONL in, HDF5 out, read back with data::TokenDataset and compared with
// Hugging Face's ids; bad inputs fail with the file and line and leave no output behind.
#include "data-prep/prep.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "common/files.h"
#include "data/token_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ftune::prep {
namespace {

using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::ReadAll;
using ::ftune::prep::testing::ReadJsonl;
using ::ftune::prep::testing::Shared;
using ::ftune::prep::testing::TempDir;
using ::ftune::prep::testing::Truncate;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

PrepOptions Options(const std::string& input, const std::string& output) {
  PrepOptions o;
  o.input = input;
  o.output = output;
  o.vocab = Fixture("vocab.txt");
  o.threads = 2;
  return o;
}

TEST(RunPrep, VendoredReviewsRoundTripToHuggingFaceIds) {
  TempDir dir;
  PrepOptions o = Options(Fixture("reviews.csv"), dir / "reviews.h5");
  o.batch_size = 37;  // several appends, uneven last batch
  int progress_calls = 0;
  o.progress = [&](const PrepProgress& p) {
    ++progress_calls;
    EXPECT_LE(p.bytes_done, p.bytes_total);
  };
  auto summary = RunPrep(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(progress_calls, 6);  // ceil(200 / 37)

  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("reviews.jsonl"));
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ((*ds)->size(), 200);

  // Read everything in a shuffled order: ids must be HF's, truncated to 512.
  std::vector<int64_t> idx(200);
  std::iota(idx.begin(), idx.end(), 0);
  std::shuffle(idx.begin(), idx.end(), std::mt19937(7));
  auto ex = (*ds)->Read(idx);
  ASSERT_TRUE(ex.ok()) << ex.status();
  int64_t tokens = 0, truncated = 0, max_full = 0;
  for (size_t k = 0; k < idx.size(); ++k) {
    std::vector<int32_t> want = golden[static_cast<size_t>(idx[k])]["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ((*ex)[k].index, idx[k]);
    EXPECT_EQ((*ex)[k].ids, Truncate(want, 512)) << "row " << idx[k];
  }
  for (const auto& g : golden) {
    size_t n = g["ids"].size();
    tokens += static_cast<int64_t>(std::min<size_t>(n, 512));
    truncated += n > 512;
    max_full = std::max<int64_t>(max_full, static_cast<int64_t>(n));
  }

  const data::DatasetInfo& info = (*ds)->info();
  EXPECT_EQ(info.format_version, 1);
  EXPECT_EQ(info.num_tokens, tokens);
  EXPECT_EQ(info.num_truncated, truncated);
  EXPECT_EQ(info.vocab_size, 30522);
  EXPECT_EQ(info.vocab_sha256, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3");
  EXPECT_EQ(info.max_length, 512);
  EXPECT_THAT(info.label_names, ElementsAre("negative", "positive"));
  EXPECT_EQ(info.source_name, "reviews.csv");
  EXPECT_EQ(info.source_sha256, *Sha256File(Fixture("reviews.csv")));
  EXPECT_EQ(info.token_type, "uint16");
  EXPECT_THAT(info.created_by, HasSubstr("ftune prep"));
  nlohmann::json tok = nlohmann::json::parse(info.tokenizer_json);
  EXPECT_EQ(tok["lowercase"], true);
  EXPECT_EQ(tok["max_input_chars_per_word"], 100);
  EXPECT_EQ(nlohmann::json::parse(info.label_mapping_json), nlohmann::json({{"0", 0}, {"1", 1}}));
  EXPECT_TRUE((*ds)->CheckVocab(summary->vocab_sha256, 30522).ok());

  EXPECT_EQ(summary->num_examples, 200);
  EXPECT_EQ(summary->num_tokens, tokens);
  EXPECT_EQ(summary->num_truncated, truncated);
  EXPECT_EQ(summary->max_length, 512);
  EXPECT_EQ(summary->max_untruncated, max_full);
  EXPECT_NEAR(summary->mean_length, tokens / 200.0, 1e-9);
  ASSERT_EQ(summary->label_counts.size(), 2u);
  EXPECT_EQ(summary->label_counts[0] + summary->label_counts[1], 200);
  int64_t positives = 0;
  for (const auto& e : *ex) positives += e.label;
  EXPECT_EQ(summary->label_counts[1], positives);
  EXPECT_THAT(summary->Format(), HasSubstr("truncated"));
  EXPECT_THAT(dir.Files(), ElementsAre("reviews.h5"));  // no temp file left
}

TEST(RunPrep, SameBytesWithOneThreadOrManyAndAnyBatchSize) {
  TempDir dir;
  PrepOptions a = Options(Fixture("reviews.csv"), dir / "a.h5");
  a.threads = 1;
  a.batch_size = 1000;
  PrepOptions b = Options(Fixture("reviews.csv"), dir / "b.h5");
  b.threads = 3;
  b.batch_size = 5;
  ASSERT_TRUE(RunPrep(a).ok());
  ASSERT_TRUE(RunPrep(b).ok());
  auto da = data::TokenDataset::Open(a.output);
  auto db = data::TokenDataset::Open(b.output);
  ASSERT_TRUE(da.ok() && db.ok());
  std::vector<data::Example> ea = ReadAll(**da), eb = ReadAll(**db);
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_EQ(ea[i].ids, eb[i].ids);
    EXPECT_EQ(ea[i].label, eb[i].label);
  }
}

TEST(RunPrep, AllImdbReviewsThroughTheWholePipeline) {
  FTUNE_SKIP_WITHOUT_SHARED();
  TempDir dir;
  for (const char* split : {"train", "eval", "extra"}) {
    PrepOptions o = Options(Shared(std::string("data/imdb/") + split + ".csv"), dir / (std::string(split) + ".h5"));
    o.vocab = Shared("vocab/bert-base-uncased-vocab.txt");
    auto s = RunPrep(o);
    ASSERT_TRUE(s.ok()) << s.status();
    auto ds = data::TokenDataset::Open(o.output);
    ASSERT_TRUE(ds.ok()) << ds.status();
    std::vector<nlohmann::json> golden = ReadJsonl(Shared(std::string("reference/tokens/") + split + ".jsonl"));
    ASSERT_EQ((*ds)->size(), static_cast<int64_t>(golden.size())) << split;
    std::vector<data::Example> ex = ReadAll(**ds);
    int bad = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
      if (ex[i].ids != Truncate(golden[i]["ids"].get<std::vector<int32_t>>(), 512) && ++bad <= 3) {
        ADD_FAILURE() << split << " row " << i << " differs from HF";
      }
    }
    EXPECT_EQ(bad, 0) << split;
  }
}

TEST(RunPrep, TextLabelsAndCustomColumns) {
  TempDir dir;
  std::string in = dir.Write("in.csv",
                             "id,text,sentiment\n"
                             "1,Great movie!,POSITIVE\n"
                             "2,\"Bad, bad, bad.\",neg\n"
                             "3,fine,Pos\n"
                             "4,meh, negative \n");
  PrepOptions o = Options(in, dir / "out.h5");
  o.text_column = "text";
  o.label_column = "sentiment";
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<data::Example> ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), 4u);
  EXPECT_THAT(std::vector<int64_t>({ex[0].label, ex[1].label, ex[2].label, ex[3].label}), ElementsAre(1, 0, 1, 0));
  EXPECT_THAT(ex[0].ids, ElementsAre(101, 2307, 3185, 999, 102));  // [CLS] great movie ! [SEP]
  EXPECT_EQ(nlohmann::json::parse((*ds)->info().label_mapping_json),
            nlohmann::json({{"POSITIVE", 1}, {"neg", 0}, {"Pos", 1}, {"negative", 0}}));
  EXPECT_THAT(s->label_counts, ElementsAre(2, 2));
}

TEST(RunPrep, ExplicitLabelListAcceptsNamesAndIndices) {
  TempDir dir;
  std::string in = dir.Write("in.csv", "review,label\na,bad\nb,2\nc,OK\nd,0\n");
  PrepOptions o = Options(in, dir / "out.h5");
  o.labels = {"bad", "ok", "good"};
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok());
  EXPECT_THAT((*ds)->info().label_names, ElementsAre("bad", "ok", "good"));
  std::vector<data::Example> ex = ReadAll(**ds);
  EXPECT_THAT(std::vector<int64_t>({ex[0].label, ex[1].label, ex[2].label, ex[3].label}), ElementsAre(0, 2, 1, 0));
  EXPECT_THAT(s->label_counts, ElementsAre(2, 1, 1));
}

TEST(RunPrep, JsonlBringYourOwnTokens) {
  TempDir dir;
  std::string in = dir.Write("in.jsonl",
                             "{\"ids\": [101, 7592, 2088, 102], \"label\": 1}\n"
                             "\n"
                             "{\"ids\": [101, 1, 2, 3, 4, 5, 102], \"label\": \"neg\"}\n");
  PrepOptions o = Options(in, dir / "out.h5");
  o.input_format = InputFormat::kJsonl;
  o.max_length = 5;
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->num_truncated, 1);
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<data::Example> ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_THAT(ex[0].ids, ElementsAre(101, 7592, 2088, 102));
  EXPECT_EQ(ex[0].label, 1);
  EXPECT_THAT(ex[1].ids, ElementsAre(101, 1, 2, 3, 102));  // first max_length-1, then the last id
  EXPECT_EQ(ex[1].label, 0);
  EXPECT_EQ(nlohmann::json::parse((*ds)->info().tokenizer_json)["type"], "pretokenized");
}

// --label_column= (empty): a dataset without labels, text for pretraining. From a CSV with only
// the text column, from one whose label column is then not read, and from JSONL without "label";
// the ids are HF's all the same.
TEST(RunPrep, EmptyLabelColumnWritesADatasetWithoutLabels) {
  TempDir dir;
  PrepOptions o = Options(dir.Write("unsup.csv", "review\nGreat movie!\n\"Bad, bad, bad.\"\n"), dir / "unsup.h5");
  o.label_column = "";
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->label_names, IsEmpty());
  EXPECT_THAT(s->Format(), HasSubstr("labels     none (--label_column is empty"));
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)->has_labels());
  EXPECT_THAT((*ds)->info().label_names, IsEmpty());
  EXPECT_EQ((*ds)->info().label_mapping_json, "{}");
  EXPECT_EQ((*ds)->label(1), -1);
  std::vector<data::Example> ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_THAT(ex[0].ids, ElementsAre(101, 2307, 3185, 999, 102));  // [CLS] great movie ! [SEP]
  EXPECT_EQ(ex[0].label, -1);
  EXPECT_EQ(ex[1].label, -1);

  o = Options(Fixture("reviews.csv"), dir / "reviews.h5");
  o.label_column = "";
  ASSERT_TRUE(RunPrep(o).ok());
  ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("reviews.jsonl"));
  ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), golden.size());
  for (size_t i = 0; i < ex.size(); ++i) {
    EXPECT_EQ(ex[i].ids, Truncate(golden[i]["ids"].get<std::vector<int32_t>>(), 512)) << "row " << i;
    EXPECT_EQ(ex[i].label, -1);
  }

  o = Options(dir.Write("ids.jsonl", "{\"ids\": [101, 7592, 102]}\n{\"ids\": [101, 102], \"label\": \"any\"}\n"),
              dir / "ids.h5");
  o.input_format = InputFormat::kJsonl;
  o.label_column = "";
  ASSERT_TRUE(RunPrep(o).ok());
  ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)->has_labels());
  ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_THAT(ex[0].ids, ElementsAre(101, 7592, 102));

  o.labels = {"neg", "pos"};  // names for labels that are not read
  EXPECT_THAT(std::string(ValidatePrepOptions(o).message()), HasSubstr("--label_column is empty"));
}

// ---- Bad input: specific code, message names file:line, and nothing is written.

struct BadInput {
  const char* name;
  const char* file;
  const char* contents;
  const char* message;  // expected substring after "<path>:"
  InputFormat format = InputFormat::kCsv;
};

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class RunPrepBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(RunPrepBadInput, FailsWithFileAndLineAndWritesNothing) {
  const BadInput& c = GetParam();
  TempDir dir;
  std::string in = dir.Write(c.file, c.contents);
  PrepOptions o = Options(in, dir / "out.h5");
  o.input_format = c.format;
  auto s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(in + ":" + c.message));
  EXPECT_FALSE(PathExists(o.output));
  EXPECT_THAT(dir.Files(), ElementsAre(c.file));  // no temp file either
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RunPrepBadInput,
    ::testing::Values(
        BadInput{"UnterminatedQuote", "a.csv", "review,label\ngood,1\n\"open quote,0\nx,1\n",
                 "3: unterminated quoted field"},
        BadInput{"MissingTextColumn", "a.csv", "text,label\ngood,1\n", "1: no column named 'review'"},
        BadInput{"MissingLabelColumn", "a.csv", "review,stars\ngood,1\n",
                 "1: no column named 'label' in the header (columns: review, stars); pass --label_column (or "
                 "--label_column= for a dataset without labels)"},
        BadInput{"InvalidUtf8", "a.csv", "review,label\ngood,1\nok,0\nbad \xFF byte,1\n", "4: invalid UTF-8"},
        BadInput{"UnknownLabel", "a.csv", "review,label\ngood,1\nhmm,maybe\n", "3: unknown label 'maybe'"},
        BadInput{"EmptyFile", "a.csv", "", "1: empty file"},
        BadInput{"OnlyBom", "a.csv", "\xEF\xBB\xBF", "1: empty file"},
        BadInput{"HeaderOnly", "a.csv", "review,label\n", "2: no examples"},
        BadInput{"RaggedRow", "a.csv", "review,label\ngood,1\na,b,1\n", "3: row has 3 fields"},
        BadInput{"LateErrorAfterManyRows", "a.csv",
                 "review,label\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\nx,1\n\"oops,1\n", "13: unterminated"},
        BadInput{"JsonlBadJson", "a.jsonl", "{\"ids\": [101, 102], \"label\": 0}\n{\"ids\": [101,\n", "2: invalid JSON",
                 InputFormat::kJsonl},
        BadInput{"JsonlIdOutOfRange", "a.jsonl", "{\"ids\": [101, 40000, 102], \"label\": 0}\n",
                 "1: ids[1] = 40000 is not a token id", InputFormat::kJsonl},
        BadInput{"JsonlUnknownLabel", "a.jsonl", "{\"ids\": [101, 102], \"label\": 7}\n", "1: unknown label '7'",
                 InputFormat::kJsonl},
        BadInput{"JsonlMissingLabel", "a.jsonl", "{\"ids\": [101, 102], \"label\": 0}\n{\"ids\": [101, 102]}\n",
                 "2: missing \"label\" (pass --label_column= for a dataset without labels)", InputFormat::kJsonl},
        BadInput{"JsonlEmpty", "a.jsonl", "\n\n", "1: empty file", InputFormat::kJsonl}),
    [](const ::testing::TestParamInfo<BadInput>& info) { return std::string(info.param.name); });

TEST(RunPrep, FailedPrepLeavesAnExistingOutputUntouched) {
  TempDir dir;
  std::string out = dir.Write("out.h5", "previous contents");
  std::string in = dir.Write("bad.csv", "review,label\ngood,1\n\"unterminated,0\n");
  auto s = RunPrep(Options(in, out));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(*ReadFileToString(out), "previous contents");
}

TEST(RunPrep, BatchesWrittenBeforeAnErrorAreDiscarded) {
  TempDir dir;
  std::string csv = "review,label\n";
  for (int i = 0; i < 50; ++i) csv += "fine,1\n";
  csv += "bad,unknown\n";
  std::string in = dir.Write("in.csv", csv);
  PrepOptions o = Options(in, dir / "out.h5");
  o.batch_size = 8;  // six batches are appended before the bad row
  auto s = RunPrep(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(in + ":52: unknown label 'unknown'"));
  EXPECT_THAT(dir.Files(), ElementsAre("in.csv"));
}

TEST(RunPrep, MissingFilesAndBadOptions) {
  TempDir dir;
  auto s = RunPrep(Options(dir / "nope.csv", dir / "out.h5"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("nope.csv"));

  PrepOptions o = Options(Fixture("reviews.csv"), dir / "out.h5");
  o.vocab = dir / "no-vocab.txt";
  EXPECT_EQ(RunPrep(o).status().code(), absl::StatusCode::kNotFound);

  o = Options(Fixture("reviews.csv"), dir / "missing-dir/out.h5");
  EXPECT_EQ(RunPrep(o).status().code(), absl::StatusCode::kNotFound);

  o = Options(Fixture("reviews.csv"), dir / "out.h5");
  o.max_length = 1;
  EXPECT_EQ(ValidatePrepOptions(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ValidatePrepOptions(o).message()), HasSubstr("--max_length"));
  o = Options(Fixture("reviews.csv"), dir / "out.h5");
  o.labels = {"a", "A"};
  EXPECT_THAT(std::string(ValidatePrepOptions(o).message()), HasSubstr("--labels"));
  o = Options("", dir / "out.h5");
  EXPECT_THAT(std::string(ValidatePrepOptions(o).message()), HasSubstr("--input"));
  EXPECT_THAT(dir.Files(), IsEmpty());
  EXPECT_EQ(ParseInputFormat("JSONL").value(), InputFormat::kJsonl);
  EXPECT_EQ(ParseInputFormat("tsv").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ftune::prep

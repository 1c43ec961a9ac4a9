// `ftune prep` with tokenizer.json files, sentence pairs and regression labels, end to end through
// data::TokenDataset and the batch loader's Collate. The tokenizer.json fixtures are HF's own
// (tests/fixtures/tokenizers, checked against HF live by tokenizer_json_oracle_test); here:
//   - the tokenizer.json of BertWordPieceTokenizer(vocab.txt) gives the same ids as ftune's
//     WordPieceTokenizer and as HF's goldens (reviews.jsonl), so either file tokenizes alike;
//   - pairs through vocab.txt and through that tokenizer.json store the same ids and
//     token_type_ids ([CLS] A [SEP] B [SEP], 0s then 1s), truncated longest_first;
//   - HF's rule for regression (config.json problem_type / one label, or float labels), float
//     labels stored and read back, errors naming file:line;
//   - files without token_type_ids or float labels read as before.
#include <fstream>
#include <numeric>

#include "common/files.h"
#include "data-prep/csv_reader.h"
#include "data-prep/prep.h"
#include "data-prep/tokenizer_json.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "data/batch_loader.h"
#include "data/token_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ftune::prep {
namespace {

using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::ReadAll;
using ::ftune::prep::testing::ReadJsonl;
using ::ftune::prep::testing::TempDir;
using ::testing::HasSubstr;

std::string TokenizerFixture(const std::string& name) {
  return std::string(FTUNE_FIXTURES_DIR) + "/tokenizers/" + name + ".json";
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// The 200 vendored reviews (reviews.csv's `review` column; reviews.jsonl has HF's ids, row by row).
std::vector<std::string> VendoredReviews() {
  auto data = ReadFileToString(Fixture("reviews.csv"));
  EXPECT_TRUE(data.ok());
  auto reader = CsvReader::Create("reviews.csv", *data);
  EXPECT_TRUE(reader.ok());
  std::vector<std::string> fields, out;
  int64_t line;
  bool header = true;
  while (true) {
    auto more = reader->Next(&fields, &line);
    if (!more.ok() || !*more) break;
    if (!header) out.push_back(fields[1]);
    header = false;
  }
  EXPECT_EQ(out.size(), 200u);
  return out;
}

// reviews.csv's reviews as pairs (review i, review i + 1), with a float score and an integer label.
std::string PairsCsv(const std::string& dir, size_t n) {
  std::vector<nlohmann::json> golden;
  for (const std::string& r : VendoredReviews()) golden.push_back({{"text", r}});
  std::string csv = "first,second,score,label\n";
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      q += c;
      if (c == '"') q += '"';
    }
    return q + "\"";
  };
  for (size_t i = 0; i < n && i + 1 < golden.size(); ++i) {
    csv += quote(golden[i]["text"].get<std::string>()) + "," + quote(golden[i + 1]["text"].get<std::string>()) + "," +
           std::to_string(0.25 * static_cast<double>(i % 17)) + "," + std::to_string(i % 2) + "\n";
  }
  const std::string path = dir + "/pairs.csv";
  WriteText(path, csv);
  return path;
}

TEST(JsonTokenizer, BertTokenizerJsonEqualsWordPieceAndHfGoldens) {
  auto json = JsonTokenizer::FromFile(TokenizerFixture("bert-wordpiece-uncased"));
  ASSERT_TRUE(json.ok()) << json.status();
  auto wp = WordPieceTokenizer::FromVocabFile(Fixture("vocab.txt"));
  ASSERT_TRUE(wp.ok()) << wp.status();
  EXPECT_EQ((*json)->vocab_size(), wp->vocab_size());
  size_t n = 0;
  const std::vector<std::string> reviews = VendoredReviews();
  for (const std::string& file : {"reviews.jsonl", "edge.jsonl"}) {
    for (const nlohmann::json& g : ReadJsonl(Fixture(file))) {
      const std::string text =
          g.contains("text") ? g["text"].get<std::string>() : reviews.at(g["row"].get<size_t>());
      std::vector<int32_t> ids;
      (*json)->Encode(text, nullptr, 0, &ids);
      EXPECT_EQ(ids, g["ids"].get<std::vector<int32_t>>()) << file << ": " << text.substr(0, 80);
      EXPECT_EQ(ids, wp->Encode(text, 0)) << file;
      std::vector<int32_t> cut;
      (*json)->Encode(text, nullptr, 64, &cut);
      EXPECT_EQ(cut, wp->Encode(text, 64)) << file;
      ++n;
    }
  }
  EXPECT_EQ(n, 247u);
}

TEST(RunPrep, PairsThroughVocabTxtAndTokenizerJsonAreTheSame) {
  TempDir dir;
  const std::string csv = PairsCsv(dir.path(), 120);
  PrepOptions a;
  a.input = csv;
  a.output = dir / "a.h5";
  a.vocab = Fixture("vocab.txt");
  a.text_column = "first";
  a.text_pair_column = "second";
  a.max_length = 96;
  a.threads = 2;
  PrepOptions b = a;
  b.output = dir / "b.h5";
  b.vocab.clear();
  b.tokenizer_json = TokenizerFixture("bert-wordpiece-uncased");
  auto sa = RunPrep(a);
  ASSERT_TRUE(sa.ok()) << sa.status();
  auto sb = RunPrep(b);
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_TRUE(sa->pairs && sa->token_type_ids);
  EXPECT_EQ(sa->num_truncated, sb->num_truncated);
  EXPECT_GT(sa->num_truncated, 50);
  auto da = data::TokenDataset::Open(a.output);
  auto db = data::TokenDataset::Open(b.output);
  ASSERT_TRUE(da.ok()) << da.status();
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*da)->has_token_type_ids());
  EXPECT_EQ((*da)->info().text_pair, "second");
  EXPECT_EQ((*db)->info().vocab_file, "tokenizer.json");
  EXPECT_EQ((*da)->info().vocab_file, "vocab.txt");
  auto ea = ReadAll(**da), eb = ReadAll(**db);
  ASSERT_EQ(ea.size(), 120u);
  ASSERT_EQ(eb.size(), 120u);
  auto wp = WordPieceTokenizer::FromVocabFile(Fixture("vocab.txt"));
  ASSERT_TRUE(wp.ok());
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_EQ(ea[i].ids, eb[i].ids) << i;
    EXPECT_EQ(ea[i].type_ids, eb[i].type_ids) << i;
    ASSERT_EQ(ea[i].type_ids.size(), ea[i].ids.size());
    EXPECT_LE(ea[i].ids.size(), 96u);
    // [CLS] A [SEP] B [SEP]: type 0 up to the first [SEP], 1 after it.
    const auto& ids = ea[i].ids;
    const size_t first_sep = static_cast<size_t>(std::find(ids.begin(), ids.end(), wp->sep_id()) - ids.begin());
    ASSERT_LT(first_sep, ids.size());
    EXPECT_EQ(ids.front(), wp->cls_id());
    EXPECT_EQ(ids.back(), wp->sep_id());
    for (size_t k = 0; k < ids.size(); ++k) EXPECT_EQ(ea[i].type_ids[k], k <= first_sep ? 0 : 1) << i << " " << k;
  }
  // Collate pads token_type_ids with 0 beside input_ids.
  data::HostBatch hb = data::Collate({ea[0], ea[1]}, 0);
  ASSERT_EQ(hb.token_type_ids.size(), hb.input_ids.size());
  for (int r = 0; r < 2; ++r) {
    for (int64_t k = 0; k < hb.seq_len; ++k) {
      const size_t n = ea[static_cast<size_t>(r)].type_ids.size();
      EXPECT_EQ(hb.token_type_ids[static_cast<size_t>(r * hb.seq_len + k)],
                static_cast<size_t>(k) < n ? ea[static_cast<size_t>(r)].type_ids[static_cast<size_t>(k)] : 0);
    }
  }
}

TEST(RunPrep, RobertaPairsHaveNoTokenTypeIds) {
  TempDir dir;
  PrepOptions o;
  o.input = PairsCsv(dir.path(), 20);
  o.output = dir / "r.h5";
  o.tokenizer_json = TokenizerFixture("roberta-bpe");
  o.text_column = "first";
  o.text_pair_column = "second";
  o.max_length = 64;
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->pairs);
  EXPECT_FALSE(s->token_type_ids);  // RobertaProcessing gives every token type 0
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)->has_token_type_ids());
  for (const auto& e : ReadAll(**ds)) {
    EXPECT_TRUE(e.type_ids.empty());
    EXPECT_LE(e.ids.size(), 64u);
  }
}

TEST(RunPrep, FloatLabelsMakeARegressionDataset) {
  TempDir dir;
  PrepOptions o;
  o.input = PairsCsv(dir.path(), 40);
  o.output = dir / "reg.h5";
  o.vocab = Fixture("vocab.txt");
  o.text_column = "first";
  o.label_column = "score";  // 0, 0.25, ... 4: non-integer numbers -> regression, as run_glue
  auto s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->regression);
  EXPECT_THAT(s->Format(), HasSubstr("regression"));
  auto ds = data::TokenDataset::Open(o.output);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE((*ds)->is_regression());
  EXPECT_TRUE((*ds)->has_labels());
  EXPECT_TRUE((*ds)->info().label_names.empty());
  auto ex = ReadAll(**ds);
  ASSERT_EQ(ex.size(), 40u);
  for (size_t i = 0; i < ex.size(); ++i) {
    EXPECT_FLOAT_EQ(ex[i].target, 0.25f * static_cast<float>(i % 17)) << i;
    EXPECT_EQ(ex[i].label, -1);
  }
  data::HostBatch hb = data::Collate({ex[3], ex[5]}, 0);
  EXPECT_EQ(hb.targets, (std::vector<float>{0.75f, 1.25f}));

  // Integer labels stay classes, unless the model's config.json says regression.
  o.label_column = "label";
  o.output = dir / "cls.h5";
  s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->regression);
  for (const char* config : {R"({"problem_type": "regression"})", R"({"id2label": {"0": "LABEL_0"}})"}) {
    WriteText(dir / "config.json", config);
    o.model_config = dir / "config.json";
    o.output = dir / "reg2.h5";
    s = RunPrep(o);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(s->regression) << config;
  }
  WriteText(dir / "config.json", R"({"id2label": {"0": "a", "1": "b"}})");
  o.output = dir / "cls2.h5";
  s = RunPrep(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->regression);
}

TEST(RunPrep, RegressionErrorsNameFileAndLine) {
  TempDir dir;
  WriteText(dir / "bad.csv", "review,label\ngood,0.5\nbad,oops\n");
  WriteText(dir / "config.json", R"({"problem_type": "regression"})");
  PrepOptions o;
  o.input = dir / "bad.csv";
  o.output = dir / "bad.h5";
  o.vocab = Fixture("vocab.txt");
  o.model_config = dir / "config.json";
  auto s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("bad.csv:3: label 'oops' is not a finite number"));
  EXPECT_FALSE(PathExists(o.output));
  o.labels = {"neg", "pos"};
  s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("--labels names classes"));
  o.labels.clear();
  WriteText(dir / "config.json", R"({"problem_type": "ranking"})");
  s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("config.json: problem_type"));
}

TEST(RunPrep, PairOptionErrors) {
  TempDir dir;
  WriteText(dir / "p.csv", "review,label\ngood,1\n");
  PrepOptions o;
  o.input = dir / "p.csv";
  o.output = dir / "p.h5";
  o.vocab = Fixture("vocab.txt");
  o.text_pair_column = "second";
  auto s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("p.csv:1: no column named 'second'"));
  o.text_pair_column = "review";
  EXPECT_FALSE(ValidatePrepOptions(o).ok());
  o.text_pair_column = "review2";
  o.max_length = 3;  // [CLS] [SEP] [SEP] and no room for text
  WriteText(dir / "p.csv", "review,review2,label\ngood,bad,1\n");
  s = RunPrep(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("--max_length 3 leaves no room"));
}

}  // namespace
}  // namespace ftune::prep

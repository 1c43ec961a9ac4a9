// `ftune prep` against Hugging Face's Python tokenizers, live (labels hf, data-prep): the ids ftune
// writes to HDF5 are read back by h5py and compared, row by row, with what `tokenizers`
// (Tokenizer.from_file of a tokenizer.json) or transformers' BertTokenizerFast (a vocab.txt folder)
// give for the same texts: the 200 vendored reviews always, all 100,000 aclImdb reviews (train,
// test, unsup) where ../shared has them. Skips, saying why, where python3 lacks the libraries.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cli/run_util.h"
#include "tests/hf/oracle_util.h"
#include "tests/shared_dir.h"

namespace ftune::hf {
namespace {

using ::ftune::testing::CommandResult;
using ::ftune::testing::Ftune;
using ::ftune::testing::RunCommand;
using ::ftune::testing::ScratchDir;
using ::ftune::testing::SharedDir;

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

struct TokenizerCase {
  const char* name;
  // A folder with tokenizer.json, or with vocab.txt (from `vocab`: tests/fixtures or ../shared),
  // given to `ftune prep` (--tokenizer_json / --vocab) and to the oracle.
  const char* tokenizer_json;  // tests/fixtures/tokenizers/<this>.json, or null
  const char* vocab;           // "fixtures:<rel>" or "shared:<rel>", or null
};

const TokenizerCase kCases[] = {
    // tests/fixtures/tokens/vocab.txt is bert-base-uncased's vocab.txt (the same bytes as ../shared's).
    {"bert_base_uncased_vocab", nullptr, "fixtures:tokens/vocab.txt"},
    {"roberta_bpe", "roberta-bpe", nullptr},
    {"modernbert_bpe", "modernbert-bpe", nullptr},
};

class LiveTokenizer : public ::testing::TestWithParam<TokenizerCase> {
 protected:
  void SetUp() override {
    FTUNE_REQUIRE_ORACLE();
    const TokenizerCase& c = GetParam();
    tok_ = dir_ / "tokenizer";
    ASSERT_EQ(std::system(("mkdir -p " + Shell(tok_)).c_str()), 0);
    std::string src;
    if (c.tokenizer_json != nullptr) {
      src = absl::StrCat(FTUNE_FIXTURES_DIR, "/tokenizers/", c.tokenizer_json, ".json");
      ASSERT_EQ(std::system(("cp " + Shell(src) + " " + Shell(tok_ + "/tokenizer.json")).c_str()), 0);
      tok_flag_ = "--tokenizer_json=" + Shell(tok_ + "/tokenizer.json");
    } else {
      const std::string v = c.vocab;
      src = v.rfind("shared:", 0) == 0 ? SharedDir() + "/" + v.substr(7) : std::string(FTUNE_FIXTURES_DIR) + "/" + v.substr(9);
      if (!Exists(src)) GTEST_SKIP() << "needs " << src << " (../shared; absent in this checkout)";
      ASSERT_EQ(std::system(("cp " + Shell(src) + " " + Shell(tok_ + "/vocab.txt")).c_str()), 0);
      tok_flag_ = "--vocab=" + Shell(tok_ + "/vocab.txt");
    }
  }
  // ftune prep of `csv` (column review, no labels) with this tokenizer, then the oracle on the same
  // rows; returns its JSON.
  nlohmann::json Compare(const std::string& csv, const std::string& name) {
    const std::string h5 = dir_ / (name + ".h5");
    CommandResult r = RunCommand(Ftune() + " prep --input=" + Shell(csv) + " --output=" + Shell(h5) +
                                 " --label_column= --text_column=review " + tok_flag_);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    OracleResult o = RunOracle("tokenize " + Shell(tok_) + " " + Shell(csv) + " review " + Shell(h5));
    EXPECT_EQ(o.exit_code, 0) << o.stderr_tail;
    return o.out;
  }
  ScratchDir dir_;
  std::string tok_, tok_flag_;
};

TEST_P(LiveTokenizer, VendoredReviewsEqualHuggingFace) {
  nlohmann::json o = Compare(std::string(FTUNE_FIXTURES_DIR) + "/tokens/reviews.csv", "reviews");
  ASSERT_TRUE(o.is_object());
  EXPECT_EQ(o["rows"], 200);
  EXPECT_EQ(o["ftune_rows"], 200);
  EXPECT_EQ(o["differ"], 0) << o.dump();
}

TEST_P(LiveTokenizer, AllAclImdbReviewsEqualHuggingFace) {
  const std::string acl = SharedDir() + "/data/aclImdb";
  if (!Exists(acl + "/unsup.csv.gz")) GTEST_SKIP() << "needs " << acl << "/{train,test,unsup}.csv.gz (../shared)";
  int64_t rows = 0;
  for (const char* split : {"train", "test", "unsup"}) {
    SCOPED_TRACE(split);
    // prep reads plain CSV; the oracle reads the same file.
    const std::string csv = dir_ / (std::string(split) + ".csv");
    ASSERT_EQ(std::system(("gzip -dc " + Shell(acl + "/" + split + ".csv.gz") + " > " + Shell(csv)).c_str()), 0);
    nlohmann::json o = Compare(csv, split);
    ASSERT_TRUE(o.is_object());
    EXPECT_EQ(o["rows"], o["ftune_rows"]);
    EXPECT_EQ(o["differ"], 0) << o.dump();
    rows += o["rows"].get<int64_t>();
    std::remove(csv.c_str());
  }
  EXPECT_EQ(rows, 100000);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, LiveTokenizer, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<TokenizerCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace ftune::hf

// The built `ftune prep` binary end to end: it tokenizes the vendored CSV, the .h5 it writes reads
// back through data::TokenDataset with Hugging Face's ids, and failures map to exit codes.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "common/files.h"
#include "data/token_dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "tests/cli/run_util.h"

namespace ftune::prep {
namespace {

using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::ReadJsonl;
using ::ftune::prep::testing::TempDir;
using ::ftune::prep::testing::Truncate;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Result = ::ftune::testing::CommandResult;

Result RunFtune(const std::string& args) {
  return ::ftune::testing::RunCommand(::ftune::testing::Ftune() + " " + args);
}

TEST(FtunePrepCli, TokenizesTheVendoredCsvIntoAReadableDataset) {
  TempDir dir;
  const std::string out = dir / "reviews.h5";
  Result r = RunFtune("prep --input=" + Fixture("reviews.csv") + " --output=" + out +
                      " --vocab=" + Fixture("vocab.txt") + " --threads=2 --progress_every=50");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("examples   200"));
  EXPECT_THAT(r.output, HasSubstr("truncated"));
  EXPECT_THAT(r.output, HasSubstr("labels     negative"));
  EXPECT_THAT(r.output, HasSubstr("prep: 200 examples"));  // a progress line (stderr is a pipe here)

  auto ds = data::TokenDataset::Open(out);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<nlohmann::json> golden = ReadJsonl(Fixture("reviews.jsonl"));
  ASSERT_EQ((*ds)->size(), static_cast<int64_t>(golden.size()));
  std::vector<int64_t> idx = {199, 0, 57, 57, 130};
  auto ex = (*ds)->Read(idx);
  ASSERT_TRUE(ex.ok()) << ex.status();
  for (size_t k = 0; k < idx.size(); ++k) {
    EXPECT_EQ((*ex)[k].ids, Truncate(golden[static_cast<size_t>(idx[k])]["ids"].get<std::vector<int32_t>>(), 512));
  }
  EXPECT_TRUE((*ds)->CheckVocab(*Sha256File(Fixture("vocab.txt")), 30522).ok());
}

TEST(FtunePrepCli, VocabDefaultsToTheModelDirectory) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "vocab.txt", *ReadFileToString(Fixture("vocab.txt"))).ok());
  std::string in = dir.Write("in.csv", "text,stars\nHello world,good\nmeh,bad\n");
  Result r = RunFtune("prep --input=" + in + " --output=" + (dir / "out.h5") + " --model_dir=" + dir.path() +
                      " --text_column=text --label_column=stars --labels=bad,good --max_length=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto ds = data::TokenDataset::Open(dir / "out.h5");
  ASSERT_TRUE(ds.ok()) << ds.status();
  auto ex = (*ds)->Read(std::vector<int64_t>{0, 1});
  ASSERT_TRUE(ex.ok());
  EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 7592, 102));  // "hello world" cut to max_length 3
  EXPECT_EQ((*ex)[0].label, 1);
  EXPECT_EQ((*ex)[1].label, 0);
  EXPECT_THAT((*ds)->info().label_names, ElementsAre("bad", "good"));
}

// `--label_column=` writes a dataset without labels (for pretraining); training a classifier on it
// is refused up front, naming the file.
TEST(FtunePrepCli, UnlabeledDatasetIsWrittenAndRefusedForClassification) {
  TempDir dir;
  std::string in = dir.Write("unsup.csv", "review\nA fine film.\nNot my cup of tea.\n");
  const std::string out = dir / "unsup.h5";
  Result r =
      RunFtune("prep --input=" + in + " --output=" + out + " --vocab=" + Fixture("vocab.txt") + " --label_column=");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("labels     none"));
  auto ds = data::TokenDataset::Open(out);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)->has_labels());
  EXPECT_EQ((*ds)->size(), 2);

  for (const std::string& data :
       {" --train_data=" + out, " --train_data=" + Fixture("../prep/h5py_written.h5") + " --eval_data=" + out}) {
    r = RunFtune("train --threads=1 --model_config=" + std::string(FTUNE_SOURCE_DIR) + "/configs/tiny.json" + data +
                 " --output_dir=" + (dir / "run") + " --epochs=1");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(out + " has no labels (it was made by `ftune prep --label_column=`)"));
  }
  EXPECT_FALSE(PathExists(dir / "run/model"));
}

TEST(FtunePrepCli, BadInputExitsOneNamingFileAndLine) {
  TempDir dir;
  std::string in = dir.Write("bad.csv", "review,label\nfine,1\n\"never closed,0\n");
  Result r = RunFtune("prep --input=" + in + " --output=" + (dir / "out.h5") + " --vocab=" + Fixture("vocab.txt"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(in + ":3: unterminated quoted field"));
  EXPECT_FALSE(PathExists(dir / "out.h5"));
  EXPECT_THAT(dir.Files(), ElementsAre("bad.csv"));
}

TEST(FtunePrepCli, BadFlagsExitTwo) {
  TempDir dir;
  Result r = RunFtune("prep --input=" + Fixture("reviews.csv") + " --output=" + (dir / "o.h5") +
                      " --vocab=" + Fixture("vocab.txt") + " --max_length=1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--max_length"));
  r = RunFtune("prep --output=" + (dir / "o.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--input is required"));
  r = RunFtune("prep --input=x.csv --output=o.h5 --vocab=v.txt --input_format=tsv");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunFtune("prep --input=x.csv --output=o.h5 --vocab=v.txt --threads=-1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--threads must be >= 0"));
  // Longer than any dataset holds; and, with a model, longer than the model takes.
  r = RunFtune("prep --input=" + Fixture("reviews.csv") + " --output=" + (dir / "o.h5") +
               " --vocab=" + Fixture("vocab.txt") + " --max_length=100000000");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--max_length must be in [2, 1048576]"));
  ASSERT_TRUE(WriteFileAtomic(dir / "vocab.txt", *ReadFileToString(Fixture("vocab.txt"))).ok());
  ASSERT_TRUE(WriteFileAtomic(dir / "config.json", R"({"model_type": "distilbert", "max_position_embeddings": 512})").ok());
  r = RunFtune("prep --input=" + Fixture("reviews.csv") + " --output=" + (dir / "o.h5") + " --model_dir=" + dir.path() +
               " --max_length=100000");
  EXPECT_EQ(r.exit_code, 1) << r.output;  // found in the model's file, not on the command line
  EXPECT_THAT(r.output, HasSubstr("--max_length 100000 is more than the model takes"));
  EXPECT_THAT(r.output, HasSubstr("max_position_embeddings 512); pass --max_length=512"));
  EXPECT_FALSE(PathExists(dir / "o.h5"));
}

TEST(FtunePrepCli, HelpListsTheFlags) {
  Result r = RunFtune("prep --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--input", "--output", "--vocab", "--model_dir", "--input_format", "--text_column",
                           "--label_column", "--labels", "--max_length", "--threads"}) {
    EXPECT_THAT(r.output, HasSubstr(flag));
  }
  EXPECT_THAT(r.output, HasSubstr("ftune prep --input train.csv"));
}

}  // namespace
}  // namespace ftune::prep

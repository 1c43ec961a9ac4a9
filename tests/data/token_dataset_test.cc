// data::TokenDataset against files written here with the raw HDF5 C API, following the layout in
// data/dataset_format.h as an outside tool (h5py etc.) would: reading by index in any order, the
// accepted type variants, and every validation error.
#include "data/token_dataset.h"

#include <hdf5.h>
#include <stdlib.h>
#include <unistd.h>

#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "data/dataset_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSha[] = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3";

// What to write; defaults make a valid file of `examples`.
struct Spec {
  std::vector<std::vector<int64_t>> examples = {{101, 7592, 102}, {101, 102}, {}, {101, 2088, 2088, 2088, 102}};
  std::vector<int64_t> labels = {1, 0, 0, 1};
  hid_t ids_type = H5T_STD_U16LE;
  hid_t labels_type = H5T_STD_I32LE;
  std::vector<int64_t> offsets;  // empty = computed from examples
  int64_t version = format::kFormatVersion;
  bool write_version = true;
  bool write_labels = true;
  bool write_label_names = true;
  bool fixed_strings = false;  // h5py writes numpy bytes as fixed-length strings
  int64_t vocab_size = 30522;
  int32_t max_length = 512;
  int64_t num_examples_attr = -1;  // -1 = correct value
};

void WriteStr(hid_t g, const char* name, const std::string& v, bool fixed) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, fixed ? v.size() + 1 : H5T_VARIABLE);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(g, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  const char* p = v.c_str();
  H5Awrite(a, t, fixed ? static_cast<const void*>(p) : static_cast<const void*>(&p));
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}

void WriteStrs(hid_t g, const char* name, const std::vector<std::string>& v, bool fixed) {
  size_t width = 1;
  for (const auto& x : v) width = std::max(width, x.size() + 1);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, fixed ? width : H5T_VARIABLE);
  hsize_t n = v.size();
  hid_t s = H5Screate_simple(1, &n, nullptr);
  hid_t a = H5Acreate2(g, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  if (fixed) {
    std::vector<char> buf(width * v.size(), '\0');
    for (size_t i = 0; i < v.size(); ++i) std::copy(v[i].begin(), v[i].end(), buf.begin() + i * width);
    H5Awrite(a, t, buf.data());
  } else {
    std::vector<const char*> p;
    for (const auto& x : v) p.push_back(x.c_str());
    H5Awrite(a, t, p.data());
  }
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}

void WriteInt(hid_t g, const char* name, int64_t v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(g, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(s);
}

void WriteArray(hid_t f, const char* name, hid_t file_type, hid_t mem_type, const void* data, hsize_t n, bool chunked) {
  hid_t s = H5Screate_simple(1, &n, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunked && n > 0) {
    hsize_t chunk = std::min<hsize_t>(n, 7);  // tiny chunks: reads cross chunk boundaries
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_deflate(dcpl, 1);
  }
  hid_t d = H5Dcreate2(f, name, file_type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (n > 0) H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(s);
}

class TokenDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ftune_data_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    for (const auto& f : files_) unlink(f.c_str());
    rmdir(dir_.c_str());
  }

  std::string Write(const Spec& spec, const std::string& name = "d.h5") {
    std::string path = dir_ + "/" + name;
    files_.push_back(path);
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<int64_t> ids, offsets = {0};
    for (const auto& e : spec.examples) {
      ids.insert(ids.end(), e.begin(), e.end());
      offsets.push_back(static_cast<int64_t>(ids.size()));
    }
    if (!spec.offsets.empty()) offsets = spec.offsets;
    WriteArray(f, format::kInputIds, spec.ids_type, H5T_NATIVE_INT64, ids.data(), ids.size(), true);
    WriteArray(f, format::kOffsets, H5T_STD_I64LE, H5T_NATIVE_INT64, offsets.data(), offsets.size(), true);
    if (spec.write_labels) {
      WriteArray(f, format::kLabels, spec.labels_type, H5T_NATIVE_INT64, spec.labels.data(), spec.labels.size(), false);
    }
    hid_t g = H5Gopen2(f, "/", H5P_DEFAULT);
    if (spec.write_version) WriteInt(g, format::kAttrFormatVersion, spec.version);
    WriteStr(g, format::kAttrFormat, format::kFormatName, spec.fixed_strings);
    WriteStr(g, format::kAttrVocabSha256, kSha, spec.fixed_strings);
    WriteInt(g, format::kAttrVocabSize, spec.vocab_size);
    WriteInt(g, format::kAttrMaxLength, spec.max_length);
    if (spec.write_label_names) WriteStrs(g, format::kAttrLabelNames, {"negative", "positive"}, spec.fixed_strings);
    WriteInt(g, format::kAttrNumExamples,
             spec.num_examples_attr >= 0 ? spec.num_examples_attr : static_cast<int64_t>(offsets.size()) - 1);
    WriteStr(g, format::kAttrSourceName, "train.csv", spec.fixed_strings);
    H5Gclose(g);
    H5Fclose(f);
    return path;
  }

  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(TokenDatasetTest, ReadsAnySubsetInTheOrderAsked) {
  std::string path = Write(Spec());
  auto ds = TokenDataset::Open(path);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->size(), 4);
  EXPECT_EQ((*ds)->length(0), 3);
  EXPECT_EQ((*ds)->length(2), 0);
  EXPECT_EQ((*ds)->info().num_tokens, 10);
  EXPECT_EQ((*ds)->info().vocab_sha256, kSha);
  EXPECT_EQ((*ds)->info().source_name, "train.csv");
  EXPECT_EQ((*ds)->info().token_type, "uint16");
  EXPECT_EQ((*ds)->info().tokenizer_json, "{}");  // optional attribute absent

  auto ex = (*ds)->Read(std::vector<int64_t>{3, 0, 2, 3, 1});
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 5u);
  EXPECT_EQ((*ex)[0].index, 3);
  EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 2088, 2088, 2088, 102));
  EXPECT_EQ((*ex)[0].label, 1);
  EXPECT_THAT((*ex)[1].ids, ElementsAre(101, 7592, 102));
  EXPECT_THAT((*ex)[2].ids, IsEmpty());
  EXPECT_EQ((*ex)[3].ids, (*ex)[0].ids);  // duplicates allowed
  EXPECT_THAT((*ex)[4].ids, ElementsAre(101, 102));
  EXPECT_EQ((*ex)[4].label, 0);

  auto none = (*ds)->Read({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto only_empty = (*ds)->Read(std::vector<int64_t>{2});
  ASSERT_TRUE(only_empty.ok());
  EXPECT_THAT((*only_empty)[0].ids, IsEmpty());
}

TEST_F(TokenDatasetTest, RandomBatchesMatchTheSource) {
  Spec spec;
  std::mt19937 rng(1);
  spec.examples.clear();
  spec.labels.clear();
  for (int i = 0; i < 1000; ++i) {
    std::vector<int64_t> e(rng() % 40);
    for (auto& t : e) t = rng() % 30522;
    spec.examples.push_back(e);
    spec.labels.push_back(rng() % 2);
  }
  spec.max_length = 0;
  auto ds = TokenDataset::Open(Write(spec));
  ASSERT_TRUE(ds.ok()) << ds.status();
  for (int batch = 0; batch < 50; ++batch) {
    std::vector<int64_t> idx(1 + rng() % 64);
    for (auto& i : idx) i = (batch % 5 == 0) ? (batch * 17 + (&i - idx.data())) % 1000 : rng() % 1000;  // some runs
    auto ex = (*ds)->Read(idx);
    ASSERT_TRUE(ex.ok()) << ex.status();
    for (size_t k = 0; k < idx.size(); ++k) {
      const auto& want = spec.examples[static_cast<size_t>(idx[k])];
      ASSERT_EQ((*ex)[k].ids, std::vector<int32_t>(want.begin(), want.end())) << "example " << idx[k];
      ASSERT_EQ((*ex)[k].label, spec.labels[static_cast<size_t>(idx[k])]);
    }
  }
}

TEST_F(TokenDatasetTest, AcceptsOtherIntegerTypesAndFixedLengthStrings) {
  for (hid_t type : {H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_U16BE}) {
    Spec spec;
    spec.ids_type = type;
    spec.labels_type = H5T_STD_I64LE;
    spec.fixed_strings = true;
    auto ds = TokenDataset::Open(Write(spec, "t" + std::to_string(files_.size()) + ".h5"));
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ((*ds)->info().vocab_sha256, kSha);
    EXPECT_THAT((*ds)->info().label_names, ElementsAre("negative", "positive"));
    auto ex = (*ds)->Read(std::vector<int64_t>{0});
    ASSERT_TRUE(ex.ok()) << ex.status();
    EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 7592, 102));
  }
}

TEST_F(TokenDatasetTest, OutOfRangeIndex) {
  auto ds = TokenDataset::Open(Write(Spec()));
  ASSERT_TRUE(ds.ok());
  auto ex = (*ds)->Read(std::vector<int64_t>{0, 4});
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(ex.status().message()), HasSubstr("example index 4 is out of range [0, 4)"));
  EXPECT_EQ((*ds)->Read(std::vector<int64_t>{-1}).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(TokenDatasetTest, TokenIdOutsideTheVocabIsDataLossOnRead) {
  Spec spec;
  spec.examples[1] = {101, 30522, 102};
  auto ds = TokenDataset::Open(Write(spec));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE((*ds)->Read(std::vector<int64_t>{0, 3}).ok());
  auto ex = (*ds)->Read(std::vector<int64_t>{1});
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(ex.status().message()), HasSubstr("example 1 has token id 30522"));
}

TEST_F(TokenDatasetTest, CheckVocabNamesBothHashesAndTheFile) {
  std::string path = Write(Spec());
  auto ds = TokenDataset::Open(path);
  ASSERT_TRUE(ds.ok());
  EXPECT_TRUE((*ds)->CheckVocab(kSha, 30522).ok());
  absl::Status s = (*ds)->CheckVocab("abc123", 1000);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr(kSha));
  EXPECT_THAT(std::string(s.message()), HasSubstr("abc123"));
  EXPECT_EQ((*ds)->CheckVocab(kSha, 30000).code(), absl::StatusCode::kFailedPrecondition);
}

struct Broken {
  const char* name;
  void (*mutate)(Spec*);
  absl::StatusCode code;
  const char* message;
};

void PrintTo(const Broken& c, std::ostream* os) { *os << c.name; }

class TokenDatasetBroken : public TokenDatasetTest, public ::testing::WithParamInterface<Broken> {};

TEST_P(TokenDatasetBroken, OpenRejectsIt) {
  Spec spec;
  GetParam().mutate(&spec);
  std::string path = Write(spec);
  auto ds = TokenDataset::Open(path);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), GetParam().code) << ds.status();
  EXPECT_THAT(std::string(ds.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(ds.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TokenDatasetBroken,
    ::testing::Values(Broken{"NewerVersion", [](Spec* s) { s->version = 2; }, absl::StatusCode::kFailedPrecondition,
                             "format version 2, but this ftune reads version 1"},
                      Broken{"NoVersion", [](Spec* s) { s->write_version = false; },
                             absl::StatusCode::kFailedPrecondition, "not an ftune token dataset"},
                      Broken{"OffsetsDecrease",
                             [](Spec* s) {
                               s->offsets = {0, 3, 2, 5, 10};
                             },
                             absl::StatusCode::kDataLoss, "offsets decrease at example 1"},
                      Broken{"OffsetsDoNotStartAtZero",
                             [](Spec* s) {
                               s->offsets = {1, 3, 5, 5, 10};
                             },
                             absl::StatusCode::kDataLoss, "offsets[0] is 1"},
                      Broken{"OffsetsPastTheEnd",
                             [](Spec* s) {
                               s->offsets = {0, 3, 5, 5, 11};
                             },
                             absl::StatusCode::kDataLoss, "offsets end at 11 but input_ids holds 10"},
                      Broken{"LabelOutOfRange", [](Spec* s) { s->labels[2] = 2; }, absl::StatusCode::kDataLoss,
                             "example 2 has label 2, outside [0, 2)"},
                      Broken{"NegativeLabel", [](Spec* s) { s->labels[0] = -1; }, absl::StatusCode::kDataLoss,
                             "example 0 has label -1"},
                      Broken{"LabelsCountDiffers", [](Spec* s) { s->labels.pop_back(); }, absl::StatusCode::kDataLoss,
                             "labels has 3 entries but offsets describes 4 examples"},
                      Broken{"NoLabels", [](Spec* s) { s->write_labels = false; }, absl::StatusCode::kDataLoss,
                             "dataset 'labels' is missing, but label_names names 2 labels"},
                      Broken{"LabelsWithoutNames", [](Spec* s) { s->write_label_names = false; },
                             absl::StatusCode::kDataLoss,
                             "attribute 'label_names' is missing, but there is a 'labels' dataset"},
                      Broken{"FloatIds", [](Spec* s) { s->ids_type = H5T_IEEE_F32LE; }, absl::StatusCode::kDataLoss,
                             "'input_ids' is not of an integer type"},
                      Broken{"LongerThanMaxLength", [](Spec* s) { s->max_length = 4; }, absl::StatusCode::kDataLoss,
                             "example 3 has 5 tokens, more than max_length 4"},
                      Broken{"CountAttributeDisagrees", [](Spec* s) { s->num_examples_attr = 5; },
                             absl::StatusCode::kDataLoss, "num_examples attribute says 5"},
                      Broken{"BadVocabSize", [](Spec* s) { s->vocab_size = 0; }, absl::StatusCode::kDataLoss,
                             "vocab_size 0 is out of range"}),
    [](const ::testing::TestParamInfo<Broken>& info) { return std::string(info.param.name); });

// Without both the labels dataset and label_names, a dataset has no labels (`ftune prep
// --label_column=`): it opens, and every example's label is -1.
TEST_F(TokenDatasetTest, ADatasetWithoutLabels) {
  Spec spec;
  spec.write_labels = false;
  spec.write_label_names = false;
  auto ds = TokenDataset::Open(Write(spec));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)->has_labels());
  EXPECT_THAT((*ds)->info().label_names, IsEmpty());
  EXPECT_EQ((*ds)->size(), 4);
  EXPECT_EQ((*ds)->label(3), -1);
  auto ex = (*ds)->Read(std::vector<int64_t>{3, 0});
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 2088, 2088, 2088, 102));
  EXPECT_EQ((*ex)[0].label, -1);
  EXPECT_THAT((*ex)[1].ids, ElementsAre(101, 7592, 102));
  EXPECT_EQ((*ex)[1].label, -1);

  spec.write_label_names = true;  // and a labeled one says it has labels
  spec.write_labels = true;
  ds = TokenDataset::Open(Write(spec, "labeled.h5"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE((*ds)->has_labels());
  EXPECT_EQ((*ds)->label(3), 1);
}

// A file written by h5py with the snippet in data-prep/README.md (vlen UTF-8 string attributes,
// numpy integer types, contiguous datasets) reads like one from `ftune prep`.
TEST(TokenDatasetFixture, ReadsAFileWrittenByH5py) {
  auto ds = TokenDataset::Open(std::string(FTUNE_FIXTURES_DIR) + "/prep/h5py_written.h5");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->size(), 2);
  EXPECT_THAT((*ds)->info().label_names, ElementsAre("negative", "positive"));
  EXPECT_EQ((*ds)->info().max_length, 512);
  EXPECT_EQ((*ds)->info().token_type, "uint16");
  EXPECT_TRUE((*ds)->CheckVocab(kSha, 30522).ok());
  auto ex = (*ds)->Read(std::vector<int64_t>{1, 0});
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_THAT((*ex)[0].ids, ElementsAre(101, 2307, 3185, 999, 102));
  EXPECT_EQ((*ex)[0].label, 0);
  EXPECT_THAT((*ex)[1].ids, ElementsAre(101, 7592, 2088, 102));
  EXPECT_EQ((*ex)[1].label, 1);
}

TEST_F(TokenDatasetTest, MissingAndNonHdf5Files) {
  auto missing = TokenDataset::Open(dir_ + "/nope.h5");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.h5"));
  std::string text = dir_ + "/text.h5";
  files_.push_back(text);
  FILE* f = fopen(text.c_str(), "w");
  fputs("review,label\n", f);
  fclose(f);
  auto not_h5 = TokenDataset::Open(text);
  EXPECT_EQ(not_h5.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(not_h5.status().message()), HasSubstr("not an HDF5 file"));
}

}  // namespace
}  // namespace ftune::data

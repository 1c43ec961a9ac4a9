// Bad HDF5 token datasets through TokenDataset::Open/Read: each is refused with the specific code
// (DataLoss: damaged / not HDF5; FailedPrecondition: not an ftune dataset or another version;
// ResourceExhausted: more examples than the reader keeps in memory) and one line naming the file.
// The files start as real `ftune prep` output and are then damaged with the HDF5 C API or cut.
// Already covered in tests/data/token_dataset_test.cc, not repeated here: newer/missing version,
// offsets decreasing / not starting at 0 / past the end, labels out of range or negative, label
// count differing, missing labels, float ids, example longer than max_length, count attribute
// disagreeing, vocab_size 0, token id >= vocab on Read, CheckVocab with another vocab (names both
// hashes), missing file, a text file.
#include <hdf5.h>

#include <chrono>
#include <string>
#include <vector>

#include "data-prep/prep.h"
#include "data/dataset_format.h"
#include "data/token_dataset.h"
#include "gtest/gtest.h"
#include "hardening_util.h"
#include "tests/data-prep/test_util.h"

namespace ftune::hardening {
namespace {

namespace fmt = data::format;
using ::ftune::prep::testing::Fixture;
using ::ftune::prep::testing::TempDir;

// A real dataset: three examples written by RunPrep.
std::string Prep(const TempDir& dir, const std::string& name = "good.h5") {
  prep::PrepOptions o;
  o.input = dir.Write(name + ".csv", "review,label\nhello world,1\nbad,0\n\"a longer review, with a comma\",1\n");
  o.output = dir / name;
  o.vocab = Fixture("vocab.txt");
  o.threads = 1;
  auto s = prep::RunPrep(o);
  EXPECT_TRUE(s.ok()) << s.status();
  unlink(o.input.c_str());
  return o.output;
}

// Edits an existing file with the HDF5 C API.
class Edit {
 public:
  explicit Edit(const std::string& path) : f_(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    EXPECT_GE(f_, 0) << path;
  }
  ~Edit() { H5Fclose(f_); }

  Edit& IntAttr(const char* name, int64_t v) {
    Drop(name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f_, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
    return *this;
  }
  Edit& StringAttr(const char* name, const std::string& v) {
    Drop(name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f_, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    const char* p = v.c_str();
    H5Awrite(a, t, &p);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return *this;
  }
  Edit& DropAttr(const char* name) {
    Drop(name);
    return *this;
  }
  Edit& EmptyStringArrayAttr(const char* name) {
    Drop(name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hsize_t zero = 0;
    hid_t s = H5Screate_simple(1, &zero, nullptr);
    hid_t a = H5Acreate2(f_, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return *this;
  }
  // Replaces dataset `name`: `values` written from the start, `extent` entries declared (chunked,
  // never written past `values`, so the file stays tiny however large the claim).
  Edit& Dataset(const char* name, hid_t type, const std::vector<int64_t>& values, hsize_t extent = 0) {
    H5Ldelete(f_, name, H5P_DEFAULT);
    extent = std::max<hsize_t>(extent, values.size());
    hsize_t maxdim = H5S_UNLIMITED, chunk = 1024;
    hid_t space = H5Screate_simple(1, &extent, &maxdim);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    hid_t ds = H5Dcreate2(f_, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    EXPECT_GE(ds, 0) << name;
    if (!values.empty()) {
      hsize_t start = 0, count = values.size();
      H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
      hid_t mspace = H5Screate_simple(1, &count, nullptr);
      EXPECT_GE(H5Dwrite(ds, H5T_NATIVE_INT64, mspace, space, H5P_DEFAULT, values.data()), 0);
      H5Sclose(mspace);
    }
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    return *this;
  }

 private:
  void Drop(const char* name) {
    if (H5Aexists(f_, name) > 0) H5Adelete(f_, name);
  }
  hid_t f_;
};

void Cut(const std::string& from, const std::string& to, size_t len) {
  auto bytes = ReadFileToString(from);
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(WriteFileAtomic(to, bytes->substr(0, len)).ok());
}

TEST(DatasetBadInput, EmptyFileAndDirectoryAreNotHdf5) {
  TempDir dir;
  const std::string empty = dir.Write("empty.h5", "");
  EXPECT_TRUE(IsOneLineError(data::TokenDataset::Open(empty).status(), absl::StatusCode::kDataLoss,
                             {empty, "not an HDF5 file"}));
  EXPECT_TRUE(IsOneLineError(data::TokenDataset::Open(dir.path()).status(), absl::StatusCode::kDataLoss,
                             {dir.path(), "not an HDF5 file"}));
}

TEST(DatasetBadInput, TruncatedFileIsDataLossAtEveryLength) {
  TempDir dir;
  const std::string good = Prep(dir);
  auto size = ReadFileToString(good)->size();
  for (size_t len : {size_t{8}, size_t{96}, size_t{512}, size_t{2048}, size / 2, size - 512, size - 1}) {
    const std::string cut = dir / "cut.h5";
    Cut(good, cut, len);
    EXPECT_TRUE(IsOneLineError(data::TokenDataset::Open(cut).status(), absl::StatusCode::kDataLoss, {cut}))
        << "cut at " << len << " of " << size;
  }
}

TEST(DatasetBadInput, AnHdf5FileThatIsNotADataset) {
  TempDir dir;
  const std::string path = dir / "other.h5";
  H5Fclose(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_TRUE(IsOneLineError(data::TokenDataset::Open(path).status(), absl::StatusCode::kFailedPrecondition,
                             {path, "not an ftune token dataset (no 'format_version' attribute)"}));
}

struct Damage {
  const char* name;
  void (*apply)(Edit&);
  absl::StatusCode code;
  const char* message;
};

void PrintTo(const Damage& c, std::ostream* os) { *os << c.name; }

class DatasetDamaged : public ::testing::TestWithParam<Damage> {};

TEST_P(DatasetDamaged, OpenRefusesItQuickly) {
  TempDir dir;
  const std::string path = Prep(dir);
  {
    Edit e(path);
    GetParam().apply(e);
  }
  const auto start = std::chrono::steady_clock::now();
  auto ds = data::TokenDataset::Open(path);
  EXPECT_TRUE(IsOneLineError(ds.status(), GetParam().code, {path + ": ", GetParam().message}));
  EXPECT_LT(SecondsSince(start), 5) << "no allocation or scan proportional to a claimed size";
}

constexpr hsize_t k2e40 = hsize_t{1} << 40;

INSTANTIATE_TEST_SUITE_P(
    Cases, DatasetDamaged,
    ::testing::Values(Damage{"OtherFormatName", [](Edit& e) { e.StringAttr(fmt::kAttrFormat, "h5py.something"); },
                             absl::StatusCode::kFailedPrecondition,
                             "attribute 'format' is 'h5py.something', expected 'ftune.token_dataset'"},
                      Damage{"FormatWithControlAndInvalidBytes",  // found by fuzz_token_dataset_file: echoed raw
                             [](Edit& e) { e.StringAttr(fmt::kAttrFormat, "ftu\x01\n\x1b[2J\xff\xfe"); },
                             absl::StatusCode::kFailedPrecondition,
                             "attribute 'format' is 'ftu\\x01\\n\\x1b[2J\\xff\\xfe', expected"},
                      Damage{"VersionZero", [](Edit& e) { e.IntAttr(fmt::kAttrFormatVersion, 0); },
                             absl::StatusCode::kFailedPrecondition,
                             "token dataset format version 0, but this ftune reads version 1"},
                      Damage{"VersionAsString", [](Edit& e) { e.StringAttr(fmt::kAttrFormatVersion, "1"); },
                             absl::StatusCode::kDataLoss, "attribute 'format_version' is not a scalar integer"},
                      Damage{"VocabSizeHuge", [](Edit& e) { e.IntAttr(fmt::kAttrVocabSize, int64_t{1} << 40); },
                             absl::StatusCode::kDataLoss, "vocab_size 1099511627776 is out of range"},
                      Damage{"VocabHashMissing", [](Edit& e) { e.DropAttr(fmt::kAttrVocabSha256); },
                             absl::StatusCode::kDataLoss, "attribute 'vocab_sha256' is missing"},
                      Damage{"LabelNamesEmpty", [](Edit& e) { e.EmptyStringArrayAttr(fmt::kAttrLabelNames); },
                             absl::StatusCode::kDataLoss, "label_names is empty"},
                      Damage{"MaxLengthNegative", [](Edit& e) { e.IntAttr(fmt::kAttrMaxLength, -1); },
                             absl::StatusCode::kDataLoss, "max_length -1 is out of range"},
                      Damage{"OffsetsInt64Min",  // found by fuzz_token_dataset: off[i+1] - off[i] overflowed
                             [](Edit& e) {
                               e.Dataset(fmt::kOffsets, H5T_STD_I64LE, {0, 3, INT64_MIN, 7});
                             },
                             absl::StatusCode::kDataLoss, "offsets decrease at example 1 (3 -> -9223372036854775808)"},
                      Damage{"OffsetsInt64MaxThenMin",
                             [](Edit& e) {
                               e.Dataset(fmt::kOffsets, H5T_STD_I64LE, {0, INT64_MAX, INT64_MIN, 7});
                             },
                             absl::StatusCode::kDataLoss,
                             "example 0 has 9223372036854775807 tokens, more than max_length 512"},
                      Damage{"ClaimsTwoToTheFortyExamples",
                             [](Edit& e) {
                               e.Dataset(fmt::kOffsets, H5T_STD_I64LE, {0}, k2e40 + 1)
                                   .Dataset(fmt::kLabels, H5T_STD_I32LE, {}, k2e40)
                                   .DropAttr(fmt::kAttrNumExamples);
                             },
                             absl::StatusCode::kResourceExhausted, "1099511627776 examples"},
                      Damage{"ClaimsAnExampleOfTwoBillionTokens",
                             [](Edit& e) {
                               const int64_t n = (int64_t{1} << 31) + 5;
                               e.Dataset(fmt::kInputIds, H5T_STD_U16LE, {101, 102}, n)
                                   .Dataset(fmt::kOffsets, H5T_STD_I64LE, {0, n})
                                   .Dataset(fmt::kLabels, H5T_STD_I32LE, {0})
                                   .IntAttr(fmt::kAttrMaxLength, 0)
                                   .IntAttr(fmt::kAttrNumExamples, 1)
                                   .IntAttr(fmt::kAttrNumTokens, n);
                             },
                             absl::StatusCode::kDataLoss, "example 0 has 2147483653 tokens"}),
    [](const ::testing::TestParamInfo<Damage>& info) { return std::string(info.param.name); });

TEST(DatasetBadInput, CheckVocabQuotesFileStringsSafely) {
  TempDir dir;
  const std::string path = Prep(dir);
  Edit(path).StringAttr(fmt::kAttrSourceName, "evil\n\x1b[2J" + std::string(1000, 'x') + ".csv");
  auto ds = data::TokenDataset::Open(path);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE(
      IsOneLineError((*ds)->CheckVocab(std::string(64, 'a'), 30522), absl::StatusCode::kFailedPrecondition,
                     {path, "was tokenized with a different vocabulary", "evil\\n\\x1b[2Jxxx", "...(1013 bytes)"}));
}

TEST(DatasetBadInput, NegativeTokenIdIsDataLossOnRead) {
  TempDir dir;
  const std::string path = Prep(dir);
  std::vector<int64_t> ids;
  {
    auto ds = data::TokenDataset::Open(path);
    ASSERT_TRUE(ds.ok()) << ds.status();
    auto ex = (*ds)->Read(std::vector<int64_t>{0, 1, 2});
    ASSERT_TRUE(ex.ok()) << ex.status();
    for (const auto& e : *ex) ids.insert(ids.end(), e.ids.begin(), e.ids.end());
    ids[(*ex)[0].ids.size() + 1] = -1;  // example 1, position 1
  }
  Edit(path).Dataset(fmt::kInputIds, H5T_STD_I32LE, ids);
  auto ds = data::TokenDataset::Open(path);
  ASSERT_TRUE(ds.ok()) << ds.status();
  auto ex = (*ds)->Read(std::vector<int64_t>{0, 1});
  EXPECT_TRUE(IsOneLineError(ex.status(), absl::StatusCode::kDataLoss,
                             {path, "example 1 has token id -1 at position 1, outside [0, vocab_size 30522)"}));
  EXPECT_TRUE((*ds)->Read(std::vector<int64_t>{0, 2}).ok());
}

}  // namespace
}  // namespace ftune::hardening

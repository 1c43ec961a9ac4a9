// libFuzzer target: data::TokenDataset::Open/Read/CheckVocab against an independent model of the
// on-disk contract (src/data/dataset_format.h).
//
// The input is not the file itself: it is decoded (FuzzedDataProvider) into a description of a
// dataset (examples, token ids, labels, then up to 12 mutations: offsets/labels/ids values incl.
// the extremes of their types, declared lengths far beyond what was written (read back as fill
// value 0, so a tiny file can claim 2^40 entries), dropped or re-typed or 2-D datasets, and every
// attribute: missing, wrong type, wrong value, fixed- or variable-length strings). The file is
// written with the HDF5 C API, so it is always valid HDF5 and the fuzzer exercises *our*
// validation (fuzz_token_dataset_file feeds raw bytes to HDF5 itself).
//
// Invariants:
//  - Open succeeds exactly when the model says the file keeps the contract, else it fails with the
//    model's code (FailedPrecondition: not ours / other version; ResourceExhausted: more examples
//    than the reader keeps in memory; DataLoss: anything else), one line, naming the file;
//  - after Open: info, length(i) and label(i) (-1 without labels) match what was written; Read() of all examples, in
//    order, and of a shuffled subset with duplicates, returns exactly the written ids, or DataLoss
//    when one of the requested examples holds an id outside [0, vocab_size); a bad index is
//    OutOfRange; CheckVocab accepts the file's own vocab and refuses another one.
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "data/dataset_format.h"
#include "data/token_dataset.h"
#include "fuzz_util.h"

namespace ftune::fuzz {
namespace {

namespace fmt = data::format;
using i128 = __int128;

// The reader's resource limits (src/data/token_dataset.cc).
constexpr int64_t kMaxExamples = int64_t{1} << 26;
constexpr int64_t kMaxExampleTokens = int64_t{1} << 20;

constexpr char kSha[] = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3";

struct Type {
  hid_t id;
  bool is_signed, is_float;
  int bytes;
  const char* name;  // what TokenDataset reports as token_type
};

const std::vector<Type>& Types() {
  static const std::vector<Type> t = {
      {H5T_STD_U8LE, false, false, 1, "uint8"},   {H5T_STD_I8LE, true, false, 1, "int8"},
      {H5T_STD_U16LE, false, false, 2, "uint16"}, {H5T_STD_I16LE, true, false, 2, "int16"},
      {H5T_STD_U32LE, false, false, 4, "uint32"}, {H5T_STD_I32LE, true, false, 4, "int32"},
      {H5T_STD_U64LE, false, false, 8, "uint64"}, {H5T_STD_I64LE, true, false, 8, "int64"},
      {H5T_STD_I32BE, true, false, 4, "int32"},   {H5T_IEEE_F32LE, true, true, 4, "float32"},
  };
  return t;
}
constexpr int kU16 = 2, kI32 = 5, kI64 = 7;

i128 TypeMin(const Type& t) { return t.is_signed ? -(i128{1} << (8 * t.bytes - 1)) : 0; }
i128 TypeMax(const Type& t) {
  return t.is_signed ? (i128{1} << (8 * t.bytes - 1)) - 1 : (i128{1} << (8 * t.bytes)) - 1;
}
i128 Clamp(i128 v, i128 lo, i128 hi) { return std::max(lo, std::min(hi, v)); }
// HDF5's integer conversions saturate.
int64_t As64(i128 v) { return static_cast<int64_t>(Clamp(v, INT64_MIN, INT64_MAX)); }
int32_t As32(i128 v) { return static_cast<int32_t>(Clamp(v, INT32_MIN, INT32_MAX)); }

// A 1-D dataset: `values` written from the start, `extent` entries declared (the rest read as 0).
struct Array {
  bool present = true;
  int type = kI64;
  bool two_d = false;
  std::vector<i128> values;  // representable in `type` (float types: small integers only)
  uint64_t extent = 0;       // >= values.size()
  bool chunked = true;
  i128 at(uint64_t i) const { return i < values.size() ? values[i] : 0; }
};

// An attribute: absent, an integer (scalar or 1-D of `count`), or a string.
struct Attr {
  enum Kind { kAbsent, kInt, kString } kind = kAbsent;
  i128 int_value = 0;
  int type = kI64;
  int count = 0;                     // 0 = scalar, else a 1-D array of `count` copies
  std::vector<std::string> strings;  // kString: one entry = scalar, else a 1-D array
  bool string_array = false;
  bool two_d = false;
  bool fixed = false;  // fixed-length strings (h5py's bytes) instead of variable-length UTF-8
};

struct Spec {
  Array ids, offsets, labels;
  Attr version, format, sha, vocab_size, label_names, max_length, num_examples, num_tokens, source_name;
};

// What a reader gets back from a string attribute: C strings end at the first NUL.
std::string Eff(const std::string& s) { return s.substr(0, s.find('\0')); }

Attr IntAttr(i128 v) {
  Attr a;
  a.kind = Attr::kInt;
  a.int_value = v;
  return a;
}
Attr StrAttr(std::vector<std::string> v, bool array) {
  Attr a;
  a.kind = Attr::kString;
  a.strings = std::move(v);
  a.string_array = array;
  return a;
}

// ---- Decoding the fuzz input into a Spec.

int64_t Pick(FuzzedDataProvider& p, std::initializer_list<int64_t> table) {
  return *(table.begin() + p.ConsumeIntegralInRange<size_t>(0, table.size() - 1));
}

i128 SpecialValue(FuzzedDataProvider& p, const Spec& s) {
  switch (p.ConsumeIntegralInRange(0, 5)) {
    case 0: return p.ConsumeIntegralInRange<int64_t>(-3, 20);
    case 1: return static_cast<i128>(s.ids.extent) + p.ConsumeIntegralInRange<int64_t>(-2, 2);
    case 2: return INT64_MAX;
    case 3: return INT64_MIN;
    case 4: return (i128{1} << 64) - 1;  // uint64 max
    default:
      return Pick(p, {int64_t{1} << 20, (int64_t{1} << 20) + 1, int64_t{1} << 31, int64_t{1} << 32, 30522, 65535, 65536,
                      -30522});
  }
}

uint64_t BigExtent(FuzzedDataProvider& p) {
  return static_cast<uint64_t>(
      Pick(p, {1, 7, 1000, kMaxExamples + 1, (int64_t{1} << 31) + 5, int64_t{1} << 40, kMaxExampleTokens + 3}));
}

void Fit(Array* a) {
  const Type& t = Types()[a->type];
  for (i128& v : a->values) {
    v = t.is_float ? Clamp(v, -1000, 1000) : Clamp(v, TypeMin(t), TypeMax(t));
  }
  a->extent = std::max<uint64_t>(a->extent, a->values.size());
}

Spec Decode(FuzzedDataProvider& p) {
  Spec s;
  const int64_t vocab =
      Pick(p, {30522, 30522, 30522, 100, 65536, 65537, 1, 0, -5, int64_t{1} << 31, (int64_t{1} << 31) + 1});
  const int num_labels = p.ConsumeIntegralInRange(0, 3) == 0 ? p.ConsumeIntegralInRange(0, 4) : 2;
  const int n = p.ConsumeIntegralInRange(0, 12);
  s.ids.type = p.ConsumeBool() ? kU16 : kI32;
  s.labels.type = kI32;
  s.offsets.values.push_back(0);
  for (int i = 0; i < n; ++i) {
    const int len = p.ConsumeIntegralInRange(0, 9);
    for (int k = 0; k < len; ++k) {
      s.ids.values.push_back(vocab > 0 ? p.ConsumeIntegralInRange<int64_t>(0, std::min<int64_t>(vocab, 40000) - 1) : 0);
    }
    s.offsets.values.push_back(static_cast<int64_t>(s.ids.values.size()));
    s.labels.values.push_back(num_labels > 0 ? p.ConsumeIntegralInRange(0, num_labels - 1) : 0);
  }
  for (Array* a : {&s.ids, &s.offsets, &s.labels}) a->extent = a->values.size();
  s.version = IntAttr(fmt::kFormatVersion);
  s.format = StrAttr({fmt::kFormatName}, false);
  s.sha = StrAttr({kSha}, false);
  s.vocab_size = IntAttr(vocab);
  const char* names[] = {"negative", "positive", "neutral", "other"};
  s.label_names = StrAttr(std::vector<std::string>(names, names + num_labels), true);
  s.max_length = IntAttr(Pick(p, {512, 512, 0, 4, 9}));
  s.num_examples = IntAttr(n);
  s.num_tokens = IntAttr(static_cast<int64_t>(s.ids.values.size()));
  s.source_name = StrAttr({"train.csv"}, false);
  const bool fixed = p.ConsumeBool();
  for (Attr* a : {&s.format, &s.sha, &s.label_names, &s.source_name}) a->fixed = fixed;

  Array* arrays[] = {&s.ids, &s.offsets, &s.labels};
  Attr* attrs[] = {&s.version,    &s.format,       &s.sha,        &s.vocab_size, &s.label_names,
                   &s.max_length, &s.num_examples, &s.num_tokens, &s.source_name};
  const int mutations = p.ConsumeIntegralInRange(0, 12);
  for (int m = 0; m < mutations && p.remaining_bytes() > 0; ++m) {
    Array* a = arrays[p.ConsumeIntegralInRange(0, 2)];
    Attr* at = attrs[p.ConsumeIntegralInRange(0, 8)];
    switch (p.ConsumeIntegralInRange(0, 12)) {
      case 0:
      case 1:
      case 2:  // overwrite one value
        if (!a->values.empty()) {
          a->values[p.ConsumeIntegralInRange<size_t>(0, a->values.size() - 1)] = SpecialValue(p, s);
        }
        break;
      case 3: a->extent = a->values.size() + BigExtent(p); break;
      case 4: a->type = p.ConsumeIntegralInRange<int>(0, static_cast<int>(Types().size()) - 1); break;
      case 5: a->present = false; break;
      case 6: a->two_d = true; break;
      case 7: a->chunked = !a->chunked; break;
      case 8: *at = Attr(); break;
      case 9: {  // an integer where a string belongs, or a wrong number
        bool fx = at->fixed;
        *at = IntAttr(SpecialValue(p, s));
        at->fixed = fx;
        at->type = p.ConsumeIntegralInRange<int>(0, kI64);
        if (p.ConsumeBool()) at->count = p.ConsumeIntegralInRange(1, 2);
        break;
      }
      case 10: {  // a string where an integer belongs, or another string (any bytes)
        const int kind = p.ConsumeIntegralInRange(0, 2);
        *at = StrAttr({kind == 0   ? "ftune.other"
                       : kind == 1 ? "1"
                                   : p.ConsumeRandomLengthString(100)},
                      p.ConsumeBool());
        at->fixed = p.ConsumeBool();
        break;
      }
      case 11: at->two_d = true; break;
      case 12:  // remove or append a value
        if (p.ConsumeBool() && !a->values.empty()) {
          a->values.pop_back();
        } else {
          a->values.push_back(SpecialValue(p, s));
        }
        a->extent = a->values.size();
        break;
    }
  }
  for (Array* a : arrays) Fit(a);
  return s;
}

// ---- The model: what Open must answer for a Spec.

// The reader takes any attribute holding exactly one element (scalar, [1] or [1][1]).
bool IsIntAttr(const Attr& a) { return a.kind == Attr::kInt && a.count <= 1; }
i128 AttrInt(const Attr& a) { return Clamp(a.int_value, TypeMin(Types()[a.type]), TypeMax(Types()[a.type])); }
bool IsSingleString(const Attr& a) { return a.kind == Attr::kString && a.strings.size() == 1; }

absl::StatusCode Model(const Spec& s) {
  using C = absl::StatusCode;
  if (s.version.kind == Attr::kAbsent) return C::kFailedPrecondition;
  if (!IsIntAttr(s.version)) return C::kDataLoss;
  if (As64(AttrInt(s.version)) != fmt::kFormatVersion) return C::kFailedPrecondition;
  if (s.format.kind != Attr::kAbsent) {
    if (!IsSingleString(s.format)) return C::kDataLoss;
    if (Eff(s.format.strings[0]) != fmt::kFormatName) return C::kFailedPrecondition;
  }
  if (!IsSingleString(s.sha)) return C::kDataLoss;
  if (!IsIntAttr(s.vocab_size)) return C::kDataLoss;
  const int64_t vocab = As64(AttrInt(s.vocab_size));
  if (vocab <= 0 || vocab > (int64_t{1} << 31)) return C::kDataLoss;
  // A dataset without labels has neither the labels dataset nor label_names.
  const bool labeled = s.labels.present;
  if (s.label_names.kind != Attr::kAbsent &&
      (s.label_names.kind != Attr::kString || s.label_names.two_d || s.label_names.strings.empty())) {
    return C::kDataLoss;
  }
  if ((s.label_names.kind != Attr::kAbsent) != labeled) return C::kDataLoss;
  const int64_t num_labels = static_cast<int64_t>(s.label_names.strings.size());
  int64_t max_length = 0;
  if (s.max_length.kind != Attr::kAbsent) {
    if (!IsIntAttr(s.max_length)) return C::kDataLoss;
    max_length = As64(AttrInt(s.max_length));
    if (max_length < 0 || max_length > (int64_t{1} << 30)) return C::kDataLoss;
  }
  if (s.source_name.kind != Attr::kAbsent && !IsSingleString(s.source_name)) return C::kDataLoss;
  for (const Array* a : {&s.ids, &s.offsets, &s.labels}) {
    if (a == &s.labels && !labeled) continue;
    if (!a->present || Types()[a->type].is_float || a->two_d) return C::kDataLoss;
  }
  if (s.offsets.extent < 1) return C::kDataLoss;
  const uint64_t n = s.offsets.extent - 1;
  if (n > static_cast<uint64_t>(kMaxExamples)) return C::kResourceExhausted;
  if (labeled && s.labels.extent != n) return C::kDataLoss;
  for (const Attr* a : {&s.num_examples, &s.num_tokens}) {
    if (a->kind == Attr::kAbsent) continue;
    if (!IsIntAttr(*a)) return C::kDataLoss;
    const i128 want = a == &s.num_examples ? i128(n) : i128(s.ids.extent);
    if (As64(AttrInt(*a)) != want) return C::kDataLoss;
  }
  auto off = [&](uint64_t i) { return i128(As64(s.offsets.at(i))); };
  if (off(0) != 0) return C::kDataLoss;
  for (uint64_t i = 0; i < n; ++i) {
    const i128 len = off(i + 1) - off(i);
    if (len < 0 || (max_length > 0 && len > max_length) || len > kMaxExampleTokens) return C::kDataLoss;
  }
  if (off(n) != i128(s.ids.extent)) return C::kDataLoss;
  for (uint64_t i = 0; labeled && i < n; ++i) {
    const i128 l = As64(s.labels.at(i));
    if (l < 0 || l >= num_labels) return C::kDataLoss;
  }
  return C::kOk;
}

// The label Open/Read must give example i: -1 in a dataset without labels.
int64_t WantLabel(const Spec& s, int64_t i) {
  return s.labels.present ? static_cast<int64_t>(As64(s.labels.at(static_cast<uint64_t>(i)))) : -1;
}

// ---- Writing a Spec with the HDF5 C API.

void WriteArray(hid_t f, const char* name, const Array& a) {
  if (!a.present) return;
  const Type& t = Types()[a.type];
  hsize_t dims[2] = {a.extent, 1};
  hsize_t maxdims[2] = {H5S_UNLIMITED, 1};
  const bool chunked = a.chunked || a.extent > a.values.size();  // contiguous would allocate it all
  hid_t space = H5Screate_simple(a.two_d ? 2 : 1, dims, chunked ? maxdims : nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunked) {
    hsize_t chunk[2] = {std::min<hsize_t>(std::max<hsize_t>(a.values.size(), 1), 7), 1};
    H5Pset_chunk(dcpl, a.two_d ? 2 : 1, chunk);
    H5Pset_deflate(dcpl, 1);
  }
  hid_t ds = H5Dcreate2(f, name, t.id, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0) Fail(__FILE__, __LINE__, "H5Dcreate2", name);
  if (!a.values.empty()) {
    hsize_t start[2] = {0, 0}, count[2] = {a.values.size(), 1};
    hid_t fspace = H5Dget_space(ds);
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr);
    hid_t mspace = H5Screate_simple(a.two_d ? 2 : 1, count, nullptr);
    herr_t rc;
    if (t.is_signed) {
      std::vector<int64_t> buf(a.values.begin(), a.values.end());
      rc = H5Dwrite(ds, H5T_NATIVE_INT64, mspace, fspace, H5P_DEFAULT, buf.data());
    } else {
      std::vector<uint64_t> buf(a.values.begin(), a.values.end());
      rc = H5Dwrite(ds, H5T_NATIVE_UINT64, mspace, fspace, H5P_DEFAULT, buf.data());
    }
    if (rc < 0) Fail(__FILE__, __LINE__, "H5Dwrite", name);
    H5Sclose(mspace);
    H5Sclose(fspace);
  }
  H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
}

void WriteAttr(hid_t g, const char* name, const Attr& a) {
  if (a.kind == Attr::kAbsent) return;
  hsize_t dims[2];
  int rank;
  if (a.kind == Attr::kInt) {
    dims[0] = a.count > 0 ? a.count : 1;
    rank = a.count > 0 ? 1 : 0;
  } else {
    dims[0] = a.strings.size();
    rank = a.string_array || a.strings.size() != 1 ? 1 : 0;
  }
  dims[1] = 1;
  if (a.two_d) rank = 2;
  hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr);
  const hsize_t count = rank == 0 ? 1 : dims[0];
  hid_t attr;
  if (a.kind == Attr::kInt) {
    const Type& t = Types()[a.type];
    attr = H5Acreate2(g, name, t.id, space, H5P_DEFAULT, H5P_DEFAULT);
    if (t.is_signed) {
      std::vector<int64_t> v(count, static_cast<int64_t>(AttrInt(a)));
      H5Awrite(attr, H5T_NATIVE_INT64, v.data());
    } else {
      std::vector<uint64_t> v(count, static_cast<uint64_t>(AttrInt(a)));
      H5Awrite(attr, H5T_NATIVE_UINT64, v.data());
    }
  } else {
    size_t width = 1;
    for (const auto& x : a.strings) width = std::max(width, x.size() + 1);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, a.fixed ? width : H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    attr = H5Acreate2(g, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    if (count > 0) {
      if (a.fixed) {
        std::vector<char> buf(width * count, '\0');
        for (size_t i = 0; i < count; ++i) std::copy(a.strings[i].begin(), a.strings[i].end(), buf.begin() + i * width);
        H5Awrite(attr, t, buf.data());
      } else {
        std::vector<const char*> ptrs;
        for (const auto& x : a.strings) ptrs.push_back(x.c_str());
        H5Awrite(attr, t, ptrs.data());
      }
    }
    H5Tclose(t);
  }
  if (attr < 0) Fail(__FILE__, __LINE__, "H5Acreate2", name);
  H5Aclose(attr);
  H5Sclose(space);
}

void WriteSpec(const Spec& s, const std::string& path) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) Fail(__FILE__, __LINE__, "H5Fcreate", path);
  WriteArray(f, fmt::kInputIds, s.ids);
  WriteArray(f, fmt::kOffsets, s.offsets);
  WriteArray(f, fmt::kLabels, s.labels);
  hid_t g = H5Gopen2(f, "/", H5P_DEFAULT);
  WriteAttr(g, fmt::kAttrFormatVersion, s.version);
  WriteAttr(g, fmt::kAttrFormat, s.format);
  WriteAttr(g, fmt::kAttrVocabSha256, s.sha);
  WriteAttr(g, fmt::kAttrVocabSize, s.vocab_size);
  WriteAttr(g, fmt::kAttrLabelNames, s.label_names);
  WriteAttr(g, fmt::kAttrMaxLength, s.max_length);
  WriteAttr(g, fmt::kAttrNumExamples, s.num_examples);
  WriteAttr(g, fmt::kAttrNumTokens, s.num_tokens);
  WriteAttr(g, fmt::kAttrSourceName, s.source_name);
  H5Gclose(g);
  H5Fclose(f);
}

std::string TempPath() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  return std::string(dir) + "/ftune_fuzz_token_dataset." + std::to_string(getpid()) + ".h5";
}

std::string Name(absl::StatusCode c) { return absl::StatusCodeToString(c); }

// ---- Checking an opened dataset against the Spec.

void CheckRead(const data::TokenDataset& ds, const Spec& s, const std::vector<int64_t>& idx) {
  auto got = ds.Read(idx);
  bool bad_id = false;
  for (int64_t i : idx) {
    for (i128 k = As64(s.offsets.at(i)); k < As64(s.offsets.at(i + 1)); ++k) {
      const int32_t id = As32(s.ids.at(static_cast<uint64_t>(k)));
      bad_id |= id < 0 || id >= ds.info().vocab_size;
    }
  }
  if (bad_id) {
    FUZZ_CHECK(!got.ok(), "Read accepted an id outside the vocab");
    CheckError(got.status(), ds.path(), {absl::StatusCode::kDataLoss});
    return;
  }
  FUZZ_CHECK(got.ok(), "Read failed: " + got.status().ToString());
  FUZZ_CHECK(got->size() == idx.size(), "Read returned the wrong number of examples");
  for (size_t j = 0; j < idx.size(); ++j) {
    const data::Example& e = (*got)[j];
    FUZZ_CHECK(e.index == idx[j] && e.label == WantLabel(s, idx[j]), "wrong index/label");
    std::vector<int32_t> want;
    for (i128 k = As64(s.offsets.at(idx[j])); k < As64(s.offsets.at(idx[j] + 1)); ++k) {
      want.push_back(As32(s.ids.at(static_cast<uint64_t>(k))));
    }
    FUZZ_CHECK(e.ids == want, "wrong ids for example " + std::to_string(idx[j]));
  }
}

}  // namespace
}  // namespace ftune::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  static const std::string path = TempPath();
  FuzzedDataProvider p(data, size);
  const Spec s = Decode(p);
  WriteSpec(s, path);
  const absl::StatusCode want = Model(s);
  auto ds = data::TokenDataset::Open(path);
  if (!ds.ok()) {
    FUZZ_CHECK(ds.status().code() == want, "Open: " + ds.status().ToString() + "; the model says " + Name(want));
    CheckError(ds.status(), path, {want});
    unlink(path.c_str());
    return 0;
  }
  FUZZ_CHECK(want == absl::StatusCode::kOk, "Open accepted a file the model rejects with " + Name(want));
  const data::TokenDataset& d = **ds;
  const int64_t n = static_cast<int64_t>(s.offsets.extent) - 1;
  const data::DatasetInfo& info = d.info();
  FUZZ_CHECK(d.size() == n && info.num_examples == n && info.num_tokens == static_cast<int64_t>(s.ids.extent),
             "counts differ");
  FUZZ_CHECK(info.vocab_size == As64(AttrInt(s.vocab_size)) && info.vocab_sha256 == Eff(s.sha.strings[0]),
             "vocab attributes differ");
  FUZZ_CHECK(info.source_name == (s.source_name.kind == Attr::kAbsent ? "" : Eff(s.source_name.strings[0])),
             "source_name differs");
  std::vector<std::string> names;
  for (const std::string& x : s.label_names.strings) names.push_back(Eff(x));
  FUZZ_CHECK(info.label_names == names, "label_names differ");
  FUZZ_CHECK(info.token_type == Types()[s.ids.type].name, "token_type " + info.token_type);
  FUZZ_CHECK(info.max_length == (s.max_length.kind == Attr::kAbsent ? 0 : As64(AttrInt(s.max_length))),
             "max_length differs");
  for (int64_t i = 0; i < n; ++i) {
    FUZZ_CHECK(d.length(i) == As64(s.offsets.at(i + 1)) - As64(s.offsets.at(i)), "length differs");
    FUZZ_CHECK(d.label(i) == WantLabel(s, i), "label differs");
  }
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  CheckRead(d, s, all);
  if (n > 0) {
    std::vector<int64_t> some;
    while (p.remaining_bytes() > 0 && some.size() < 16) some.push_back(p.ConsumeIntegralInRange<int64_t>(0, n - 1));
    CheckRead(d, s, some);
  }
  auto oob = d.Read(std::vector<int64_t>{n});
  CheckError(oob.status(), path, {absl::StatusCode::kOutOfRange});
  FUZZ_CHECK(d.CheckVocab(info.vocab_sha256, info.vocab_size).ok(), "CheckVocab refuses the file's own vocab");
  CheckError(d.CheckVocab(std::string(64, 'f'), info.vocab_size), path, {absl::StatusCode::kFailedPrecondition});
  CheckError(d.CheckVocab(info.vocab_sha256, info.vocab_size + 1), path, {absl::StatusCode::kFailedPrecondition});
  ds->reset();
  unlink(path.c_str());
  return 0;
}

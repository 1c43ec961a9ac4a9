#include "data/token_dataset.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data/dataset_format.h"
#include "data/hdf5_util.h"

namespace ftune::data {

namespace fmt = format;

struct TokenDataset::Hdf5 {
  h5::Handle file;
  h5::Handle input_ids;
  h5::Handle token_type_ids;  // invalid when the file has none
};

TokenDataset::~TokenDataset() {
  if (h5_ != nullptr) {
    h5::ErrorScope quiet;
    h5_.reset();
  }
}

namespace {

constexpr size_t kChunkCacheBytes = size_t{32} << 20;
constexpr size_t kChunkCacheSlots = 10007;  // prime, ~10x the chunks that fit

// Resource limits, checked before anything is allocated: a chunked dataset that was never written
// claims any length in a few hundred bytes of file. The index (offsets + labels, 16 bytes an
// example) lives in memory, so at most 2^26 examples (1 GiB); an example holds at most 2^20 tokens
// (4 MiB read at once; real reviews are a few thousand, and the model sees 512).
constexpr int64_t kMaxExamples = int64_t{1} << 26;
using fmt::kMaxExampleTokens;

absl::Status Corrupt(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what,
                                          " (the file is damaged or was not written as documented in "
                                          "data-prep/README.md; re-run `ftune prep`)"));
}

// Opens a required 1-D integer (or, with want_float, floating-point) dataset and returns it with
// its length.
absl::StatusOr<std::pair<h5::Handle, int64_t>> Open1DInt(hid_t group, const std::string& path, const char* name,
                                                         bool want_float = false) {
  if (H5Lexists(group, name, H5P_DEFAULT) <= 0) {
    return Corrupt(path, absl::StrCat("dataset '", name, "' is missing"));
  }
  // A chunk cache big enough that a dataset of up to ~16M tokens stays decompressed after first
  // touch (HDF5's default is 1 MiB); random batches then cost no inflate at all.
  h5::Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), &H5Pclose);
  H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kChunkCacheBytes, 1.0);
  h5::Handle ds(H5Dopen2(group, name, dapl.get()), &H5Dclose);
  if (!ds.valid())
    return h5::Error(absl::StatusCode::kDataLoss, path, absl::StrCat("cannot open dataset '", name, "'"));
  h5::Handle type(H5Dget_type(ds.get()), &H5Tclose);
  h5::Handle space(H5Dget_space(ds.get()), &H5Sclose);
  if (H5Tget_class(type.get()) != (want_float ? H5T_FLOAT : H5T_INTEGER)) {
    return Corrupt(path, absl::StrCat("dataset '", name, "' is not of ", want_float ? "a floating-point" : "an integer",
                                      " type", want_float ? " (label_kind is regression)" : ""));
  }
  if (H5Sget_simple_extent_ndims(space.get()) != 1) {
    return Corrupt(path, absl::StrCat("dataset '", name, "' is not 1-D"));
  }
  hsize_t dim = 0;
  H5Sget_simple_extent_dims(space.get(), &dim, nullptr);
  return std::make_pair(std::move(ds), static_cast<int64_t>(dim));
}

absl::Status ReadAll(hid_t ds, const std::string& path, const char* name, std::vector<int64_t>* out) {
  if (out->empty()) return absl::OkStatus();
  if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data()) < 0) {
    return h5::Error(absl::StatusCode::kDataLoss, path, absl::StrCat("cannot read dataset '", name, "'"));
  }
  return absl::OkStatus();
}

std::string TypeName(hid_t ds) {
  h5::Handle type(H5Dget_type(ds), &H5Tclose);
  bool is_signed = H5Tget_sign(type.get()) == H5T_SGN_2;
  return absl::StrCat(is_signed ? "int" : "uint", 8 * H5Tget_size(type.get()));
}

// Optional attributes: absent -> default; present but malformed -> error.
absl::Status OptionalString(hid_t g, const char* name, const std::string& path, std::string* out) {
  if (!h5::HasAttr(g, name)) return absl::OkStatus();
  auto v = h5::ReadStringAttr(g, name);
  if (!v.ok()) return Corrupt(path, v.status().message());
  *out = *std::move(v);
  return absl::OkStatus();
}
absl::Status OptionalInt(hid_t g, const char* name, const std::string& path, int64_t* out) {
  if (!h5::HasAttr(g, name)) return absl::OkStatus();
  auto v = h5::ReadIntAttr(g, name);
  if (!v.ok()) return Corrupt(path, v.status().message());
  *out = *v;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenDataset>> TokenDataset::Open(const std::string& path) {
  h5::ErrorScope quiet;
  if (!PathExists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::DataLossError(absl::StrCat(path, ": not an HDF5 file (expected a dataset written by `ftune prep`)"));
  }
  std::unique_ptr<TokenDataset> ds(new TokenDataset());
  ds->path_ = path;
  ds->h5_ = std::make_unique<Hdf5>();
  ds->h5_->file = h5::Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), &H5Fclose);
  if (!ds->h5_->file.valid()) return h5::Error(absl::StatusCode::kDataLoss, path, "cannot open HDF5 file");
  h5::Handle root(H5Gopen2(ds->h5_->file.get(), "/", H5P_DEFAULT), &H5Gclose);
  if (!root.valid()) return h5::Error(absl::StatusCode::kDataLoss, path, "cannot open the root group");
  const hid_t g = root.get();
  DatasetInfo& info = ds->info_;

  // Version first: everything else may differ in another version.
  if (!h5::HasAttr(g, fmt::kAttrFormatVersion)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not an ftune token dataset (no '", fmt::kAttrFormatVersion,
                     "' attribute); create it with `ftune prep` or follow the layout in data-prep/README.md"));
  }
  auto version = h5::ReadIntAttr(g, fmt::kAttrFormatVersion);
  if (!version.ok()) return Corrupt(path, version.status().message());
  if (*version != fmt::kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: token dataset format version %d, but this ftune reads version %d; re-run `ftune prep` "
                        "with this ftune to rewrite it",
                        path, *version, fmt::kFormatVersion));
  }
  info.format_version = static_cast<int>(*version);
  std::string format_name = fmt::kFormatName;
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrFormat, path, &format_name));
  if (format_name != fmt::kFormatName) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": attribute '", fmt::kAttrFormat, "' is '",
                                                      utf8::Printable(format_name), "', expected '", fmt::kFormatName,
                                                      "'"));
  }

  // Required attributes.
  auto sha = h5::ReadStringAttr(g, fmt::kAttrVocabSha256);
  if (!sha.ok()) return Corrupt(path, sha.status().message());
  info.vocab_sha256 = *sha;
  auto vocab_size = h5::ReadIntAttr(g, fmt::kAttrVocabSize);
  if (!vocab_size.ok()) return Corrupt(path, vocab_size.status().message());
  if (*vocab_size <= 0 || *vocab_size > (int64_t{1} << 31)) {
    return Corrupt(path, absl::StrCat("vocab_size ", *vocab_size, " is out of range"));
  }
  info.vocab_size = *vocab_size;
  // Labels: a labeled dataset has both the labels dataset and label_names, an unlabeled one neither;
  // a regression dataset has float labels and no label_names.
  const bool labeled = H5Lexists(g, fmt::kLabels, H5P_DEFAULT) > 0;
  std::string label_kind = fmt::kLabelKindClassification;
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrLabelKind, path, &label_kind));
  if (label_kind != fmt::kLabelKindClassification && label_kind != fmt::kLabelKindRegression) {
    return Corrupt(path, absl::StrCat("label_kind is '", utf8::Printable(label_kind), "', expected '",
                                      fmt::kLabelKindClassification, "' or '", fmt::kLabelKindRegression, "'"));
  }
  info.regression = label_kind == fmt::kLabelKindRegression;
  if (info.regression) {
    if (!labeled) return Corrupt(path, "label_kind is regression, but dataset 'labels' is missing");
    if (h5::HasAttr(g, fmt::kAttrLabelNames)) return Corrupt(path, "a regression dataset has label_names");
  } else if (h5::HasAttr(g, fmt::kAttrLabelNames)) {
    auto names = h5::ReadStringArrayAttr(g, fmt::kAttrLabelNames);
    if (!names.ok()) return Corrupt(path, names.status().message());
    if (names->empty()) return Corrupt(path, "label_names is empty");
    if (!labeled) {
      return Corrupt(path, absl::StrFormat("dataset 'labels' is missing, but label_names names %d labels (an "
                                           "unlabeled dataset has neither)",
                                           names->size()));
    }
    info.label_names = *std::move(names);
  } else if (labeled) {
    return Corrupt(path,
                   "attribute 'label_names' is missing, but there is a 'labels' dataset (an unlabeled "
                   "dataset has neither)");
  }

  // Optional attributes.
  int64_t max_length = 0;
  FTUNE_RETURN_IF_ERROR(OptionalInt(g, fmt::kAttrMaxLength, path, &max_length));
  if (max_length < 0 || max_length > (int64_t{1} << 30)) {
    return Corrupt(path, absl::StrCat("max_length ", max_length, " is out of range"));
  }
  info.max_length = static_cast<int32_t>(max_length);
  FTUNE_RETURN_IF_ERROR(OptionalInt(g, fmt::kAttrNumTruncated, path, &info.num_truncated));
  info.tokenizer_json = "{}";
  info.label_mapping_json = "{}";
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrTokenizer, path, &info.tokenizer_json));
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrLabelMapping, path, &info.label_mapping_json));
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrSourceName, path, &info.source_name));
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrSourceSha256, path, &info.source_sha256));
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrCreatedBy, path, &info.created_by));
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrTextPair, path, &info.text_pair));
  info.vocab_file = "vocab.txt";
  FTUNE_RETURN_IF_ERROR(OptionalString(g, fmt::kAttrVocabFile, path, &info.vocab_file));

  // Datasets.
  FTUNE_ASSIGN_OR_RETURN(auto ids, Open1DInt(g, path, fmt::kInputIds));
  FTUNE_ASSIGN_OR_RETURN(auto offsets, Open1DInt(g, path, fmt::kOffsets));
  std::pair<h5::Handle, int64_t> labels;
  if (labeled) {
    FTUNE_ASSIGN_OR_RETURN(labels, Open1DInt(g, path, fmt::kLabels, info.regression));
  }
  std::pair<h5::Handle, int64_t> type_ids;
  if (H5Lexists(g, fmt::kTokenTypeIds, H5P_DEFAULT) > 0) {
    FTUNE_ASSIGN_OR_RETURN(type_ids, Open1DInt(g, path, fmt::kTokenTypeIds));
    info.has_token_type_ids = true;
  }
  {
    h5::Handle type(H5Dget_type(ids.first.get()), &H5Tclose);
    if (H5Tget_size(type.get()) > 8) return Corrupt(path, "input_ids has an integer type wider than 64 bits");
  }
  info.token_type = TypeName(ids.first.get());
  const int64_t num_tokens = ids.second;
  if (offsets.second < 1) return Corrupt(path, "offsets is empty (it needs num_examples + 1 entries)");
  const int64_t n = offsets.second - 1;
  if (n > kMaxExamples) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: offsets describes %d examples, more than the %d this reader keeps in memory; split the dataset", path, n,
        kMaxExamples));
  }
  if (labeled && labels.second != n) {
    return Corrupt(path, absl::StrFormat("labels has %d entries but offsets describes %d examples", labels.second, n));
  }
  if (info.has_token_type_ids && type_ids.second != num_tokens) {
    return Corrupt(path, absl::StrFormat("token_type_ids has %d entries but input_ids has %d", type_ids.second,
                                         num_tokens));
  }
  info.num_examples = n;
  info.num_tokens = num_tokens;
  int64_t attr_count = n;
  FTUNE_RETURN_IF_ERROR(OptionalInt(g, fmt::kAttrNumExamples, path, &attr_count));
  if (attr_count != n) {
    return Corrupt(path, absl::StrFormat("num_examples attribute says %d, the datasets hold %d", attr_count, n));
  }
  attr_count = num_tokens;
  FTUNE_RETURN_IF_ERROR(OptionalInt(g, fmt::kAttrNumTokens, path, &attr_count));
  if (attr_count != num_tokens) {
    return Corrupt(path, absl::StrFormat("num_tokens attribute says %d, input_ids holds %d", attr_count, num_tokens));
  }

  ds->offsets_.resize(static_cast<size_t>(n + 1));
  FTUNE_RETURN_IF_ERROR(ReadAll(offsets.first.get(), path, fmt::kOffsets, &ds->offsets_));

  const std::vector<int64_t>& off = ds->offsets_;
  if (off[0] != 0) return Corrupt(path, absl::StrCat("offsets[0] is ", off[0], ", not 0"));
  for (int64_t i = 0; i < n; ++i) {
    // Compare before subtracting: a damaged file may hold any int64 here (INT64_MIN - x overflows).
    if (off[i + 1] < off[i]) {
      return Corrupt(path, absl::StrFormat("offsets decrease at example %d (%d -> %d)", i, off[i], off[i + 1]));
    }
    // Non-decreasing from off[0] = 0, so the difference cannot overflow.
    const int64_t len = off[i + 1] - off[i];
    if (info.max_length > 0 && len > info.max_length) {
      return Corrupt(path,
                     absl::StrFormat("example %d has %d tokens, more than max_length %d", i, len, info.max_length));
    }
    if (len > kMaxExampleTokens) {
      return Corrupt(path, absl::StrFormat("example %d has %d tokens, more than the %d an example may hold", i, len,
                                           kMaxExampleTokens));
    }
  }
  if (off[n] != num_tokens) {
    return Corrupt(path, absl::StrFormat("offsets end at %d but input_ids holds %d tokens", off[n], num_tokens));
  }
  if (labeled && info.regression) {
    ds->targets_.resize(static_cast<size_t>(n));
    if (n > 0 && H5Dread(labels.first.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->targets_.data()) < 0) {
      return h5::Error(absl::StatusCode::kDataLoss, path, "cannot read dataset 'labels'");
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(ds->targets_[static_cast<size_t>(i)])) {
        return Corrupt(path, absl::StrFormat("example %d has the regression label %g (not finite)", i,
                                             ds->targets_[static_cast<size_t>(i)]));
      }
    }
  } else if (labeled) {
    ds->labels_.resize(static_cast<size_t>(n));
    FTUNE_RETURN_IF_ERROR(ReadAll(labels.first.get(), path, fmt::kLabels, &ds->labels_));
  }
  const int64_t num_labels = static_cast<int64_t>(info.label_names.size());
  for (int64_t i = 0; i < static_cast<int64_t>(ds->labels_.size()); ++i) {
    if (ds->labels_[i] < 0 || ds->labels_[i] >= num_labels) {
      return Corrupt(path, absl::StrFormat("example %d has label %d, outside [0, %d) (label_names has %d)", i,
                                           ds->labels_[i], num_labels, num_labels));
    }
  }
  ds->h5_->input_ids = std::move(ids.first);
  if (info.has_token_type_ids) ds->h5_->token_type_ids = std::move(type_ids.first);
  return ds;
}

absl::StatusOr<std::vector<Example>> TokenDataset::Read(absl::Span<const int64_t> indices) const {
  const int64_t n = size();
  for (int64_t idx : indices) {
    if (idx < 0 || idx >= n) {
      return absl::OutOfRangeError(absl::StrFormat("%s: example index %d is out of range [0, %d)", path_, idx, n));
    }
  }
  std::vector<Example> out(indices.size());
  if (indices.empty()) return out;

  // HDF5 returns a hyperslab selection in file order, so read the sorted unique examples and then
  // place each at the positions asked for.
  std::vector<int64_t> uniq(indices.begin(), indices.end());
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  std::vector<int64_t> pos(uniq.size());  // start of uniq[k] in the read buffer
  int64_t total = 0;
  for (size_t k = 0; k < uniq.size(); ++k) {
    pos[k] = total;
    total += length(uniq[k]);
  }

  std::vector<int32_t> buf(static_cast<size_t>(total));
  std::vector<int32_t> tbuf(has_token_type_ids() ? static_cast<size_t>(total) : 0);
  if (total > 0) {
    h5::ErrorScope quiet;
    h5::Handle fspace(H5Dget_space(h5_->input_ids.get()), &H5Sclose);
    if (!fspace.valid()) return h5::Error(absl::StatusCode::kDataLoss, path_, "cannot get input_ids dataspace");
    H5Sselect_none(fspace.get());
    bool first = true;
    // Merge runs of adjacent examples into one block each: fewer hyperslabs to OR together.
    for (size_t k = 0; k < uniq.size();) {
      hsize_t start = static_cast<hsize_t>(offsets_[uniq[k]]);
      int64_t end = offsets_[uniq[k] + 1];
      size_t j = k + 1;
      while (j < uniq.size() && offsets_[uniq[j]] == end) end = offsets_[uniq[j++] + 1];
      hsize_t count = static_cast<hsize_t>(end) - start;
      if (count > 0) {
        if (H5Sselect_hyperslab(fspace.get(), first ? H5S_SELECT_SET : H5S_SELECT_OR, &start, nullptr, &count,
                                nullptr) < 0) {
          return h5::Error(absl::StatusCode::kInternal, path_, "cannot build the hyperslab selection");
        }
        first = false;
      }
      k = j;
    }
    hsize_t mdim = static_cast<hsize_t>(total);
    h5::Handle mspace(H5Screate_simple(1, &mdim, nullptr), &H5Sclose);
    if (H5Dread(h5_->input_ids.get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(), H5P_DEFAULT, buf.data()) < 0) {
      return h5::Error(absl::StatusCode::kDataLoss, path_, "cannot read input_ids");
    }
    if (has_token_type_ids() && H5Dread(h5_->token_type_ids.get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(),
                                        H5P_DEFAULT, tbuf.data()) < 0) {
      return h5::Error(absl::StatusCode::kDataLoss, path_, "cannot read token_type_ids");
    }
  }

  const int64_t vocab = info_.vocab_size;
  for (size_t k = 0; k < uniq.size(); ++k) {
    const int32_t* p = buf.data() + pos[k];
    for (int32_t t = 0, len = length(uniq[k]); t < len; ++t) {
      if (p[t] < 0 || p[t] >= vocab) {
        return absl::DataLossError(absl::StrFormat(
            "%s: example %d has token id %d at position %d, outside [0, vocab_size %d); the file is damaged or "
            "was written with another vocabulary",
            path_, uniq[k], p[t], t, vocab));
      }
    }
  }
  for (int64_t k = 0; k < static_cast<int64_t>(tbuf.size()); ++k) {
    if (tbuf[static_cast<size_t>(k)] < 0 || tbuf[static_cast<size_t>(k)] > fmt::kMaxTokenTypeId) {
      return absl::DataLossError(absl::StrFormat("%s: token_type_ids holds %d, outside [0, %d]; the file is damaged",
                                                 path_, tbuf[static_cast<size_t>(k)], fmt::kMaxTokenTypeId));
    }
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t idx = indices[i];
    size_t k = static_cast<size_t>(std::lower_bound(uniq.begin(), uniq.end(), idx) - uniq.begin());
    Example& e = out[i];
    e.index = idx;
    e.label = label(idx);
    e.ids.assign(buf.begin() + pos[k], buf.begin() + pos[k] + length(idx));
    if (!tbuf.empty()) e.type_ids.assign(tbuf.begin() + pos[k], tbuf.begin() + pos[k] + length(idx));
    e.target = target(idx);
    e.has_target = is_regression();
  }
  return out;
}

absl::Status TokenDataset::CheckVocab(absl::string_view vocab_sha256, int64_t vocab_size) const {
  if (vocab_sha256 == info_.vocab_sha256 && vocab_size == info_.vocab_size) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "%s was tokenized with a different vocabulary: the file's %s has sha256 %s (%d tokens), the model's has "
      "sha256 %s (%d tokens). Re-run `ftune prep --model_dir <model_dir>` on the source data (%s)",
      path_, utf8::Printable(info_.vocab_file), utf8::Printable(info_.vocab_sha256), info_.vocab_size,
      utf8::Printable(vocab_sha256), vocab_size,
      info_.source_name.empty() ? "the original CSV" : utf8::Printable(info_.source_name)));
}

}  // namespace ftune::data

#include "data-prep/dataset_writer.h"

#include <hdf5.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "data/dataset_format.h"
#include "data/hdf5_util.h"

namespace ftune::prep {

namespace fmt = data::format;
namespace h5 = data::h5;

struct DatasetWriter::Hdf5 {
  h5::Handle file;
  h5::Handle input_ids, offsets, labels, token_type_ids;
};

namespace {

// An empty, extendible, chunked + shuffled + deflated 1-D dataset.
absl::StatusOr<h5::Handle> MakeDataset(hid_t file, const std::string& path, const char* name, hid_t type,
                                       int64_t chunk) {
  hsize_t dims[1] = {0};
  hsize_t maxdims[1] = {H5S_UNLIMITED};
  h5::Handle space(H5Screate_simple(1, dims, maxdims), &H5Sclose);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), &H5Pclose);
  hsize_t chunk_dims[1] = {static_cast<hsize_t>(chunk)};
  if (H5Pset_chunk(dcpl.get(), 1, chunk_dims) < 0 || H5Pset_shuffle(dcpl.get()) < 0 ||
      H5Pset_deflate(dcpl.get(), fmt::kDeflateLevel) < 0) {
    return h5::Error(absl::StatusCode::kInternal, path, absl::StrCat("cannot set up dataset '", name, "'"));
  }
  h5::Handle ds(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), &H5Dclose);
  if (!ds.valid()) {
    return h5::Error(absl::StatusCode::kInternal, path, absl::StrCat("cannot create dataset '", name, "'"));
  }
  return ds;
}

// Appends `n` elements of memory type `mem_type` at `data` to the end of 1-D dataset `ds`.
absl::Status AppendTo(hid_t ds, const std::string& path, const char* name, hid_t mem_type, const void* data,
                      int64_t n) {
  if (n == 0) return absl::OkStatus();
  h5::Handle space(H5Dget_space(ds), &H5Sclose);
  hsize_t cur = 0;
  H5Sget_simple_extent_dims(space.get(), &cur, nullptr);
  hsize_t new_size = cur + static_cast<hsize_t>(n);
  if (H5Dset_extent(ds, &new_size) < 0) {
    return h5::Error(absl::StatusCode::kResourceExhausted, path, absl::StrCat("cannot extend dataset '", name, "'"));
  }
  h5::Handle fspace(H5Dget_space(ds), &H5Sclose);
  hsize_t count = static_cast<hsize_t>(n);
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &cur, nullptr, &count, nullptr);
  h5::Handle mspace(H5Screate_simple(1, &count, nullptr), &H5Sclose);
  if (H5Dwrite(ds, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data) < 0) {
    return h5::Error(absl::StatusCode::kResourceExhausted, path, absl::StrCat("cannot write dataset '", name, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DatasetWriter>> DatasetWriter::Create(const std::string& path, int64_t vocab_size,
                                                                     bool labeled, bool regression,
                                                                     bool type_ids) {
  if (regression && !labeled) return absl::InvalidArgumentError("DatasetWriter: a regression dataset has labels");
  if (path.empty()) return absl::InvalidArgumentError("no output path (--output)");
  std::unique_ptr<DatasetWriter> w(new DatasetWriter());
  w->path_ = path;
  w->temp_path_ = TempPathFor(path);
  w->vocab_size_ = vocab_size;
  w->uint16_ = vocab_size <= fmt::kMaxUint16VocabSize;
  w->labeled_ = labeled;
  w->regression_ = regression;
  w->type_ids_ = type_ids;
  w->h5_ = std::make_unique<Hdf5>();
  h5::ErrorScope quiet;
  w->h5_->file = h5::Handle(H5Fcreate(w->temp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), &H5Fclose);
  if (!w->h5_->file.valid()) {
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    if (!dir.empty() && !PathExists(dir)) {
      H5Eclear2(H5E_DEFAULT);
      return absl::NotFoundError(absl::StrCat(path, ": the output directory ", dir, " does not exist"));
    }
    return h5::Error(absl::StatusCode::kUnavailable, w->temp_path_, "cannot create the output file");
  }
  const hid_t f = w->h5_->file.get();
  FTUNE_ASSIGN_OR_RETURN(w->h5_->input_ids, MakeDataset(f, w->temp_path_, fmt::kInputIds,
                                                        w->uint16_ ? H5T_STD_U16LE : H5T_STD_I32LE, fmt::kTokenChunk));
  FTUNE_ASSIGN_OR_RETURN(w->h5_->offsets,
                         MakeDataset(f, w->temp_path_, fmt::kOffsets, H5T_STD_I64LE, fmt::kIndexChunk));
  if (labeled) {
    FTUNE_ASSIGN_OR_RETURN(w->h5_->labels, MakeDataset(f, w->temp_path_, fmt::kLabels,
                                                       regression ? H5T_IEEE_F32LE : H5T_STD_I32LE, fmt::kIndexChunk));
  }
  if (type_ids) {
    FTUNE_ASSIGN_OR_RETURN(w->h5_->token_type_ids,
                           MakeDataset(f, w->temp_path_, fmt::kTokenTypeIds, H5T_STD_U8LE, fmt::kTokenChunk));
  }
  int64_t zero = 0;
  FTUNE_RETURN_IF_ERROR(AppendTo(w->h5_->offsets.get(), w->temp_path_, fmt::kOffsets, H5T_NATIVE_INT64, &zero, 1));
  return w;
}

DatasetWriter::~DatasetWriter() {
  if (!finished_) Abandon();
}

void DatasetWriter::Abandon() {
  if (h5_ != nullptr) {
    h5::ErrorScope quiet;
    h5_.reset();
  }
  if (!temp_path_.empty()) unlink(temp_path_.c_str());
}

absl::Status DatasetWriter::Append(const std::vector<std::vector<int32_t>>& ids, const std::vector<int32_t>& labels,
                                   const std::vector<std::vector<int32_t>>* type_ids,
                                   const std::vector<float>* targets) {
  if (finished_ || h5_ == nullptr) return absl::FailedPreconditionError("DatasetWriter: Append after Finish");
  if (labels.size() != (labeled_ && !regression_ ? ids.size() : 0)) {
    return absl::InvalidArgumentError(labeled_ && !regression_ ? "DatasetWriter: ids and labels differ in size"
                                                               : "DatasetWriter: integer labels for a dataset without them");
  }
  if (regression_ != (targets != nullptr) || (targets != nullptr && targets->size() != ids.size())) {
    return absl::InvalidArgumentError("DatasetWriter: regression targets must come with exactly the regression examples");
  }
  if (type_ids_ != (type_ids != nullptr) || (type_ids != nullptr && type_ids->size() != ids.size())) {
    return absl::InvalidArgumentError("DatasetWriter: token_type_ids must come with exactly such a dataset's examples");
  }
  std::vector<uint8_t> types;
  int64_t total = 0;
  for (const auto& v : ids) total += static_cast<int64_t>(v.size());
  std::vector<int64_t> offsets;
  offsets.reserve(ids.size());
  std::vector<uint16_t> u16;
  std::vector<int32_t> i32;
  if (uint16_) {
    u16.reserve(static_cast<size_t>(total));
  } else {
    i32.reserve(static_cast<size_t>(total));
  }
  int64_t end = num_tokens_;
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int32_t t : ids[i]) {
      if (t < 0 || t >= vocab_size_) {
        return absl::InvalidArgumentError(absl::StrFormat("example %d: token id %d outside [0, vocab_size %d)",
                                                          num_examples_ + static_cast<int64_t>(i), t, vocab_size_));
      }
      if (uint16_) {
        u16.push_back(static_cast<uint16_t>(t));
      } else {
        i32.push_back(t);
      }
    }
    if (type_ids_) {
      const auto& t = (*type_ids)[i];
      if (t.size() != ids[i].size()) {
        return absl::InvalidArgumentError(absl::StrFormat("example %d: %d token_type_ids for %d ids",
                                                          num_examples_ + static_cast<int64_t>(i), t.size(), ids[i].size()));
      }
      for (int32_t v : t) {
        if (v < 0 || v > fmt::kMaxTokenTypeId) {
          return absl::InvalidArgumentError(absl::StrFormat("example %d: token_type_id %d outside [0, %d]",
                                                            num_examples_ + static_cast<int64_t>(i), v, fmt::kMaxTokenTypeId));
        }
        types.push_back(static_cast<uint8_t>(v));
      }
    }
    end += static_cast<int64_t>(ids[i].size());
    offsets.push_back(end);
  }
  h5::ErrorScope quiet;
  FTUNE_RETURN_IF_ERROR(AppendTo(h5_->input_ids.get(), temp_path_, fmt::kInputIds,
                                 uint16_ ? H5T_NATIVE_UINT16 : H5T_NATIVE_INT32,
                                 uint16_ ? static_cast<const void*>(u16.data()) : i32.data(), total));
  FTUNE_RETURN_IF_ERROR(AppendTo(h5_->offsets.get(), temp_path_, fmt::kOffsets, H5T_NATIVE_INT64, offsets.data(),
                                 static_cast<int64_t>(offsets.size())));
  if (type_ids_) {
    FTUNE_RETURN_IF_ERROR(AppendTo(h5_->token_type_ids.get(), temp_path_, fmt::kTokenTypeIds, H5T_NATIVE_UINT8,
                                   types.data(), static_cast<int64_t>(types.size())));
  }
  if (regression_) {
    FTUNE_RETURN_IF_ERROR(AppendTo(h5_->labels.get(), temp_path_, fmt::kLabels, H5T_NATIVE_FLOAT, targets->data(),
                                   static_cast<int64_t>(targets->size())));
  } else if (labeled_) {
    FTUNE_RETURN_IF_ERROR(AppendTo(h5_->labels.get(), temp_path_, fmt::kLabels, H5T_NATIVE_INT32, labels.data(),
                                   static_cast<int64_t>(labels.size())));
  }
  num_examples_ += static_cast<int64_t>(ids.size());
  num_tokens_ = end;
  return absl::OkStatus();
}

absl::Status DatasetWriter::Finish(const data::DatasetInfo& info) {
  if (finished_ || h5_ == nullptr) return absl::FailedPreconditionError("DatasetWriter: Finish called twice");
  if (info.num_examples != num_examples_ || info.num_tokens != num_tokens_) {
    return absl::InternalError("DatasetWriter: DatasetInfo counts differ from what was written");
  }
  if (info.label_names.empty() == (labeled_ && !regression_)) {
    return absl::InternalError(
        "DatasetWriter: label_names must be given exactly when the dataset has classification labels");
  }
  {
    h5::ErrorScope quiet;
    h5::Handle root(H5Gopen2(h5_->file.get(), "/", H5P_DEFAULT), &H5Gclose);
    const hid_t g = root.get();
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrFormat, fmt::kFormatName));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt32Attr(g, fmt::kAttrFormatVersion, fmt::kFormatVersion));
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrVocabSha256, info.vocab_sha256));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt64Attr(g, fmt::kAttrVocabSize, info.vocab_size));
    if (labeled_ && !regression_) {
      FTUNE_RETURN_IF_ERROR(h5::WriteStringArrayAttr(g, fmt::kAttrLabelNames, info.label_names));
    }
    if (labeled_) {
      FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(
          g, fmt::kAttrLabelKind, regression_ ? fmt::kLabelKindRegression : fmt::kLabelKindClassification));
    }
    if (!info.text_pair.empty()) FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrTextPair, info.text_pair));
    FTUNE_RETURN_IF_ERROR(
        h5::WriteStringAttr(g, fmt::kAttrVocabFile, info.vocab_file.empty() ? "vocab.txt" : info.vocab_file));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt32Attr(g, fmt::kAttrMaxLength, info.max_length));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt64Attr(g, fmt::kAttrNumExamples, num_examples_));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt64Attr(g, fmt::kAttrNumTokens, num_tokens_));
    FTUNE_RETURN_IF_ERROR(h5::WriteInt64Attr(g, fmt::kAttrNumTruncated, info.num_truncated));
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrTokenizer, info.tokenizer_json));
    if (labeled_) FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrLabelMapping, info.label_mapping_json));
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrSourceName, info.source_name));
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrSourceSha256, info.source_sha256));
    FTUNE_RETURN_IF_ERROR(h5::WriteStringAttr(g, fmt::kAttrCreatedBy, info.created_by));
    root.Reset();
    h5_->input_ids.Reset();
    h5_->offsets.Reset();
    h5_->labels.Reset();
    h5_->token_type_ids.Reset();
    if (H5Fflush(h5_->file.get(), H5F_SCOPE_GLOBAL) < 0 || h5_->file.Reset() < 0) {
      return h5::Error(absl::StatusCode::kResourceExhausted, temp_path_, "cannot flush the output file");
    }
  }
  h5_.reset();
  {
    // fsync the data before the rename makes it visible (HDF5 flushes to the OS only).
    FILE* f = std::fopen(temp_path_.c_str(), "rb");
    if (f != nullptr) {
      fsync(fileno(f));
      std::fclose(f);
    }
  }
  FTUNE_RETURN_IF_ERROR(CommitRename(temp_path_, path_));
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace ftune::prep

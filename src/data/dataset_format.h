// The on-disk contract of an ftune token dataset (an HDF5 file written by `ftune prep`).
// The writer (data-prep/dataset_writer.cc) and the reader (data/token_dataset.cc) both take every
// name from here; data-prep/README.md documents the same layout for people who write such files
// with other tools (h5py etc.). Bump kFormatVersion on any incompatible change.
//
// Root group of the file:
//   datasets
//     input_ids  1-D, all examples' token ids concatenated (uint16 when vocab_size <= 65536,
//                else int32; a reader accepts any integer type), chunked + deflate
//     offsets    1-D int64, num_examples + 1 entries: example i is input_ids[offsets[i]:offsets[i+1]];
//                offsets[0] = 0, non-decreasing, offsets[num_examples] = len(input_ids)
//     labels     1-D int32, num_examples entries, each in [0, len(label_names)); absent in an
//                unlabeled dataset (`ftune prep --label_column=`: text for pretraining);
//                float32 (any float type) in a regression dataset (label_kind "regression")
//     token_type_ids  optional, 1-D uint8 (any integer type), len(input_ids) entries: the
//                token_type_id (segment) of every token, as the tokenizer gives it for sentence
//                pairs (BERT: 0 for [CLS] A [SEP], 1 for B [SEP]); absent = all 0
//   attributes (strings are UTF-8; the reader accepts fixed- or variable-length strings)
//     format          string  "ftune.token_dataset"
//     format_version  int32   kFormatVersion                                   (required)
//     vocab_sha256    string  64 lowercase hex digits of the vocab.txt bytes   (required)
//     vocab_size      int64   lines in vocab.txt; every token id is below it   (required)
//     label_names     1-D string array, label_names[k] names label k  (present iff labels is,
//                     except in a regression dataset, which has none)
//     label_kind      string  "classification" (the default when absent) or "regression"
//     text_pair       string  the CSV column of the pairs' second texts (absent: single texts)
//     vocab_file      string  "vocab.txt" or "tokenizer.json": what vocab_sha256 hashes (absent: vocab.txt)
//     max_length      int32   truncation length used (0 = none); no example is longer
//     num_examples    int64   = len(offsets) - 1
//     num_tokens      int64   = len(input_ids)
//     num_truncated   int64   examples that were cut to max_length
//     tokenizer       string  JSON object with the tokenizer settings
//     label_mapping   string  JSON object: raw label value in the input -> label id (labeled only)
//     source_name     string  input file name (basename)
//     source_sha256   string  sha256 of the input file
//     created_by      string  "ftune prep <version>"
#pragma once

#include <cstdint>

namespace ftune::data::format {

inline constexpr int32_t kFormatVersion = 1;
inline constexpr char kFormatName[] = "ftune.token_dataset";

// Datasets.
inline constexpr char kInputIds[] = "input_ids";
inline constexpr char kOffsets[] = "offsets";
inline constexpr char kLabels[] = "labels";
inline constexpr char kTokenTypeIds[] = "token_type_ids";  // optional (format version 1 since pairs)

// Attributes of the root group.
inline constexpr char kAttrFormat[] = "format";
inline constexpr char kAttrFormatVersion[] = "format_version";
inline constexpr char kAttrVocabSha256[] = "vocab_sha256";
inline constexpr char kAttrVocabSize[] = "vocab_size";
inline constexpr char kAttrLabelNames[] = "label_names";
inline constexpr char kAttrMaxLength[] = "max_length";
inline constexpr char kAttrNumExamples[] = "num_examples";
inline constexpr char kAttrNumTokens[] = "num_tokens";
inline constexpr char kAttrNumTruncated[] = "num_truncated";
inline constexpr char kAttrTokenizer[] = "tokenizer";
inline constexpr char kAttrLabelMapping[] = "label_mapping";
inline constexpr char kAttrSourceName[] = "source_name";
inline constexpr char kAttrSourceSha256[] = "source_sha256";
inline constexpr char kAttrCreatedBy[] = "created_by";
// Added with sentence pairs and regression; optional, so every earlier file reads as before, and a
// reader from before refuses a regression file ("labels is not of an integer type").
inline constexpr char kAttrLabelKind[] = "label_kind";
inline constexpr char kLabelKindClassification[] = "classification";
inline constexpr char kLabelKindRegression[] = "regression";
inline constexpr char kAttrTextPair[] = "text_pair";
// The longest example a dataset holds (the reader refuses longer ones): 2^20 tokens.
inline constexpr int64_t kMaxExampleTokens = int64_t{1} << 20;
inline constexpr char kAttrVocabFile[] = "vocab_file";
inline constexpr int64_t kMaxTokenTypeId = 255;  // token_type_ids are stored as uint8

// Writer choices (not part of the contract: readers must not depend on them).
inline constexpr int64_t kMaxUint16VocabSize = 65536;  // ids fit uint16 up to this vocab size
inline constexpr int64_t kTokenChunk = 1 << 14;        // elements per input_ids chunk (32 KiB as uint16)
inline constexpr int64_t kIndexChunk = 1 << 14;        // elements per offsets/labels chunk
inline constexpr int kDeflateLevel = 4;

}  // namespace ftune::data::format

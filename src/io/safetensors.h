// safetensors (https://github.com/huggingface/safetensors) reader and writer, torch-free.
//
// Layout: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
// then the raw little-endian tensor bytes; offsets are relative to the end of the header.
//
// The reader maps the file read-only (no copy) and validates everything before handing out a view:
// header size limits, JSON shape, duplicate names, known dtypes, dtype x shape == byte size,
// offsets inside the data section, no overlaps and no holes (as the reference implementation).
// Every violation is an absl::DataLossError / InvalidArgumentError naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::io {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

absl::string_view DTypeName(DType d);  // "F32", ...
size_t DTypeSize(DType d);
absl::StatusOr<DType> ParseDType(absl::string_view name);

// Largest header the reader accepts (the reference implementation's limit).
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); `bytes` must outlive the object.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(absl::string_view bytes, std::string label);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors in name order.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Has(absl::string_view name) const { return tensors_.count(std::string(name)) > 0; }
  absl::StatusOr<const TensorView*> Get(absl::string_view name) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse(absl::string_view bytes);

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // little-endian, contiguous, DTypeSize(dtype) * numel bytes
};

// Serialises `tensors` (written in name order, offsets contiguous, header padded to 8 bytes).
absl::StatusOr<std::string> SerializeSafetensors(const std::vector<TensorToWrite>& tensors,
                                                 const std::map<std::string, std::string>& metadata);

// Writes atomically (temp file + rename): a crash leaves the previous file or none, never a torso.
// Hugging Face loaders require metadata {"format": "pt"}; it is added when absent.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              std::map<std::string, std::string> metadata = {});

}  // namespace ftune::io

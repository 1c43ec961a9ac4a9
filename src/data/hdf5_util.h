// Thin HDF5 C-API helpers shared by the token dataset reader (data/) and writer (data-prep/):
// an owning handle, an error scope that silences HDF5's stderr dump and turns its error stack
// into an absl::Status, and typed attribute read/write. Not thread-safe (neither is libhdf5).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::data::h5 {

// Owns an hid_t and closes it with the matching H5?close on destruction.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns a negative value if HDF5 reported an error while closing.
  herr_t Reset();

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// While alive, HDF5 prints nothing to stderr; errors are collected with LastError().
class ErrorScope {
 public:
  ErrorScope();
  ~ErrorScope();
  ErrorScope(const ErrorScope&) = delete;
  ErrorScope& operator=(const ErrorScope&) = delete;

 private:
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
};

// The innermost message of HDF5's current error stack (then clears it), e.g.
// "unable to open file: ... errno = 2, error message = 'No such file or directory'".
std::string LastError();

// `code` error "<path>: <what> (<HDF5's message>)".
absl::Status Error(absl::StatusCode code, const std::string& path, absl::string_view what);

// Attributes of any object (file, group or dataset).
bool HasAttr(hid_t obj, const char* name);
absl::Status WriteStringAttr(hid_t obj, const char* name, absl::string_view value);
absl::Status WriteStringArrayAttr(hid_t obj, const char* name, const std::vector<std::string>& values);
absl::Status WriteInt64Attr(hid_t obj, const char* name, int64_t value);
absl::Status WriteInt32Attr(hid_t obj, const char* name, int32_t value);
// Readers accept any integer type / fixed- or variable-length strings; errors name the attribute
// (the caller adds the file name).
absl::StatusOr<int64_t> ReadIntAttr(hid_t obj, const char* name);
absl::StatusOr<std::string> ReadStringAttr(hid_t obj, const char* name);
absl::StatusOr<std::vector<std::string>> ReadStringArrayAttr(hid_t obj, const char* name);

}  // namespace ftune::data::h5

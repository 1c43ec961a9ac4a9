#include "data/hdf5_util.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ftune::data::h5 {

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    Reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

herr_t Handle::Reset() {
  herr_t r = 0;
  if (id_ >= 0 && closer_ != nullptr) r = closer_(id_);
  id_ = -1;
  return r;
}

ErrorScope::ErrorScope() {
  H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

ErrorScope::~ErrorScope() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }

namespace {
herr_t CollectInnermost(unsigned n, const H5E_error2_t* err, void* data) {
  // Walking upward: n == 0 is where the error was detected, the most specific message.
  if (n == 0 && err != nullptr && err->desc != nullptr) *static_cast<std::string*>(data) = err->desc;
  return 0;
}
}  // namespace

std::string LastError() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, &CollectInnermost, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "HDF5 error" : msg;
}

absl::Status Error(absl::StatusCode code, const std::string& path, absl::string_view what) {
  return absl::Status(code, absl::StrCat(path, ": ", what, " (", LastError(), ")"));
}

bool HasAttr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

namespace {

absl::Status AttrError(const char* name, absl::string_view what) {
  return absl::InternalError(absl::StrCat("attribute '", name, "': ", what, " (", LastError(), ")"));
}

Handle Utf8VarString() {
  Handle t(H5Tcopy(H5T_C_S1), &H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

absl::Status WriteAttr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, hid_t space, const void* data) {
  if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return AttrError(name, "cannot replace");
  Handle attr(H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), &H5Aclose);
  if (!attr.valid()) return AttrError(name, "cannot create");
  if (H5Awrite(attr.get(), mem_type, data) < 0) return AttrError(name, "cannot write");
  if (attr.Reset() < 0) return AttrError(name, "cannot close");
  return absl::OkStatus();
}

absl::StatusOr<Handle> OpenAttr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) {
    return absl::NotFoundError(absl::StrCat("attribute '", name, "' is missing"));
  }
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), &H5Aclose);
  if (!attr.valid()) return AttrError(name, "cannot open");
  return attr;
}

// Reads `n` strings from an attribute of string type (fixed or variable length).
absl::StatusOr<std::vector<std::string>> ReadStrings(hid_t attr, const char* name, hssize_t n) {
  Handle ftype(H5Aget_type(attr), &H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING) {
    return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' is not a string"));
  }
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(n));
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype(H5Tcopy(H5T_C_S1), &H5Tclose);
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (n > 0 && H5Aread(attr, mtype.get(), ptrs.data()) < 0) return AttrError(name, "cannot read");
    for (char* p : ptrs) {
      out.emplace_back(p == nullptr ? "" : p);
      if (p != nullptr) H5free_memory(p);
    }
    return out;
  }
  size_t size = H5Tget_size(ftype.get());
  Handle mtype(H5Tcopy(H5T_C_S1), &H5Tclose);
  H5Tset_size(mtype.get(), size);
  H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
  H5Tset_strpad(mtype.get(), H5T_STR_NULLPAD);
  std::vector<char> buf(size * static_cast<size_t>(n) + 1, '\0');
  if (n > 0 && H5Aread(attr, mtype.get(), buf.data()) < 0) return AttrError(name, "cannot read");
  for (hssize_t i = 0; i < n; ++i) {
    const char* p = buf.data() + static_cast<size_t>(i) * size;
    out.emplace_back(p, strnlen(p, size));
  }
  return out;
}

}  // namespace

absl::Status WriteStringAttr(hid_t obj, const char* name, absl::string_view value) {
  Handle type = Utf8VarString();
  Handle space(H5Screate(H5S_SCALAR), &H5Sclose);
  std::string copy(value);
  const char* p = copy.c_str();
  return WriteAttr(obj, name, type.get(), type.get(), space.get(), &p);
}

absl::Status WriteStringArrayAttr(hid_t obj, const char* name, const std::vector<std::string>& values) {
  Handle type = Utf8VarString();
  hsize_t dims[1] = {values.size()};
  Handle space(H5Screate_simple(1, dims, nullptr), &H5Sclose);
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const std::string& v : values) ptrs.push_back(v.c_str());
  return WriteAttr(obj, name, type.get(), type.get(), space.get(), ptrs.data());
}

absl::Status WriteInt64Attr(hid_t obj, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), &H5Sclose);
  return WriteAttr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(), &value);
}

absl::Status WriteInt32Attr(hid_t obj, const char* name, int32_t value) {
  Handle space(H5Screate(H5S_SCALAR), &H5Sclose);
  return WriteAttr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, space.get(), &value);
}

absl::StatusOr<int64_t> ReadIntAttr(hid_t obj, const char* name) {
  FTUNE_ASSIGN_OR_RETURN(Handle attr, OpenAttr(obj, name));
  Handle ftype(H5Aget_type(attr.get()), &H5Tclose);
  Handle space(H5Aget_space(attr.get()), &H5Sclose);
  if (H5Tget_class(ftype.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' is not a scalar integer"));
  }
  int64_t v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0) return AttrError(name, "cannot read");
  return v;
}

absl::StatusOr<std::string> ReadStringAttr(hid_t obj, const char* name) {
  FTUNE_ASSIGN_OR_RETURN(Handle attr, OpenAttr(obj, name));
  Handle space(H5Aget_space(attr.get()), &H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' is not a single string"));
  }
  FTUNE_ASSIGN_OR_RETURN(std::vector<std::string> v, ReadStrings(attr.get(), name, 1));
  return v[0];
}

absl::StatusOr<std::vector<std::string>> ReadStringArrayAttr(hid_t obj, const char* name) {
  FTUNE_ASSIGN_OR_RETURN(Handle attr, OpenAttr(obj, name));
  Handle space(H5Aget_space(attr.get()), &H5Sclose);
  if (H5Sget_simple_extent_ndims(space.get()) > 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' is not a 1-D string array"));
  }
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) return AttrError(name, "cannot get its size");
  return ReadStrings(attr.get(), name, n);
}

}  // namespace ftune::data::h5

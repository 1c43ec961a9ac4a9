#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace ftune::io {
namespace {

using json = nlohmann::json;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},   {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},   {DType::kBool, "BOOL", 1},
};

// Refuse absurd ranks and element counts before multiplying (keeps the arithmetic overflow-free).
constexpr size_t kMaxRank = 16;
constexpr uint64_t kMaxElements = uint64_t{1} << 48;

}  // namespace

absl::string_view DTypeName(DType d) {
  for (const auto& e : kDTypes) {
    if (e.dtype == d) return e.name;
  }
  return "?";
}

size_t DTypeSize(DType d) {
  for (const auto& e : kDTypes) {
    if (e.dtype == d) return e.size;
  }
  return 0;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "unsupported dtype \"%s\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", utf8::Printable(name)));
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    std::string msg = absl::StrFormat("cannot open %s: %s", path, std::strerror(e));
    return e == ENOENT ? absl::NotFoundError(msg) : absl::UnavailableError(msg);
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a regular file", path));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  size_t size = static_cast<size_t>(sb.st_size);
  if (size > 0) {
    void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      return absl::UnavailableError(absl::StrFormat("cannot map %s: %s", path, std::strerror(e)));
    }
    f->map_ = m;
    f->map_size_ = size;
  }
  close(fd);
  absl::string_view bytes(static_cast<const char*>(f->map_), size);
  FTUNE_RETURN_IF_ERROR(f->Parse(bytes));
  return f;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(absl::string_view bytes,
                                                                             std::string label) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(label);
  FTUNE_RETURN_IF_ERROR(f->Parse(bytes));
  return f;
}

absl::StatusOr<const TensorView*> SafetensorsFile::Get(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrFormat("%s: no tensor named \"%s\"", path_, name));
  }
  return &it->second;
}

absl::Status SafetensorsFile::Parse(absl::string_view bytes) {
  auto bad = [this](const std::string& what) {
    return absl::DataLossError(absl::StrFormat("%s: not a valid safetensors file: %s", path_, what));
  };
  if (bytes.size() < 8) {
    return bad(absl::StrFormat("%d bytes is too short for the 8-byte header length", bytes.size()));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  if (n > kMaxHeaderBytes) {
    return bad(absl::StrFormat("header length %d exceeds the %d-byte limit", n, kMaxHeaderBytes));
  }
  if (n > bytes.size() - 8) {
    return bad(absl::StrFormat("header length %d runs past the end of the %d-byte file (truncated?)", n, bytes.size()));
  }
  absl::string_view header = bytes.substr(8, n);
  const uint8_t* data = reinterpret_cast<const uint8_t*>(bytes.data()) + 8 + n;
  const uint64_t data_size = bytes.size() - 8 - n;

  // nlohmann's parser takes a NUL byte for the end of the input and would ignore everything after
  // it; JSON never contains a raw NUL, so refuse it here (as the reference implementation does).
  if (size_t nul = header.find('\0'); nul != absl::string_view::npos) {
    return bad(absl::StrFormat("header is not JSON (NUL byte at offset %d of the header)", nul));
  }
  // Parse, rejecting duplicate keys of the top-level object (nlohmann would keep the last silently).
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json h;
  try {
    h = json::parse(header.begin(), header.end(), cb);
  } catch (const json::exception& e) {
    return bad(absl::StrFormat("header is not JSON (%s)", utf8::Printable(e.what())));
  }
  if (!duplicate.empty()) {
    return bad(absl::StrFormat("tensor \"%s\" appears twice in the header", utf8::Printable(duplicate)));
  }
  if (!h.is_object()) return bad("header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return bad(absl::StrFormat("__metadata__.%s is not a string", utf8::Printable(m.key())));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto tbad = [&](const std::string& what) {
      return bad(absl::StrFormat("tensor \"%s\": %s", utf8::Printable(name), what));
    };
    if (!v.is_object()) return tbad("entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto of = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return tbad("missing or non-string \"dtype\"");
    if (sh == v.end() || !sh->is_array()) return tbad("missing or non-array \"shape\"");
    if (of == v.end() || !of->is_array() || of->size() != 2) return tbad("\"data_offsets\" must be [begin, end]");
    auto dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return tbad(std::string(dtype.status().message()));
    if (sh->size() > kMaxRank) return tbad(absl::StrFormat("rank %d is above %d", sh->size(), kMaxRank));
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) return tbad("shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim > kMaxElements || (dim > 0 && numel > kMaxElements / dim)) return tbad("shape is absurdly large");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const json& o : *of) {
      if (!o.is_number_unsigned()) return tbad("data_offsets must be non-negative integers");
    }
    uint64_t begin = (*of)[0].get<uint64_t>(), end = (*of)[1].get<uint64_t>();
    if (begin > end) return tbad(absl::StrFormat("data_offsets [%d, %d] are reversed", begin, end));
    if (end > data_size) {
      return tbad(absl::StrFormat("data_offsets [%d, %d] run past the %d-byte data section (truncated?)", begin, end,
                                  data_size));
    }
    uint64_t expect = numel * DTypeSize(t.dtype);
    if (end - begin != expect) {
      return tbad(absl::StrFormat("%s with shape of %d elements needs %d bytes but data_offsets span %d",
                                  DTypeName(t.dtype), numel, expect, end - begin));
    }
    t.data = data + begin;
    t.nbytes = static_cast<size_t>(end - begin);
    auto [ins, ok] = tensors_.emplace(name, std::move(t));
    spans.push_back({begin, end, &ins->first});
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    if (s.begin < cursor) {
      return bad(absl::StrFormat("tensor \"%s\" overlaps the tensor before it (offset %d < %d)",
                                 utf8::Printable(*s.name), s.begin, cursor));
    }
    if (s.begin > cursor) {
      return bad(
          absl::StrFormat("%d unaccounted bytes before tensor \"%s\"", s.begin - cursor, utf8::Printable(*s.name)));
    }
    cursor = s.end;
  }
  if (cursor != data_size) {
    return bad(absl::StrFormat("data section has %d bytes but tensors cover %d", data_size, cursor));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SerializeSafetensors(const std::vector<TensorToWrite>& tensors,
                                                 const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  // Like the reference writer: wider dtypes first (keeps every tensor aligned), then by name; for
  // single-dtype checkpoints the file is byte-identical to Hugging Face's.
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) {
    size_t sa = DTypeSize(a->dtype), sb = DTypeSize(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->name == order[i]->name) {
      return absl::InvalidArgumentError(absl::StrFormat("tensor \"%s\" given twice", order[i]->name));
    }
  }
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (t.name == "__metadata__") return absl::InvalidArgumentError("a tensor cannot be named __metadata__");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrFormat("tensor \"%s\" has a negative dim", t.name));
      numel *= static_cast<uint64_t>(d);
    }
    uint64_t nbytes = numel * DTypeSize(t.dtype);
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(DTypeName(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + nbytes};
    h[t.name] = std::move(e);
    sizes.push_back(nbytes);
    offset += nbytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + header.size() + offset);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  for (size_t i = 0; i < order.size(); ++i) {
    out.append(static_cast<const char*>(order[i]->data), sizes[i]);
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");
  FTUNE_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(tensors, metadata));
  return WriteFileAtomic(path, bytes);
}

}  // namespace ftune::io

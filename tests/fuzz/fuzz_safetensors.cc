// libFuzzer target: io::SafetensorsFile::FromBuffer on arbitrary bytes.
//
// Invariants (beyond "no crash / no sanitizer report"):
//  - a rejected image gets DataLoss or InvalidArgument with a one-line message naming the file;
//  - an accepted image: every tensor view lies inside the data section, nbytes = numel x dtype size,
//    the views tile the data section exactly (no overlap, no hole), Get() returns the same view;
//  - round trip: SerializeSafetensors(parsed) parses back to the same names, dtypes, shapes, bytes
//    and metadata, and serialising that again is byte-identical (the writer is a fixpoint).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "io/safetensors.h"

namespace ftune::fuzz {
namespace {

constexpr char kLabel[] = "fuzz.safetensors";

struct Image {
  std::vector<io::TensorToWrite> tensors;
  std::map<std::string, std::string> metadata;
};

Image ToWrite(const io::SafetensorsFile& f) {
  Image img;
  for (const auto& [name, t] : f.tensors()) img.tensors.push_back({name, t.dtype, t.shape, t.data});
  img.metadata = f.metadata();
  return img;
}

void CheckSame(const io::SafetensorsFile& a, const io::SafetensorsFile& b) {
  FUZZ_CHECK(a.metadata() == b.metadata(), "metadata changed in the round trip");
  FUZZ_CHECK(a.tensors().size() == b.tensors().size(), "tensor count changed in the round trip");
  for (auto ia = a.tensors().begin(), ib = b.tensors().begin(); ia != a.tensors().end(); ++ia, ++ib) {
    const io::TensorView& x = ia->second;
    const io::TensorView& y = ib->second;
    FUZZ_CHECK(ia->first == ib->first, "name changed: " + ia->first + " -> " + ib->first);
    FUZZ_CHECK(x.dtype == y.dtype && x.shape == y.shape, "dtype/shape changed for " + ia->first);
    FUZZ_CHECK(x.nbytes == y.nbytes && (x.nbytes == 0 || std::memcmp(x.data, y.data, x.nbytes) == 0),
               "bytes changed for " + ia->first);
  }
}

void CheckViews(const io::SafetensorsFile& f, absl::string_view bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  const uint8_t* begin = reinterpret_cast<const uint8_t*>(bytes.data()) + 8 + n;
  const uint8_t* end = reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size();
  std::vector<const io::TensorView*> views;
  for (const auto& [name, t] : f.tensors()) {
    FUZZ_CHECK(name == t.name && name != "__metadata__", "bad tensor name " + name);
    FUZZ_CHECK(io::DTypeSize(t.dtype) > 0, "unknown dtype for " + name);
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      FUZZ_CHECK(d >= 0, "negative dim in " + name);
      numel *= static_cast<uint64_t>(d);
    }
    FUZZ_CHECK(static_cast<int64_t>(numel) == t.numel(), "numel() disagrees for " + name);
    FUZZ_CHECK(numel * io::DTypeSize(t.dtype) == t.nbytes, "nbytes != numel x dtype size for " + name);
    FUZZ_CHECK(t.data >= begin && t.data <= end && t.nbytes <= static_cast<size_t>(end - t.data),
               "view outside the data section: " + name);
    auto got = f.Get(name);
    FUZZ_CHECK(got.ok() && *got == &t && f.Has(name), "Get() disagrees for " + name);
    views.push_back(&t);
  }
  std::sort(views.begin(), views.end(),
            [](auto* a, auto* b) { return a->data != b->data ? a->data < b->data : a->nbytes < b->nbytes; });
  const uint8_t* cursor = begin;
  for (const io::TensorView* v : views) {
    FUZZ_CHECK(v->data == cursor, "views do not tile the data section at " + v->name);
    cursor += v->nbytes;
  }
  FUZZ_CHECK(cursor == end, "views do not cover the data section");
}

}  // namespace
}  // namespace ftune::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto f = io::SafetensorsFile::FromBuffer(bytes, kLabel);
  if (!f.ok()) {
    CheckError(f.status(), kLabel, {absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument});
    return 0;
  }
  CheckViews(**f, bytes);

  Image img = ToWrite(**f);
  auto out = io::SerializeSafetensors(img.tensors, img.metadata);
  FUZZ_CHECK(out.ok(), "cannot serialise a parsed file: " + out.status().ToString());
  auto back = io::SafetensorsFile::FromBuffer(*out, "roundtrip.safetensors");
  FUZZ_CHECK(back.ok(), "serialised file does not parse: " + back.status().ToString());
  CheckViews(**back, *out);
  CheckSame(**f, **back);
  Image img2 = ToWrite(**back);
  auto out2 = io::SerializeSafetensors(img2.tensors, img2.metadata);
  FUZZ_CHECK(out2.ok() && *out2 == *out, "serialising twice is not byte-identical");
  return 0;
}

// Stable, non-cryptographic hashing (identical across hosts, compilers and builds): FNV-1a over
// raw bytes, for cheap fingerprints that ranks compare (configuration, shapes, frozen weights).
// Content hashes that users see (vocab and source files) are SHA-256, in files.h.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace ftune {

// FNV-1a, 64 bit. Chain calls by passing the previous result as `seed`.
inline constexpr uint64_t kFnv1a64Offset = 0xcbf29ce484222325ULL;
inline uint64_t Fnv1a64(absl::string_view bytes, uint64_t seed = kFnv1a64Offset) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= kPrime;
  }
  return h;
}

}  // namespace ftune

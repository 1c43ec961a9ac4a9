// Where the tests find ../shared (the full IMDB data, every golden token id, PEFT's source): the
// FTUNE_SHARED environment variable when set, else the folder CMake was configured with
// (FTUNE_SHARED_DIR, default <repo>/../shared). Users have no ../shared: the tests that need it skip,
// saying why, and `FTUNE_SHARED=/nonexistent ctest ...` (CI) proves they do.
#pragma once

#include <cstdlib>
#include <string>

namespace ftune::testing {

inline std::string SharedDir() {
  const char* env = std::getenv("FTUNE_SHARED");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(FTUNE_SHARED_DIR);
}

}  // namespace ftune::testing

// Small file-system helpers with the project's guarantees: whole-file reads with clear errors,
// and atomic writes (temp file in the same directory, fsync, rename) so nothing is half-written.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune {

// "<what> <path>: <strerror(errno)>" as the status code errno calls for (NotFound, AlreadyExists,
// PermissionDenied, ResourceExhausted; Unavailable otherwise). Read errno right after the failing call.
absl::Status ErrnoError(absl::string_view what, const std::string& path);

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically: readers see the old file or the new one, never a mix.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);

// A temp path next to `path` (same directory, so rename() is atomic), unique per process.
std::string TempPathFor(const std::string& path);

// Renames `from` onto `to` and fsyncs the containing directory.
absl::Status CommitRename(const std::string& from, const std::string& to);

// mkdir -p.
absl::Status MakeDirs(const std::string& path);

// rm -r (a missing path is fine).
absl::Status RemoveTree(const std::string& path);

bool PathExists(const std::string& path);

// SHA-256 of a byte string / a file, as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view bytes);
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace ftune

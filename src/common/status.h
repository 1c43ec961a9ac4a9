// Status plumbing for ftune: absl::Status / absl::StatusOr everywhere at module edges, plus the
// two macros Debian 12's Abseil (20220623) lacks (status_macros.h arrived later).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define FTUNE_STATUS_CONCAT_INNER_(a, b) a##b
#define FTUNE_STATUS_CONCAT_(a, b) FTUNE_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define FTUNE_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status ftune_status_ = (expr);         \
    if (!ftune_status_.ok()) return ftune_status_; \
  } while (0)

// `lhs` = value of the StatusOr `rexpr`, or return its error. `lhs` may be a declaration.
#define FTUNE_ASSIGN_OR_RETURN(lhs, rexpr) \
  FTUNE_ASSIGN_OR_RETURN_IMPL_(FTUNE_STATUS_CONCAT_(ftune_statusor_, __LINE__), lhs, rexpr)
#define FTUNE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

namespace ftune {

// Prefixes a status message with context ("reading model.safetensors: ...") keeping its code.
inline absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

// Exit codes of the ftune binary (documented in --help and the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,       // any failure (message on stderr)
  kExitUsage = 2,       // bad command line
  kExitPreempted = 75,  // stopped by SIGTERM/SIGUSR1/SIGINT after writing a checkpoint (EX_TEMPFAIL)
};

}  // namespace ftune

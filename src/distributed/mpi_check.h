// Private to src/distributed: turns an MPI return code into an absl::Status carrying file:line, the call
// and MPI's own message. (MPI_COMM_WORLD keeps MPI_ERRORS_ARE_FATAL, so in practice MPI aborts the
// job itself on a communication error; the checks still keep every return code honest.)
#pragma once

#include <mpi.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace ftune::dist::internal {

inline absl::Status MpiError(int rc, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  return absl::InternalError(absl::StrFormat("MPI error at %s:%d in %s: %s (code %d)", file, line, call,
                                             len > 0 ? text : "unknown error", rc));
}

// True once MPI_Finalize has run: destructors must not call MPI after that.
inline bool MpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

}  // namespace ftune::dist::internal

#define FTUNE_MPI_RETURN_IF_ERROR(call)                                                   \
  do {                                                                                    \
    const int ftune_mpi_rc_ = (call);                                                     \
    if (ftune_mpi_rc_ != MPI_SUCCESS)                                                     \
      return ::ftune::dist::internal::MpiError(ftune_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)

#!/bin/sh
# Runs the abort probe under mpirun and succeeds only if the job ended with the probe's abort
# code (mpirun forwards MPI_Abort's errorcode) and no waiting rank got past its collective.
# (Open MPI's own "MPI_ABORT was invoked" banner is racy and not relied on.) A hang is caught by
# the CTest TIMEOUT.
#   expect_abort.sh <code> <mpirun> [args...]
code="$1"; shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq "$code" ] || { echo "expect_abort: exit code $rc, want $code"; exit 1; }
if printf '%s\n' "$out" | grep -qF "got past the collective"; then
  echo "expect_abort: a rank survived the abort"; exit 1
fi
echo "expect_abort: OK (exit code $rc)"

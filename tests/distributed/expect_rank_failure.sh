#!/bin/sh
# Runs an mpirun command line whose test fails on one rank only (FTUNE_DIST_FAIL_ON_RANK) and
# succeeds only if the harness reported it properly: a non-zero exit code, the failing rank's
# "[rank r] [  FAILED  ] ..." line, and rank 0's "on another rank" summary.
#   expect_rank_failure.sh <rank> <mpirun> [args...]
rank="$1"; shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -ne 0 ] || { echo "expect_rank_failure: exit code was 0"; exit 1; }
printf '%s\n' "$out" | grep -qF "[rank $rank] [  FAILED  ] HarnessTest.InjectedFailureOnOneRank" ||
  { echo "expect_rank_failure: no [rank $rank] FAILED line"; exit 1; }
printf '%s\n' "$out" | grep -qF "[  FAILED  ] on another rank" ||
  { echo "expect_rank_failure: rank 0 did not report the other rank's failure"; exit 1; }
echo "expect_rank_failure: OK (exit code $rc)"

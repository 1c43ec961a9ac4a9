#!/usr/bin/env bash
# The test command (README, CI): install dependencies, build, run the whole CTest suite.
#   tests/run.sh [ctest args...]      e.g. tests/run.sh -L mpi   or   tests/run.sh -R Tokenizer
# Tests that need ../shared (full IMDB data, all golden token ids) skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/build.sh
# Open MPI refuses to run as root unless told; CI containers run as root.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
ctest --test-dir "${FTUNE_BUILD_DIR:-build}" --output-on-failure -j "${FTUNE_TEST_JOBS:-2}" "$@"

#!/usr/bin/env bash
# The test command (README, CI): install dependencies, build, run the whole CTest suite.
#   tests/run.sh [ctest args...]      e.g. tests/run.sh -L mpi   or   tests/run.sh -R Tokenizer
# Tests that need ../shared (full IMDB data, all golden token ids) skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where NCCL is installed (CI has it in /usr/local/cuda), the NCCL backend is compiled and linked
# too, so that code path cannot rot even on machines that cannot run it.
extra=()
if [ -f "${FTUNE_NCCL_ROOT:-/usr/local/cuda}/include/nccl.h" ]; then
  extra+=(-DFTUNE_WITH_NCCL=ON "-DFTUNE_NCCL_ROOT=${FTUNE_NCCL_ROOT:-/usr/local/cuda}")
fi
# slurm-wlm + munge let tests/slurm run a real one-node SLURM (they skip, saying why, without them).
[ "${FTUNE_SKIP_DEPS:-0}" = 1 ] || launch/install-deps.sh --slurm
launch/build.sh "${extra[@]}"
# Open MPI refuses to run as root unless told; CI containers run as root.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
ctest --test-dir "${FTUNE_BUILD_DIR:-build}" --output-on-failure -j "${FTUNE_TEST_JOBS:-2}" "$@"

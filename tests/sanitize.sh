#!/usr/bin/env bash
# Sanitizer run of the torch-free code (CI calls this): configure build-asan with -DFTUNE_SANITIZE=ON
# (ASan + UBSan on ftune_common, ftune_io, ftune_data, ftune_prep, ftune_distributed and their tests),
# build only the torch-free test binaries (no LibTorch code is compiled), and run them with CTest.
# Any ASan report, UBSan report (halt_on_error) or leak fails the run.
#   tests/sanitize.sh [extra ctest args...]     e.g. tests/sanitize.sh -L hardening
# Environment: FTUNE_ASAN_BUILD_DIR (build-asan), FTUNE_JOBS (all cores) for the build,
# FTUNE_TEST_JOBS (2) for CTest, FTUNE_SKIP_DEPS=1 (don't apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FTUNE_ASAN_BUILD_DIR:-build-asan}
targets=(ftune_common_test ftune_io_test ftune_data_test ftune_prep_test ftune_hardening_test
         ftune_distributed_test ftune_distributed_abort_probe ftune_report_test)

[ "${FTUNE_SKIP_DEPS:-0}" = 1 ] || launch/install-deps.sh
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTUNE_SANITIZE=ON >/dev/null
cmake --build "$build" -j "${FTUNE_JOBS:-$(nproc)}" --target "${targets[@]}"

# UBSan only reports by default; halt so a report fails the test. LeakSanitizer is on by default
# (ASAN_OPTIONS is left alone: ftune_distributed_test turns leak detection off for Open MPI's own
# allocations through __asan_default_options, which the environment would override). libhdf5 leaks
# inside H5Fopen on some malformed files (its own error path, see tests/hardening/lsan.supp).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/hardening/lsan.supp:print_suppressions=0}
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Only what was built: the LibTorch test binaries show up as <name>_NOT_BUILT, and the launch/slurm
# tests drive the ftune binary; the fuzzers have their own run (tests/fuzz/run.sh).
ctest --test-dir "$build" --output-on-failure -j "${FTUNE_TEST_JOBS:-2}" \
  -E '_NOT_BUILT$' -LE '^(launch|slurm|fuzz)$' "$@"

#!/usr/bin/env bash
# Configure and build ftune into ${FTUNE_BUILD_DIR:-build} (installs missing packages first).
#   launch/build.sh [extra cmake -D options]
# Environment: FTUNE_BUILD_DIR (build), FTUNE_JOBS (all cores), FTUNE_SKIP_DEPS=1 (don't apt-get),
# FTUNE_UNITY_BUILD=ON (CI): compile up to 16 sources of a target as one translation unit. Each
# LibTorch source pays ~10 s just to load the 700 MB precompiled <torch/torch.h> and instantiate
# the same templates; a clean build took 922 s instead of ~1,400 s on 2 cores (measured here), at
# the price of slower incremental rebuilds, so it is off by default.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${FTUNE_SKIP_DEPS:-0}" = 1 ] || launch/install-deps.sh
build=${FTUNE_BUILD_DIR:-build}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=${FTUNE_BUILD_TYPE:-RelWithDebInfo} \
  -DCMAKE_UNITY_BUILD=${FTUNE_UNITY_BUILD:-OFF} -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 "$@" >/dev/null
cmake --build "$build" -j "${FTUNE_JOBS:-$(nproc)}"

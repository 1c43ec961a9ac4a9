#!/usr/bin/env bash
# Configure and build ftune into ${FTUNE_BUILD_DIR:-build} (installs missing packages first).
#   launch/build.sh [extra cmake -D options]
# Environment: FTUNE_BUILD_DIR (build), FTUNE_JOBS (all cores), FTUNE_SKIP_DEPS=1 (don't apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${FTUNE_SKIP_DEPS:-0}" = 1 ] || launch/install-deps.sh
build=${FTUNE_BUILD_DIR:-build}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=${FTUNE_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j "${FTUNE_JOBS:-$(nproc)}"

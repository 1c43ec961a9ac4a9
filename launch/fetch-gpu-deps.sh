#!/usr/bin/env bash
# Run on a Debian/Ubuntu machine WITH apt (e.g. the development box): downloads the .debs of the
# libraries the GPU host lacks (Abseil, nlohmann-json, GoogleTest, OpenSSL headers) and
# unpacks them into .deps/root (git-ignored), which launch/build-gpu.sh puts on CMAKE_PREFIX_PATH.
# The accelerator host has no internet: carry .deps/ to it (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libabsl-dev libabsl20220623 nlohmann-json3-dev
      libgtest-dev libgmock-dev googletest libssl-dev)
mkdir -p .deps/debs .deps/root
(cd .deps/debs && apt-get download "${pkgs[@]}" 2>/dev/null)
for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/root; done
du -sh .deps | sed 's/^/fetch-gpu-deps: /'

#!/usr/bin/env bash
# Run on a Debian/Ubuntu machine WITH apt (e.g. the development box): downloads the .debs of the
# libraries the GPU host lacks (Abseil, nlohmann-json, GoogleTest, OpenSSL's headers) and
# unpacks them into .deps/root (git-ignored, made anew each time), which launch/build-gpu.sh puts on
# CMAKE_PREFIX_PATH. Binaries built against it find these libraries through their RPATH (see
# CMakeLists.txt), so nothing has to be installed there. The accelerator host has no internet:
# carry .deps/ to it (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libabsl-dev libabsl20220623 nlohmann-json3-dev
      libgtest-dev libgmock-dev googletest libssl-dev)
rm -rf .deps
mkdir -p .deps/root
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
(cd "$debs" && apt-get download "${pkgs[@]}" 2>/dev/null)
for d in "$debs"/*.deb; do dpkg -x "$d" .deps/root; done
# The shared libraries are what gets linked: the static copies, docs and sources would only add
# to what the device call carries (64 MiB in all).
rm -rf .deps/root/usr/share/doc .deps/root/usr/src
rm -f .deps/root/usr/lib/*/libabsl_*.a .deps/root/usr/lib/*/libcrypto.a .deps/root/usr/lib/*/libssl.a
# OpenSSL itself stays the host's: every Debian/Ubuntu system has libcrypto.so.3 (Python needs it),
# and a second copy on the binaries' RPATH would shadow it for every library in the process (HDF5's
# libcurl, built against the host's newer OpenSSL 3.x, then fails). libssl-dev's unversioned link
# name points at the host's library instead of the missing libssl3.
for d in .deps/root/usr/lib/*-linux-gnu; do
  rm -f "$d/libssl.so"
  ln -sfn "/usr/lib/$(basename "$d")/libcrypto.so.3" "$d/libcrypto.so"
done
printf '%s\n' "${pkgs[@]}" >.deps/packages
du -sh .deps | sed 's/^/fetch-gpu-deps: /'

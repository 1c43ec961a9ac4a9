#!/usr/bin/env bash
# Run HERE (a machine with apt and ../shared) before a session's one call to the GPU machine:
# gathers what that machine lacks into two git-ignored folders the call must carry:
#   .deps     Debian's Abseil, nlohmann-json, GoogleTest, OpenSSL (fetch-gpu-deps.sh, made anew)
#   .devdata  the IMDB subset, vocab.txt and the HF Trainer anchor script from ../shared
# Then, on the device:  launch/device-check.sh      (carry: .deps .devdata; see its --help)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${FTUNE_SHARED:-../shared}
launch/fetch-gpu-deps.sh
rm -rf .devdata && mkdir -p .devdata/imdb .devdata/generate
cp "$shared"/data/imdb/{train,eval}.csv .devdata/imdb/
cp "$shared"/vocab/bert-base-uncased-vocab.txt .devdata/vocab.txt
cp "$shared"/reference/generate/{hfbench.py,tok.py} .devdata/generate/
du -sh .deps .devdata | sed 's/^/stage-device: /'

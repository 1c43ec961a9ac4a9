#!/usr/bin/env bash
# Downloads distilbert-base-uncased (config.json, model.safetensors, vocab.txt) from the Hugging Face
# hub into a model directory that `ftune train --model_dir` and `ftune prep --model_dir` read.
# Run it once on a machine with internet, then copy the directory to the cluster (cluster/README.md).
#   cluster/fetch-model.sh [DEST]        default DEST: models/distilbert-base-uncased
# Files already present and valid are kept (a rerun downloads only what is missing). vocab.txt is
# checked against its known SHA-256; every file is written to a .part file and renamed when complete.
# Environment: FTUNE_HF_BASE (default https://huggingface.co/distilbert-base-uncased/resolve/main;
# a mirror, or file:///path for an offline copy), HF_TOKEN (sent as a bearer token if set),
# FTUNE_BIN (if executable, `ftune inspect` loads the result as a last check).
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,/^set -/{/^#/s/^# \{0,1\}//p;}' "$0"; exit 0 ;;
esac

dest=${1:-models/distilbert-base-uncased}
base=${FTUNE_HF_BASE:-https://huggingface.co/distilbert-base-uncased/resolve/main}
base=${base%/}
readonly vocab_sha256=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3

command -v curl >/dev/null || { echo "fetch-model.sh: needs curl (apt-get install curl)" >&2; exit 1; }
command -v sha256sum >/dev/null || { echo "fetch-model.sh: needs sha256sum (coreutils)" >&2; exit 1; }
mkdir -p "$dest"

progress=(-sS)  # quiet in logs, a bar on a terminal
[ -t 2 ] && progress=(--progress-bar)
auth=()
[ -z "${HF_TOKEN:-}" ] || auth=(-H "Authorization: Bearer $HF_TOKEN")

# valid FILE: the checks a file must pass to be kept.
valid() {
  local f=$dest/$1
  [ -s "$f" ] || return 1
  case "$1" in
    vocab.txt) [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$vocab_sha256" ] ;;
    config.json) grep -q '"model_type"' "$f" ;;
    # safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'.
    model.safetensors) [ "$(head -c 9 "$f" | tail -c 1)" = "{" ] ;;
  esac
}

for file in config.json vocab.txt model.safetensors; do
  if valid "$file"; then
    echo "fetch-model.sh: $dest/$file present and valid"
    continue
  fi
  echo "fetch-model.sh: $base/$file -> $dest/$file"
  curl -fL --retry 3 --retry-delay 2 "${progress[@]}" ${auth[@]+"${auth[@]}"} -o "$dest/$file.part" "$base/$file" || {
    rm -f "$dest/$file.part"
    echo "fetch-model.sh: download of $file failed" >&2
    echo "---> HINT: no internet here? fetch on another machine and copy $dest over (cluster/README.md)" >&2
    exit 1
  }
  mv "$dest/$file.part" "$dest/$file"
  if ! valid "$file"; then
    echo "fetch-model.sh: $dest/$file is not what was expected; removed" >&2
    [ "$file" = vocab.txt ] && echo "  sha256 $(sha256sum "$dest/$file" | cut -d' ' -f1), expected $vocab_sha256" >&2
    rm -f "$dest/$file"
    exit 1
  fi
done

bin=${FTUNE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/${FTUNE_BUILD_DIR:-build}/ftune}
if [ -x "$bin" ]; then
  "$bin" inspect --model_dir="$dest" >/dev/null 2>&1 || {
    echo "fetch-model.sh: $bin inspect --model_dir=$dest cannot load the model" >&2
    exit 1
  }
  echo "fetch-model.sh: ftune loads $dest"
fi
(cd "$dest" && sha256sum config.json vocab.txt model.safetensors)
echo "fetch-model.sh: done: --model_dir=$dest"

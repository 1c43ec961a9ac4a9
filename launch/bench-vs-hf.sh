#!/usr/bin/env bash
# ftune beside Hugging Face Trainer (+ PEFT) on a CPU, in one call: the seed's recipe run by both on
# the same tokens (HF reads the HDF5 files ftune prep wrote), model, settings and threads, one
# process each, alternating, then a table of samples/s, eval accuracy and peak memory with the
# ratio ftune / HF. Not a test: speed goes in results/ and the README.
#
#   launch/bench-vs-hf.sh                      the embedded default (its encoder loads in HF as it is)
#                                              + a distilbert-base-uncased-shaped run on a subset
#   launch/bench-vs-hf.sh --only default --methods "lora head-cache" --seeds "42 43"
#
# Options:
#   --only default|base        one of the two setups                 default: both
#   --methods LIST             of full lora head head-cache          default "full lora head-cache head"
#   --seeds LIST               seeds (each method and tool)          default 42
#   --threads N                threads per process                   default 2
#   --batch N                  per-device batch                      default 32
#   --max-length N             tokens per review                     default 256
#   --base-train N / --base-eval N   the subset of the base-shaped run   default 128 / 128
#   --out FILE.md              the table (and FILE.json)             default results/bench-vs-hf-cpu.md
# HF runs with launch/hf-python.sh (the Debian testing root of tests/compat/testing-root.sh) unless
# python3 itself has torch + transformers + peft + h5py; PYTHON overrides. FTUNE_BIN: the binary.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
only="" methods="full lora head-cache head" seeds=42 threads=2 batch=32 max_length=256 base_train=128 base_eval=128
out=results/bench-vs-hf-cpu.md
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --max-length) max_length=$2; shift 2 ;;
    --base-train) base_train=$2; shift 2 ;;
    --base-eval) base_eval=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-vs-hf: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for m in $methods; do
  [[ "$m" =~ ^(full|lora|head|head-cache)$ ]] || { echo "bench-vs-hf: unknown method $m" >&2; exit 2; }
done
[[ -z "$only" || "$only" =~ ^(default|base)$ ]] || { echo "bench-vs-hf: --only default or base" >&2; exit 2; }
[[ "$out" == *.md ]] || { echo "bench-vs-hf: --out must end in .md" >&2; exit 2; }
FTUNE_BIN=${FTUNE_BIN:-$root/${FTUNE_BUILD_DIR:-build}/ftune}
[ -x "$FTUNE_BIN" ] || { echo "bench-vs-hf: $FTUNE_BIN not built (launch/build.sh)" >&2; exit 2; }
if [ -n "${PYTHON:-}" ]; then py=($PYTHON)
elif python3 -c 'import torch, transformers, peft, h5py' 2>/dev/null; then py=(python3)
else py=("$root/launch/hf-python.sh"); fi
"${py[@]}" -c 'import torch, transformers, peft, h5py' ||
  { echo "bench-vs-hf: no python with torch, transformers, peft, h5py (tests/compat/testing-root.sh makes one)" >&2; exit 2; }

work=${out%.md}-runs
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
start=$(date +%s)
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
echo "== ftune vs HF Trainer on $cpu: methods [$methods], seeds [$seeds], $threads threads, batch $batch, $max_length tokens -> $out"

setups=()
[ "$only" != base ] && setups+=(default)
[ "$only" != default ] && setups+=(base)
for s in "${setups[@]}"; do
  mkdir -p "$work/$s"
  if [ "$s" = default ]; then
    model=(--model_dir="$root/data-prep/imdb/encoder")
    hf_model=(--model_dir "$root/data-prep/imdb/encoder")
    vocab=data-prep/imdb/encoder/vocab.txt
    cp data-prep/imdb/train.csv "$work/$s/train.csv"
    cp data-prep/imdb/eval.csv "$work/$s/eval.csv"
  else
    # distilbert-base-uncased's architecture, random init (no weights can be downloaded here).
    printf '{"model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512, "num_labels": 2}\n' \
      >"$work/$s/config.json"
    model=(--model_config="$work/$s/config.json")
    hf_model=(--model_config "$work/$s/config.json")
    vocab=tests/fixtures/tokens/vocab.txt
    head -n $((base_train + 1)) data-prep/imdb/train.csv >"$work/$s/train.csv"
    { head -n 1 data-prep/imdb/eval.csv; tail -n +2 data-prep/imdb/eval.csv | head -n "$base_eval"; } >"$work/$s/eval.csv"
  fi
  for split in train eval; do
    "$FTUNE_BIN" prep --input="$work/$s/$split.csv" --output="$work/$s/$split.h5" --vocab="$vocab" \
      --max_length="$max_length" >/dev/null
  done
  for seed in $seeds; do
    for m in $methods; do
      name=$m-$seed
      d=$work/$s/ftune-$name
      flags=(--method="${m%-cache}")
      [ "$m" = head-cache ] && flags+=(--cache_frozen_features)
      echo "-- $s $name: ftune"
      "$FTUNE_BIN" train "${model[@]}" --train_data="$work/$s/train.h5" --eval_data="$work/$s/eval.h5" \
        --output_dir="$d" --epochs=1 --batch_size="$batch" --eval_batch_size="$batch" --threads="$threads" \
        --seed="$seed" --save_model=false --logging_steps=1000 "${flags[@]}" >"$work/$s/ftune-$name.log" 2>&1 ||
        { echo "bench-vs-hf: ftune $s $name failed:" >&2; tail -5 "$work/$s/ftune-$name.log" >&2; }
      [ "$m" = head-cache ] && continue  # HF has no feature cache: its head row is the anchor for both
      echo "-- $s $name: HF Trainer"
      "${py[@]}" launch/hf_trainer.py "${hf_model[@]}" --train "$work/$s/train.h5" --eval "$work/$s/eval.h5" \
        --method "$m" --batch "$batch" --threads "$threads" --seed "$seed" --out "$work/$s/hf-$name.json" \
        >"$work/$s/hf-$name.log" 2>&1 ||
        { echo "bench-vs-hf: HF $s $name failed:" >&2; tail -5 "$work/$s/hf-$name.log" >&2; }
    done
  done
done

python3 - "$work" "$out" "$cpu" "$threads" "$batch" "$max_length" "$(($(date +%s) - start))" "$FTUNE_BIN" <<'EOF'
import glob, json, os, statistics, sys
work, out, cpu, threads, batch, max_length, wall, binary = sys.argv[1:9]
rows, table = [], []
def fmt(x, p=1):
    return "" if x is None else ("%.*f" % (p, x))
for setup in ("default", "base"):
    d = os.path.join(work, setup)
    if not os.path.isdir(d):
        continue
    n_train = sum(1 for _ in open(os.path.join(d, "train.csv"))) - 1
    for r in sorted(glob.glob(os.path.join(d, "ftune-*", "results.json"))):
        name = os.path.basename(os.path.dirname(r))[len("ftune-"):]
        method, seed = name.rsplit("-", 1)
        j = json.load(open(r))
        ep = (j.get("epochs") or [{}])[-1]
        f = {"setup": setup, "method": method, "seed": int(seed), "tool": "ftune",
             "samples_per_second": j.get("samples_per_second"), "eval_accuracy": ep.get("eval_accuracy"),
             "peak_gib": (j.get("peak_memory_bytes") or 0) / 2**30, "train_seconds": j.get("train_seconds"),
             "trainable": j.get("trainable_parameters"), "torch": j.get("torch")}
        if j.get("feature_cache"):
            # over the whole epoch, the one-time encoding charged to it
            t = (j.get("train_seconds") or 0) + (j.get("feature_cache_seconds") or 0)
            f["samples_per_second"] = n_train / t if t > 0 else None
        rows.append(f)
    for h in sorted(glob.glob(os.path.join(d, "hf-*.json"))):
        j = json.load(open(h))
        rows.append({"setup": setup, "method": j["method"], "seed": j["seed"], "tool": "hf",
                     "samples_per_second": j["train_samples_per_second"], "eval_accuracy": j["eval_accuracy"],
                     "peak_gib": j["peak_rss_gib"], "train_seconds": j["train_wall_s"], "trainable": j["trainable"],
                     "torch": j["torch"], "transformers": j["transformers"]})
def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None
lines = []
for setup in ("default", "base"):
    for method in ("full", "lora", "head-cache", "head"):
        f = [r for r in rows if r["setup"] == setup and r["tool"] == "ftune" and r["method"] == method]
        hf_method = "head" if method == "head-cache" else method
        h = [r for r in rows if r["setup"] == setup and r["tool"] == "hf" and r["method"] == hf_method]
        if not f and not h:
            continue
        fs, hs = mean([r["samples_per_second"] for r in f]), mean([r["samples_per_second"] for r in h])
        fa, ha = mean([r["eval_accuracy"] for r in f]), mean([r["eval_accuracy"] for r in h])
        fm, hm = mean([r["peak_gib"] for r in f]), mean([r["peak_gib"] for r in h])
        ratio = "**%.1fx**" % (fs / hs) if fs and hs else ""
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            setup, method + (" (feature cache)" if method == "head-cache" else ""),
            "{:,}".format(f[0]["trainable"]) if f and f[0]["trainable"] else "", len(f) or len(h),
            fmt(fs, 1), fmt(hs, 1), ratio, fmt(fa, 3), fmt(ha, 3), fmt(fm, 2), fmt(hm, 2)))
versions = [r for r in rows if r["tool"] == "hf"]
hdr = ("# ftune vs Hugging Face Trainer on a CPU\n\n%s; %s threads per process, batch %s, %s tokens, one epoch, "
       "Trainer's defaults (AdamW 5e-5, linear decay, dynamic padding) on both sides; ftune %s (LibTorch %s), "
       "HF transformers %s on torch %s; `launch/bench-vs-hf.sh` (%s s). Same tokens (HF reads ftune's HDF5). "
       "samples/s: the training alone (HF: Trainer's train_samples_per_second; ftune: results.json), "
       "head with the feature cache over the whole epoch including its one-time encoding; peak memory: the "
       "process's peak RSS. `default`: the embedded default (data-prep/imdb: 2,000/500 reviews, ftune's "
       "pretrained 4.8 M-parameter encoder, loaded by HF's from_pretrained as it is); `base`: the "
       "distilbert-base-uncased shape (random init) on the first reviews of the same data.\n\n") % (
    cpu, threads, batch, max_length, os.path.basename(binary), rows[0]["torch"] if rows else "?",
    versions[0]["transformers"] if versions else "?", versions[0]["torch"] if versions else "?", wall)
body = ("| setup | method | trainable | runs | ftune samples/s | HF samples/s | ftune / HF | ftune eval acc. | "
        "HF eval acc. | ftune peak GiB | HF peak GiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(lines) + "\n")
open(out, "w").write(hdr + body)
json.dump(rows, open(out[:-3] + ".json", "w"), indent=1)
print(hdr + body)
EOF

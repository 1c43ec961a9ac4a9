#!/usr/bin/env bash
# CPU speed against a plain PyTorch loop on the same LibTorch (a benchmark, not a test): `ftune
# train --method=full` and launch/torch_loop.py (Debian's python3-torch + python3-h5py) on the same
# prepped reviews, model shape, batch and threads, alternating, each run's samples/s over its
# training alone; writes a markdown table with the ratio per pair and of the means.
#
#   launch/bench-vs-torch.sh                 # both shapes below, into results/bench-cpu-vs-torch.md
#                                            # (launch/bench.sh runs it on a CPU: results/bench-cpu.md)
#   launch/bench-vs-torch.sh --shapes tiny --repeats 5
#
# Shapes (dropouts 0, 256 tokens, the 2,000 reviews of data-prep/imdb/train.csv):
#   tiny   configs/tiny.json (dim 64, 2 layers), batch 16, one epoch (125 steps), --repeats pairs
#   base   the distilbert-base shape (dim 768, 6 layers), batch 8, the 20 longest batches,
#          --base-repeats pairs
# Options: --shapes "tiny base", --repeats N (3), --base-repeats N (2), --threads N (2), --out FILE.md
# Environment: FTUNE_BIN (build/ftune), PYTHON (/usr/bin/python3: the one with Debian's torch).
set -euo pipefail
cd "$(dirname "$0")/.."
shapes="tiny base" repeats=3 base_repeats=2 threads=2 out=results/bench-cpu-vs-torch.md
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --base-repeats) base_repeats=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-vs-torch: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
ftune=${FTUNE_BIN:-build/ftune} py=${PYTHON:-/usr/bin/python3}
"$py" -c 'import torch, h5py' 2>/dev/null ||
  { echo "bench-vs-torch: $py lacks torch or h5py (apt-get install python3-torch python3-h5py)" >&2; exit 2; }
work=$(mktemp -d /tmp/ftune-vs-torch.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$ftune" prep --input=data-prep/imdb/train.csv --output="$work/train.h5" --vocab=tests/fixtures/tokens/vocab.txt \
  --max_length=256 >/dev/null
config() {  # config SHAPE -> a model config with dropouts 0
  "$py" - "$1" "$work/$1.json" <<'EOF'
import json, sys
c = json.load(open("configs/tiny.json"))
if sys.argv[1] == "base":
    c.update(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
c.update(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
json.dump(c, open(sys.argv[2], "w"))
EOF
}
{
  echo "# ftune vs a plain PyTorch loop, CPU"
  echo
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads; LibTorch" \
       "$("$py" -c 'import torch; print(torch.__version__)') for both; full fine-tuning, fp32, dropouts 0, 256 tokens;" \
       "$(date -u +%Y-%m-%d). samples/s over the training loop alone (no evaluation). Runs alternate."
  echo
  echo "| shape | pair | ftune samples/s | PyTorch loop samples/s | ratio |"
  echo "|---|---:|---:|---:|---:|"
} >"$out.tmp"
for shape in $shapes; do
  config "$shape"
  if [ "$shape" = base ]; then n=$base_repeats f=(--batch_size=8 --max_steps=20 --group_by_length) t=(--batch 8 --max-steps 20 --longest)
  else n=$repeats f=(--batch_size=16 --epochs=1) t=(--batch 16); fi
  sf=0 st=0
  for i in $(seq "$n"); do
    "$ftune" train --model_config="$work/$shape.json" --train_data="$work/train.h5" --method=full --threads="$threads" \
      --learning_rate=5e-5 --save_model=false --output_dir="$work/run" --overwrite "${f[@]}" >"$work/log" 2>&1 ||
      { tail -5 "$work/log"; exit 1; }
    a=$(sed -n 's/.*"samples_per_second": *\([0-9.]*\).*/\1/p' "$work/run/results.json" | tail -1)
    b=$("$py" launch/torch_loop.py --data "$work/train.h5" --config "$work/$shape.json" --threads "$threads" "${t[@]}" |
        sed -n 's/.*"samples_per_second": \([0-9.]*\).*/\1/p')
    r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }')
    printf '| %s | %d | %.1f | %.1f | %s |\n' "$shape" "$i" "$a" "$b" "$r" | tee -a "$out.tmp"
    sf=$(awk -v s="$sf" -v a="$a" 'BEGIN { print s + a }'); st=$(awk -v s="$st" -v b="$b" 'BEGIN { print s + b }')
  done
  awk -v s="$shape" -v a="$sf" -v b="$st" -v n="$n" \
    'BEGIN { printf "| %s | mean | %.1f | %.1f | **%.2fx** |\n", s, a / n, b / n, a / b }' | tee -a "$out.tmp"
done
mv "$out.tmp" "$out"
echo "bench-vs-torch: wrote $out"

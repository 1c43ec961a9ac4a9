#!/usr/bin/env bash
# Training-speed benchmark (not a test): full, LoRA and head on the real IMDB subset (2,000 train /
# 500 eval reviews), the distilbert-base-uncased architecture (random init, as the HF anchor), batch 8,
# one epoch, length-grouped batches with dynamic padding, for each precision. For every run it
# records samples/s, tokens/s, padding, peak memory, eval accuracy and approximate model TFLOP/s;
# then a short second run with --time_phases gives the step-time breakdown (data, forward,
# backward, comm, optimizer). With PyTorch + transformers present (the GPU machine) it also runs
# the Hugging Face Trainer anchor (../shared/reference/generate/hfbench.py) on the same device in
# the same call, so the speed-up is a ratio measured in one run.
#
#   launch/bench.sh                          # everything, on the default device (CUDA if present)
#   launch/bench.sh --methods "lora" --precisions bf16 --max-steps 50
#
# Options:
#   --data DIR          IMDB CSVs (train.csv, eval.csv)       default ../shared/data/imdb
#   --vocab FILE        vocab.txt                              default tests/fixtures/tokens/vocab.txt
#   --methods LIST      of full lora head head-cache           default "full lora head head-cache"
#   --precisions LIST   of fp32 bf16                           default "bf16 fp32" on CUDA, "fp32" on CPU
#   --batch N           per-device batch                       default 8
#   --max-steps N       cap each timed run (default: one epoch, 250 steps)
#   --phase-steps N     steps of the --time_phases run         default 60 (0 = skip)
#   --hf / --no-hf      run the HF Trainer anchor              default: when python3 has torch+transformers+peft
#   --hfbench FILE      the anchor script                      default ../shared/reference/generate/hfbench.py
#   --out FILE          markdown report                        default results/bench-<device>.md
#                       (the runs themselves go to <FILE without .md>-runs/)
#   -- ...              extra flags for every `ftune train` (e.g. -- --model_config=configs/tiny.json)
# Environment: FTUNE_BIN (default build/ftune), FTUNE_BUILD_DIR.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

data=$root/../shared/data/imdb vocab=tests/fixtures/tokens/vocab.txt methods="full lora head head-cache"
precisions="" batch=8 max_steps="" phase_steps=60 hf=auto out="" extra=()
hfbench=$root/../shared/reference/generate/hfbench.py
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --max-steps) max_steps=$2; shift 2 ;;
    --phase-steps) phase_steps=$2; shift 2 ;;
    --hf) hf=1; shift ;;
    --no-hf) hf=0; shift ;;
    --hfbench) hfbench=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra+=("$@"); break ;;
    *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for f in "$data/train.csv" "$data/eval.csv" "$vocab"; do
  [ -f "$f" ] || { echo "bench: $f not found (--data DIR with train.csv and eval.csv; --vocab FILE)" >&2; exit 2; }
done
FTUNE_BIN=${FTUNE_BIN:-$root/${FTUNE_BUILD_DIR:-build}/ftune}
[ -x "$FTUNE_BIN" ] || { echo "bench: $FTUNE_BIN not built (launch/build.sh or launch/build-gpu.sh; or set FTUNE_BIN)" >&2; exit 2; }

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  device_tag=$(echo "$gpu" | tr 'A-Z' 'a-z' | sed 's/nvidia //; s/[^a-z0-9]\+/-/g; s/-$//')
  : "${precisions:=bf16 fp32}"
else
  gpu="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
  device_tag=cpu
  : "${precisions:=fp32}"
fi
out=${out:-results/bench-$device_tag.md}
work=${out%.md}-runs   # every run's results.json/metrics.jsonl stay here (git-ignored under results/)
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"

echo "== bench on $gpu: methods [$methods], precisions [$precisions], batch $batch -> $out"
for split in train eval; do
  "$FTUNE_BIN" prep --input="$data/$split.csv" --output="$work/$split.h5" --vocab="$vocab" --max_length=512 >/dev/null
done

common=(--train_data="$work/train.h5" --eval_data="$work/eval.h5" --epochs=1 --batch_size="$batch"
        --eval_batch_size="$batch" --group_by_length --save_model=false --logging_steps=1000 --seed=42)
[ -n "$max_steps" ] && common+=(--max_steps="$max_steps")
for m in $methods; do
  method=${m%-cache}
  flags=(--method="$method")
  [ "$m" = head-cache ] && flags+=(--cache_frozen_features)
  for p in $precisions; do
    run=$work/$m-$p
    echo "-- $m $p"
    "$FTUNE_BIN" train "${common[@]}" "${flags[@]}" --precision="$p" --output_dir="$run" "${extra[@]}" \
      2>&1 | grep -E "epoch 1/|done:|error" || true
    [ -f "$run/results.json" ] || { echo "bench: $m $p failed (see above)" >&2; continue; }
    if [ "$phase_steps" -gt 0 ]; then
      "$FTUNE_BIN" train "${common[@]}" "${flags[@]}" --precision="$p" --output_dir="$run-phases" \
        --max_steps="$phase_steps" --time_phases --eval_data= "${extra[@]}" >/dev/null 2>&1 || true
    fi
  done
done

hf_json=""
if [ "$hf" != 0 ] && python3 -c 'import torch, transformers, peft' 2>/dev/null; then
  if [ -f "$hfbench" ]; then
    echo "-- Hugging Face Trainer anchor (hfbench.py) on the same device"
    hf_json=$work/hf.json
    PYTHONUNBUFFERED=1 python3 "$hfbench" "$hf_json" "$vocab" "$data/train.csv" "$data/eval.csv" \
      full_dyn full_dyn_bf16 lora_dyn lora_dyn_bf16 head_dyn head_dyn_bf16 2>&1 | cut -c1-200 || true
  else
    echo "bench: $hfbench not found: no HF anchor" >&2
  fi
elif [ "$hf" = 1 ]; then
  echo "bench: --hf needs python3 with torch, transformers and peft" >&2
fi

python3 - "$work" "$out" "$gpu" "$batch" "$hf_json" "$methods" "$precisions" <<'PY'
import json, os, sys, datetime
work, out, gpu, batch, hf_json, methods, precisions = sys.argv[1:8]
def tflops(method, r):
    """Approximate model FLOP/s: 2 per multiply-add over the tokens the device computed (padding
    included). full: forward + input and weight gradients (3x forward); lora: forward + input
    gradients only (2x, frozen weights get no gradient); head: encoder forward only (1x)."""
    cfg = r.get("model", {"dim": 768, "n_layers": 6, "hidden_dim": 3072})
    L, d, ff = cfg["n_layers"], cfg["dim"], cfg["hidden_dim"]
    matmul_params = L * (4 * d * d + 2 * d * ff)  # per block: q, k, v, out, lin1, lin2
    tokens = r["tokens_per_second"] * r["train_seconds"]
    pad = r.get("padding_fraction", 0.0)
    padded = tokens / max(1e-9, 1.0 - pad)
    samples = r["samples_per_second"] * r["train_seconds"]
    seq = padded / max(1.0, samples)
    per_token_fwd = 2 * matmul_params + L * 4 * seq * d
    mult = {"full": 3, "lora": 2, "head": 1}[method]
    if r.get("feature_cache"):
        return None  # the encoder ran once, before training: not a per-step number
    return mult * per_token_fwd * padded / r["train_seconds"] / 1e12
hf = {}
if hf_json and os.path.exists(hf_json):
    for k, v in json.load(open(hf_json)).get("runs", {}).items():
        if "train_metrics" in v:
            hf[k] = v
rows = []
for m in methods.split():
    method = m.replace("-cache", "")
    for p in precisions.split():
        f = os.path.join(work, f"{m}-{p}", "results.json")
        if not os.path.exists(f):
            rows.append(f"| {m} | {p} | failed | | | | | | | |")
            continue
        r = json.load(open(f))
        ph = os.path.join(work, f"{m}-{p}-phases", "results.json")
        br = ""
        if os.path.exists(ph):
            s = json.load(open(ph)).get("step_seconds")
            if s:
                br = " / ".join(f"{1e3 * s[k]:.2f}" for k in ("data", "forward", "backward", "comm", "optimizer"))
        ev = r["epochs"][-1].get("eval_accuracy") if r.get("epochs") else None
        tf = tflops(method, r)
        key = f"{method}_dyn" + ("_bf16" if p == "bf16" else "")
        hf_sps = hf.get(key, {}).get("train_metrics", {}).get("train_samples_per_second")
        sps = r["samples_per_second"]
        cache = r.get("feature_cache_seconds", 0.0)
        if cache and r["steps"] * int(batch) >= 2000:
            # A whole epoch: charge the one-time encoding to it, as a user waits for it end to end.
            samples = sps * r["train_seconds"]
            sps = samples / (r["train_seconds"] + cache)
        ratio = f"{sps / hf_sps:.1f}x" if hf_sps else ""
        fmt = lambda x: f"{x:.0f}" if x >= 100 else f"{x:.1f}"
        sps_cell = fmt(sps)
        if cache:
            sps_cell += f" (training alone {fmt(r['samples_per_second'])}; encoding once {cache:.1f} s)"
        rows.append(
            f"| {m} | {p} | {sps_cell} | {'' if cache else format(r['tokens_per_second'], '.0f')} | "
            f"{100 * r.get('padding_fraction', 0):.1f}% | {r['peak_memory_bytes'] / 2**30:.2f} {r.get('peak_memory_kind','')} | "
            f"{'' if tf is None else f'{tf:.1f}'} | {'' if ev is None else f'{ev:.3f}'} | {br} | "
            f"{'' if hf_sps is None else f'{hf_sps:.0f}'} | {ratio} |")
first = None
for m in methods.split():
    for p in precisions.split():
        f = os.path.join(work, f"{m}-{p}", "results.json")
        if os.path.exists(f):
            first = json.load(open(f)); break
    if first: break
lines = [
    f"# ftune training speed: {gpu}",
    "",
    f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; LibTorch {first.get('torch','?') if first else '?'}; "
    f"distilbert-base-uncased architecture (random init), IMDB subset 2,000 train / 500 eval, batch {batch}, "
    "one epoch, length-grouped batches with dynamic padding, lr 5e-5, clip 1.0, AdamW"
    f"{' (fused kernel)' if first and first.get('fused_adamw') else ''}.",
    "samples/s and tokens/s are over the whole epoch's training (evaluation excluded), first steps included.",
    "",
    "| method | precision | samples/s | tokens/s | padding | peak memory GiB | model TFLOP/s (approx) | eval acc | step ms: data / fwd / bwd / comm / opt | HF Trainer samples/s (same device) | ftune / HF |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
] + rows + [
    "",
    "- Step breakdown: a separate short run with `--time_phases` (the device is synchronised at each phase boundary, so the phases add up to more than an unsynchronised step).",
    "- head-cache: over a whole epoch, samples/s charges the one-time encoding of the 2,500 reviews to it (in brackets: the training alone, and the encoding); with more epochs the encoding is amortised.",
    "- TFLOP/s counts 2 FLOPs per multiply-add of the encoder's matmuls and attention over padded tokens: full = 3x forward, LoRA = 2x, head = 1x (the feature-cache run has no per-step encoder work).",
    "- HF columns: `hfbench.py` (Trainer + PEFT, dynamic padding, group_by_length) run in the same call; accuracy after one epoch from random init is near chance for all methods.",
]
open(out, "w").write("\n".join(lines) + "\n")
json.dump({"gpu": gpu, "rows": rows, "hf": hf}, open(out.replace(".md", ".json"), "w"), indent=1)
print("\n".join(lines))
PY

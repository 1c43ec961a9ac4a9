#!/usr/bin/env bash
# Remakes the embedded default's pretrained encoder (models/imdb-mlm-*): a small DistilBERT pretrained
# by ftune itself with masked-language modelling (`ftune train --objective=mlm`, HF's run_mlm.py
# recipe) on the Large Movie Review Dataset's text, none of the default evaluation reviews among it.
#
#   launch/pretrain-encoder.sh --out models/imdb-mlm-128x4               # corpus, prep, pretrain, export
#   launch/pretrain-encoder.sh --out DIR --epochs 18 --device cuda       # how data-prep/imdb/encoder was made
#
# Stages (each skipped where its output exists in --work):
#   corpus    aclImdb unsup + train (--aclimdb: the gzip'd CSVs of cluster/fetch-imdb.sh) minus every
#             review whose whitespace-normalised text is in --exclude (default: the default eval set);
#             every 75th review held out for perplexity; corpus.json: counts and sha256 of both files
#   prep      ftune prep, unlabeled (--label_column=), --max-length tokens
#   pretrain  ftune train --objective=mlm for --epochs, linear decay to 0
#   export    the model with its weights in fp16 (--dtype), config.json, vocab.txt, provenance.json
#             (corpus, config, flags, steps, time, eval perplexity, the machine)
# Options:
#   --out DIR           where the model goes (required)
#   --config FILE       model shape (default configs/imdb-mlm.json)
#   --work DIR          corpus, datasets and the run (default <out>.work)
#   --aclimdb DIR       default ../shared/data/aclImdb
#   --exclude CSV       reviews that must not be pretrained on (default data-prep/imdb/eval.csv)
#   --vocab FILE        default tests/fixtures/tokens/vocab.txt (bert-base-uncased)
#   --max-length N      default 256
#   --epochs N          default 10
#   --device D --precision P      default auto, and bf16 on CUDA / fp32 on CPU
#   --dtype fp16|fp32   the exported weights (default fp16: half the size; ftune loads either)
#   --stop-after STAGE  corpus or prep (e.g. to check a corpus against a model's provenance.json)
#   -- ...              extra flags for `ftune train` (e.g. -- --learning_rate=5e-4)
# Environment: FTUNE_BIN (default build/ftune), FTUNE_MPIRUN (e.g. "mpirun -np 4": ranks for pretrain).
set -euo pipefail
cd "$(dirname "$0")/.."
out="" config=configs/imdb-mlm.json work="" aclimdb=../shared/data/aclImdb exclude=data-prep/imdb/eval.csv
vocab=tests/fixtures/tokens/vocab.txt max_length=256 epochs=10 device=auto precision="" dtype=fp16
stop_after=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --aclimdb) aclimdb=$2; shift 2 ;;
    --exclude) exclude=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --max-length) max_length=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --stop-after) stop_after=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra+=("$@"); break ;;
    *) echo "pretrain-encoder: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "pretrain-encoder: --out DIR is required (see --help)" >&2; exit 2; }
case "$dtype" in fp16|fp32) ;; *) echo "pretrain-encoder: --dtype is fp16 or fp32, not $dtype" >&2; exit 2 ;; esac
: "${work:=$out.work}"
ftune=${FTUNE_BIN:-build/ftune}
[ -x "$ftune" ] || { echo "pretrain-encoder: no $ftune (launch/build.sh, or set FTUNE_BIN)" >&2; exit 2; }
read -r -a mpirun <<<"${FTUNE_MPIRUN:-}"
mkdir -p "$work"
say() { echo "pretrain-encoder: $*"; }
start=$(date +%s)

# corpus -----------------------------------------------------------------------------------------
if [ ! -s "$work/pt_train.h5" ] && [ ! -s "$work/corpus.json" ]; then
  for f in unsup train; do
    [ -s "$aclimdb/$f.csv.gz" ] || { say "no $aclimdb/$f.csv.gz (cluster/fetch-imdb.sh makes it)"; exit 1; }
  done
  python3 - "$aclimdb" "$exclude" "$work" <<'EOF'
import csv, gzip, hashlib, json, re, sys
src, exclude, work = sys.argv[1:4]
norm = lambda t: re.sub(r"\s+", " ", t).strip()
csv.field_size_limit(1 << 30)
with open(exclude, newline="", encoding="utf-8") as f:
    banned = {norm(r["review"]) for r in csv.DictReader(f)}
texts, dropped = [], 0
for name in ("unsup", "train"):
    with gzip.open(f"{src}/{name}.csv.gz", "rt", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if norm(r["review"]) in banned:
                dropped += 1
            else:
                texts.append(r["review"])
# Every 75th review held out (999 of 74,894), the rest in the files' order (ftune shuffles each epoch).
parts = {"train": [t for i, t in enumerate(texts) if i % 75], "eval": texts[::75]}
info = {"source": "aclImdb unsup.csv.gz + train.csv.gz, text only", "left_out": dropped, "left_out_because":
        f"whitespace-normalised text equal to a review of {exclude}"}
for name, part in parts.items():
    with open(f"{work}/{name}.csv.tmp", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["review"])
        w.writerows([t] for t in part)
    info[name] = {"reviews": len(part), "sha256": hashlib.sha256(open(f"{work}/{name}.csv.tmp", "rb").read()).hexdigest()}
json.dump(info, open(f"{work}/corpus.json", "w"), indent=1)
print(f"pretrain-encoder: corpus: {len(parts['train'])} reviews to pretrain on, {len(parts['eval'])} held out, "
      f"{dropped} left out (in {exclude})")
EOF
  mv "$work/train.csv.tmp" "$work/train.csv"
  mv "$work/eval.csv.tmp" "$work/eval.csv"
fi

[ "$stop_after" != corpus ] || exit 0

# prep -------------------------------------------------------------------------------------------
for s in train eval; do
  [ -s "$work/pt_$s.h5" ] && continue
  "$ftune" prep --input="$work/$s.csv" --label_column= --vocab="$vocab" --max_length="$max_length" \
    --output="$work/pt_$s.h5" | tail -1
done

[ "$stop_after" != prep ] || exit 0

# pretrain ---------------------------------------------------------------------------------------
[ -n "$precision" ] || { precision=fp32; [ "$device" = cuda ] && precision=bf16; }
flags=(--objective=mlm --model_config="$config" --vocab="$vocab" --train_data="$work/pt_train.h5"
       --batch_size=128 --eval_batch_size=128 --learning_rate=1e-3 --weight_decay=0.01 --warmup_ratio=0.05
       --group_by_length --logging_steps=100 --seed=42 --device="$device" --precision="$precision" "${extra[@]}")
rm -rf "$work/run"
"${mpirun[@]}" "$ftune" train "${flags[@]}" --epochs="$epochs" --eval_data="$work/pt_eval.h5" \
  --output_dir="$work/run" 2>&1 | tee "$work/pretrain.log" | grep -E '^(ftune|training|epoch|done)' || true
[ -s "$work/run/results.json" ] || { say "pretraining failed (see $work/pretrain.log)"; exit 1; }

# export -----------------------------------------------------------------------------------------
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
cp "$work/run/model/config.json" "$out.tmp/config.json"
cp "$vocab" "$out.tmp/vocab.txt"
python3 - "$work/run/model/model.safetensors" "$out.tmp/model.safetensors" "$dtype" <<'EOF'
# F32 -> F16 (or a copy) in plain Python: safetensors is an 8-byte header size, a JSON header, the bytes.
import json, shutil, struct, sys
src, dst, dtype = sys.argv[1:4]
if dtype == "fp32":
    shutil.copyfile(src, dst)
    sys.exit()
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header, data = json.loads(f.read(n)), f.read()
meta, out, blobs, at = header.pop("__metadata__", None), {}, [], 0
for name in sorted(header):
    t = header[name]
    raw = data[t["data_offsets"][0]:t["data_offsets"][1]]
    if t["dtype"] == "F32":
        raw = struct.pack("<%de" % (len(raw) // 4), *struct.unpack("<%df" % (len(raw) // 4), raw))
    out[name] = {"dtype": "F16" if t["dtype"] == "F32" else t["dtype"], "shape": t["shape"],
                 "data_offsets": [at, at + len(raw)]}
    blobs.append(raw)
    at += len(raw)
if meta is not None:
    out["__metadata__"] = meta
h = json.dumps(out, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
python3 - "$work" "$out.tmp" "$config" "$(($(date +%s) - start))" "$aclimdb" "$exclude" "${flags[*]} --epochs=$epochs" <<'EOF'
import json, os, platform, sys
work, out, config, secs, src, exclude, flags = sys.argv[1:8]
r = json.load(open(f"{work}/run/results.json"))
corpus = json.load(open(f"{work}/corpus.json")) if os.path.exists(f"{work}/corpus.json") else None
keep = {k: r[k] for k in ("steps", "epochs", "train_seconds", "samples_per_second", "device", "torch",
                          "eval_loss", "eval_perplexity", "train_loss") if k in r}
json.dump({"made_by": "launch/pretrain-encoder.sh", "objective": "mlm (ftune train --objective=mlm)",
           "corpus": corpus or f"{src}: unsup.csv.gz + train.csv.gz (text only), minus the reviews in {exclude}",
           "config": json.load(open(config)), "flags": flags, "wall_seconds": int(secs),
           "machine": platform.node(), "result": keep}, open(f"{out}/provenance.json", "w"), indent=1)
EOF
rm -rf "$out" && mv "$out.tmp" "$out"
say "$out: $(du -sh "$out" | cut -f1) after $(($(date +%s) - start)) s"

# The synthetic task of tests/cli/train_cli_test.cc, made with shell tools for the script tests.
# Source it, then:  make_synthetic_task DIR FTUNE_BIN
# writes DIR/vocab.txt (64 tokens), DIR/train.h5 (256 examples), DIR/eval.h5 (96 examples) and
# DIR/tiny.json (2 layers, dim 32, dropouts 0: deterministic whatever the rank count). Label 1 iff
# token 7 occurs; lengths vary. A small model learns it to 100% eval accuracy in a few hundred steps.

# synthetic_jsonl N SEED: N lines {"ids": [...], "label": 0|1}.
synthetic_jsonl() {
  awk -v n="$1" -v seed="$2" 'BEGIN {
    srand(seed)
    for (i = 0; i < n; i++) {
      len = 4 + int(rand() * 20); label = int(rand() * 2); pos = int(rand() * len)
      s = "[1"
      for (k = 0; k < len; k++) { t = 10 + int(rand() * 40); if (label && k == pos) t = 7; s = s "," t }
      printf "{\"ids\": %s, 2], \"label\": %d}\n", s, label
    }
  }'
}

make_synthetic_task() {
  local dir=$1 bin=$2 i
  mkdir -p "$dir"
  { printf '[PAD]\n[CLS]\n[SEP]\n[UNK]\n[MASK]\n'; for ((i = 5; i < 64; i++)); do echo "tok$i"; done; } >"$dir/vocab.txt"
  synthetic_jsonl 256 1 >"$dir/train.jsonl"
  synthetic_jsonl 96 2 >"$dir/eval.jsonl"
  for split in train eval; do
    "$bin" prep --input_format=jsonl --input="$dir/$split.jsonl" --output="$dir/$split.h5" \
      --vocab="$dir/vocab.txt" --max_length=64 >"$dir/prep-$split.log" 2>&1 ||
      { cat "$dir/prep-$split.log"; return 1; }
  done
  cat >"$dir/tiny.json" <<'JSON'
{"vocab_size": 64, "max_position_embeddings": 128, "dim": 32, "n_layers": 2, "n_heads": 2,
 "hidden_dim": 64, "dropout": 0.0, "attention_dropout": 0.0, "seq_classif_dropout": 0.0}
JSON
}

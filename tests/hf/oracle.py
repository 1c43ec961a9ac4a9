#!/usr/bin/env python3
"""Hugging Face's own code as ftune's live test oracle (label `hf`; tests/hf/README.md).

Each subcommand makes a reference with transformers / PEFT / safetensors / tokenizers at test time,
or opens what ftune wrote with them, and prints one JSON object on stdout. The C++ tests
(tests/hf/hf_live_test.cc) call it and judge the numbers; this script never decides pass or fail,
except that any exception is exit 1 with the traceback on stderr.

  oracle.py probe                                  versions (exit 3 when a library is missing)
  oracle.py cls OUT --shape NAME [--seed N]        a tiny random DistilBertForSequenceClassification,
                                                   saved by save_pretrained, + io.safetensors/io.json:
                                                   inputs with padding, eval logits (fp32, fp64),
                                                   gradients, 3 AdamW steps as HF Trainer does them
  oracle.py logits MODEL_DIR IO [--adapter DIR]    from_pretrained(MODEL_DIR) (and PeftModel on it)
                                                   on IO's input_ids/attention_mask: max |logits -
                                                   IO's ftune_logits|
  oracle.py resave FILE OUT [FILE OUT...]          safetensors' safe_open of files ftune wrote:
                                                   every tensor re-saved by safetensors into OUT,
                                                   the header's metadata printed
  oracle.py peft-count MODEL_DIR ADAPTER           PEFT's trainable count of the adapter's config
  oracle.py tokenize TOKENIZER_DIR CSV COLUMN H5   tokenizers' Tokenizer.from_file(DIR/tokenizer.json)
                                                   (else BertTokenizerFast of DIR/vocab.txt) on every
                                                   row of CSV (.gz ok) against the ids in the
                                                   HDF5 file ftune prep wrote: rows that differ
"""
import argparse
import copy
import json
import os
import sys

SHAPES = {
    # name: (DistilBertConfig overrides, batch rows' real lengths, sequence length)
    "base": (dict(vocab_size=1000, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=2), (12, 9, 5), 12),
    # head dim 7 (odd, not a multiple of 8), three labels, a row of one token
    "odd-head-dim": (dict(vocab_size=517, dim=21, n_layers=3, n_heads=3, hidden_dim=40, num_labels=3), (1, 11, 16, 7), 16),
    # one wide layer, two heads of 24, five labels, no padding in one row and heavy in another
    "wide-one-layer": (dict(vocab_size=3001, dim=48, n_layers=1, n_heads=2, hidden_dim=96, num_labels=5), (20, 3), 20),
}


def emit(obj):
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")


def probe(_):
    missing, versions = [], {}
    for name in ("torch", "transformers", "safetensors", "tokenizers", "peft", "h5py"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            missing.append("%s (%s)" % (name, e))
    emit({"versions": versions, "missing": missing})
    return 3 if missing else 0


def tiny_config(shape):
    from transformers import DistilBertConfig
    over, _, _ = SHAPES[shape]
    c = dict(max_position_embeddings=64, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0,
             pad_token_id=0, activation="gelu")
    c.update(over)
    cfg = DistilBertConfig(**c)
    cfg._attn_implementation = "eager"
    return cfg


def make_batch(g, shape):
    import torch
    over, lens, t = SHAPES[shape]
    vocab, labels_n = over["vocab_size"], over["num_labels"]
    b = len(lens)
    ids = torch.randint(1, vocab, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
        ids[i, n:] = 0
    labels = torch.randint(0, labels_n, (b,), generator=g)
    return ids, mask, labels


def cls(a):
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertForSequenceClassification
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    model = DistilBertForSequenceClassification(tiny_config(a.shape))
    # HF's init (std 0.02) makes every output nearly constant; noise makes the comparison sensitive.
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    model.eval()
    model.save_pretrained(a.out)
    ids, mask, labels = make_batch(g, a.shape)
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, labels=labels)
        t["logits"] = o.logits.contiguous()
        t["logits_fp64"] = copy.deepcopy(model).double()(input_ids=ids, attention_mask=mask).logits.contiguous()
    scalars = {"loss_eval": float(o.loss), "shape": a.shape, "seed": a.seed}
    model.train()  # every dropout is 0: deterministic
    model.zero_grad()
    o = model(input_ids=ids, attention_mask=mask, labels=labels)
    o.loss.backward()
    scalars["loss_train"] = float(o.loss.detach())
    for n, p in model.named_parameters():
        t["grad." + n] = p.grad.detach().clone().contiguous()
    # Three steps as HF Trainer does them by default: AdamW (betas .9/.999, eps 1e-8, wd 0), linear
    # decay without warmup over 4 steps, clip at 1.0; order backward, clip, step, schedule.
    m = copy.deepcopy(model)
    m.zero_grad()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (4.0 - s) / 4.0))
    losses, norms, lrs = [], [], []
    for step in range(3):
        bi, bm, bl = make_batch(g, a.shape)
        t["step%d.input_ids" % step], t["step%d.attention_mask" % step], t["step%d.labels" % step] = bi, bm, bl
        loss = m(input_ids=bi, attention_mask=bm, labels=bl).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss))
    for n, p in m.named_parameters():
        t["after3." + n] = p.detach().clone().contiguous()
    scalars.update({"step_losses": losses, "step_grad_norms_before_clip": norms, "step_lrs": lrs})
    save_file(t, os.path.join(a.out, "io.safetensors"))
    with open(os.path.join(a.out, "io.json"), "w") as f:
        json.dump(scalars, f, indent=1)
    emit({"out": a.out, "parameters": sum(p.numel() for p in model.parameters())})
    return 0


def logits(a):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification
    io = load_file(a.io)
    model = AutoModelForSequenceClassification.from_pretrained(a.model_dir, attn_implementation="eager")
    what = type(model).__name__
    if a.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, a.adapter)
        what = "PeftModel(%s, %s)" % (what, type(model.base_model).__name__)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=io["input_ids"].long(), attention_mask=io["attention_mask"].long()).logits
    ref = io["ftune_logits"].to(out.dtype)
    emit({"model": what, "shape": list(out.shape), "ftune_shape": list(ref.shape),
          "max_abs_diff": float((out - ref).abs().max()) if out.shape == ref.shape else None,
          "max_abs_logit": float(out.abs().max())})
    return 0


def resave(a):
    from safetensors import safe_open
    from safetensors.torch import save_file
    if len(a.files) % 2:
        raise SystemExit("resave takes FILE OUT pairs")
    done = []
    for file, out in zip(a.files[0::2], a.files[1::2]):
        tensors = {}
        with safe_open(file, framework="pt") as f:
            meta = f.metadata()
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        save_file(tensors, out)
        done.append({"file": file, "tensors": len(tensors), "metadata": meta or {}})
    emit({"files": done})
    return 0


def peft_count(a):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(a.model_dir)
    model = PeftModel.from_pretrained(model, a.adapter, is_trainable=True)
    trainable, total = model.get_nb_trainable_parameters()
    emit({"trainable": trainable, "total": total})
    return 0


def read_csv_column(path, column):
    import csv
    import gzip
    csv.field_size_limit(1 << 30)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.DictReader(f)]


def tokenize(a):
    import h5py
    import numpy as np
    texts = read_csv_column(a.csv, a.column)
    with h5py.File(a.h5, "r") as f:
        ids = f["input_ids"][:].astype(np.int64)
        offsets = f["offsets"][:]
        max_length = int(f.attrs.get("max_length", 0))
    if os.path.exists(os.path.join(a.tokenizer_dir, "tokenizer.json")):
        # HF's fast-tokenizer file through the tokenizers library itself.
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(a.tokenizer_dir, "tokenizer.json"))
        if max_length > 0:
            tok.enable_truncation(max_length)
        enc = [e.ids for e in tok.encode_batch(texts)]
    else:
        # vocab.txt: transformers' BERT tokenizer (fast, i.e. tokenizers' WordPiece) from the folder
        # (not BertTokenizerFast(vocab_file=...): transformers 5 then maps every word to [UNK]).
        from transformers import BertTokenizerFast
        tok = BertTokenizerFast.from_pretrained(a.tokenizer_dir)
        kw = dict(truncation=True, max_length=max_length) if max_length > 0 else {}
        enc = tok(texts, **kw)["input_ids"]
    bad = []
    for i, e in enumerate(enc):
        mine = ids[offsets[i]:offsets[i + 1]].tolist() if i + 1 < len(offsets) else None
        if mine != e:
            bad.append(i)
    first = None
    if bad:
        i = bad[0]
        first = {"row": i, "hf": enc[i][:40], "ftune": ids[offsets[i]:offsets[i + 1]].tolist()[:40]
                 if i + 1 < len(offsets) else None}
    emit({"rows": len(texts), "ftune_rows": int(len(offsets) - 1), "differ": len(bad), "first": first,
          "tokenizer": type(tok).__name__, "tokens": int(sum(len(e) for e in enc))})
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe").set_defaults(fn=probe)
    c = sub.add_parser("cls")
    c.add_argument("out")
    c.add_argument("--shape", choices=sorted(SHAPES), default="base")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cls)
    c = sub.add_parser("logits")
    c.add_argument("model_dir")
    c.add_argument("io")
    c.add_argument("--adapter")
    c.set_defaults(fn=logits)
    c = sub.add_parser("resave")
    c.add_argument("files", nargs="+", metavar="FILE OUT")
    c.set_defaults(fn=resave)
    c = sub.add_parser("peft-count")
    c.add_argument("model_dir")
    c.add_argument("adapter")
    c.set_defaults(fn=peft_count)
    c = sub.add_parser("tokenize")
    c.add_argument("tokenizer_dir")
    c.add_argument("csv")
    c.add_argument("column")
    c.add_argument("h5")
    c.set_defaults(fn=tokenize)
    a = p.parse_args()
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())

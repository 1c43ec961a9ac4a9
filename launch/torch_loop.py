"""The CPU speed anchor: a plain PyTorch eager training loop over the same data and model shape as
`ftune train --method=full`, on the same LibTorch (Debian's python3-torch). Not HF's code: a
DistilBERT-shaped encoder written the way a careful user would (an additive attention mask built
once per forward, query scaled before the product, torch.optim.AdamW, clip 1.0, linear decay),
so ftune's samples/s can be read against what the same kernels give from Python.

  python3 launch/torch_loop.py --data train.h5 --config configs/tiny.json [--batch 16] [--threads 2]
      [--max-steps N] [--longest] [--seed 42] [--out result.json]

--data is an `ftune prep` file (input_ids, offsets, labels; see data-prep/README.md). Batches are
a seeded permutation (or, with --longest, the longest examples first, as ftune's
--group_by_length puts them), each padded to its longest review. samples/s counts the training
loop only (first step included, no evaluation), as ftune's results.json does.
"""
import argparse
import json
import math
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, p, p_attn):
        super().__init__()
        self.heads = heads
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(dim, dim) for _ in range(4))
        self.sa_layer_norm = nn.LayerNorm(dim, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.output_layer_norm = nn.LayerNorm(dim, eps=1e-12)
        self.drop, self.attn_drop = nn.Dropout(p), nn.Dropout(p_attn)

    def forward(self, x, bias):
        b, t, dim = x.shape
        d = dim // self.heads
        split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)
        q = split(self.q_lin(x)) / math.sqrt(d)
        k, v = split(self.k_lin(x)), split(self.v_lin(x))
        w = self.attn_drop(F.softmax(q @ k.transpose(-1, -2) + bias, dim=-1))
        ctx = (w @ v).transpose(1, 2).reshape(b, t, dim)
        x = self.sa_layer_norm(self.out_lin(ctx) + x)
        return self.output_layer_norm(self.drop(self.lin2(F.gelu(self.lin1(x)))) + x)


class Classifier(nn.Module):
    def __init__(self, c, labels=2):
        super().__init__()
        dim = c["dim"]
        self.word = nn.Embedding(c["vocab_size"], dim, padding_idx=0)
        self.pos = nn.Embedding(c.get("max_position_embeddings", 512), dim)
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        p = c.get("dropout", 0.1)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(Block(dim, c["n_heads"], c["hidden_dim"], p, c.get("attention_dropout", 0.1))
                                    for _ in range(c["n_layers"]))
        self.pre_classifier, self.classifier = nn.Linear(dim, dim), nn.Linear(dim, labels)
        self.head_drop = nn.Dropout(c.get("seq_classif_dropout", 0.2))

    def forward(self, ids, mask):
        t = ids.shape[1]
        x = self.drop(self.ln(self.word(ids) + self.pos(torch.arange(t)).unsqueeze(0)))
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # once per forward
        for blk in self.blocks:
            x = blk(x, bias)
        return self.classifier(self.head_drop(F.relu(self.pre_classifier(x[:, 0]))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--longest", action="store_true")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with h5py.File(a.data, "r") as f:
        ids_all, offsets, labels = f["input_ids"][:].astype(np.int64), f["offsets"][:], f["labels"][:]
    n = len(labels)
    lengths = np.diff(offsets)
    order = (np.argsort(-lengths, kind="stable") if a.longest
             else torch.randperm(n, generator=torch.Generator().manual_seed(a.seed)).numpy())
    batches = [order[i:i + a.batch] for i in range(0, n, a.batch)]
    if a.max_steps > 0:
        batches = batches[:a.max_steps]
    model = Classifier(json.load(open(a.config)))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / len(batches)))
    samples = tokens = 0
    t0 = time.perf_counter()
    for idx in batches:
        t = int(lengths[idx].max())
        ids = torch.zeros(len(idx), t, dtype=torch.long)
        mask = torch.zeros(len(idx), t, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :lengths[i]] = torch.from_numpy(ids_all[offsets[i]:offsets[i + 1]])
            mask[r, :lengths[i]] = 1
        loss = F.cross_entropy(model(ids, mask), torch.from_numpy(labels[idx].astype(np.int64)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        samples += len(idx)
        tokens += int(lengths[idx].sum())
    secs = time.perf_counter() - t0
    res = {"runner": "torch_loop.py", "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
           "steps": len(batches), "samples": samples, "train_seconds": secs,
           "samples_per_second": samples / secs, "tokens_per_second": tokens / secs}
    print(json.dumps(res))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()

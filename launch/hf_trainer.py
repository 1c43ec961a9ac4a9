#!/usr/bin/env python3
"""The seed's recipe with Hugging Face's own stack: the anchor ftune is measured against.

Trainer with its defaults (AdamW lr 5e-5, linear decay, no warmup, weight decay 0, seed 42,
dynamic padding as DataCollatorWithPadding does it) on the *same tokens* ftune trains on: the
HDF5 files `ftune prep` wrote, read with h5py, so the comparison is of trainers, not of
tokenizations. Methods as the seed has them: full; head (pre_classifier + classifier, the encoder
frozen); lora (PEFT's LoraConfig r 12, alpha 24, dropout 0, q_lin/v_lin, the head in
modules_to_save).

  launch/hf_trainer.py --model_dir DIR | --model_config CONFIG.json   (random init, e.g. the
      distilbert-base-uncased shape)  --train TRAIN.h5 --eval EVAL.h5 --method full|head|lora
      [--batch 32] [--epochs 1] [--max_steps N] [--seed 42] [--threads 2] --out RESULT.json

Writes one JSON object: train samples/s (Trainer's own train_samples_per_second), eval accuracy,
wall times, the trainable count and the process's peak RSS (ru_maxrss). Needs torch, transformers,
accelerate, h5py (+ peft for lora): Debian testing has them (tests/compat/testing-root.sh makes
such a root; launch/hf-python.sh runs this script in it).
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="HF model directory (config.json + model.safetensors)")
    src.add_argument("--model_config", help="config.json for a random-init DistilBERT")
    p.add_argument("--train", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--method", choices=("full", "head", "lora"), required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    import h5py
    import torch
    import transformers
    from transformers import CONFIG_MAPPING, AutoModelForSequenceClassification, Trainer, TrainingArguments
    torch.set_num_threads(a.threads)

    def load(path):
        with h5py.File(path, "r") as f:
            ids = f["input_ids"][:].astype("int64")
            off = f["offsets"][:]
            labels = f["labels"][:].astype("int64")
        return [ids[off[i]:off[i + 1]].tolist() for i in range(len(off) - 1)], labels.tolist()

    class Dataset(torch.utils.data.Dataset):
        def __init__(self, path):
            self.ids, self.labels = load(path)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    def collate(rows):  # DataCollatorWithPadding: right-pad with 0 to the batch's longest
        n = max(len(r["input_ids"]) for r in rows)
        return {"input_ids": torch.tensor([r["input_ids"] + [0] * (n - len(r["input_ids"])) for r in rows]),
                "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (n - len(r["input_ids"]))
                                                for r in rows]),
                "labels": torch.tensor([r["labels"] for r in rows])}

    def accuracy(pred):
        logits, labels = pred
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    train, evalset = Dataset(a.train), Dataset(a.eval)
    transformers.set_seed(a.seed)
    if a.model_dir:
        model = AutoModelForSequenceClassification.from_pretrained(a.model_dir, num_labels=2)
    else:
        with open(a.model_config) as f:
            cfg = json.load(f)
        config = CONFIG_MAPPING[cfg.pop("model_type", "distilbert")](**cfg)
        model = AutoModelForSequenceClassification.from_config(config)
    if a.method == "head":
        for n, prm in model.named_parameters():
            prm.requires_grad = n.startswith(("pre_classifier.", "classifier."))
    elif a.method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=12, lora_alpha=24, lora_dropout=0.0,
                                                 target_modules=["q_lin", "v_lin"],
                                                 modules_to_save=["pre_classifier", "classifier"]))
    trainable = sum(prm.numel() for prm in model.parameters() if prm.requires_grad)
    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(output_dir=d, num_train_epochs=a.epochs, max_steps=a.max_steps,
                                 per_device_train_batch_size=a.batch, per_device_eval_batch_size=a.batch,
                                 learning_rate=a.learning_rate, seed=a.seed, use_cpu=True, report_to="none",
                                 save_strategy="no", logging_strategy="no", eval_strategy="no",
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evalset,
                          data_collator=collate, compute_metrics=accuracy)
        t0 = time.time()
        out = trainer.train()
        train_wall = time.time() - t0
        t0 = time.time()
        ev = trainer.evaluate()
        eval_wall = time.time() - t0
    result = {
        "tool": "hf-trainer", "transformers": transformers.__version__, "torch": torch.__version__,
        "method": a.method, "threads": a.threads, "batch": a.batch, "seed": a.seed,
        "train_examples": len(train), "eval_examples": len(evalset), "trainable": trainable,
        "train_samples_per_second": out.metrics.get("train_samples_per_second"),
        "train_wall_s": train_wall, "eval_wall_s": eval_wall,
        "eval_accuracy": ev.get("eval_accuracy"), "eval_loss": ev.get("eval_loss"),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

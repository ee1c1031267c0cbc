"""Build tests/golden/minilm-heads/: fine-tune all-MiniLM-L6-v2 (BitFit + task head) for the parity test.

Run from the repo root (transformers 5.x venv, ../shared present; ~12 min on 2 cores):

    python tests/golden/build_real_heads.py [--shared ../shared] [--tasks question-answering] [--steps N]

For each task the real encoder's weight matrices stay frozen; its biases and LayerNorms and a
new task head are trained (BitFit) on the shared data: emotion (text-classification, 6 labels),
CoNLL-2003 (token-classification) and SQuAD v1.1 dev articles 1-38 (question-answering). Only
the trained tensors are saved, in float16: a few dozen KB per task instead of 90 MB, and no
data. After a rebuild, re-record the QA reference with record_real_qa.py (transformers 4.57.1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from real_heads import AUTO_CLASSES, HEADS, MINILM, MINILM_SHA256, is_tuned, minilm_sha256

DATA = {
    "text-classification": "emotion/train.txt",
    "token-classification": "conll2003/train.txt",
    "question-answering": "squad/dev-v1.1.json",
}
SQUAD_TRAIN_ARTICLES = 38
STEPS = {
    "text-classification": (1000, 32), "token-classification": (300, 32), "question-answering": (300, 16)
}


def training_data(shared: Path, task: str, tokenizer, config):
    """Tokenized training rows and the label space, as ``distilkit finetune`` builds them."""
    from distilkit.train import label_space, task_data

    path = shared / "data" / DATA[task]
    if task == "question-answering":  # articles 1-38 only: 39-48 are the parity inputs
        doc = json.loads(path.read_text(encoding="utf-8"))
        path = HEADS / "squad-train.tmp.json"
        path.write_text(json.dumps({"version": "1.1", "data": doc["data"][:SQUAD_TRAIN_ARTICLES]}))
    examples = task_data.read_examples(task, path)
    space = label_space.discover_labels(task, examples)
    for key, value in space.config_fields().items():
        setattr(config, key, value)
    if space.labels:
        config.num_labels = len(space.labels)
    max_len = 384 if task == "question-answering" else 128
    data = task_data.build_features(task, examples, tokenizer, config, space, max_len)
    if task == "question-answering":
        path.unlink()
    return data, space


def train(shared: Path, task: str, steps: int, batch_size: int, lr: float, seed: int = 0) -> dict:
    """BitFit-train one task; save its head file; return what it did."""
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    from distilkit.train import task_data
    from distilkit.train.data import length_grouped_batches

    torch.manual_seed(seed)
    source = shared / MINILM
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    data, space = training_data(shared, task, tokenizer, config)
    model = getattr(transformers, AUTO_CLASSES[task]).from_pretrained(source, config=config).train()
    tuned = {n: p for n, p in model.named_parameters() if is_tuned(n)}
    for name, param in model.named_parameters():
        param.requires_grad_(name in tuned)
    optimizer = torch.optim.AdamW(tuned.values(), lr=lr, weight_decay=0.0)
    batches, epoch, start = [], 0, time.perf_counter()
    for step in range(steps):
        if not batches:
            batches, epoch = list(length_grouped_batches(data.lengths, batch_size, seed, epoch)), epoch + 1
        batch = task_data.collate(data, batches.pop(), tokenizer.pad_token_id, task, space.problem_type)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        for group in optimizer.param_groups:  # linear decay to 0
            group["lr"] = lr * (1 - step / steps)
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"{task} step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    HEADS.mkdir(exist_ok=True)
    state = {n: p.detach().to(torch.float16).contiguous() for n, p in tuned.items()}
    save_file(state, str(HEADS / f"{task}.safetensors"), metadata={"labels": json.dumps(list(space.labels))})
    return {"data": DATA[task], "steps": steps, "batch_size": batch_size, "lr": lr, "tensors": len(state),
            "parameters": sum(t.numel() for t in state.values()),
            "seconds": round(time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (default: per task, ~3 min each)")
    parser.add_argument("--tasks", default=",".join(AUTO_CLASSES))
    args = parser.parse_args()
    if minilm_sha256(args.shared) != MINILM_SHA256:
        sys.exit(f"{args.shared / MINILM} is not the all-MiniLM-L6-v2 these heads are built on")
    manifest_path = HEADS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["base"] = {"model": str(MINILM), "sha256": MINILM_SHA256}
    for task in args.tasks.split(","):
        steps, batch = STEPS[task] if args.steps is None else (args.steps, STEPS[task][1])
        manifest[task] = train(args.shared, task, steps, batch, lr=1e-3)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {HEADS}")


if __name__ == "__main__":
    main()

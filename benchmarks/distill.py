"""Distillation step throughput: ``distilkit distill`` vs a naive fp32 loop doing the same maths.

    python benchmarks/distill.py              # bert-base-cased -> 6-layer DistilBERT, 8 x 128 tokens
    python benchmarks/distill.py --steps 3 --batch-size 4   # a quick run

Teacher: the real bert-base-cased architecture and tokenizer from ../shared/models with dummy
weights (speed does not depend on the weights); student: ``init-student`` of it (layers 0,2,4,7,9,11,
768 wide, no token types). Data: WikiText-2 valid tokenized by ``prepare-data`` at run time into a
temporary folder. Both loops see the same micro-batches and masks and compute the DistilBERT triple
loss (α_ce 5 KL at T=2 over all real positions, α_mlm 2, α_cos 1) with AdamW and clipping:

- ``distilkit``: ``distilkit.train.distill.distill`` as the CLI runs it (teacher in bf16 and the
  student under bf16 autocast where the CPU has fast bf16, blockwise KL, ...); tokens/s from its
  metrics.csv, one row per step;
- ``naive``: the loop people write first: fp32 teacher and student, full forward with hidden
  states, ``log_softmax`` + ``KLDivLoss`` over all positions, ``CrossEntropyLoss``,
  ``CosineEmbeddingLoss``;
- ``naive_bf16_autocast``: the same loop with the whole step under ``torch.autocast("cpu", bfloat16)``
  (losses in fp32), the first thing one would try to speed it up; reported beside the target.

The first ``--warmup`` steps of each are not timed. Prints JSON (also written to --output); target:
distilkit >= 2x the naive loop's tokens/s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_models(shared: Path, root: Path) -> tuple[Path, Path]:
    """A dummy-weight bert-base-cased teacher directory and its init-student, under ``root``."""
    from distilkit.models import load_model, save_model_dir
    from distilkit.train.student_init import init_student

    teacher = load_model(shared / "models" / "bert-base-cased", "fill-mask", dummy_weights=True, seed=0)
    save_model_dir(teacher.model, teacher.tokenizer, root / "teacher")
    init_student(str(root / "teacher"), root / "student")
    return root / "teacher", root / "student"


def run_distilkit(cfg, warmup: int) -> dict:
    """tokens/s of the steps after ``warmup`` of ``distill(cfg)`` (its metrics.csv has one row per step)."""
    from distilkit.train.distill import distill

    out = distill(cfg)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    elapsed = [0.0] + [float(r["elapsed_s"]) for r in rows]  # loop seconds at the end of each step
    tokens = sum(float(r["tokens_per_s"]) * (elapsed[i + 1] - elapsed[i])
                 for i, r in enumerate(rows) if i >= warmup)
    seconds = elapsed[-1] - elapsed[warmup]
    return {"tokens_per_s": round(tokens / seconds, 1),
            "seconds_per_step": round(seconds / (len(rows) - warmup), 3),
            "first_step_loss": float(rows[0]["loss"])}


def run_naive(cfg, warmup: int, steps: int, autocast: bool = False) -> dict:
    """The same micro-batches through a plain loop (fp32, or the whole step under bf16 autocast);
    tokens/s of the timed steps."""
    import contextlib

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForMaskedLM

    from distilkit.train.data import TokenShards
    from distilkit.train.stream import MicroBatches

    torch.manual_seed(cfg.seed)
    teacher = AutoModelForMaskedLM.from_pretrained(cfg.teacher).float().eval()
    student = AutoModelForMaskedLM.from_pretrained(cfg.student).float().train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  eps=cfg.adam_eps)
    stream = MicroBatches(TokenShards(cfg.data), cfg, 0, 1, torch.device("cpu"))
    kl = torch.nn.KLDivLoss(reduction="batchmean")
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100)
    cos = torch.nn.CosineEmbeddingLoss()
    tokens, seconds, first_loss = 0, 0.0, None
    for step in range(warmup + steps):
        micro = stream.get(step)
        attention, batch = micro.attention, micro.masked
        start = time.perf_counter()
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with amp:
            with torch.no_grad():
                t_out = teacher(input_ids=batch.input_ids, attention_mask=attention,
                                output_hidden_states=True)
            s_out = student(input_ids=batch.input_ids, attention_mask=attention, output_hidden_states=True)
            real = attention.bool()
            s_logits, t_logits = s_out.logits[real].float(), t_out.logits[real].float()  # (N, V)
            loss_ce = kl(F.log_softmax(s_logits / cfg.temperature, -1),
                         F.softmax(t_logits / cfg.temperature, -1)) * cfg.temperature**2
            loss_mlm = ce(s_out.logits.view(-1, s_out.logits.size(-1)).float(), batch.labels.view(-1))
            h_s, h_t = s_out.hidden_states[-1][real].float(), t_out.hidden_states[-1][real].float()
            loss_cos = cos(h_s, h_t, torch.ones(h_s.shape[0]))
            loss = cfg.alpha_ce * loss_ce + cfg.alpha_mlm * loss_mlm + cfg.alpha_cos * loss_cos
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if first_loss is None:
            first_loss = float(loss.detach())
        if step >= warmup:
            seconds += time.perf_counter() - start
            tokens += int(attention.sum())
        print(f"naive{' bf16' if autocast else ''} step {step + 1}/{warmup + steps}: "
              f"{time.perf_counter() - start:.2f} s", file=sys.stderr)
    return {"tokens_per_s": round(tokens / seconds, 1), "seconds_per_step": round(seconds / steps, 3),
            "first_step_loss": round(first_loss, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence incl. specials")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps per loop")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "distill.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from distilkit.config import DistillConfig
    from distilkit.inference.runtime import cpu_has_fast_bf16
    from distilkit.train.data import prepare_data

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare_data(str(args.shared / "models" / "bert-base-cased"),
                     [args.shared / "data" / "wikitext-2" / "valid.txt"], root / "data",
                     max_length=args.seq_len, min_tokens=args.seq_len - 2, progress=False)
        teacher, student = make_models(args.shared, root)
        cfg = DistillConfig(teacher=str(teacher), student=str(student), data=str(root / "data"),
                            output=str(root / "run"), batch_size=args.batch_size, grad_accumulation=1,
                            max_steps=args.warmup + args.steps, log_every=1, save_every=0, progress=False)
        ours = run_distilkit(cfg, args.warmup)
        print(f"distilkit: {ours['tokens_per_s']} tokens/s", file=sys.stderr)
        naive = run_naive(cfg, args.warmup, args.steps)
        print(f"naive fp32: {naive['tokens_per_s']} tokens/s", file=sys.stderr)
        naive_bf16 = run_naive(cfg, args.warmup, args.steps, autocast=True)
        print(f"naive bf16 autocast: {naive_bf16['tokens_per_s']} tokens/s", file=sys.stderr)
    result = {
        "teacher": "bert-base-cased (dummy weights)", "student": "init-student: 6 layers x 768 DistilBERT",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "timed_steps": args.steps,
        "threads": torch.get_num_threads(), "cpus": len(os.sched_getaffinity(0)),
        "fast_bf16_cpu": cpu_has_fast_bf16(), "cuda": torch.cuda.is_available(),
        "distilkit": ours, "naive_fp32": naive, "naive_bf16_autocast": naive_bf16,
        "speedup": round(ours["tokens_per_s"] / naive["tokens_per_s"], 2),
        "speedup_vs_naive_bf16_autocast": round(ours["tokens_per_s"] / naive_bf16["tokens_per_s"], 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

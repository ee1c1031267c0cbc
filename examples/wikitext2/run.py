"""The DistilBERT ablation at a size two CPU cores can run: does distillation beat training from scratch?

    .venv/bin/python examples/wikitext2/run.py              # ~37 min on 2 cores; results in runs/wikitext2/
    .venv/bin/python examples/wikitext2/run.py --quick      # a 2-minute smoke run of the same steps

Steps (each one is also a plain ``distilkit`` command, printed as the script goes):

1. ``prepare-data``: WikiText-2 *valid* (the training text here) -> token shards, bert-base-cased
   tokenizer, 128-token sequences.
2. Teacher: a 4-layer x 256 BERT trained with masked-LM only (``distill`` without ``--teacher``
   and ``--alpha-ce 0 --alpha-cos 0 --alpha-mlm 1 --mlm-smoothing 0``: plain BERT pre-training,
   uniform masking, in the same loop).
3. Student, distilled: ``init-student`` takes teacher layers 0 and 3 (the published every-other
   pattern scaled to 4 layers) into a 2-layer DistilBERT, then ``distill`` with the DistilBERT
   triple loss at its defaults (α_ce 5, α_mlm 2, α_cos 1, T 2).
4. Student, from scratch: the same 2-layer DistilBERT, random init, masked-LM only, with exactly the
   distilled student's steps, batches, masks (the recipe's smoothed masking) and learning-rate
   schedule; and once more with uniform masking (plain BERT pre-training, like the teacher).
5. ``evaluate fill-mask`` on WikiText-2 *test* for all three (masked-token accuracy and perplexity
   on 126-token blocks with 15% masked; gold-word top-1/top-5 on sentences), and fill-mask speed
   (sequences/s through the Predictor) of teacher vs student.

Writes ``OUT/results.json`` and ``OUT/results.md`` (the table quoted in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINED_NOW: list[float] = []  # seconds of the trainings this invocation ran (not reused)
SHARED = ROOT.parent / "shared"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (models/, data/)")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "wikitext2", help="run folder")
    p.add_argument("--teacher-epochs", type=int, default=12, help="teacher MLM epochs over wikitext-2 valid")
    p.add_argument("--student-epochs", type=int, default=6, help="epochs of both 2-layer students")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step")
    p.add_argument("--teacher-lr", type=float, default=3e-4, help="peak learning rate of the teacher")
    p.add_argument("--teacher-warmup", type=float, default=0.1,
                   help="teacher warmup, a fraction of its steps")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of the students (the recipe's)")
    p.add_argument("--max-length", type=int, default=128, help="sequence length incl. specials")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 300 lines, 1 epoch each, 200 eval blocks")
    p.add_argument("--fresh", action="store_true",
                   help="delete --output first (default: reuse finished steps)")
    return p.parse_args()


def step(title: str, command: str) -> None:
    print(f"\n== {title}\n   $ {command}", flush=True)


def main() -> int:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer, BertConfig

    from distilkit.config import DistillConfig
    from distilkit.train.data import prepare_data
    from distilkit.train.distill import distill
    from distilkit.train.student_init import init_student

    tok_dir = args.shared / "models" / "bert-base-cased"
    train_txt = args.shared / "data" / "wikitext-2" / "valid.txt"
    test_txt = args.shared / "data" / "wikitext-2" / "test.txt"
    for path in (tok_dir, train_txt, test_txt):
        if not path.exists():
            sys.exit(f"missing {path}: pass --shared DIR (the folder with models/ and data/)")
    out = args.output
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_epochs, student_epochs, eval_limit = args.teacher_epochs, args.student_epochs, None
    if args.quick:
        lines = train_txt.read_text(encoding="utf-8").splitlines()[:300]
        train_txt = out / "train-quick.txt"
        train_txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
        teacher_epochs = student_epochs = 1
        eval_limit = 200
    t0 = time.perf_counter()
    timings = {}

    # 1. data
    data = out / "data"
    step("prepare-data", f"distilkit prepare-data --tokenizer {tok_dir} -i {train_txt} -o {data} "
         f"--max-length {args.max_length}")
    if not (data / "manifest.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        prepare_data(str(tok_dir), [train_txt], data, max_length=args.max_length, progress=False)
    manifest = json.loads((data / "manifest.json").read_text())
    print(f"   {manifest['sequences']} sequences, {manifest['tokens']} tokens")

    common = {"data": str(data), "batch_size": args.batch_size, "grad_accumulation": 1,
              "save_every": 0, "log_every": 20, "seed": 56}

    # 2. teacher: MLM pre-training, no teacher
    teacher_init = out / "teacher-init"
    if not teacher_init.exists():
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                   intermediate_size=1024, architectures=["BertForMaskedLM"]).save_pretrained(teacher_init)
        tokenizer.save_pretrained(teacher_init)
    teacher = out / "teacher"
    timings["teacher_train_s"] = train(
        "teacher: 4x256 BERT, masked-LM only",
        DistillConfig(student=str(teacher_init), output=str(teacher), alpha_ce=0.0, alpha_cos=0.0,
                      alpha_mlm=1.0, mlm_smoothing=0.0, epochs=teacher_epochs, lr=args.teacher_lr,
                      warmup=args.teacher_warmup, **common),
        distill,
    )

    # 3. distilled student
    student_init = out / "student-init"
    step("init-student", f"distilkit init-student --teacher {teacher} -o {student_init}")
    if not (student_init / "model.safetensors").exists():
        shutil.rmtree(student_init, ignore_errors=True)
        init_student(str(teacher), student_init)
    distilled = out / "student-distilled"
    timings["distilled_train_s"] = train(
        "student: 2 layers from the teacher, DistilBERT triple loss",
        DistillConfig(teacher=str(teacher), student=str(student_init), output=str(distilled),
                      epochs=student_epochs, lr=args.lr, **common),
        distill,
    )

    distilled_uniform = out / "student-distilled-uniform"
    timings["distilled_uniform_train_s"] = train(
        "student: 2 layers from the teacher, DistilBERT triple loss, uniform masking",
        DistillConfig(teacher=str(teacher), student=str(student_init), output=str(distilled_uniform),
                      mlm_smoothing=0.0, epochs=student_epochs, lr=args.lr, **common),
        distill,
    )

    # 4. the same student from scratch: its config and tokenizer without weights -> seeded random init
    scratch_init = out / "student-scratch-init"
    if not scratch_init.exists():
        scratch_init.mkdir()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "vocab.txt"):
            if (student_init / name).exists():
                shutil.copy(student_init / name, scratch_init / name)
    scratch = out / "student-scratch"
    timings["scratch_train_s"] = train(
        "student: 2 layers, random init, masked-LM only (the distilled student's masks)",
        DistillConfig(student=str(scratch_init), output=str(scratch), alpha_ce=0.0, alpha_cos=0.0,
                      alpha_mlm=1.0, epochs=student_epochs, lr=args.lr, **common),
        distill,
    )
    scratch_uniform = out / "student-scratch-uniform"
    timings["scratch_uniform_train_s"] = train(
        "student: 2 layers, random init, masked-LM only, uniform masking",
        DistillConfig(student=str(scratch_init), output=str(scratch_uniform), alpha_ce=0.0, alpha_cos=0.0,
                      alpha_mlm=1.0, mlm_smoothing=0.0, epochs=student_epochs, lr=args.lr, **common),
        distill,
    )

    # 5. evaluation and speed
    rows = {}
    for name, model in (("teacher (4 layers)", teacher),
                        ("student, distilled (2 layers)", distilled),
                        ("student, from scratch (2 layers)", scratch),
                        ("student, distilled, uniform masking (2 layers)", distilled_uniform),
                        ("student, from scratch, uniform masking (2 layers)", scratch_uniform)):
        rows[name] = evaluate(model, test_txt, eval_limit)
    speed = measure_speed(teacher, distilled, test_txt)
    results = {
        "data": {"train": str(train_txt), "test": str(test_txt),
                 **{k: manifest[k] for k in ("sequences", "tokens")}},
        "settings": {"teacher_epochs": teacher_epochs, "student_epochs": student_epochs,
                     "batch_size": args.batch_size, "teacher_lr": args.teacher_lr,
                     "teacher_warmup": args.teacher_warmup, "student_lr": args.lr,
                     "max_length": args.max_length, "threads": args.threads, "quick": args.quick},
        "models": rows,
        "speed": speed,
        # a rerun reuses finished trainings: the total counts their recorded seconds instead
        "seconds": {**{k: round(v, 1) for k, v in timings.items()},
                    "total": round(time.perf_counter() - t0 - sum(TRAINED_NOW) + sum(timings.values()), 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = results_table(results)
    (out / "results.md").write_text(table)
    print("\n" + table)
    print(f"results in {out / 'results.json'} and {out / 'results.md'}")
    return 0


def train(title: str, cfg, distill) -> float:
    """Run ``distill(cfg)`` unless its output already holds a finished model; return the seconds taken."""
    flags = f"--student {cfg.student} --data {cfg.data} -o {cfg.output} --epochs {cfg.epochs} " \
            f"--batch-size {cfg.batch_size} --grad-accumulation 1 --lr {cfg.lr}"
    if cfg.teacher:
        flags = f"--teacher {cfg.teacher} " + flags
    else:
        flags += " --alpha-ce 0 --alpha-cos 0 --alpha-mlm 1"
    if cfg.mlm_smoothing == 0:
        flags += " --mlm-smoothing 0"
    if cfg.warmup != 0.05:
        flags += f" --warmup {cfg.warmup}"
    step(title, f"distilkit distill {flags}")
    done = Path(cfg.output) / "model.safetensors"
    timing = Path(cfg.output) / "train_seconds.txt"
    if done.exists() and timing.exists():
        print("   (done before; reusing it)")
        return float(timing.read_text())
    start = time.perf_counter()
    distill(cfg)
    seconds = time.perf_counter() - start
    timing.write_text(f"{seconds:.1f}\n")
    TRAINED_NOW.append(seconds)
    return seconds


def evaluate(model: Path, test_txt: Path, limit: int | None) -> dict:
    """``distilkit evaluate fill-mask --model MODEL --data test.txt`` in fp32 (the same masks for
    every model)."""
    from distilkit.evaluation.evaluate import evaluate as run
    from distilkit.inference.predictor import Predictor

    step(f"evaluate {model.name}",
         f"distilkit evaluate fill-mask --model {model} --data {test_txt} --dtype float32")
    predictor = Predictor.from_ref(str(model), "fill-mask", dtype="float32")
    result = run(predictor, test_txt, limit=limit)
    m = result.metrics
    print(f"   masked-token accuracy {m['mlm_accuracy']:.4f}, perplexity {m['perplexity']:.1f}, "
          f"gold-word top-1 {m['top1_accuracy']:.4f} ({result.seconds:.0f} s)")
    return {k: m[k] for k in ("mlm_accuracy", "perplexity", "top1_accuracy", "top5_accuracy",
                              "mlm_masked_tokens", "masked_sentences")}


def measure_speed(teacher: Path, student: Path, test_txt: Path, n: int = 256, words: int = 90,
                  repeats: int = 3) -> dict:
    """Fill-mask sequences/s of teacher and student through the Predictor (bf16 where fast), best of 3.

    Inputs: WikiText-2 test paragraphs cut to ``words`` words (~110 tokens, the training length),
    one word masked.
    """
    import distilkit
    from distilkit.evaluation.datasets import read_lines

    paragraphs = [p.split() for p in read_lines(test_txt)
                  if len(p.split()) >= words and not p.startswith("=")]
    paragraphs = paragraphs[:n]
    step("speed", f"{len(paragraphs)} test paragraphs cut to {words} words, one masked, "
         "distilkit.pipeline('fill-mask')")
    speed = {"sequences": len(paragraphs), "words_per_sequence": words}
    for name, model in (("teacher", teacher), ("student", student)):
        fm = distilkit.pipeline("fill-mask", model=str(model))
        texts = [" ".join(p[:5] + [fm.tokenizer.mask_token] + p[6:words]) for p in paragraphs]
        fm(texts[:32])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fm(texts)
            best = min(best, time.perf_counter() - start)
        speed[f"{name}_seq_per_s"] = round(len(texts) / best, 1)
        features = fm.predictor.prepare(texts, {}).features  # the model alone: no tokenizing, no decoding
        best_run = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fm.predictor.run(features)
            best_run = min(best_run, time.perf_counter() - start)
        speed[f"{name}_model_seq_per_s"] = round(len(texts) / best_run, 1)
        print(f"   {name}: {speed[f'{name}_seq_per_s']} sequences/s end to end, "
              f"{speed[f'{name}_model_seq_per_s']} the model alone")
    speed["student_speedup"] = round(speed["student_seq_per_s"] / speed["teacher_seq_per_s"], 2)
    speed["student_model_speedup"] = round(
        speed["student_model_seq_per_s"] / speed["teacher_model_seq_per_s"], 2)
    return speed


def results_table(results: dict) -> str:
    rows = results["models"]
    teacher_acc = next(iter(rows.values()))["mlm_accuracy"]
    s = results["settings"]
    lines = [
        (f"WikiText-2 test, bert-base-cased tokenizer; trained on WikiText-2 valid "
        f"({results['data']['tokens']:,} tokens): teacher {s['teacher_epochs']} epochs, "
        f"students {s['student_epochs']} epochs each (same steps, batches and masks)."),
        "",
        "| model | masked-token acc. | % of teacher | perplexity | gold-word top-1 | top-5 |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['mlm_accuracy']:.4f} | {100 * m['mlm_accuracy'] / teacher_acc:.1f}% | "
                     f"{m['perplexity']:.1f} | {m['top1_accuracy']:.4f} | {m['top5_accuracy']:.4f} |")
    sp = results["speed"]
    lines += ["", (f"Fill-mask speed (Predictor, {s['threads']} threads, ~110-token inputs): "
              f"teacher {sp['teacher_seq_per_s']} sequences/s, student {sp['student_seq_per_s']} -> "
              f"{sp['student_speedup']}x end to end; "
              f"the model alone (no tokenizing/decoding) {sp['teacher_model_seq_per_s']} vs "
              f"{sp['student_model_seq_per_s']} -> {sp['student_model_speedup']}x. "
              f"Whole script: {results['seconds']['total'] / 60:.1f} min."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

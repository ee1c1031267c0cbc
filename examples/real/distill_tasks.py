"""Task distillation on real weights: does a 3-layer student learn more from its teacher than from
labels alone?

    .venv/bin/python examples/real/distill_tasks.py                # full run (minutes: see the README)
    .venv/bin/python examples/real/distill_tasks.py --quick        # a smoke run of every step, < 5 min
    .venv/bin/python examples/real/distill_tasks.py --budget-min 9 # stop after ~9 min; run again to go on

The ablation behind ``distilbert-base-cased-distilled-squad``, on the real pretrained
all-MiniLM-L6-v2 (a 6-layer x 384 BERT encoder, ``../shared/models``), for four tasks: SST-2
(scored on its dev set), emotion (test), CoNLL-2003 NER (test entity F1) and extractive QA.
There is no SQuAD train split here: the QA models train on SQuAD v1.1 *dev* articles 1-38
(8,582 questions) and are scored on articles 39-48 (1,988 questions), which they never see; QA
hyperparameters are chosen with ``--evaluate-on validation`` on models of their own trained on
articles 1-32 and scored on 33-38 (1,347 questions). To fit
the 2-core machine, the QA models train on 256-token windows with a 128-token stride (300 steps of 32
windows, about one epoch) and are scored with the usual 384/128 windows; in that one epoch the QA
students need a higher learning rate than the other tasks' (8e-4, chosen on validation, not 1e-4).

Per task, each step a `distilkit` command (printed as it runs):

1. teacher: ``finetune TASK --model all-MiniLM-L6-v2`` (the encoder gets a task head);
2. ``init-student --teacher TEACHER``: a 3-layer DistilBERT from teacher layers 0, 2, 5 with the
   teacher's task head and labels; with ``--pre-distill STEPS``, ``prepare-data`` on the task's own
   unlabelled training text and ``distill --alpha-ce 0 --alpha-mlm 0 --alpha-cos 1``: that student's
   last hidden states pulled toward the teacher's (the paper's first stage, on task text, without
   labels), and both students start from it;
3. student, distilled: ``finetune --model STUDENT --teacher TEACHER`` (α_ce·KL(teacher/T ‖
   student/T)·T² on the task logits + α_task·task loss; ``--alpha-cos`` adds α_cos·(1 − cos) between
   the last hidden states, the paper's third term, and ``--alpha-hidden`` α_hidden·(1 − cos) between
   each student layer's output and that of the teacher layer it was copied from);
4. student, plain: the same command without ``--teacher`` (task loss only): same init, steps,
   batches, learning rate and data;
5. ``evaluate`` the three in fp32 on the test data, and time teacher and student through the
   Predictor on the same test inputs (bf16 where the CPU has it, as deployed).

``--student-steps N`` trains steps 3 and 4 for N optimizer steps against the same teacher (students
trained longer than their teacher; the table's steps then read "teacher / students").

``--seeds 42,43,44`` trains steps 3 and 4 once per seed (data order and dropout; same teacher and
init) and judges the students by their mean, with the deviation and each seed's score beside it: a
difference of a sentence or two between single runs says nothing.

The target the DistilBERT paper sets: the distilled student keeps >= 97% of its teacher's score
at >= 1.8x its speed, and beats the plain student on every task. Writes ``OUT/results.json`` and
``OUT/results.md`` (the README's table). Finished trainings and evaluations are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

from common import (
    ROOT,
    TASKS,
    BudgetReached,
    Runner,
    finetune_args,
    inputs_for,
    items_per_second,
    open_run,
    score,
    show,
    study_parser,
    task_texts,
    train_teacher,
    write_results,
)

from distilkit.config import FinetuneConfig


def parse_args() -> argparse.Namespace:
    p = study_parser(__doc__, TASKS)
    p.add_argument("--teacher-lr", type=float, default=1e-4, help="peak learning rate of the teachers")
    p.add_argument("--student-lr", type=float, default=None,
                   help="peak learning rate of both students (default: the task's; 1e-4, QA 8e-4)")
    p.add_argument("--alpha-ce", type=float, default=0.5, help="weight of the distillation term")
    p.add_argument("--alpha-task", type=float, default=0.5,
                   help="weight of the task loss (distilled student)")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature T")
    p.add_argument("--alpha-cos", type=float, default=0.0,
                   help="weight of 1 - cos(student, teacher) on the last hidden states (distilled student)")
    p.add_argument("--alpha-hidden", type=float, default=0.0,
                   help="weight of 1 - cos between each student layer's output and that of the teacher layer "
                   "it was copied from (distilled student; finetune --alpha-hidden)")
    p.add_argument("--layers", default="0,2,5", help="teacher layers the students start from")
    p.add_argument("--pre-distill", type=int, default=0, metavar="STEPS",
                   help="first pull the initialised student's last hidden states toward the teacher's on the "
                   "task's own unlabelled training text for STEPS steps (distill --alpha-cos 1 alone); both "
                   "students then start from it")
    p.add_argument("--transfer", action="store_true",
                   help="the distilled student also learns, from its teacher alone, on extra inputs without "
                   "labels (finetune --transfer; QA: SQuAD v2.0's unanswerable questions on the training "
                   "articles; tasks without such data are run as usual)")
    p.add_argument("--batch-size", type=int, default=32, help="examples (QA: windows) per step")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps of every model (default: each task's own); such a run gets its "
                   "own folder, runs/real-steps-N, unless --output is given")
    p.add_argument("--student-steps", type=int, default=None,
                   help="optimizer steps of both students (default: the teacher's): students trained longer "
                   "against the same teacher, in folders of their own (…-steps-N)")
    p.add_argument("--speed-inputs", type=int, default=512, help="test inputs timed per task (QA: a quarter)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads")
    p.add_argument("--budget-min", type=float, default=None, help="stop after about this many minutes")
    p.add_argument("--evaluate-on", choices=("test", "validation"), default="test",
                   help="validation: score on the validation splits (emotion, CoNLL; QA: models of "
                   "their own trained on articles 1-32, scored on 33-38) to choose hyperparameters; "
                   "writes results-validation.{json,md}")
    p.add_argument("--no-plain", action="store_true",
                   help="skip the plain student (a hyperparameter sweep of the distilled one)")
    p.add_argument("--seeds", default=str(FinetuneConfig.seed),
                   help="comma-separated seeds of the students' trainings (data order, dropout): one pair of "
                   "students per seed, the table gives their means; teacher and init stay the same")
    p.add_argument("--tag", default="", help="suffix of the results files (e.g. a hyperparameter variant)")
    p.add_argument("--quick", action="store_true", help="smoke run: small data, 8 steps, 64 test examples")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    args.seeds = seeds_of(args)  # before any training
    if args.steps is not None and args.output is None and not args.quick:
        args.output = ROOT / "runs" / f"real-steps-{args.steps}"  # never reuse models of other lengths
    out, runner, files = open_run(args, args.threads)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results = {"settings": {**settings, "batch_size": 8 if args.quick else args.batch_size}, "tasks": {}}
    keys = args.tasks.split(",")
    if args.evaluate_on == "validation":
        keys = [k for k in keys if TASKS[k].validation]
        print(f"scoring on the validation splits of {keys} (the other tasks have none here)")
    try:
        for key in keys:
            results["tasks"][key] = run_task(args, runner, out, key, files[key])
    except BudgetReached:
        print(f"\n--budget-min {args.budget_min} reached: finished steps are kept; run the same command "
              "again to continue", flush=True)
        return 3
    # this study's trainings and evaluations (not the validation sweeps the same folder may hold)
    results["minutes"] = round(sum(r["minutes"] for r in results["tasks"].values()), 1)
    stem = (("results" if args.evaluate_on == "test" else "results-validation")
            + (f"-{args.tag}" if args.tag else ""))
    write_results(out, results, results_table(results), stem)
    return 0


def variant(args: argparse.Namespace, lr: float, seed: int = FinetuneConfig.seed,
            student_steps: int | None = None) -> tuple[str, str]:
    """Run-folder names of the two students for these hyperparameters, seed and (when it differs from
    the teacher's) step count (tuning keeps each variant; the default seed's folders carry no seed)."""
    pre = f"-pre{args.pre_distill}" if args.pre_distill else ""
    pre += f"-steps-{student_steps}" if student_steps else ""
    pre += f"-seed{seed}" if seed != FinetuneConfig.seed else ""
    plain = f"student-plain-lr{lr:g}{pre}"
    distilled = (f"student-distilled-lr{lr:g}-ce{args.alpha_ce:g}-task{args.alpha_task:g}"
                 f"-T{args.temperature:g}" + (f"-cos{args.alpha_cos:g}" if args.alpha_cos else "")
                 + (f"-hidden{args.alpha_hidden:g}" if args.alpha_hidden else "")
                 + ("-transfer" if args.transfer else "") + pre)
    return plain, distilled


def seeds_of(args: argparse.Namespace) -> list[int]:
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds needs one or more distinct seeds, got {args.seeds!r}")
    return seeds


def over_seeds(by_seed: dict[str, list[float]]) -> dict:
    """Mean and sample standard deviation of each student's scores over the seeds, and how often the
    distilled student beat the plain one trained with the same seed (same data order)."""
    summary = {name: {"mean": statistics.mean(values),
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0, "scores": values}
               for name, values in by_seed.items()}
    if "plain" in by_seed:
        summary["distilled_wins"] = sum(d > p for d, p in zip(by_seed["distilled"], by_seed["plain"]))
    return summary


def pre_distill(args: argparse.Namespace, runner: Runner, root: Path, task, teacher: Path, init: Path,
                train: Path) -> Path:
    """The paper's first stage, on this task's own text: ``distill --alpha-cos 1`` alone (no labels, no
    masked-LM head needed) from the teacher into the initialised student; returns the new student."""
    steps = 4 if args.quick else args.pre_distill
    out = root / f"{init.name}-pre{steps}"
    data = root / "pre-distill-data"
    if not (out / "train_seconds.txt").exists() and not (data / "manifest.json").exists():
        corpus = root / "pre-distill-corpus.txt"
        lines = (" ".join(text.split()) for text in task_texts(task, train))  # one document per line
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        runner.run(["prepare-data", "--tokenizer", str(teacher), "--input", str(corpus), "--output",
                    str(data), "--max-length", "256", "--min-tokens", "3", "--no-progress"], in_process=True)
    runner.train(out, ["--teacher", str(teacher), "--student", str(init), "--data", str(data),
                       "--alpha-ce", "0", "--alpha-mlm", "0", "--alpha-cos", "1", "--max-steps", str(steps),
                       "--batch-size", str(8 if args.quick else args.batch_size), "--grad-accumulation", "1",
                       "--log-every", "2" if args.quick else "25"],
                 max(1, steps // 10), command="distill")
    return out


def run_task(args: argparse.Namespace, runner: Runner, out: Path, key: str, files: dict) -> dict:
    """Teacher, student init, both students, their evaluations and the speed-up for one task."""
    task = TASKS[key] if args.steps is None else dataclasses.replace(TASKS[key], steps=args.steps)
    # validation data cut from the training data (QA) gets models trained without it, in their own folder
    own = args.evaluate_on == "validation" and "validation_train" in files
    root, train = ((out / f"{key}-validation", files["validation_train"]) if own
                   else (out / key, files["train"]))
    steps, save_every = (8, 4) if args.quick else (task.steps, task.save_every)
    common = finetune_args(task, train, args.quick, args.batch_size)
    student_steps = None  # the teacher's
    if args.student_steps is not None and args.student_steps != task.steps:
        student_steps = 12 if args.quick else args.student_steps
    print(f"\n===== {task.title}: {task.task}, {steps} steps per model"
          + (f" (students {student_steps})" if student_steps else ""), flush=True)
    teacher = train_teacher(runner, args.shared, root, task, train, args.quick, args.teacher_lr,
                            args.batch_size)
    init = root / f"student-init-{args.layers.replace(',', '')}"
    if not (init / "model.safetensors").exists():
        runner.run(["init-student", "--teacher", str(teacher), "--output", str(init),
                    "--layers", args.layers], in_process=True)
    else:
        show(["init-student", "--teacher", str(teacher), "--output", str(init)],
             note="(done before; reusing it)")
    if args.pre_distill:
        init = pre_distill(args, runner, root, task, teacher, init, train)
    lr = args.student_lr or task.student_lr
    transfer = files.get("validation_transfer" if own else "transfer") if args.transfer else None
    if args.transfer and transfer is None:
        print(f"(--transfer: {task.title} has no transfer data here; its distilled student trains as usual)")
        args = argparse.Namespace(**{**vars(args), "transfer": False})
    seeds = args.seeds
    models = {"teacher": teacher}  # the first seed's students keep the plain names; others get "@SEED"
    runs: dict[str, list[str]] = {}  # student -> its keys in ``models``, one per seed
    for i, seed in enumerate(seeds):
        plain_name, distilled_name = variant(args, lr, seed, student_steps)
        student = [*with_steps(common, student_steps), "--model", str(init), "--lr", str(lr),
                   *(["--seed", str(seed)] if seed != FinetuneConfig.seed else [])]
        at = "" if i == 0 else f"@{seed}"
        models[f"distilled{at}"] = root / distilled_name
        runs.setdefault("distilled", []).append(f"distilled{at}")
        runner.train(root / distilled_name,
                     [*student, "--teacher", str(teacher), "--alpha-ce", str(args.alpha_ce),
                      "--alpha-task", str(args.alpha_task), "--temperature", str(args.temperature),
                      *(["--alpha-cos", str(args.alpha_cos)] if args.alpha_cos else []),
                      *(["--alpha-hidden", str(args.alpha_hidden)] if args.alpha_hidden else []),
                      *(["--transfer", str(transfer)] if transfer else [])],
                     save_every)
        if not args.no_plain:
            models[f"plain{at}"] = root / plain_name
            runs.setdefault("plain", []).append(f"plain{at}")
            runner.train(root / plain_name, student, save_every)
    distilled = models["distilled"]
    limit = 64 if args.quick else None
    scores, seconds, evaluated = {}, {}, 0.0
    split = "" if args.evaluate_on == "test" else "-validation"
    for name, model in models.items():
        metrics = root / "eval" / f"{model.name}-float32{split}.json"
        summary = runner.evaluate(task, model, files[args.evaluate_on], metrics, limit=limit)
        evaluated += runner.ledger.get(f"evaluate {metrics}", 0.0)
        scores[name] = {k: v for k, v in summary["metrics"].items() if isinstance(v, (int, float))}
        scores[name]["score"] = score(summary, task)
        seconds[name] = float((model / "train_seconds.txt").read_text())
    by_seed = over_seeds({name: [scores[key]["score"] for key in keys] for name, keys in runs.items()})
    n = 32 if args.quick else (
        args.speed_inputs // 4 if task.task == "question-answering" else args.speed_inputs
    )
    speed = None
    if args.evaluate_on == "test":
        speed = measure_speed(task, teacher, distilled, inputs_for(task, files["test"], n), args.threads,
                              root / "eval" / f"speed-{distilled.name}.json")
    if args.pre_distill:  # the students' shared first stage
        seconds["pre_distill"] = float((init / "train_seconds.txt").read_text())
    t, d = scores["teacher"]["score"], by_seed["distilled"]["mean"]
    p = by_seed["plain"]["mean"] if "plain" in by_seed else None
    return {"task": task.task, "metric": task.metric_name, "steps": steps,
            "student_steps": student_steps or steps, "student_lr": lr, "scores": scores, "seeds": seeds,
            "over_seeds": by_seed,
            "retained": share(d, t), "plain_retained": None if p is None else share(p, t),
            "distilled_beats_plain": None if p is None else d > p,
            "speed": speed, "train_minutes": {k: round(v / 60, 1) for k, v in seconds.items()},
            "minutes": round((sum(seconds.values()) + evaluated) / 60, 1),
            "models": {k: str(v) for k, v in models.items()}, "student_init": str(init)}


def with_steps(common: list[str], steps: int | None) -> list[str]:
    """``common`` (``finetune_args``) with its ``--max-steps`` set to ``steps`` (None: unchanged)."""
    if steps is None:
        return list(common)
    at = common.index("--max-steps") + 1
    return [*common[:at], str(steps), *common[at + 1:]]


def share(score: float, teacher: float) -> float | None:
    """``score`` as a fraction of the teacher's (None when the teacher scored 0, as a smoke run can)."""
    return round(score / teacher, 4) if teacher else None


def fmt(score: float) -> str:
    """Scores as the metric reports them: fractions to 4 places, SQuAD's percentages to 2."""
    return f"{score:.2f}" if score > 1 else f"{score:.4f}"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def measure_speed(task, teacher: Path, student: Path, items: list, threads: int, cache: Path) -> dict:
    """Items/s of teacher and student through the Predictor on the same inputs (dtype auto), best of 5
    rounds taken in turns; kept in ``cache`` (delete it to measure again)."""
    from distilkit.inference.predictor import Predictor

    show(["(speed)", f"{len(items)} test inputs, Predictor, dtype auto, {threads} threads"])
    if cache.exists():
        print("   (measured before; reusing it)")
        return json.loads(cache.read_text())
    predictors = {name: Predictor.from_ref(str(model), task.task, num_threads=threads)
                  for name, model in (("teacher", teacher), ("student", student))}
    speed = {"inputs": len(items), "dtype": str(predictors["teacher"].dtype).removeprefix("torch.")}
    for name, (per_s, model_per_s) in items_per_second(predictors, items).items():
        speed[f"{name}_per_s"], speed[f"{name}_model_per_s"] = round(per_s, 1), round(model_per_s, 1)
        print(f"   {name}: {speed[f'{name}_per_s']}/s end to end, "
              f"{speed[f'{name}_model_per_s']}/s the model alone")
    speed["speedup"] = round(speed["student_per_s"] / speed["teacher_per_s"], 2)
    speed["model_speedup"] = round(speed["student_model_per_s"] / speed["teacher_model_per_s"], 2)
    cache.write_text(json.dumps(speed, indent=2) + "\n")
    return speed


def student_lrs(results: dict) -> str:
    """The students' learning rate(s): one figure, or one per task where they differ."""
    lrs = {key: r.get("student_lr", results["settings"]["student_lr"]) for key, r in results["tasks"].items()}
    if len(set(lrs.values())) == 1:
        return f"{next(iter(lrs.values())):g}"
    return ", ".join(f"{TASKS[key].title} {lr:g}" for key, lr in lrs.items())


def seeds_note(results: dict) -> str:
    """With several seeds: each student's scores per seed and the distilled student's wins."""
    notes = []
    for key, r in results["tasks"].items():
        summary = r["over_seeds"]
        if len(r["seeds"]) < 2:
            continue
        per = "; ".join(f"{name} " + ", ".join(fmt(v) for v in summary[name]["scores"])
                        for name in ("distilled", "plain") if name in summary)
        wins = (f"; distilled ahead with {summary['distilled_wins']} of {len(r['seeds'])} seeds"
                if "distilled_wins" in summary else "")
        notes.append(f"{TASKS[key].title}: students trained with seeds {', '.join(map(str, r['seeds']))} "
                     f"(mean ± standard deviation; {per}{wins})")
    return "".join(f"; {n}" for n in notes)


def student_cell(r: dict, name: str) -> str:
    """A student's score, or with several seeds their mean ± standard deviation."""
    summary = r["over_seeds"].get(name)
    if summary is None:  # --no-plain
        return "-"
    if len(summary["scores"]) == 1:
        return fmt(summary["mean"])
    return f"{fmt(summary['mean'])} ± {fmt(summary['std'])}"


def steps_cell(r: dict) -> str:
    """The table's steps: one number, or the teacher's / the students' when they differ."""
    students = r.get("student_steps", r["steps"])
    return str(r["steps"]) if students == r["steps"] else f"{r['steps']} / {students}"


def results_table(results: dict) -> str:
    s = results["settings"]
    lines = [
        ("| task (metric) | teacher (6 layers) | student, distilled (3 layers) | student, plain (3 layers) | "
         "distilled % of teacher | plain % of teacher | speed-up (end to end / model) | steps | "
         "training min (teacher / distilled / plain) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results["tasks"].items():
        sc, sp = r["scores"], r["speed"]
        best = "**" if r["distilled_beats_plain"] else ""
        t = fmt(sc["teacher"]["score"])
        d, p = (student_cell(r, k) for k in ("distilled", "plain"))
        speedup = f"{sp['speedup']}x / {sp['model_speedup']}x" if sp else "-"
        metric = r["metric"] if s["evaluate_on"] == "test" else "validation"
        lines.append(
            f"| {TASKS[key].title} ({metric}) | {t} | {best}{d}{best} | {p} | "
            f"{percent(r['retained'])} | {percent(r['plain_retained'])} | {speedup} | {steps_cell(r)} | "
            + " / ".join(f"{r['train_minutes'][k]:g}" if k in sc else "-"
                         for k in ("teacher", "distilled", "plain")) + " |"
        )
    lines += ["", (f"Teachers: all-MiniLM-L6-v2 fine-tuned, lr {s['teacher_lr']:g}. Students: init-student "
                   f"layers {s['layers']}, lr {student_lrs(results)}; distilled with α_ce {s['alpha_ce']:g}, "
                   f"α_task {s['alpha_task']:g}, T {s['temperature']:g}"
                   + (f", α_cos {s['alpha_cos']:g}" if s.get("alpha_cos") else "")
                   + (f", α_hidden {s['alpha_hidden']:g} (each layer against the teacher layer it was copied "
                      "from)" if s.get("alpha_hidden") else "")
                   + ("; the distilled student also learns from its teacher alone on inputs without labels "
                      "(`finetune --transfer`; QA: SQuAD v2.0's unanswerable questions on the training "
                      "articles)" if s.get("transfer") else "")
                   + (f"; both students first pulled toward the teacher's last hidden states on the task's "
                      f"unlabelled training text for {s['pre_distill']} steps (distill --alpha-cos 1 alone)"
                      if s.get("pre_distill") else "")
                   + seeds_note(results)
                   + f". Batch {s['batch_size']}; scores in "
                   f"fp32; speed through the Predictor on the same test inputs, {s['threads']} threads. "
                   f"Whole study: {results['minutes']:.0f} min of commands."), ""]
    if "squad" in results["tasks"]:
        articles = ("1-38", "39-48") if s["evaluate_on"] == "test" else ("1-32", "33-38 (validation)")
        lines[-1:-1] = ["", ("QA: no SQuAD train split here; the models train on SQuAD v1.1 dev articles "
                             f"{articles[0]} (256-token windows, stride 128) and are scored on articles "
                             f"{articles[1]} (384/128 windows, the official v1.1 F1).")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

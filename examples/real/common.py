"""What the real-weights studies share: the tasks and their data, `distilkit` commands that resume, timing.

Every training and evaluation is a `distilkit` command run as a subprocess (printed as it runs, so
each step can be copied to a shell). A finished step is reused on the next run: a training is done
when its model directory holds ``train_seconds.txt``, an evaluation when its JSON file exists.

``--budget-min M`` stops a run after about M minutes so that long studies can run in chunks on a
shared machine: a training is stopped only once it has written a checkpoint after the deadline
(``finetune --save-every``), and the next run resumes it exactly (``--resume auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
MINILM = "models/all-MiniLM-L6-v2"
SQUAD_TRAIN_ARTICLES = 38  # SQuAD v1.1 dev articles 1-38 train the QA models, 39-48 score them
SQUAD_VALIDATION_ARTICLES = 6  # QA hyperparameters: train on articles 1-32, score on 33-38 (never 39-48)


@dataclass(frozen=True)
class Task:
    """One fine-tuning task of the studies: its data, how it is scored and its training length."""

    key: str
    title: str
    task: str  # pipeline tag
    train: str  # path under shared/data, or "squad-train" (made from SQuAD dev by prepare_data)
    test: str
    metric: str  # key in the evaluation's metrics
    metric_name: str
    steps: int  # optimizer steps of every training (full mode)
    save_every: int  # checkpoint interval: about a minute of training
    glue_task: str | None = None
    validation: str | None = None  # where hyperparameters are chosen (never the test data)
    validation_train: str | None = None  # what validation runs train on when ``validation`` is cut from
    # ``train`` (QA): those runs get their own models, ``KEY-validation/``
    train_flags: tuple[str, ...] = ()  # finetune flags of this task's trainings only
    student_lr: float = 1e-4  # peak learning rate of the task's students (distill_tasks.py)


TASKS = {
    "sst2": Task("sst2", "SST-2", "text-classification", "sst2/train.tsv", "sst2/dev.tsv", "accuracy",
                 "dev accuracy", 2000, 250, glue_task="SST-2"),
    "emotion": Task("emotion", "emotion", "text-classification", "emotion/train.txt", "emotion/test.txt",
                    "accuracy", "test accuracy", 1500, 250, validation="emotion/val.txt"),
    "conll": Task("conll", "CoNLL-2003", "token-classification", "conll2003/train.txt", "conll2003/test.txt",
                  "f1", "test entity F1", 1320, 250, validation="conll2003/valid.txt"),
    # QA trains on 256-token windows (stride 128; scored with the usual 384/128) for 300 steps of 32
    # windows, about one epoch: at 384 tokens three models would take ~2 h of the 2-core machine. In one
    # epoch the 3-layer students learn QA far too slowly at 1e-4 (F1 25 distilled, 18 plain); their 8e-4
    # is the best of 5e-4, 8e-4 and 1.2e-3 on the validation articles (--evaluate-on validation).
    "squad": Task("squad", "SQuAD v1.1 (QA)", "question-answering", "squad-train", "squad-test", "f1",
                  "F1, articles 39-48", 300, 25, train_flags=("--max-seq-len", "256", "--doc-stride", "128"),
                  student_lr=8e-4, validation="squad-validation", validation_train="squad-validation-train"),
}


class BudgetReached(Exception):
    """The run's ``--budget-min`` is spent; finished steps are kept and the next run continues."""


class Runner:
    """Runs `distilkit` commands for one study: printing them, timing them, stopping at the budget.

    Seconds of finished steps are kept in ``OUT/timings.json`` (by step), so a study run in chunks
    still reports what the whole run took.

    Args:
        out: the study's run folder.
        budget_min: stop trainings at their first checkpoint after this many minutes (None: no limit).
        threads: CPU threads per command (DISTILKIT_NUM_THREADS).
    """

    def __init__(self, out: Path, budget_min: float | None = None, threads: int | None = None):
        self.deadline = None if budget_min is None else time.monotonic() + 60 * budget_min
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if threads:
            self.env["DISTILKIT_NUM_THREADS"] = str(threads)
        self.ledger_path = out / "timings.json"
        self.ledger = json.loads(self.ledger_path.read_text()) if self.ledger_path.exists() else {}

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def record(self, key: str, seconds: float) -> None:
        """Keep the seconds a finished step took (a re-run of the step replaces them)."""
        self.ledger[key] = round(seconds, 1)
        self.ledger_path.write_text(json.dumps(self.ledger, indent=2) + "\n")

    def minutes(self, prefix: str = "") -> float:
        """Minutes of the recorded steps whose key starts with ``prefix``."""
        return sum(v for k, v in self.ledger.items() if k.startswith(prefix)) / 60

    def run(self, args: list[str], checkpoints: Path | None = None, in_process: bool = False) -> float:
        """Run ``distilkit ARGS``; return its seconds. With a budget and ``checkpoints``, a command still
        running past the deadline is stopped at its next new checkpoint (BudgetReached).

        ``in_process``: call the same typer app in this process (short commands: saves the ~3 s of
        importing torch and transformers each time)."""
        show(args)
        if self.expired():
            raise BudgetReached
        start = time.perf_counter()
        if in_process:
            from distilkit.cli.app import app

            os.environ.update(
                {k: v for k, v in self.env.items() if k.startswith(("DISTILKIT_", "HF_", "TOK"))}
            )
            try:
                app(args, standalone_mode=False)
            except ValueError as err:
                sys.exit(f"distilkit {args[0]} failed: {err}")
            return time.perf_counter() - start
        proc = subprocess.Popen([sys.executable, "-m", "distilkit", *args], env=self.env)
        seen: set[str] | None = None
        while proc.poll() is None:
            time.sleep(1)
            if checkpoints is None or not self.expired():
                continue
            now = {p.name for p in checkpoints.glob("step-*") if not p.name.endswith(".tmp")}
            if seen is None:
                seen = now
            elif now - seen:  # a checkpoint written after the deadline: nothing is lost by stopping here
                proc.terminate()
                proc.wait()
                raise BudgetReached
        if proc.returncode != 0:
            sys.exit(f"distilkit {args[0]} failed (exit {proc.returncode}); see its output above")
        return time.perf_counter() - start

    def train(self, out: Path, args: list[str], save_every: int, command: str = "finetune") -> float:
        """``distilkit COMMAND ARGS --output OUT`` (finetune or distill) unless OUT is finished; returns
        its training seconds (summed over resumed chunks)."""
        done, partial = out / "train_seconds.txt", out / "train_seconds.partial"
        if done.exists():
            show([command, *args, "--output", str(out)], note="(done before; reusing it)")
            self.record(f"train {out}", float(done.read_text()))
            return float(done.read_text())
        before = float(partial.read_text()) if partial.exists() else 0.0
        start = time.perf_counter()
        try:
            self.run([command, *args, "--output", str(out), "--save-every", str(save_every),
                      "--resume", "auto", "--no-progress"], checkpoints=out / "checkpoints")
        except BudgetReached:
            partial.write_text(f"{before + time.perf_counter() - start:.1f}\n")
            raise
        seconds = before + time.perf_counter() - start
        done.write_text(f"{seconds:.1f}\n")
        self.record(f"train {out}", seconds)
        partial.unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # ~3x the model's size; the run is over
        return seconds

    def evaluate(self, task: Task, model: Path, data: Path, out: Path, dtype: str = "float32",
                 limit: int | None = None) -> dict[str, Any]:
        """``distilkit evaluate`` into ``out`` and its predictions into ``predictions_path(out)`` (reused
        when both exist); returns the summary."""
        if not (out.exists() and predictions_path(out).exists()):
            args = ["evaluate", task.task, "--model", str(model), "--data", str(data), "--output", str(out),
                    "--predictions", str(predictions_path(out)), "--dtype", dtype, "--no-update-model-dir"]
            if task.glue_task:
                args += ["--glue-task", task.glue_task]
            if limit:
                args += ["--limit", str(limit)]
            self.record(f"evaluate {out}", self.run(args, in_process=True))
        return json.loads(out.read_text())


def predictions_path(metrics: Path) -> Path:
    return metrics.with_suffix(".predictions.jsonl")


def read_predictions(metrics: Path) -> list[Any]:
    """Per example, what the model predicted (a label, a tag list, an answer text)."""
    rows = [json.loads(line) for line in predictions_path(metrics).read_text(encoding="utf-8").splitlines()]
    return [r["predicted"] if "predicted" in r else r["prediction"] for r in rows]


def train_teacher(runner: Runner, shared: Path, root: Path, task: Task, train: Path, quick: bool, lr: float,
                  batch_size: int) -> Path:
    """``root/teacher``: all-MiniLM-L6-v2 fine-tuned on the task (every study uses this one)."""
    teacher = root / "teacher"
    runner.train(teacher, [*finetune_args(task, train, quick, batch_size), "--model", str(shared / MINILM),
                           "--lr", str(lr)], 4 if quick else task.save_every)
    return teacher


def finetune_args(task: Task, train: Path, quick: bool, batch_size: int) -> list[str]:
    """The ``finetune`` arguments every model of a task shares (data, steps, batch, logging)."""
    args = [task.task, "--train", str(train), "--max-steps", str(8 if quick else task.steps), "--batch-size",
            str(8 if quick else batch_size), "--log-every", "2" if quick else "50"]
    return args + (["--glue-task", task.glue_task] if task.glue_task else []) + list(task.train_flags)


def study_models(out: Path, key: str) -> dict[str, Path]:
    """The fine-tuned models of ``key`` in a run folder: the teacher and, once distill_tasks.py has run,
    its distilled student."""
    models = {}
    if (out / key / "teacher" / "train_seconds.txt").exists():
        models["teacher"] = out / key / "teacher"
    results = out / "results.json"
    if results.exists():
        task = json.loads(results.read_text()).get("tasks", {}).get(key)
        if task and Path(task["models"]["distilled"]).exists():
            models["distilled student"] = Path(task["models"]["distilled"])
    return models


def show(args: list[str], note: str = "") -> None:
    print(f"\n$ distilkit {' '.join(args)} {note}".rstrip(), flush=True)


def score(summary: dict[str, Any], task: Task) -> float:
    """The task's headline metric from an evaluation summary."""
    return float(summary["metrics"][task.metric])


# --- data -----------------------------------------------------------------------------------------------
def prepare_data(shared: Path, out: Path, quick: bool) -> dict[str, dict[str, Path]]:
    """Train/test files per task: the shared files, the SQuAD split, and small subsets in quick mode."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    squad = json.loads((shared / "data/squad/dev-v1.1.json").read_text(encoding="utf-8"))
    files = {}
    for key, task in TASKS.items():
        paths = {}
        splits = [("train", task.train), ("test", task.test)]
        splits += [(split, name) for split, name in (("validation", task.validation),
                                                     ("validation_train", task.validation_train)) if name]
        for split, name in splits:
            if name.startswith("squad-"):
                articles = squad_articles(squad["data"], split)
                if quick:  # a few paragraphs of a few articles
                    articles = [{**a, "paragraphs": a["paragraphs"][:3]} for a in articles[:4]]
                path = data / f"{name}.json"
                _write_once(path, json.dumps({"version": "1.1", "data": articles}))
            else:
                path = shared / "data" / name
                if quick:
                    path = _head(path, data / f"{key}-{split}{path.suffix}", 256 if split == "train" else 64)
            paths[split] = path
        if task.task == "question-answering":  # teacher-labelled extra questions (distill_tasks --transfer)
            v2 = json.loads((shared / "data/squad/dev-v2.0.json").read_text(encoding="utf-8"))["data"]
            for split, titles in (("transfer", "train"), ("validation_transfer", "validation_train")):
                articles = squad_articles(squad["data"], titles)[: 4 if quick else None]
                paths[split] = data / f"squad-{split.replace('_', '-')}.json"
                _write_once(paths[split], json.dumps(squad_unanswerable(v2, articles, quick)))
        files[key] = paths
    return files


def squad_unanswerable(v2: list[dict], articles: list[dict], quick: bool = False) -> dict:
    """The unanswerable questions of SQuAD v2.0 dev's articles ``v2`` on ``articles`` (matched by title):
    new questions on the same paragraphs, with no answer for the study's QA models to learn, only their
    teacher's outputs."""
    titles = {a["title"] for a in articles}
    out = []
    for article in v2:
        if article["title"] not in titles:
            continue
        paragraphs = [{"context": p["context"], "qas": [q for q in p["qas"] if q.get("is_impossible")]}
                      for p in article["paragraphs"][: 3 if quick else None]]
        out.append({"title": article["title"], "paragraphs": [p for p in paragraphs if p["qas"]]})
    return {"version": "v2.0", "data": out}


def squad_articles(articles: list[dict], split: str) -> list[dict]:
    """The SQuAD v1.1 dev articles of one split of the QA study: train 1-38, test 39-48; for choosing
    hyperparameters, validation_train 1-32 and validation 33-38."""
    cut = SQUAD_TRAIN_ARTICLES - SQUAD_VALIDATION_ARTICLES
    return {"train": articles[:SQUAD_TRAIN_ARTICLES], "test": articles[SQUAD_TRAIN_ARTICLES:],
            "validation_train": articles[:cut], "validation": articles[cut:SQUAD_TRAIN_ARTICLES]}[split]


def _head(source: Path, target: Path, n: int) -> Path:
    """The first ``n`` examples of a data file (CoNLL: sentences; TSV: rows after the header)."""
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".txt" and text.startswith("-DOCSTART-"):
        blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
        body = "\n\n".join(blocks[:n]) + "\n"
    else:
        lines = text.splitlines()
        header = lines[:1] if source.suffix == ".tsv" else []
        body = "\n".join(header + lines[len(header) : len(header) + n]) + "\n"
    _write_once(target, body)
    return target


def _write_once(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def inputs_for(task: Task, test: Path, n: int) -> list[Any]:
    """The first ``n`` inputs of a test file, as the Predictor takes them (the same for every model)."""
    from distilkit.evaluation import datasets
    from distilkit.evaluation.evaluate import word_spans

    if task.task == "question-answering":
        examples, _ = datasets.read_squad(test)
        return [{"question": ex.question, "context": ex.context} for ex in examples[:n]]
    if task.task == "token-classification":
        return [word_spans(ex.words)[0] for ex in datasets.read_conll(test)[:n]]
    return [ex.text for ex in datasets.read_labelled(test, task.glue_task)[:n]]


def task_texts(task: Task, train: Path) -> list[str]:
    """The unlabelled text of a task's training file, one document per line (QA: each context once)."""
    from distilkit.evaluation import datasets

    if task.task == "question-answering":
        examples, _ = datasets.read_squad(train)
        return list(dict.fromkeys(ex.context for ex in examples))
    if task.task == "token-classification":
        return [" ".join(ex.words) for ex in datasets.read_conll(train)]
    examples = datasets.read_labelled(train, task.glue_task)
    return [" ".join(filter(None, (ex.text, ex.text_pair))) for ex in examples]


# --- speed ----------------------------------------------------------------------------------------------
def items_per_second(predictors: dict[str, Any], items: list[Any], repeats: int = 5) -> dict[str, tuple]:
    """Per predictor, (end to end, model only) items/s on ``items``, best of ``repeats``. The predictors
    take turns in every round, so a change in machine load hits them alike; the model-only figure
    runs the already tokenized features (no tokenizing or decoding)."""
    best = {name: [float("inf"), float("inf")] for name in predictors}
    features = {}
    for name, predictor in predictors.items():
        predictor.predict(items[:16])  # warm-up: first-call allocations, kernel selection
        features[name] = predictor.prepare(items).features
    for _ in range(repeats):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(items)
            best[name][0] = min(best[name][0], time.perf_counter() - start)
            start = time.perf_counter()
            predictor.run(features[name])
            best[name][1] = min(best[name][1], time.perf_counter() - start)
    return {name: (len(items) / e2e, len(items) / model) for name, (e2e, model) in best.items()}


def write_results(out: Path, results: dict[str, Any], table: str, stem: str = "results") -> None:
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"results in {out / f'{stem}.json'} and {out / f'{stem}.md'}")


def check_shared(shared: Path) -> None:
    for path in (shared / MINILM / "model.safetensors", shared / "data" / "squad" / "dev-v1.1.json"):
        if not path.exists():
            sys.exit(f"missing {path}: pass --shared DIR (the folder with models/ and data/)")


def study_parser(doc: str, tasks: dict[str, Any]) -> argparse.ArgumentParser:
    """The flags every study takes (--shared, --output, --tasks); the script adds its own."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (models/, data/)")
    p.add_argument("--output", type=Path, default=None, help="run folder [runs/real or runs/real-quick]")
    p.add_argument("--tasks", default=",".join(tasks), help=f"comma-separated subset of {list(tasks)}")
    return p


def open_run(args: argparse.Namespace, threads: int | None = None) -> tuple[Path, Runner, dict]:
    """Check ../shared, make the run folder, and return it with its Runner and the prepared data files."""
    check_shared(args.shared)
    out = args.output or ROOT / "runs" / ("real-quick" if args.quick else "real")
    out.mkdir(parents=True, exist_ok=True)
    return out, Runner(out, args.budget_min, threads), prepare_data(args.shared, out, args.quick)

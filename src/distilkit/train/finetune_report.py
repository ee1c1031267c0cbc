"""What a fine-tuning run reports: the validation metrics (through the Predictor) and the model card."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distilkit.config import FinetuneConfig
from distilkit.train import label_space, task_data


def evaluate_output(cfg: FinetuneConfig, output: Path, space: label_space.LabelSpace) -> dict[str, Any]:
    """Evaluate the saved model directory on ``--validation`` through the Predictor (what serving runs)."""
    from distilkit.evaluation import evaluate as ev
    from distilkit.inference.predictor import Predictor

    dtype = "float32" if cfg.precision == "float32" else "auto"
    predictor = Predictor.from_ref(str(output), cfg.task, dtype=dtype, device="cpu" if cfg.cpu else None)
    start = time.perf_counter()
    if space.problem_type == label_space.MULTI:
        result = evaluate_multi_label(
            predictor, task_data.read_examples(cfg.task, cfg.validation, cfg.glue_task, "--validation")
        )
    else:
        result = ev.evaluate(predictor, cfg.validation, glue_task=cfg.glue_task)
    result.seconds = time.perf_counter() - start
    glue = {"glue_task": cfg.glue_task} if cfg.glue_task else {}
    return {"model": str(output), "data": str(cfg.validation), **glue, **result.summary()}


def evaluate_multi_label(predictor: Any, examples: list[Any], threshold: float = 0.5) -> Any:
    """Subset accuracy and micro P/R/F1 of the labels whose sigmoid score reaches ``threshold``."""
    from distilkit.evaluation import evaluate as ev

    items = [
        ex.text if ex.text_pair is None else {"text": ex.text, "text_pair": ex.text_pair} for ex in examples
    ]
    results = ev.predict_all(predictor, items, {"top_k": None, "function_to_apply": "sigmoid"})
    predicted = [sorted(r["label"] for r in res if r["score"] >= threshold) for res in results]
    gold = [sorted(label_space.parse_multi_label(ex.label)) for ex in examples]
    hits = sum(len(set(g) & set(p)) for g, p in zip(gold, predicted, strict=True))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    precision, recall = hits / n_pred if n_pred else 0.0, hits / n_gold if n_gold else 0.0
    scores = {
        "subset_accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold),
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }
    records = [
        {"text": ex.text, "gold": g, "predicted": p}
        for ex, g, p in zip(examples, gold, predicted, strict=True)
    ]
    return ev.Evaluation("text-classification", scores, records, examples=len(examples))


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) metrics dict by ``/``-joined name, for TensorBoard (strings dropped)."""
    scalars: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            scalars.update(scalar_metrics(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[prefix + key] = float(value)
    return scalars


def headline(summary: dict[str, Any]) -> str:
    m = summary["metrics"]
    keys = ("score", "accuracy", "f1", "exact_match", "exact", "pearson", "micro_f1")
    return ", ".join(f"{k}={m[k]:.4f}" for k in keys if isinstance(m.get(k), float)) or "see metrics.json"


def render_card(
    cfg: FinetuneConfig,
    config: Any,
    space: label_space.LabelSpace,
    data: task_data.TrainData,
    state: dict[str, Any],
    summary: dict[str, Any] | None,
) -> str:
    """The run's model card: what was trained how, the results, how to load it (``distilkit.cards``'
    layout; ``distilkit evaluate`` later rewrites the results section from the run's metrics.json)."""
    from distilkit import cards

    arch = config.architectures[0]
    init = "random init, `--init scratch`" if cfg.init == "scratch" else "its pretrained weights"
    alpha_ce, alpha_task = cfg.loss_weights()
    teacher = f", distilled from the task teacher `{cfg.teacher}`." if cfg.teacher else "."
    intro = (
        f"A {cfg.task} model ({arch}, {config.num_hidden_layers} layers x {config.hidden_size}) fine-tuned "
        f"with `distilkit finetune` from `{cfg.model}` ({init}) on `{Path(cfg.train).name}`{teacher}"
    )
    labelled = len(data) if data.labelled_rows is None else data.labelled_rows
    fields = [("task", cfg.task), ("architecture", arch), ("base model", cfg.model),
              ("training data", f"{cfg.train} ({data.examples} examples, {labelled} rows)")]
    if cfg.transfer is not None:
        fields.append(("transfer data (teacher-labelled)",
                       f"{cfg.transfer} ({data.transfer_examples} examples, {len(data) - labelled} rows)"))
    if space.labels:
        fields.append(("labels", ", ".join(f"`{x}`" for x in space.labels)))
    if space.problem_type:
        fields.append(("problem type", space.problem_type))
    kl = f"{alpha_ce}·KL(teacher/T ‖ student/T)·T² (T={cfg.temperature})"
    cos = f" + {cfg.alpha_cos}·(1 − cos) of the last hidden states" if cfg.alpha_cos else ""
    hidden = (f" + {cfg.alpha_hidden}·(1 − cos) of each layer's output and its teacher layer's"
              if cfg.alpha_hidden else "")
    distilled = f"{kl}{cos}{hidden} + {alpha_task}·task loss."
    loss = f"loss {distilled}" if cfg.teacher else "task loss."
    procedure = (
        f"{state['step']} optimizer steps of {cfg.batch_size * cfg.grad_accumulation} rows, "
        f"AdamW lr {cfg.lr} (warmup {cfg.warmup:.0%}, linear decay), weight decay {cfg.weight_decay}, "
        f"seed {cfg.seed}; {loss} The resolved options are in `config.yaml`, the loss curve in "
        "`metrics.csv`."
    )
    sections = [cards.section("Training procedure", procedure), cards.results_section(summary or {}),
                cards.usage_section(cfg.task, cfg.output)]
    return cards.render(Path(cfg.output).name, intro, fields, sections)

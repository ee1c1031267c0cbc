"""Fine-tuned real models in a few dozen KB: all-MiniLM-L6-v2's real weights plus committed "heads".

A head file (``minilm-heads/TASK.safetensors``) holds what a parameter-efficient fine-tuning
(BitFit: biases and LayerNorms, plus the new task head) changed on top of the real encoder in
``../shared/models/all-MiniLM-L6-v2``, in float16 (exactly representable, so every load is the
same fp32 model). ``assemble`` rebuilds the fine-tuned model from the two; it runs unchanged in
transformers 4.57.1 (record_real_qa.py) and 5.x (the parity test). Built by build_real_heads.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADS = HERE / "minilm-heads"
MINILM = Path("models") / "all-MiniLM-L6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}


def is_tuned(name: str) -> bool:
    """The parameters BitFit trains: biases and LayerNorms (the task head is trained whole)."""
    return name.endswith(".bias") or "LayerNorm" in name or not name.startswith("bert.")


def minilm_sha256(shared: Path) -> str:
    digest = hashlib.sha256()
    with open(shared / MINILM / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(shared: Path, task: str, target: Path) -> Path:
    """Save the fine-tuned model of ``task`` (real encoder + committed head file) as a model dir."""
    import torch
    import transformers
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    path = HEADS / f"{task}.safetensors"
    with safe_open(str(path), "pt") as f:
        labels = json.loads(f.metadata()["labels"])
        delta = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118  (safe_open has no __iter__)
    source = shared / MINILM
    config = AutoConfig.from_pretrained(source)
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    model = getattr(transformers, AUTO_CLASSES[task]).from_pretrained(source, config=config)
    missing = set(model.state_dict()) - set(delta)
    untouched = {k for k in missing if k.startswith("bert.") and not is_tuned(k)}
    if missing - untouched:  # everything not in the real checkpoint must come from the head file
        raise RuntimeError(f"{path} lacks {sorted(missing - untouched)[:5]}")
    with torch.no_grad():
        model.load_state_dict(delta, strict=False)
    target.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


# --- the QA parity inputs: SQuAD v1.1 dev articles 39-48, which the QA head never trained on -------------
SQUAD_FILE = Path("data") / "squad" / "dev-v1.1.json"
QA_TEST_ARTICLES = slice(38, None)
QA_PARAMS = [{}, {"top_k": 3}, {"max_answer_len": 4}, {"handle_impossible_answer": True}]


def qa_questions(shared: Path, n: int = 60) -> list[dict]:
    """``n`` questions spread evenly over articles 39-48 (id, question, context), the longest context
    of those articles first so that several windows are always covered."""
    doc = json.loads((shared / SQUAD_FILE).read_text(encoding="utf-8"))
    rows = [
        {"id": qa["id"], "question": qa["question"], "context": p["context"]}
        for article in doc["data"][QA_TEST_ARTICLES]
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]
    longest = max(rows, key=lambda r: len(r["context"]))
    step = len(rows) // (n - 1)
    return [longest] + [r for r in rows[::step] if r is not longest][: n - 1]

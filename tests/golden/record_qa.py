"""Record transformers 4.57.1 QuestionAnsweringPipeline outputs as golden files for distilkit's parity tests.

Run (the side venv with transformers==4.57.1; the repo's own venv has 5.x, which has no QA pipeline):

    bash benchmarks/setup_peer.sh
    HF_HUB_OFFLINE=1 .venv-peer/bin/python tests/golden/record_qa.py [--shared ../shared]

Writes tests/golden/qa_tiny.json (the committed tiny fixture over hand-written pairs x a parameter
grid, plus the call conventions) and tests/golden/qa_squad.json (a real-shape DistilBERT with
weights from weights.py over 100 SQuAD v1.1 dev questions: only ids and score/start/end are
stored, never SQuAD text).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import transformers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from qa_cases import CALLS, PAIRS, PARAM_GRID, SQUAD_MODEL, select_squad
from weights import load_deterministic

REFERENCE_VERSION = "4.57.1"
FIXTURE = HERE / "qa-tiny-model"


def record_tiny() -> dict:
    """The fixture over every pair for each parameter set, and each call convention."""
    qa = transformers.pipeline("question-answering", model=str(FIXTURE), device=-1)
    questions = [q for q, _ in PAIRS]
    contexts = [c for _, c in PAIRS]
    grid = [
        {"params": params, "outputs": qa(question=questions, context=contexts, **params)}
        for params in PARAM_GRID
    ]
    calls = []
    for call in CALLS:
        args, kwargs = call_arguments(call)
        calls.append({**call, "output": qa(*args, **kwargs, **call["params"])})
    return {"reference": REFERENCE_VERSION, "pairs": [list(p) for p in PAIRS], "grid": grid, "calls": calls}


def call_arguments(call: dict) -> tuple[tuple, dict]:
    """(args, kwargs) of one recorded call form; the parity test builds the same call."""
    pairs = [{"question": PAIRS[i][0], "context": PAIRS[i][1]} for i in call["pairs"]]
    form = call["form"]
    if form == "kwargs":
        return (), {"question": pairs[0]["question"], "context": pairs[0]["context"]}
    if form == "kwargs_lists":
        return (), {"question": [p["question"] for p in pairs], "context": [p["context"] for p in pairs]}
    if form == "broadcast":  # several questions, the first pair's context
        return (), {"question": [p["question"] for p in pairs], "context": pairs[0]["context"]}
    if form == "positional_pair":
        return (pairs[0]["question"], pairs[0]["context"]), {}
    if form == "dict":
        return (pairs[0],), {}
    if form == "list":
        return (pairs,), {}
    if form == "dict_of_lists":
        return ({"question": [p["question"] for p in pairs], "context": [p["context"] for p in pairs]},), {}
    raise ValueError(f"unknown call form {form!r}")


def record_squad(shared: Path) -> dict:
    """The real-shape config/tokenizer with deterministic weights over the selected SQuAD questions."""
    from transformers import AutoConfig, AutoTokenizer, DistilBertForQuestionAnswering

    model_dir = shared / "models" / SQUAD_MODEL
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = DistilBertForQuestionAnswering(AutoConfig.from_pretrained(model_dir)).eval()
    digest = load_deterministic(model, seed=0)
    qa = transformers.pipeline("question-answering", model=model, tokenizer=tokenizer, device=-1)
    selected = select_squad(shared, tokenizer)
    outputs = qa(question=[s["question"] for s in selected], context=[s["context"] for s in selected])
    rows = []
    for s, out in zip(selected, outputs, strict=True):
        assert out["answer"] == s["context"][out["start"] : out["end"]]  # recorder self-check, not user input
        scored = {k: out[k] for k in ("score", "start", "end")}
        rows.append({"id": s["id"], "windows": s["windows"], **scored})
    return {
        "reference": REFERENCE_VERSION,
        "model": SQUAD_MODEL,
        "weights": {"seed": 0, "sha256": digest},
        "params": {},
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared")
    parser.add_argument("--skip-squad", action="store_true")
    args = parser.parse_args()
    if transformers.__version__ != REFERENCE_VERSION:
        sys.exit(
            f"record_qa.py needs transformers=={REFERENCE_VERSION} (the reference), "
            f"found {transformers.__version__}"
        )
    write(HERE / "qa_tiny.json", record_tiny())
    if not args.skip_squad:
        write(HERE / "qa_squad.json", record_squad(args.shared))


def write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

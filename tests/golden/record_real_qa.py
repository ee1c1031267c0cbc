"""Record transformers 4.57.1's QuestionAnsweringPipeline on the fine-tuned real MiniLM QA model.

Run (the peer venv; transformers 5 has no QA pipeline), from the repo root:

    bash benchmarks/setup_peer.sh && HF_HUB_OFFLINE=1 .venv-peer/bin/python tests/golden/record_real_qa.py

The model is ../shared's all-MiniLM-L6-v2 plus the committed head file (real_heads.py); the inputs are
SQuAD v1.1 dev questions of articles 39-48 under each parameter set of ``QA_PARAMS``. Writes
tests/golden/minilm_qa.json: ids, score, start and end only (no SQuAD text).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import transformers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from real_heads import MINILM_SHA256, QA_PARAMS, assemble, minilm_sha256, qa_questions

REFERENCE_VERSION = "4.57.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared")
    args = parser.parse_args()
    if transformers.__version__ != REFERENCE_VERSION:
        sys.exit(f"needs transformers=={REFERENCE_VERSION}, found {transformers.__version__}")
    if minilm_sha256(args.shared) != MINILM_SHA256:
        sys.exit("../shared's all-MiniLM-L6-v2 is not the one the heads were built on")
    questions = qa_questions(args.shared)
    with tempfile.TemporaryDirectory() as tmp:
        model = assemble(args.shared, "question-answering", Path(tmp) / "qa")
        qa = transformers.pipeline("question-answering", model=str(model), device=-1)
        grid = []
        for params in QA_PARAMS:
            outputs = qa(question=[q["question"] for q in questions],
                         context=[q["context"] for q in questions], **params)
            rows = []
            for q, out in zip(questions, outputs, strict=True):
                ranked = out if isinstance(out, list) else [out]
                answers = [{k: a[k] for k in ("score", "start", "end")} for a in ranked]
                rows.append({"id": q["id"], "answers": answers})
            grid.append({"params": params, "rows": rows})
    path = HERE / "minilm_qa.json"
    path.write_text(json.dumps({"reference": REFERENCE_VERSION, "base_sha256": MINILM_SHA256, "grid": grid},
                               indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

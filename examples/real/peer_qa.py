"""The question-answering reference for parity.py: transformers 4.57.1's pipeline, run in the peer venv.

    .venv-peer/bin/python examples/real/peer_qa.py REQUEST.json OUTPUT.json

REQUEST holds ``{"model": DIR, "questions": [...], "contexts": [...], "params": [{...}, ...]}``;
OUTPUT gets, per parameter set, the pipeline's answers (always a list per question). transformers
5 removed this pipeline, so parity.py runs it here (``bash benchmarks/setup_peer.sh`` makes the
venv). Imports transformers only: distilkit is not installed in the peer venv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import transformers


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    qa = transformers.pipeline("question-answering", model=request["model"], device=-1)
    grid = []
    for params in request["params"]:
        outputs = qa(question=request["questions"], context=request["contexts"], **params)
        grid.append([out if isinstance(out, list) else [out] for out in outputs])
    Path(sys.argv[2]).write_text(
        json.dumps({"version": transformers.__version__, "grid": grid}), encoding="utf-8"
    )


if __name__ == "__main__":
    main()

"""Build the committed tiny DistilBertForQuestionAnswering fixture in tests/golden/qa-tiny-model/.

Run: python tests/golden/build_qa_fixture.py   (transformers 5.x venv; the result also loads in 4.57.1)

Seeded, so a rebuild gives the same weights; after a rebuild, re-record with record_qa.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tiny_models import make_config, wordpiece_tokenizer

FIXTURE = HERE / "qa-tiny-model"
MAX_POSITIONS = 512  # so the default max_seq_len (384) applies, as on the real model


def build(path: Path = FIXTURE, seed: int = 0) -> Path:
    """Save the fixture: 2 layers, hidden 32, cased WordPiece vocabulary of ~300 tokens."""
    from transformers import DistilBertForQuestionAnswering

    tokenizer = wordpiece_tokenizer(max_length=MAX_POSITIONS)
    config = make_config(
        "distilbert", "question-answering", vocab_size=len(tokenizer), max_positions=MAX_POSITIONS
    )
    # Wide weights spread the start/end logits (std ~3), so span scores are far from ties.
    config.initializer_range = 0.3
    torch.manual_seed(seed)
    model = DistilBertForQuestionAnswering(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


if __name__ == "__main__":
    print(build())

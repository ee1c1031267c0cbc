"""Benchmark workloads cut from ../shared data at run time (nothing from it is stored in the repo)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def wikitext_paragraphs(shared: Path) -> list[str]:
    """Non-heading lines of WikiText-2 test+valid, stripped."""
    lines = []
    for split in ("test", "valid"):
        text = (shared / "data" / "wikitext-2" / f"{split}.txt").read_text(encoding="utf-8")
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("="):
                lines.append(line)
    return lines


def _mask_one_word(text: str, mask: str, rng: random.Random) -> str | None:
    words = text.split()
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 2]
    if not candidates:
        return None
    words[rng.choice(candidates)] = mask
    return " ".join(words)


def fill_mask_texts(shared: Path, tokenizer: Any, n: int, tokens: int, seed: int = 0) -> list[str]:
    """``n`` texts of about ``tokens`` tokens (±15%) with exactly one word replaced by the mask token.

    Short texts are whole sentences; long ones are paragraph prefixes cut at a word boundary.
    """
    rng = random.Random(seed)
    lo, hi = int(tokens * 0.85), int(tokens * 1.15)
    pieces = []
    for para in wikitext_paragraphs(shared):
        pieces.extend(s.strip() + " ." for s in para.split(" . ")) if tokens < 60 else pieces.append(para)
    rng.shuffle(pieces)
    out: list[str] = []
    for piece in pieces:
        enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
        n_tok = len(enc["input_ids"])
        if tokens < 60:
            if not lo <= n_tok + 2 <= hi:
                continue
            text = piece
        else:
            if n_tok + 2 < hi:
                continue
            cut = enc["offset_mapping"][tokens - 3][1]
            text = piece[:cut].rsplit(" ", 1)[0]
        masked = _mask_one_word(text, tokenizer.mask_token, rng)
        if masked is not None:
            out.append(masked)
        if len(out) == n:
            return out
    raise ValueError(f"WikiText-2 yielded only {len(out)} texts of ~{tokens} tokens (wanted {n})")


def squad_questions(shared: Path, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` SQuAD v1.1 dev questions (seeded sample) with their contexts: {"id","question","context"}."""
    data = json.loads((shared / "data" / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    rows = [
        {"id": qa["id"], "question": qa["question"], "context": para["context"]}
        for article in data
        for para in article["paragraphs"]
        for qa in para["qas"]
    ]
    return random.Random(seed).sample(rows, n)

"""The question-answering golden inputs: hand-written pairs, parameter grid, call forms, SQuAD choice.

Shared by record_qa.py (transformers 4.57.1) and the parity test (transformers 5.x).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SQUAD_MODEL = "distilbert-base-cased-distilled-squad"
SQUAD_FILE = Path("data") / "squad" / "dev-v1.1.json"
N_SQUAD, N_SQUAD_LONG = 100, 25
LONG_TOKENS = 384

_STORY = (
    "Paris is the capital of France and the first city of the country. The river Seine runs through "
    "Paris, which was a great city for music after the war. John played music with his band in London, "
    "then the band moved to Berlin in Germany, where they won a prize. Apple and Microsoft are companies "
    "that were new in the season of 1976; Microsoft was founded by two friends. "
)
_LONG = " ".join(
    f"Chapter {i}: {_STORY}"
    if i % 3
    else f"Note {i} - the team played a game today and it was good. {_STORY}"
    for i in range(1, 9)
)

PAIRS: list[tuple[str, str]] = [
    ("What is my name?", "My name is John and I live in Seattle."),
    ("Where do I live?", "My name is Ravi and I live in Hyderabad."),
    ("What is the capital of France?", _LONG),
    ("Which band played music?", "The band played music. The band played music again, and the band won."),
    (
        "Who won the game?",
        ("After the game -- which (surprisingly!) went to overtime -- the team from London won 3:2; "
        "Berlin's team lost... \"Great game,\" said the coach."),
    ),
    (
        "Où est la tour Eiffel?",
        ("La tour Eiffel est à Paris, en France. 東京 is the capital of Japan; "
        "café ☕ naïve — résumé."),
    ),
    (
        "What is the airspeed velocity of an unladen swallow?",
        "The river runs through the city of London in England.",
    ),
    ("What city is great?", "Paris is a city. PARIS is great. paris, paris, Paris!"),
    ("Where was the company?", "The company  was\tin   Berlin,\n\nGermany.  Apple was in the new city."),
    ("Who founded Microsoft in which season?", _LONG[::-1].swapcase()[:900] + " " + _STORY * 2),
    ("Is it good?", "Yes."),
]

PARAM_GRID: list[dict[str, Any]] = [
    {},
    {"top_k": 3},
    {"max_seq_len": 64, "doc_stride": 16},
    {"max_seq_len": 64, "doc_stride": 16, "top_k": 5},
    {"max_seq_len": 96},  # doc_stride defaults to max_seq_len // 2
    {"max_answer_len": 3},
    {"max_answer_len": 1, "top_k": 2},
    {"handle_impossible_answer": True},
    {"handle_impossible_answer": True, "top_k": 3, "max_seq_len": 80, "doc_stride": 24},
    {"align_to_words": False},
    {"align_to_words": False, "top_k": 4, "max_seq_len": 64, "doc_stride": 20},
    {"max_question_len": 4},
]

CALLS: list[dict[str, Any]] = [
    {"form": "kwargs", "pairs": [0], "params": {}},
    {"form": "positional_pair", "pairs": [1], "params": {}},
    {"form": "dict", "pairs": [2], "params": {"top_k": 2}},
    {"form": "list", "pairs": [3], "params": {}},
    {"form": "list", "pairs": [3, 4, 5], "params": {}},
    {"form": "list", "pairs": [0, 1], "params": {"top_k": 3}},
    {"form": "kwargs_lists", "pairs": [6], "params": {}},
    {"form": "kwargs_lists", "pairs": [6, 7], "params": {"top_k": 2}},
    {"form": "broadcast", "pairs": [0, 1, 6], "params": {}},
    {"form": "dict_of_lists", "pairs": [0], "params": {}},
    {"form": "dict_of_lists", "pairs": [0, 1], "params": {}},
    {"form": "kwargs", "pairs": [10], "params": {"top_k": 3}},
    {"form": "kwargs", "pairs": [10], "params": {"top_k": 40, "max_answer_len": 1}},
]


def squad_questions(shared: Path) -> list[dict[str, str]]:
    """Every SQuAD v1.1 dev question as {id, question, context}, in file order."""
    data = json.loads((shared / SQUAD_FILE).read_text(encoding="utf-8"))["data"]
    return [
        {"id": qa["id"], "question": qa["question"], "context": para["context"]}
        for article in data
        for para in article["paragraphs"]
        for qa in para["qas"]
    ]


def select_squad(shared: Path, tokenizer: Any) -> list[dict[str, Any]]:
    """100 questions, the first of evenly spaced paragraphs: 25 whose context is over 384 tokens."""
    first_of_paragraph: dict[str, dict[str, Any]] = {}
    for q in squad_questions(shared):
        first_of_paragraph.setdefault(q["context"], q)
    paragraphs = list(first_of_paragraph.values())
    lengths = [len(ids) for ids in tokenizer([p["context"] for p in paragraphs])["input_ids"]]
    long = [p for p, n in zip(paragraphs, lengths, strict=True) if n > LONG_TOKENS]
    short = [p for p, n in zip(paragraphs, lengths, strict=True) if n <= LONG_TOKENS]
    picked = evenly(long, N_SQUAD_LONG) + evenly(short, N_SQUAD - N_SQUAD_LONG)
    windows = tokenizer(
        [p["question"] for p in picked], [p["context"] for p in picked], truncation="only_second",
        max_length=384, stride=128, return_overflowing_tokens=True,
    )["overflow_to_sample_mapping"]
    return [{**p, "windows": list(windows).count(i)} for i, p in enumerate(picked)]


def evenly(rows: list[Any], n: int) -> list[Any]:
    """``n`` rows spread evenly over ``rows`` (all of them when there are fewer)."""
    if len(rows) <= n:
        return list(rows)
    return [rows[i * len(rows) // n] for i in range(n)]


def squad_by_id(shared: Path, ids: list[str]) -> list[dict[str, str]]:
    """The questions with these ids, in this order (texts are read from ../shared, never committed)."""
    index = {q["id"]: q for q in squad_questions(shared)}
    return [index[i] for i in ids]

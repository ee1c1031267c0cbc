"""token-classification (NER): per-token labels, grouped into entities by ``aggregation_strategy``.

Outputs follow transformers' ``TokenClassificationPipeline``: with ``none`` one
``{"entity", "score", "index", "word", "start", "end"}`` per token; otherwise one
``{"entity_group", "score", "word", "start", "end"}`` per entity, where B-/I- tags of adjacent
tokens (``simple``) or words (``first``/``average``/``max``) are merged. Labels in
``ignore_labels`` (default ``["O"]``) are dropped; ``start``/``end`` are character offsets.
Texts longer than the model are truncated, or with ``stride`` cut into overlapping windows whose
entities are merged.

The post-processing is a chain of pure functions over tokens, offsets and score arrays:
``pre_entities`` -> ``aggregate`` (``token_entities`` / ``word_entities`` -> ``group_entities``)
-> ``drop_ignored`` -> ``merge_overlapping``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from distilkit.errors import UserError
from distilkit.tasks.base import Feature, TaskHandler, check_int, check_text, show, softmax, window_count

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = frozenset({"first", "average", "max"})
Join = Callable[[list[str]], str]  # tokens -> text (tokenizer.convert_tokens_to_string)


# --- pure post-processing ---------------------------------------------------------------------
def subword_flags(
    tokens: Sequence[str], offsets: Sequence[tuple[int, int]], text: str, word_aware: bool
) -> list[bool]:
    """Whether each token continues the previous word.

    A word-aware tokenizer (WordPiece: a continuing-subword prefix like ``##``) marks a piece
    whose token is longer than its text span; otherwise the fallback heuristic of the reference
    applies: a token is a sub-word when no space is at or right before its start.
    """
    if word_aware:
        return [len(tok) != end - start for tok, (start, end) in zip(tokens, offsets, strict=True)]
    return [start > 0 and " " not in text[start - 1 : start + 1] for start, _ in offsets]


def pre_entities(
    tokens: Sequence[str | None],
    scores: np.ndarray,
    offsets: Sequence[tuple[int, int]] | None,
    special: Sequence[int],
    text: str,
    word_aware: bool,
    unknown: Sequence[bool],
) -> list[dict[str, Any]]:
    """One record per non-special token: word, label scores (L,), start, end, index, is_subword.

    Args:
        tokens: the tokens of one window, specials included (None where ``special``: never read).
        scores: (T, L) label probabilities.
        offsets: (start, end) character offsets into ``text`` per token; None without a fast tokenizer.
        special: truthy for the tokens to drop: special ones (CLS, SEP, padding) and, with no
            aggregation, those whose label is ignored (``ignored_tokens``).
        unknown: True for the unknown token, whose word becomes its text span and never a sub-word.
    """
    keep = [i for i, s in enumerate(special) if not s]
    if offsets is None:
        return [{"word": tokens[i], "scores": scores[i], "start": None, "end": None, "index": i,
                 "is_subword": False} for i in keep]
    spans = [(int(offsets[i][0]), int(offsets[i][1])) for i in keep]
    flags = subword_flags([tokens[i] for i in keep], spans, text, word_aware)
    records = []
    for i, (start, end), is_subword in zip(keep, spans, flags, strict=True):
        word = tokens[i]
        if unknown[i]:
            word, is_subword = text[start:end], False
        records.append({"word": word, "scores": scores[i], "start": start, "end": end, "index": i,
                        "is_subword": is_subword})
    return records


def token_entities(pre: list[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Each token's best label: ``{"entity", "score", "index", "word", "start", "end"}``."""
    if not pre:
        return []
    scores = np.stack([p["scores"] for p in pre])  # (N, L)
    best = scores.argmax(axis=-1)
    top = scores[np.arange(len(pre)), best]
    return [
        {"entity": labels[b], "score": float(s), "index": p["index"], "word": p["word"], "start": p["start"],
         "end": p["end"]}
        for p, b, s in zip(pre, best.tolist(), top.tolist(), strict=True)
    ]


def word_label(scores: list[np.ndarray], strategy: str) -> tuple[int, float]:
    """(label index, score) of one word from its tokens' score rows under first | average | max."""
    if strategy == "first":
        row = scores[0]
    elif strategy == "max":
        row = max(scores, key=lambda s: s.max())  # the first token holding the highest score
    elif strategy == "average":
        row = np.nanmean(np.stack(scores), axis=0)
    else:
        expected = sorted(WORD_STRATEGIES)
        raise UserError(f"{strategy!r} is not a word aggregation strategy; expected one of {expected}")
    best = int(row.argmax())
    return best, float(row[best])


def word_entities(
    pre: list[dict[str, Any]], strategy: str, labels: Sequence[str], join: Join
) -> list[dict[str, Any]]:
    """Merge sub-word tokens into words so each word gets one label.

    Returns one ``{"entity", "score", "word", "start", "end"}`` per word.
    """
    words: list[list[dict[str, Any]]] = []
    for p in pre:
        if words and p["is_subword"]:
            words[-1].append(p)
        else:
            words.append([p])
    entities = []
    for group in words:
        best, score = word_label([p["scores"] for p in group], strategy)
        entities.append({"entity": labels[best], "score": score, "word": join([p["word"] for p in group]),
                         "start": group[0]["start"], "end": group[-1]["end"]})
    return entities


def split_tag(label: str) -> tuple[str, str]:
    """(B|I, tag) of a label; a label without a B-/I- prefix continues like I-."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_entities(entities: list[dict[str, Any]], join: Join) -> list[dict[str, Any]]:
    """Merge adjacent entities of one tag (a B- starts a new one): ``{"entity_group", "score", ...}``."""
    groups: list[list[dict[str, Any]]] = []
    for entity in entities:
        if groups:
            bi, tag = split_tag(entity["entity"])
            if bi != "B" and tag == split_tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
                continue
        groups.append([entity])
    return [
        {
            "entity_group": group[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in group])),
            "word": join([e["word"] for e in group]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }
        for group in groups
    ]


def aggregate(
    pre: list[dict[str, Any]], strategy: str, labels: Sequence[str], join: Join
) -> list[dict[str, Any]]:
    """Entities of one window under ``strategy`` (none | simple | first | average | max)."""
    if strategy in WORD_STRATEGIES:
        return group_entities(word_entities(pre, strategy, labels, join), join)
    entities = token_entities(pre, labels)
    return entities if strategy == "none" else group_entities(entities, join)


def ignored_tokens(
    scores: np.ndarray, special: Sequence[int], labels: Sequence[str], ignore_labels: Sequence[str]
) -> list[bool]:
    """``special`` plus the tokens whose best label is ignored: with no aggregation these never reach
    the answer, so nothing needs to be built for them."""
    ignored = set(ignore_labels)
    best = scores.argmax(axis=-1).tolist()
    return [bool(s) or labels[b] in ignored for s, b in zip(special, best, strict=True)]


def drop_ignored(entities: list[dict[str, Any]], ignore_labels: Sequence[str]) -> list[dict[str, Any]]:
    """Remove entities whose label (or group) is in ``ignore_labels``."""
    ignored = set(ignore_labels)
    return [e for e in entities if e.get("entity", e.get("entity_group")) not in ignored]


def merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resolve entities found twice in overlapping windows: of overlapping ones keep the longest
    (then the higher score), in order of start offset."""
    if not entities:
        return entities
    ordered = sorted(entities, key=lambda e: e["start"])
    merged = []
    previous = ordered[0]
    for entity in ordered:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            more_confident = length == previous_length and entity["score"] > previous["score"]
            if length > previous_length or more_confident:
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def check_strategy(value: Any) -> str | None:
    """Normalise ``aggregation_strategy`` (case-insensitive name or enum; None = not given)."""
    value = value.value if isinstance(value, Enum) else value
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in STRATEGIES:
        raise UserError(f"aggregation_strategy must be one of {list(STRATEGIES)}, got {show(value)}")
    return value.lower()


def check_ignore_labels(value: Any) -> list[str]:
    """Normalise ``ignore_labels``: None -> ["O"], a label -> [label], else a list of labels."""
    if value is None:
        return ["O"]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UserError(f"ignore_labels must be a list of label names, got {show(value)}")
    return list(value)


# --- the handler --------------------------------------------------------------------------------
class TokenClassificationHandler(TaskHandler):
    """token-classification with ``aggregation_strategy``, ``ignore_labels`` and ``stride``."""

    task = "token-classification"
    defaults: ClassVar[dict[str, Any]] = {"aggregation_strategy": None, "ignore_labels": None, "stride": None}
    param_types: ClassVar[dict[str, Any]] = {"aggregation_strategy": STRATEGIES, "ignore_labels": "strings",
                                             "stride": "integer"}

    def __init__(self, tokenizer: Any, config: Any):
        super().__init__(tokenizer, config)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.is_fast = bool(getattr(tokenizer, "is_fast", False))
        backend = getattr(tokenizer, "_tokenizer", None)
        # WordPiece-like models mark word continuations; byte-level BPE does not (heuristic then).
        prefix = getattr(backend.model, "continuing_subword_prefix", None) if backend is not None else None
        self.word_aware = bool(prefix)
        self.n_special = tokenizer.num_special_tokens_to_add(pair=False)
        self._warned = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": list(self.labels)}

    def public_default(self, name: str, default: Any) -> Any:
        return check_ignore_labels(None) if name == "ignore_labels" else default

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        given = check_strategy(params["aggregation_strategy"])
        strategy = given or "none"
        if strategy in WORD_STRATEGIES and not self.is_fast:
            raise UserError(
                f'aggregation_strategy "{strategy}" needs a fast tokenizer (word ids); use "simple"'
            )
        if strategy in WORD_STRATEGIES and not self.word_aware and not self._warned:
            message = "Tokenizer does not support real words, using fallback heuristic"
            warnings.warn(message, UserWarning, stacklevel=2)
            self._warned = True
        params["strategy"] = strategy
        params["ignore_labels"] = check_ignore_labels(params["ignore_labels"])
        stride = params["stride"]
        if stride is not None:
            limit = self.max_length - self.n_special - 1
            params["stride"] = check_int("stride", stride, 0, limit)
            if given == "none":
                raise UserError(
                    'stride (windows over long texts) needs an aggregation_strategy other than "none"'
                )
            if not self.is_fast:
                raise UserError("stride needs a fast tokenizer")
        return params

    feature_noun: ClassVar[str] = (
        "text windows: with stride, a long text is cut into windows of the model's length that "
        "advance by that length minus stride tokens; lower stride"
    )

    def tokens(self, ids: list[int], dropped: Sequence[int]) -> list[str | None]:
        """The token strings of ``ids``; None where ``dropped`` (never read)."""
        kept = [i for i, d in enumerate(dropped) if not d]
        tokens: list[str | None] = [None] * len(ids)
        for i, token in zip(kept, self.tokenizer.convert_ids_to_tokens([ids[i] for i in kept]), strict=True):
            tokens[i] = token
        return tokens

    def count_features(self, items: list[str], params: dict[str, Any], enough: int | None = None) -> int:
        """Windows of ``items`` (one per text without ``stride``): a bound from byte lengths when it
        is at most ``enough``, else counted from the tokenized texts."""
        if params["stride"] is None:
            return len(items)
        room = self.max_length - self.n_special
        bound = sum(window_count(len(text.encode()), room, params["stride"]) for text in items)
        if enough is not None and bound <= enough:
            return bound
        lengths = [len(ids) for ids in self.tokenizer(items, add_special_tokens=False)["input_ids"]]
        return sum(window_count(n, room, params["stride"]) for n in lengths)

    def check_inputs(self, items: list[Any]) -> list[str]:
        return [check_text(i, text) for i, text in enumerate(items)]

    def encode(self, items: list[str], params: dict[str, Any]) -> list[Feature]:
        if not items:  # the tokenizer fails on an empty batch
            return []
        windows = {}
        if params["stride"] is not None:
            windows = {"stride": params["stride"], "return_overflowing_tokens": True}
        encoded = self.tokenizer(
            items, truncation=True, max_length=self.max_length, return_attention_mask=False,
            return_token_type_ids=False, return_special_tokens_mask=True, return_offsets_mapping=self.is_fast,
            **windows,
        )
        owners = encoded.get("overflow_to_sample_mapping") or range(len(items))
        offsets = encoded.get("offset_mapping")
        return [
            Feature(item=int(owner), input_ids=ids,
                    data={"special": encoded["special_tokens_mask"][row],
                          "offsets": None if offsets is None else offsets[row]})
            for row, (owner, ids) in enumerate(zip(owners, encoded["input_ids"], strict=True))
        ]

    def decode(self, item: str, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> Any:
        entities = []
        unk = self.tokenizer.unk_token_id
        for feature, logits in zip(features, outputs, strict=True):
            ids, data = feature.input_ids, feature.data
            scores = softmax(logits)  # (T, L)
            dropped = data["special"]
            if params["strategy"] == "none":  # tokens stand alone: skip those whose label is ignored
                dropped = ignored_tokens(scores, dropped, self.labels, params["ignore_labels"])
            tokens = self.tokens(ids, dropped)
            unknown = [t == unk for t in ids]
            pre = pre_entities(tokens, scores, data["offsets"], dropped, item, self.word_aware, unknown)
            found = aggregate(pre, params["strategy"], self.labels, self.tokenizer.convert_tokens_to_string)
            entities.extend(drop_ignored(found, params["ignore_labels"]))
        return merge_overlapping(entities) if len(features) > 1 else entities

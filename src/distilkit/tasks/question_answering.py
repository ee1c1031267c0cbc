"""question-answering: extractive spans over windowed contexts, as transformers 4.57.1's pipeline.

A context longer than one window is split into overlapping windows (``max_seq_len`` tokens,
``doc_stride`` tokens of overlap); every window is one Feature, so the Predictor batches windows
of all items together. ``decode`` scores spans per window (softmax over context tokens, outer
product of start/end probabilities, spans of at most ``max_answer_len`` tokens), merges answers
with the same text across windows (their scores add up) and keeps the ``top_k`` best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from distilkit.errors import UserError
from distilkit.tasks.base import Feature, TaskHandler, check_bool, check_int, check_text, input_error

MASKED_LOGIT = -10000.0  # what the reference puts on tokens that cannot be in an answer
NULL_SCORE_START = 1000000  # "no null score seen yet" (the reference's large positive start value)


@dataclass(frozen=True)
class QAItem:
    """One question about one context."""

    question: str
    context: str


# --- call conventions ------------------------------------------------------------------------------
def expand_inputs(args: tuple, kwargs: dict[str, Any]) -> tuple[list[Any], bool]:
    """Turn the reference's call forms into raw items; the flag says a one-item call returns a list.

    Accepted: ``(question=str|list, context=str|list)`` (a list of questions shares one context),
    ``(question_str, context_str)``, ``({"question", "context"})``, ``([{...}, ...])``, and a dict
    of two equal-length lists ``{"question": [...], "context": [...]}`` (the model-card format).
    """
    has_kw = "question" in kwargs or "context" in kwargs
    if args and has_kw:
        raise UserError("pass the inputs either positionally or as question=/context=, not both")
    if args:
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            return [{"question": args[0], "context": args[1]}], False
        inputs = args[0] if len(args) == 1 else list(args)
        if isinstance(inputs, dict):
            question, context = inputs.get("question"), inputs.get("context")
            if isinstance(question, list) and isinstance(context, list):
                return pair_lists(question, context), True
            return [inputs], False
        if isinstance(inputs, (list, tuple)):
            return list(inputs), False
        raise UserError(
            "question-answering inputs must be a dict {question, context} or a list of them, "
            f"got {type(inputs).__name__}"
        )
    if "question" not in kwargs or "context" not in kwargs:
        raise UserError("question-answering needs both question= and context=")
    question, context = kwargs["question"], kwargs["context"]
    if isinstance(question, str) and isinstance(context, str):
        return [{"question": question, "context": context}], False
    if isinstance(question, list) and isinstance(context, str):
        return [{"question": q, "context": context} for q in question], False
    if isinstance(question, list) and isinstance(context, list):
        return pair_lists(question, context), False
    raise UserError(
        "question= and context= must be two strings, a list of questions and one context, "
        "or two lists of equal length"
    )


def pair_lists(questions: list[Any], contexts: list[Any]) -> list[dict[str, Any]]:
    """Zip equal-length question and context lists into items."""
    if len(questions) != len(contexts):
        raise UserError(
            f"got {len(questions)} questions and {len(contexts)} contexts; the lengths must match"
        )
    return [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]


# --- span scoring (pure, numpy) -----------------------------------------------------------------------
def window_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    allowed: np.ndarray,
    top_k: int,
    max_answer_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Best spans of one window: (starts, ends, scores, null score) in decreasing score order.

    Args:
        start_logits, end_logits: (T,) logits of one window.
        allowed: (T,) bool, tokens that may be in an answer (context tokens and [CLS]).
        top_k: candidates to take before filtering (spans touching a disallowed token are dropped).
        max_answer_len: longest span in tokens.

    Returns:
        Token starts/ends, float32 scores (start prob x end prob), and the [CLS] score
        (start prob x end prob at position 0), the "no answer" score.
    """
    start = softmax_masked(start_logits, allowed)  # (T,)
    end = softmax_masked(end_logits, allowed)  # (T,)
    null_score = float(start[0] * end[0])
    start[0] = end[0] = 0.0  # [CLS] is never an answer span, only the null score
    # A span never outgrows its window: clamping keeps any larger max_answer_len exact and finite.
    longest = min(max_answer_len, len(start))
    candidates = np.tril(np.triu(np.outer(start, end)), longest - 1)  # (T, T): end >= start, short
    flat = candidates.ravel()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:  # the reference's selection, so that equal scores come out in the same order
        idx = np.argpartition(-flat, top_k)[:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)
    # Position 0 always passes this filter in the reference (a batch-axis artefact): keep it so.
    keep_tokens = allowed.copy()
    keep_tokens[0] = True
    keep = keep_tokens[starts] & keep_tokens[ends]
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], null_score


def softmax_masked(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Float32 softmax with disallowed positions set to the reference's -10000 first."""
    x = np.where(allowed, np.asarray(logits, dtype=np.float32), np.float32(MASKED_LOGIT))
    x = np.exp(x - x.max())
    return x / x.sum()


def char_span(
    window: dict[str, np.ndarray], s: int, e: int, answer_seq: int, align_to_words: bool
) -> tuple[int, int]:
    """Character span in the context of tokens ``s..e`` of a window, widened to whole words if asked.

    A token without a word (special tokens) falls back to the tokens' own offsets, as in the reference.
    """
    offsets = window["offsets"]
    if align_to_words:
        first = word_chars(window, int(window["words"][s]), answer_seq)
        last = word_chars(window, int(window["words"][e]), answer_seq)
        if first is not None and last is not None:
            return first[0], last[1]
    return int(offsets[s, 0]), int(offsets[e, 1])


def word_chars(window: dict[str, np.ndarray], word: int, answer_seq: int) -> tuple[int, int] | None:
    """Character span of word ``word`` of sequence ``answer_seq`` within the window, or None."""
    if word < 0:
        return None
    tokens = np.flatnonzero((window["words"] == word) & (window["seq"] == answer_seq))
    if len(tokens) == 0:
        return None
    return int(window["offsets"][tokens[0], 0]), int(window["offsets"][tokens[-1], 1])


def best_answers(
    context: str,
    windows: list[dict[str, np.ndarray]],
    logits: list[np.ndarray],
    *,
    top_k: int = 1,
    max_answer_len: int = 15,
    handle_impossible_answer: bool = False,
    align_to_words: bool = True,
    answer_seq: int = 1,
) -> list[dict[str, Any]]:
    """The ``top_k`` answers of one item over all its windows, best first.

    Answers with the same text (case-insensitive) are merged, their scores summed, keeping the
    first one's offsets; with ``handle_impossible_answer`` the empty answer competes with the
    smallest [CLS] score over windows.

    Args:
        context: the item's context (answers are slices of it).
        windows: per window ``offsets`` (T, 2), ``words`` (T,) (-1: none), ``seq`` (T,) (-1: special),
            ``allowed`` (T,) bool.
        logits: per window (2, T) start and end logits.
    """
    pre_top_k = top_k * 2 + 10 if align_to_words else top_k  # aligning merges some candidates
    null_score: float = NULL_SCORE_START
    answers: list[dict[str, Any]] = []
    by_text: dict[str, dict[str, Any]] = {}
    for window, (start_logits, end_logits) in zip(windows, logits, strict=True):
        starts, ends, scores, window_null = window_spans(
            start_logits, end_logits, window["allowed"], pre_top_k, max_answer_len
        )
        if handle_impossible_answer:
            null_score = min(null_score, window_null)
        for s, e, score in zip(starts.tolist(), ends.tolist(), scores.tolist(), strict=True):
            begin, stop = char_span(window, s, e, answer_seq, align_to_words)
            text = context[begin:stop]
            same = by_text.get(text.lower())
            if same is not None:
                same["score"] += score
            else:
                answer = {"score": score, "start": begin, "end": stop, "answer": text}
                by_text[text.lower()] = answer
                answers.append(answer)
    if handle_impossible_answer:
        answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


# --- the handler ----------------------------------------------------------------------------------
class QuestionAnsweringHandler(TaskHandler):
    """question-answering with the reference's parameters; one Feature per context window."""

    task = "question-answering"
    defaults: ClassVar[dict[str, Any]] = {
        "top_k": 1,
        "doc_stride": None,  # min(max_seq_len // 2, 128)
        "max_seq_len": None,  # min(model limit, 384)
        "max_question_len": 64,  # accepted for compatibility; fast tokenizers never cut the question
        "max_answer_len": 15,
        "handle_impossible_answer": False,
        "align_to_words": True,
    }
    param_types: ClassVar[dict[str, Any]] = {
        "top_k": "integer", "doc_stride": "integer", "max_seq_len": "integer", "max_question_len": "integer",
        "max_answer_len": "integer", "handle_impossible_answer": "boolean", "align_to_words": "boolean",
    }

    def __init__(self, tokenizer: Any, config: Any):
        super().__init__(tokenizer, config)
        if not getattr(tokenizer, "is_fast", False):
            raise UserError(
                "question-answering needs a fast tokenizer (tokenizer.json) for character offsets"
            )
        # Right-padding tokenizers put the question first and cut the context (second sequence).
        self.question_first = tokenizer.padding_side == "right"
        self.answer_seq = 1 if self.question_first else 0
        self.n_special = tokenizer.num_special_tokens_to_add(pair=True)
        # The reference feeds the model only the tokenizer's model_input_names (a DistilBERT
        # tokenizer on a BERT model gives no segment ids): None here makes the Predictor send zeros.
        self.send_token_types = "token_type_ids" in tokenizer.model_input_names

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        params["top_k"] = check_int("top_k", params["top_k"], 1)
        params["max_answer_len"] = check_int("max_answer_len", params["max_answer_len"], 1)
        params["max_question_len"] = check_int("max_question_len", params["max_question_len"], 1)
        if params["max_seq_len"] is None:
            params["max_seq_len"] = min(self.max_length, 384)
        params["max_seq_len"] = check_int(
            "max_seq_len", params["max_seq_len"], self.n_special + 2, self.max_length
        )
        if params["doc_stride"] is None:
            params["doc_stride"] = min(params["max_seq_len"] // 2, 128)
        params["doc_stride"] = check_int("doc_stride", params["doc_stride"], 0)
        if params["doc_stride"] > params["max_seq_len"]:
            raise UserError(
                f"doc_stride ({params['doc_stride']}) is larger than max_seq_len ({params['max_seq_len']}); "
                "the overlap between windows must be shorter than a window"
            )
        for name in ("handle_impossible_answer", "align_to_words"):
            params[name] = check_bool(name, params[name])
        return params

    def check_inputs(self, items: list[Any]) -> list[QAItem]:
        checked = []
        for i, item in enumerate(items):
            if isinstance(item, QAItem):
                question, context = item.question, item.context
            elif isinstance(item, dict):
                missing = [k for k in ("question", "context") if k not in item]
                if missing:
                    raise input_error(
                        i, f"missing {missing[0]!r}; expected a dict with 'question' and 'context'"
                    )
                question, context = item["question"], item["context"]
            else:
                raise input_error(
                    i, f"expected a dict with 'question' and 'context', got {type(item).__name__}"
                )
            checked.append(QAItem(check_text(i, question, "question"), check_text(i, context, "context")))
        return checked

    def encode(self, items: list[QAItem], params: dict[str, Any]) -> list[Feature]:
        if not items:
            return []
        questions = [it.question for it in items]
        contexts = [it.context for it in items]
        self.check_room(questions, contexts, params)
        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        enc = self.tokenizer(
            first,
            second,
            truncation="only_second" if self.question_first else "only_first",
            max_length=params["max_seq_len"],
            stride=params["doc_stride"],
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        cls_id = self.tokenizer.cls_token_id
        features = []
        for w, item in enumerate(enc["overflow_to_sample_mapping"]):
            ids = enc["input_ids"][w]
            seq = np.array([-1 if s is None else s for s in enc.sequence_ids(w)], dtype=np.int8)
            words = np.array([-1 if x is None else x for x in enc.word_ids(w)], dtype=np.int64)
            # Only context tokens can be answers; [CLS] stays in the softmax (it scores "no answer").
            allowed = seq == 1 if self.question_first else np.ones(len(ids), dtype=bool)
            if cls_id is not None:
                allowed |= np.asarray(ids) == cls_id
            window = {
                "offsets": np.asarray(enc["offset_mapping"][w], dtype=np.int64).reshape(-1, 2),
                "words": words,
                "seq": seq,
                "allowed": allowed,
            }
            types = enc["token_type_ids"][w] if self.send_token_types else None
            features.append(Feature(item=int(item), input_ids=ids, token_type_ids=types, data=window))
        return features

    def check_room(self, questions: list[str], contexts: list[str], params: dict[str, Any]) -> None:
        """Refuse an item the tokenizer could not window: its question leaves no more than
        ``doc_stride`` tokens of context per window and the pair does not fit in one window."""
        max_seq_len, stride = params["max_seq_len"], params["doc_stride"]
        q_lens = [len(ids) for ids in self.tokenizer(questions, add_special_tokens=False)["input_ids"]]
        tight = [i for i, n in enumerate(q_lens) if max_seq_len - n - self.n_special <= stride]
        if not tight:
            return
        pairs = self.tokenizer([questions[i] for i in tight], [contexts[i] for i in tight])["input_ids"]
        for i, ids in zip(tight, pairs, strict=True):
            if len(ids) > max_seq_len:
                room = max_seq_len - q_lens[i] - self.n_special
                raise input_error(
                    i,
                    f"the question is {q_lens[i]} tokens, which leaves {max(room, 0)} context tokens "
                    f"per window (max_seq_len={max_seq_len}); that must be more than "
                    f"doc_stride={stride}: shorten the "
                    "question, raise max_seq_len or lower doc_stride",
                )

    def forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], features: list[Feature]
    ) -> list[Any]:
        out = model(**batch)
        logits = torch.stack([out.start_logits, out.end_logits], dim=1).float().cpu()  # (B, 2, T)
        return [logits[i, :, : len(f)].numpy() for i, f in enumerate(features)]

    def decode(
        self, item: QAItem, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        answers = best_answers(
            item.context,
            [f.data for f in features],
            outputs,
            top_k=params["top_k"],
            max_answer_len=params["max_answer_len"],
            handle_impossible_answer=params["handle_impossible_answer"],
            align_to_words=params["align_to_words"],
            answer_seq=self.answer_seq,
        )
        return answers[0] if len(answers) == 1 else answers  # the reference unwraps a single answer

    def split_call(self, args: tuple, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any], Any]:
        params = {k: v for k, v in kwargs.items() if k not in ("question", "context")}
        items, always_list = expand_inputs(args, kwargs)
        return items, params, "list" if always_list or len(items) != 1 else "single"

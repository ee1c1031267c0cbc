"""question-answering pre/post-processing with hand-made logits, errors and call conventions."""

from __future__ import annotations

import numpy as np
import pytest

from distilkit.tasks.question_answering import (
    QAItem,
    QuestionAnsweringHandler,
    best_answers,
    expand_inputs,
    window_spans,
)

CONTEXT = "New York is big"
# Tokens of "[CLS] where ? [SEP] New York is bi ##g [SEP]" as (sequence, word, char start, char end).
TOKENS = [
    (None, None, 0, 0),
    (0, 0, 0, 5),
    (0, 1, 5, 6),
    (None, None, 0, 0),
    (1, 0, 0, 3),
    (1, 1, 4, 8),
    (1, 2, 9, 11),
    (1, 3, 12, 14),
    (1, 3, 14, 15),
    (None, None, 0, 0),
]
CLS, Q1, NEW, YORK, IS, BI, G = 0, 1, 4, 5, 6, 7, 8


def window(tokens=TOKENS) -> dict[str, np.ndarray]:
    seq = np.array([-1 if s is None else s for s, _, _, _ in tokens], dtype=np.int8)
    allowed = seq == 1
    allowed[0] = True  # [CLS]
    return {
        "offsets": np.array([[a, b] for _, _, a, b in tokens], dtype=np.int64),
        "words": np.array([-1 if w is None else w for _, w, _, _ in tokens], dtype=np.int64),
        "seq": seq,
        "allowed": allowed,
    }


def logits(start_at: dict[int, float], end_at: dict[int, float], n: int = len(TOKENS)) -> np.ndarray:
    out = np.zeros((2, n), dtype=np.float32)
    for i, v in start_at.items():
        out[0, i] = v
    for i, v in end_at.items():
        out[1, i] = v
    return out


# --- span scoring -------------------------------------------------------------------------------------
def test_window_spans_picks_the_highest_start_times_end_probability():
    out = logits({YORK: 5.0}, {IS: 5.0})
    starts, ends, scores, _ = window_spans(out[0], out[1], window()["allowed"], 1, 15)
    assert (starts.tolist(), ends.tolist()) == ([YORK], [IS])
    assert 0.5 < scores[0] < 1.0


def test_window_spans_never_answers_with_question_tokens_even_with_the_largest_logits():
    out = logits({Q1: 20.0, NEW: 2.0}, {Q1: 20.0, NEW: 2.0})
    starts, ends, _, _ = window_spans(out[0], out[1], window()["allowed"], 5, 15)
    assert Q1 not in starts.tolist() and Q1 not in ends.tolist()
    assert (starts[0], ends[0]) == (NEW, NEW)


def test_window_spans_drops_spans_longer_than_max_answer_len():
    out = logits({NEW: 8.0}, {G: 8.0, IS: 1.0})
    starts, ends, _, _ = window_spans(out[0], out[1], window()["allowed"], 1, 2)
    assert ends[0] - starts[0] <= 1
    starts, ends, _, _ = window_spans(out[0], out[1], window()["allowed"], 1, 5)
    assert (starts[0], ends[0]) == (NEW, G)


def test_window_spans_returns_top_k_in_decreasing_score_order():
    out = logits({NEW: 3.0, IS: 2.0, BI: 1.0}, {YORK: 3.0, IS: 2.5, G: 1.0})
    _, _, scores, _ = window_spans(out[0], out[1], window()["allowed"], 4, 15)
    assert len(scores) == 4
    assert np.all(np.diff(scores) <= 0)


def test_window_spans_null_score_is_the_cls_start_times_end_probability():
    out = logits({CLS: 4.0}, {CLS: 4.0})
    _, _, scores, null = window_spans(out[0], out[1], window()["allowed"], 1, 15)
    assert null > 0.3 and null > scores[0]


# --- answers over windows ----------------------------------------------------------------------------
def test_best_answers_takes_the_best_span_over_all_windows():
    weak = logits({NEW: 1.0}, {NEW: 1.0})
    strong = logits({BI: 9.0}, {G: 9.0})
    answers = best_answers(CONTEXT, [window(), window()], [weak, strong], top_k=1)
    assert answers[0]["answer"] == "big" and (answers[0]["start"], answers[0]["end"]) == (12, 15)


def test_best_answers_sums_scores_of_the_same_text_found_in_several_windows():
    out = logits({YORK: 9.0}, {YORK: 9.0})
    once = best_answers(CONTEXT, [window()], [out], top_k=1)[0]
    twice = best_answers(CONTEXT, [window(), window()], [out, out], top_k=1)[0]
    assert twice["answer"] == once["answer"] == "York"
    assert twice["score"] == pytest.approx(2 * once["score"])


def test_best_answers_merges_answers_that_differ_only_in_case():
    context = "Paris or PARIS"
    tokens = [(None, None, 0, 0), (1, 0, 0, 5), (1, 1, 6, 8), (1, 2, 9, 14), (None, None, 0, 0)]
    out = logits({1: 5.0, 3: 5.0}, {1: 5.0, 3: 5.0}, n=len(tokens))
    answers = best_answers(context, [window(tokens)], [out], top_k=5)
    texts = [a["answer"] for a in answers]
    assert texts.count("Paris") == 1 and "PARIS" not in texts  # the first one's offsets are kept


def test_best_answers_top_k_are_sorted_best_first():
    out = logits({NEW: 3.0, IS: 2.0}, {YORK: 3.0, IS: 2.0})
    answers = best_answers(CONTEXT, [window()], [out], top_k=3)
    assert len(answers) == 3
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)


def test_impossible_answer_wins_when_cls_outscores_every_span():
    out = logits({CLS: 9.0}, {CLS: 9.0})
    best = best_answers(CONTEXT, [window()], [out], handle_impossible_answer=True)[0]
    assert best == {"score": pytest.approx(best["score"]), "start": 0, "end": 0, "answer": ""}
    assert best["score"] > 0.9


def test_impossible_answer_uses_the_smallest_null_score_over_windows():
    sure = logits({CLS: 9.0}, {CLS: 9.0})
    unsure = logits({CLS: 0.0, YORK: 9.0}, {CLS: 0.0, YORK: 9.0})
    *_, unsure_null = window_spans(unsure[0], unsure[1], window()["allowed"], 1, 15)
    answers = best_answers(
        CONTEXT, [window(), window()], [sure, unsure], top_k=100, handle_impossible_answer=True
    )
    nulls = [a["score"] for a in answers if (a["start"], a["end"], a["answer"]) == (0, 0, "")]
    assert max(nulls) == pytest.approx(unsure_null) and unsure_null < 0.01
    assert answers[0]["answer"] == "York"


def test_impossible_answer_is_absent_unless_asked():
    out = logits({CLS: 9.0}, {CLS: 9.0})
    answers = best_answers(CONTEXT, [window()], [out], top_k=50)
    assert all(a["answer"] != "" or a["score"] == 0.0 for a in answers)
    assert answers[0]["answer"] != ""


def test_align_to_words_widens_a_subword_span_to_the_whole_word():
    out = logits({G: 9.0}, {G: 9.0})
    aligned = best_answers(CONTEXT, [window()], [out], align_to_words=True)[0]
    raw = best_answers(CONTEXT, [window()], [out], align_to_words=False)[0]
    assert (aligned["answer"], aligned["start"], aligned["end"]) == ("big", 12, 15)
    assert (raw["answer"], raw["start"], raw["end"]) == ("g", 14, 15)


# --- parameters and inputs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def handler(tiny_model):
    from transformers import AutoConfig, AutoTokenizer

    path = tiny_model("question-answering")
    return QuestionAnsweringHandler(AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path))


def test_defaults_follow_the_reference(handler):
    params = handler.check_params({})
    assert params["max_seq_len"] == min(handler.max_length, 384)
    assert params["doc_stride"] == min(params["max_seq_len"] // 2, 128)
    assert (params["top_k"], params["max_answer_len"], params["align_to_words"]) == (1, 15, True)


def test_empty_question_names_its_input_index(handler):
    items = [{"question": "Who?", "context": "John."}, {"question": "  ", "context": "John."}]
    with pytest.raises(ValueError, match=r"input 1: question is empty"):
        handler.check_inputs(items)


def test_empty_context_and_missing_key_name_their_input_index(handler):
    with pytest.raises(ValueError, match=r"input 0: context is empty"):
        handler.check_inputs([{"question": "Who?", "context": ""}])
    with pytest.raises(ValueError, match=r"input 1: missing 'context'"):
        handler.check_inputs([QAItem("a", "b"), {"question": "Who?"}])


def test_unknown_parameter_is_refused_with_the_accepted_names(handler):
    with pytest.raises(ValueError, match=r"unknown parameter 'topk'.*top_k"):
        handler.check_params({"topk": 2})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_seq_len": 64, "doc_stride": 65}, r"doc_stride \(65\) is larger than max_seq_len \(64\)"),
        ({"top_k": 0}, r"top_k must be >= 1"),
        ({"max_answer_len": 0}, r"max_answer_len must be >= 1"),
        ({"max_seq_len": 10_000}, r"max_seq_len must be between"),
        ({"handle_impossible_answer": "yes"}, r"handle_impossible_answer must be true or false"),
    ],
)
def test_out_of_range_parameters_raise_value_error(handler, params, message):
    with pytest.raises(ValueError, match=message):
        handler.check_params(params)


def test_question_leaving_no_room_beyond_doc_stride_names_its_input(handler):
    params = handler.check_params({"max_seq_len": 32, "doc_stride": 8})
    items = handler.check_inputs(
        [
            {"question": "Who?", "context": "John " * 40},
            {"question": "where " * 25, "context": "Seattle " * 40},
        ]
    )
    with pytest.raises(ValueError, match=r"input 1: the question is 25 tokens.*doc_stride=8"):
        handler.encode(items, params)


def test_long_question_is_fine_when_the_pair_fits_one_window(handler):
    params = handler.check_params({"max_seq_len": 40, "doc_stride": 8})
    items = handler.check_inputs([{"question": "where " * 25, "context": "Seattle"}])
    features = handler.encode(items, params)
    assert len(features) == 1


def test_encode_windows_a_long_context_with_overlap_and_masks_the_question(handler):
    params = handler.check_params({"max_seq_len": 32, "doc_stride": 8})
    items = handler.check_inputs([{"question": "Who?", "context": "John lives in Paris. " * 10}])
    features = handler.encode(items, params)
    assert len(features) > 2 and all(len(f) <= 32 for f in features)
    for f in features:
        allowed, seq = f.data["allowed"], f.data["seq"]
        assert allowed[0] and not allowed[seq == 0].any() and allowed[seq == 1].all()


# --- call conventions --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs", "n_items", "shape"),
    [
        ((), {"question": "q", "context": "c"}, 1, "single"),
        (("q", "c"), {}, 1, "single"),
        (({"question": "q", "context": "c"},), {}, 1, "single"),
        (([{"question": "q", "context": "c"}],), {}, 1, "single"),
        (([{"question": "q", "context": "c"}] * 2,), {}, 2, "list"),
        ((), {"question": ["q1", "q2", "q3"], "context": "c"}, 3, "list"),
        ((), {"question": ["q1", "q2"], "context": ["c1", "c2"]}, 2, "list"),
        (({"question": ["q"], "context": ["c"]},), {}, 1, "list"),
    ],
)
def test_split_call_mirrors_the_reference_call_forms(handler, args, kwargs, n_items, shape):
    items, params, got_shape = handler.split_call(args, {**kwargs, "top_k": 2})
    assert len(items) == n_items and got_shape == shape and params == {"top_k": 2}


def test_broadcast_question_list_shares_the_one_context():
    items, _ = expand_inputs((), {"question": ["a", "b"], "context": "ctx"})
    assert items == [{"question": "a", "context": "ctx"}, {"question": "b", "context": "ctx"}]


def test_unequal_question_and_context_lists_are_refused():
    with pytest.raises(ValueError, match="2 questions and 1 contexts"):
        expand_inputs((), {"question": ["a", "b"], "context": ["c"]})


def test_join_call_returns_a_dict_for_one_input_and_a_list_for_several(handler):
    one = {"score": 0.5, "start": 0, "end": 1, "answer": "a"}
    assert handler.join_call([one], "single", {}) == one
    assert handler.join_call([one, one], "list", {}) == [one, one]


def test_model_card_example_returns_one_answer_dict_per_pair(tiny_model):
    import distilkit

    model_dir = str(tiny_model("question-answering"))
    qa = distilkit.pipeline("question-answering", model=model_dir, dtype="float32")
    inputs = {
        "question": ["What is my name?", "Where do I live?"],
        "context": ["My name is John and I live in Seattle.", "My name is Ravi and I live in Hyderabad."],
    }
    results = qa(inputs)
    assert isinstance(results, list) and len(results) == 2
    for result, context in zip(results, inputs["context"], strict=True):
        assert set(result) == {"score", "start", "end", "answer"}
        assert 0.0 <= result["score"] <= 1.0 and isinstance(result["start"], int)
        assert result["answer"] == context[result["start"] : result["end"]] != ""
    several = qa(inputs, top_k=2)
    assert all(isinstance(r, list) and len(r) == 2 for r in several)


def test_segment_ids_are_sent_only_when_the_tokenizer_lists_them(handler):
    # As the reference: a DistilBERT-style tokenizer (no token_type_ids input) gives the model none.
    items = handler.check_inputs([{"question": "Who?", "context": "John lives in Paris."}])
    (feature,) = handler.encode(items, handler.check_params({}))
    assert ("token_type_ids" in handler.tokenizer.model_input_names) == (feature.token_type_ids is not None)
    assert feature.token_type_ids is None


def test_a_max_answer_len_far_beyond_the_window_acts_as_no_limit():
    start = np.array([0.0, 1.0, 5.0, 0.5, 0.2], dtype=np.float32)
    end = np.array([0.0, 0.3, 0.1, 0.2, 6.0], dtype=np.float32)
    allowed = np.array([True, True, True, True, True])
    huge = window_spans(start, end, allowed, top_k=3, max_answer_len=2**63)
    window = window_spans(start, end, allowed, top_k=3, max_answer_len=5)
    assert [a.tolist() for a in huge[:3]] == [a.tolist() for a in window[:3]]

"""token-classification post-processing on hand-made scores and offsets (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import bpe_tokenizer, make_config, wordpiece_tokenizer

from distilkit.tasks.base import Feature, softmax
from distilkit.tasks.token_classification import (
    TokenClassificationHandler,
    aggregate,
    drop_ignored,
    group_entities,
    ignored_tokens,
    merge_overlapping,
    pre_entities,
    split_tag,
    subword_flags,
)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def wordpiece_join(tokens: list[str]) -> str:
    return " ".join(tokens).replace(" ##", "")


# "John lives in New York": Jo|##hn is one word whose pieces disagree (B-PER vs I-LOC).
TEXT = "John lives in New York"
TOKENS = ["[CLS]", "Jo", "##hn", "lives", "in", "New", "York", "[SEP]"]
OFFSETS = [(0, 0), (0, 2), (2, 4), (5, 10), (11, 13), (14, 17), (18, 22), (0, 0)]
SPECIAL = [1, 0, 0, 0, 0, 0, 0, 1]
SCORES = np.array([
    [0.9, 0.025, 0.025, 0.025, 0.025],  # [CLS] (dropped)
    [0.05, 0.7, 0.05, 0.1, 0.1],        # Jo    -> B-PER 0.7
    [0.0, 0.0, 0.1, 0.0, 0.9],          # ##hn  -> I-LOC 0.9
    [0.9, 0.025, 0.025, 0.025, 0.025],  # lives -> O
    [0.8, 0.05, 0.05, 0.05, 0.05],      # in    -> O
    [0.1, 0.1, 0.1, 0.6, 0.1],          # New   -> B-LOC 0.6
    [0.1, 0.05, 0.05, 0.1, 0.7],        # York  -> I-LOC 0.7
    [0.9, 0.025, 0.025, 0.025, 0.025],  # [SEP] (dropped)
], dtype=np.float32)


def example_pre():
    unknown = [False] * len(TOKENS)
    return pre_entities(TOKENS, SCORES, OFFSETS, SPECIAL, TEXT, word_aware=True, unknown=unknown)


def entities(strategy: str, ignore=("O",)):
    return drop_ignored(aggregate(example_pre(), strategy, LABELS, wordpiece_join), list(ignore))


def summary(found):
    return [(e.get("entity", e.get("entity_group")), e["word"], e["start"], e["end"], round(e["score"], 4))
            for e in found]


# --- pure functions -----------------------------------------------------------------------------
def test_pre_entities_drop_special_tokens_and_flag_wordpiece_continuations():
    pre = example_pre()
    assert [p["word"] for p in pre] == TOKENS[1:-1]
    assert [p["index"] for p in pre] == [1, 2, 3, 4, 5, 6]
    assert [p["is_subword"] for p in pre] == [False, True, False, False, False, False]


def test_none_strategy_gives_every_token_its_best_label_with_its_index():
    found = entities("none")
    assert summary(found) == [("B-PER", "Jo", 0, 2, 0.7), ("I-LOC", "##hn", 2, 4, 0.9),
                              ("B-LOC", "New", 14, 17, 0.6), ("I-LOC", "York", 18, 22, 0.7)]
    assert list(found[0]) == ["entity", "score", "index", "word", "start", "end"]
    assert [e["index"] for e in found] == [1, 2, 5, 6]


def test_simple_strategy_groups_adjacent_b_i_tags_and_can_split_a_word():
    found = entities("simple")
    assert summary(found) == [
        ("PER", "Jo", 0, 2, 0.7), ("LOC", "##hn", 2, 4, 0.9), ("LOC", "New York", 14, 22, 0.65)]
    assert list(found[0]) == ["entity_group", "score", "word", "start", "end"]


def test_first_strategy_labels_a_word_by_its_first_piece():
    assert summary(entities("first")) == [("PER", "John", 0, 4, 0.7), ("LOC", "New York", 14, 22, 0.65)]


def test_average_strategy_labels_a_word_by_its_mean_scores():
    # mean(Jo, ##hn) = [0.025, 0.35, 0.075, 0.05, 0.5] -> I-LOC 0.5
    assert summary(entities("average")) == [("LOC", "John", 0, 4, 0.5), ("LOC", "New York", 14, 22, 0.65)]


def test_max_strategy_labels_a_word_by_its_most_confident_piece():
    assert summary(entities("max")) == [("LOC", "John", 0, 4, 0.9), ("LOC", "New York", 14, 22, 0.65)]


def test_empty_ignore_labels_keeps_the_o_group():
    found = entities("first", ignore=())
    assert summary(found)[1] == ("O", "lives in", 5, 13, 0.85)


def test_ignore_labels_match_labels_without_aggregation_and_groups_with_it():
    assert [e["entity"] for e in entities("none", ignore=("O", "I-LOC"))] == ["B-PER", "B-LOC"]
    assert entities("none", ignore=("LOC",)) == entities("none", ignore=())  # no token is labelled bare "LOC"
    assert [e["entity_group"] for e in entities("simple", ignore=("O", "LOC"))] == ["PER"]


@pytest.mark.parametrize("label, expected", [("B-PER", ("B", "PER")), ("I-LOC", ("I", "LOC")),
                                             ("MISC", ("I", "MISC")), ("E-X", ("I", "E-X"))])
def test_split_tag_reads_b_i_prefixes_and_treats_bare_labels_as_continuations(label, expected):
    assert split_tag(label) == expected


def test_group_entities_starts_a_new_entity_at_each_b_tag_and_each_tag_change():
    tokens = [("B-LOC", "a"), ("B-LOC", "b"), ("I-LOC", "c"), ("I-PER", "d"), ("MISC", "e"), ("MISC", "f")]
    found = [{"entity": label, "score": 0.5, "word": word, "start": i, "end": i + 1}
             for i, (label, word) in enumerate(tokens)]
    groups = group_entities(found, " ".join)
    assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in groups] == [
        ("LOC", "a", 0, 1), ("LOC", "b c", 1, 3), ("PER", "d", 3, 4), ("MISC", "e f", 4, 6)]


def test_subword_heuristic_without_word_aware_tokenizer_looks_for_a_space_before_the_token():
    text = "New-York is"
    offsets = [(0, 3), (3, 4), (4, 8), (9, 11)]
    flags = subword_flags(["New", "-", "York", "is"], offsets, text, word_aware=False)
    assert flags == [False, True, True, False]
    # A span that starts at the space itself (offsets not trimmed) begins a word too.
    assert subword_flags(["New", " York"], [(0, 3), (3, 8)], "New York", word_aware=False) == [False, False]
    # Word-aware: a token longer than its span (the ## prefix) continues a word.
    assert subword_flags(["New", "##-", "York"], offsets[:3], text, word_aware=True) == [False, True, False]


def test_unknown_token_takes_its_text_span_as_word_and_starts_a_word():
    tokens = ["[CLS]", "[UNK]", "##x", "[SEP]"]
    pre = pre_entities(tokens, SCORES[:4], [(0, 0), (0, 3), (3, 4), (0, 0)], [1, 0, 0, 1], "€€€x",
                       word_aware=True, unknown=[False, True, False, False])
    assert [(p["word"], p["is_subword"]) for p in pre] == [("€€€", False), ("##x", True)]


def test_merge_overlapping_keeps_the_longer_then_more_confident_entity_in_start_order():
    found = [
        {"entity_group": "PER", "score": 0.9, "word": "Jo", "start": 10, "end": 12},
        {"entity_group": "LOC", "score": 0.5, "word": "a", "start": 0, "end": 3},
        {"entity_group": "PER", "score": 0.6, "word": "John", "start": 10, "end": 14},
        {"entity_group": "LOC", "score": 0.7, "word": "b", "start": 0, "end": 3},
        {"entity_group": "O", "score": 0.7, "word": "c", "start": 20, "end": 21},
    ]
    assert [e["word"] for e in merge_overlapping(found)] == ["b", "John", "c"]
    assert merge_overlapping([]) == []


# --- the handler --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def handler():
    tokenizer = wordpiece_tokenizer()
    config = make_config("distilbert", "token-classification", len(tokenizer), id2label=LABELS)
    return TokenClassificationHandler(tokenizer, config)


@pytest.mark.parametrize("params, message", [
    ({"aggregation_strategy": "foo"}, "aggregation_strategy must be one of"),
    ({"ignore_labels": [1]}, "ignore_labels must be a list"),
    ({"stride": -1}, "stride must be between 0 and 125"),
    ({"stride": 126}, "stride must be between 0 and 125"),
    ({"stride": 8, "aggregation_strategy": "none"}, 'other than "none"'),
    ({"top_k": 3}, "unknown parameter 'top_k'"),
])
def test_bad_parameters_are_refused_with_a_clear_message(handler, params, message):
    with pytest.raises(ValueError, match=message):
        handler.check_params(params)


def test_parameters_default_to_no_aggregation_and_ignoring_o(handler):
    params = handler.check_params({"aggregation_strategy": "SIMPLE", "ignore_labels": "X"})
    assert (params["strategy"], params["ignore_labels"]) == ("simple", ["X"])
    defaults = handler.check_params({})
    assert (defaults["strategy"], defaults["ignore_labels"], defaults["stride"]) == ("none", ["O"], None)


def test_word_strategies_warn_when_the_tokenizer_does_not_mark_words():
    tokenizer = bpe_tokenizer()
    bpe = TokenClassificationHandler(tokenizer, make_config("roberta", "token-classification", len(tokenizer),
                                                            id2label=LABELS))
    assert not bpe.word_aware
    with pytest.warns(UserWarning, match="fallback heuristic"):
        bpe.check_params({"aggregation_strategy": "first"})


@pytest.mark.parametrize("items, index", [(["ok", ""], 1), (["ok", "fine", 3], 2), ([None], 0)])
def test_empty_or_non_string_inputs_are_refused_by_index(handler, items, index):
    with pytest.raises(ValueError, match=f"^input {index}: "):
        handler.check_inputs(items)


def test_encode_of_no_items_gives_no_features(handler):
    assert handler.encode([], handler.check_params({})) == []


def test_encode_truncates_to_the_model_length_without_stride(handler):
    features = handler.encode(["Paris " * 200, "Paris"], handler.check_params({}))
    assert [f.item for f in features] == [0, 1]
    assert len(features[0]) == handler.max_length == 128


def test_encode_with_stride_gives_overlapping_windows_owned_by_their_item(handler):
    text = "John lives in New York " * 15  # 165 tokens: two windows of at most 126 + 2 specials
    params = handler.check_params({"aggregation_strategy": "simple", "stride": 10})
    features = handler.encode(["Paris", text, "London"], params)
    assert [f.item for f in features] == [0, 1, 1, 2]
    first, second = features[1].data["offsets"], features[2].data["offsets"]
    assert second[1][0] < first[-2][1]  # the second window starts before the first one ends
    assert all(len(f) <= handler.max_length for f in features)


def test_decode_reads_offsets_into_the_original_text(handler):
    text = "John lives in New York"
    (feature,) = handler.encode([text], handler.check_params({}))
    logits = np.full((len(feature), len(LABELS)), -5.0, dtype=np.float32)
    logits[:, 0] = 5.0  # everything O, except the pieces of "New" (B-LOC I-LOC..) and "York" (B-LOC I-LOC..)
    for i, (start, _) in enumerate(feature.data["offsets"]):
        if start >= 14:
            logits[i, 3 if start in (14, 18) else 4] = 10.0
    params = handler.check_params({"aggregation_strategy": "simple"})
    found = handler.decode(text, [feature], [logits], params)
    assert [(e["entity_group"], e["word"], text[e["start"]:e["end"]]) for e in found] == [
        ("LOC", "New", "New"), ("LOC", "York", "York")]


def test_ignored_tokens_adds_the_tokens_whose_best_label_is_ignored_to_the_special_ones():
    dropped = ignored_tokens(SCORES, SPECIAL, LABELS, ["O"])
    assert dropped == [True, False, False, True, True, False, False, True]  # [CLS] lives in [SEP]
    assert ignored_tokens(SCORES, SPECIAL, LABELS, []) == [bool(s) for s in SPECIAL]


@pytest.mark.parametrize("ignore", [["O"], [], ["O", "I-LOC"]])
def test_decode_without_aggregation_skips_ignored_tokens_yet_answers_as_the_full_post_processing(
    handler, ignore
):
    text = "John lives in New York"
    (feature,) = handler.encode([text], handler.check_params({}))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(feature), len(LABELS))).astype(np.float32)
    logits[::2, 0] += 3.0  # some tokens O, some not
    params = handler.check_params({"ignore_labels": ignore})
    found = handler.decode(text, [feature], [logits], params)
    tokens = handler.tokenizer.convert_ids_to_tokens(feature.input_ids)
    unknown = [t == handler.tokenizer.unk_token_id for t in feature.input_ids]
    pre = pre_entities(tokens, softmax(logits), feature.data["offsets"], feature.data["special"], text,
                       handler.word_aware, unknown)
    assert found == drop_ignored(aggregate(pre, "none", LABELS, wordpiece_join), ignore)
    assert 0 < len(found) < len(pre) or not ignore


def test_decode_merges_entities_seen_in_two_windows(handler):
    features = [
        Feature(item=0, input_ids=[2, 5, 3],
                data={"special": [1, 0, 1], "offsets": [(0, 0), (0, 1), (0, 0)]}),
        Feature(item=0, input_ids=[2, 5, 6, 3], data={"special": [1, 0, 0, 1],
                                                      "offsets": [(0, 0), (0, 1), (2, 3), (0, 0)]}),
    ]
    high = np.array([[0, 0, 0, 0, 0], [0, 9, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    low = np.array([[0, 0, 0, 0, 0], [0, 3, 0, 0, 0], [0, 0, 0, 9, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    assert handler.tokenizer.convert_ids_to_tokens([5, 6]) == ["a", "b"]
    params = handler.check_params({"aggregation_strategy": "first"})
    found = handler.decode("a b", features, [high, low], params)
    assert [(e["entity_group"], e["start"], e["end"]) for e in found] == [("PER", 0, 1), ("LOC", 2, 3)]
    assert found[0]["score"] > 0.99  # the more confident window's PER wins the tie in length

"""text- and token-classification parity: distilkit vs the installed transformers pipelines.

Both run on the same tiny fp32 weights (the reference wraps distilkit's own model object). The
classifier heads are scaled up so random weights give confident, varied labels: entity groups,
"O" runs and label order then depend on the post-processing being exactly the reference's.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil

import pytest
import torch
import transformers

import distilkit

TOL = 1e-4
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
FAMILIES = ["distilbert", "bert", "roberta"]

TEXTS = [
    "Johnny lives in Parisville near the Seinestream, with Microsoftian friends.",
    "London is great",
    "xyzzy quux, Berlinerstadt & Germanyland!",
    "a",
    "the capital of France is Paris; Seattle-Tacoma is where Johnsonville won the season.",
]
PAIRS = [
    {"text": "What is my name?", "text_pair": "My name is Johnny and I live in Seattle."},
    {"text": "a good day", "text_pair": "today"},
]
LONG_TEXT = " ".join(["Johnny visited Parisville and Londonderry with Microsoftian teammates."] * 12)


def assert_same(ours, ref, path="result"):
    """Same structure, keys (in order), labels, words and offsets; scores within TOL."""
    if isinstance(ref, list):
        assert isinstance(ours, list), f"{path}: expected a list, got {ours!r}"
        assert len(ours) == len(ref), f"{path}: {len(ours)} items vs the reference's {len(ref)}"
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, f"{path}[{i}]")
        return
    assert isinstance(ours, dict), f"{path}: expected a dict, got {ours!r}"
    assert list(ours) == list(ref), f"{path}: keys {list(ours)} vs {list(ref)}"
    for key, value in ref.items():
        if key == "score":
            assert isinstance(ours[key], float)
            assert math.isclose(ours[key], float(value), abs_tol=TOL), f"{path}: {ours} vs {ref}"
        else:
            assert ours[key] == value, f"{path}.{key}: {ours[key]!r} vs {value!r}"


def sharpen(model: torch.nn.Module, factor: float = 40.0) -> None:
    """Scale the classifier head so near-uniform random logits become confident, varied labels."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("classifier"):
                param.mul_(factor)


def build_pair(task, model_dir, **params):
    ours = distilkit.pipeline(task, model=str(model_dir), dtype="float32", **params)
    sharpen(ours.model)
    ref = transformers.pipeline(task, model=ours.model, tokenizer=ours.tokenizer, **params)
    return ours, ref


def with_config(src, dst, **fields):
    """Copy a model directory and override fields of its config.json (e.g. problem_type)."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(fields)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


# --- text-classification ------------------------------------------------------------------------
@pytest.fixture(scope="module", params=FAMILIES)
def classifier(request, tiny_model):
    return build_pair("text-classification", tiny_model("text-classification", request.param, num_labels=4))


@pytest.mark.parametrize("kwargs", [
    {}, {"top_k": 1}, {"top_k": 3}, {"top_k": 10}, {"top_k": None},
    {"function_to_apply": "sigmoid"}, {"function_to_apply": "softmax", "top_k": 2},
    {"function_to_apply": "none", "top_k": None}, {"function_to_apply": "NONE"},
])
def test_text_classification_list_input_matches_the_pipeline_for_every_parameter(classifier, kwargs):
    ours, ref = classifier
    assert_same(ours(TEXTS, **kwargs), ref(TEXTS, **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": None}])
def test_text_classification_single_and_one_element_inputs_have_the_pipeline_shapes(classifier, kwargs):
    ours, ref = classifier
    assert_same(ours(TEXTS[0], **kwargs), ref(TEXTS[0], **kwargs))
    assert_same(ours([TEXTS[1]], **kwargs), ref([TEXTS[1]], **kwargs))
    assert_same(ours(PAIRS[0], **kwargs), ref(PAIRS[0], **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}])
def test_text_pairs_as_dicts_and_nested_lists_match_the_pipeline(classifier, kwargs):
    ours, ref = classifier
    assert_same(ours(PAIRS, **kwargs), ref(PAIRS, **kwargs))
    nested = [[[PAIRS[0]["text"], PAIRS[0]["text_pair"]]]]
    assert_same(ours(nested, **kwargs), ref(nested, **kwargs))
    mixed = [TEXTS[0], PAIRS[1], TEXTS[2]]  # singles and pairs in one call keep their order
    assert_same(ours(mixed, **kwargs), ref(mixed, **kwargs))


def test_truncation_matches_the_pipeline_on_a_too_long_text(classifier):
    ours, ref = classifier
    assert_same(ours(LONG_TEXT, truncation=True), ref(LONG_TEXT, truncation=True))
    with pytest.raises(ValueError, match="input 1: has .* tokens; this model accepts at most"):
        ours([TEXTS[0], LONG_TEXT])


def test_top_k_given_at_construction_keeps_the_pipeline_shapes(tiny_model):
    model_dir = tiny_model("text-classification", "distilbert", num_labels=4)
    ours, ref = build_pair("text-classification", model_dir, top_k=2)
    assert_same(ours(TEXTS[0]), ref(TEXTS[0]))  # a bare string still comes back wrapped: [[...]]
    assert_same(ours(TEXTS[:2]), ref(TEXTS[:2]))
    assert_same(ours(TEXTS[0], top_k=None), ref(TEXTS[0], top_k=None))


@pytest.mark.parametrize("config", [
    {"num_labels": 1},
    {"num_labels": 3, "problem_type": "multi_label_classification"},
    {"num_labels": 1, "problem_type": "regression"},
    {"num_labels": 2, "problem_type": "single_label_classification"},
])
def test_default_score_function_follows_the_config_like_the_pipeline(tiny_model, tmp_path, config):
    config = dict(config)
    problem = config.pop("problem_type", None)
    src = tiny_model("text-classification", "bert", **config)
    model_dir = with_config(src, tmp_path / "model", problem_type=problem)
    ours, ref = build_pair("text-classification", model_dir)
    assert_same(ours(TEXTS), ref(TEXTS))
    assert_same(ours(TEXTS, top_k=None), ref(TEXTS, top_k=None))


# --- token-classification -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=FAMILIES)
def tagger(request, tiny_model):
    model_dir = tiny_model("token-classification", request.param, id2label=NER_LABELS)
    return build_pair("token-classification", model_dir)


STRATEGIES = ["none", "simple", "first", "average", "max"]


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_token_classification_matches_the_pipeline_for_every_aggregation_strategy(tagger, strategy):
    ours, ref = tagger
    expected = ref(TEXTS, aggregation_strategy=strategy)
    assert_same(ours(TEXTS, aggregation_strategy=strategy), expected)
    # The texts must exercise the aggregation: several entities, not everything dropped as "O".
    assert sum(len(r) for r in expected) >= 5


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")
@pytest.mark.parametrize("strategy", ["none", "simple", "average"])
@pytest.mark.parametrize("ignore_labels", [[], ["O", "I-PER"], ["LOC"]])
def test_ignore_labels_filter_like_the_pipeline(tagger, strategy, ignore_labels):
    ours, ref = tagger
    kwargs = {"aggregation_strategy": strategy, "ignore_labels": ignore_labels}
    assert_same(ours(TEXTS, **kwargs), ref(TEXTS, **kwargs))


def test_token_classification_single_and_one_element_inputs_have_the_pipeline_shapes(tagger):
    ours, ref = tagger
    assert_same(ours(TEXTS[0]), ref(TEXTS[0]))
    assert_same(ours([TEXTS[0]]), ref([TEXTS[0]]))
    assert_same(ours(TEXTS[0], aggregation_strategy="simple"), ref(TEXTS[0], aggregation_strategy="simple"))


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")
@pytest.mark.parametrize("kwargs", [{"aggregation_strategy": "simple", "stride": 16},
                                    {"aggregation_strategy": "max", "stride": 0}, {"stride": 32}])
def test_stride_windows_over_long_texts_match_the_pipeline(tagger, kwargs):
    ours, ref = tagger
    texts = [LONG_TEXT, TEXTS[1]]
    expected = ref(texts, **kwargs)
    assert_same(ours(texts, **kwargs), expected)
    assert max(e["end"] for e in expected[0]) > 400  # entities found beyond the first window


def test_long_text_without_stride_is_truncated_like_the_pipeline(tagger):
    ours, ref = tagger
    assert_same(ours(LONG_TEXT, ignore_labels=[]), ref(LONG_TEXT, ignore_labels=[]))


def test_aggregation_strategy_given_at_construction_applies_to_calls(tiny_model):
    model_dir = tiny_model("token-classification", "distilbert", id2label=NER_LABELS)
    ours, ref = build_pair("token-classification", model_dir, aggregation_strategy="first")
    assert_same(ours(TEXTS), ref(TEXTS))
    assert all("entity_group" in e for r in ours(TEXTS) for e in r)


# --- real tokenizers (../shared) ----------------------------------------------------------------
REAL_TEXTS = [
    "EU rejects German call to boycott British lamb.",
    "Peter Blackburn of the European Commission's Brussels office said on Thursday – déjà vu.",
    "Hugging Face Inc. is a company based in New York City; its headquarters are in DUMBO.",
]


def real_model_dir(shared_dir, tmp_path, name, **fields):
    """A copy of a real config + tokenizer with 2 layers (fast) and ``fields`` set in config.json."""
    config = json.loads((shared_dir / "models" / name / "config.json").read_text())
    layers = {"n_layers": 2} if "n_layers" in config else {"num_hidden_layers": 2}
    return with_config(shared_dir / "models" / name, tmp_path / name, **layers, **fields)


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")
@pytest.mark.parametrize("name", ["distilbert-base-cased", "distilroberta-base"])
def test_real_tokenizers_match_the_pipelines(shared_dir, tmp_path, name):
    labels = {"id2label": dict(enumerate(NER_LABELS)), "label2id": {l: i for i, l in enumerate(NER_LABELS)}}
    model_dir = real_model_dir(shared_dir, tmp_path, name, **labels)
    ours = distilkit.pipeline("token-classification", model=str(model_dir), dtype="float32",
                              dummy_weights=True)
    sharpen(ours.model)
    ref = transformers.pipeline("token-classification", model=ours.model, tokenizer=ours.tokenizer)
    for strategy in STRATEGIES:
        kwargs = {"aggregation_strategy": strategy}
        assert_same(ours(REAL_TEXTS, **kwargs), ref(REAL_TEXTS, **kwargs))
    long_text = " ".join(REAL_TEXTS * 20)  # ~700 tokens: several 512-token windows
    kwargs = {"aggregation_strategy": "simple", "stride": 64}
    assert_same(ours(long_text, **kwargs), ref(long_text, **kwargs))

    classifier = distilkit.pipeline("text-classification", model=str(model_dir), dtype="float32",
                                    dummy_weights=True)
    sharpen(classifier.model)
    ref = transformers.pipeline("text-classification", model=classifier.model, tokenizer=classifier.tokenizer)
    pairs = [{"text": a, "text_pair": b} for a, b in itertools.pairwise(REAL_TEXTS)]
    assert_same(classifier(REAL_TEXTS + pairs, top_k=None), ref(REAL_TEXTS + pairs, top_k=None))

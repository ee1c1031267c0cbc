"""What ``/v1/models`` tells clients about a task: parameters with types and defaults, mask token, labels."""

from __future__ import annotations

import json

import pytest
from tiny_models import bpe_tokenizer, make_config, wordpiece_tokenizer

from distilkit.tasks import HANDLERS, get_handler_class

LABELS = {"text-classification": ["NEGATIVE", "POSITIVE"], "token-classification": ["O", "B-PER", "I-PER"]}


def handler(task: str, family: str = "distilbert"):
    tok = bpe_tokenizer() if family == "roberta" else wordpiece_tokenizer()
    config = make_config(family, task, vocab_size=len(tok), id2label=LABELS.get(task))
    return get_handler_class(task)(tok, config)


@pytest.mark.parametrize("task", sorted(HANDLERS))
def test_every_parameter_has_a_type_for_forms(task):
    cls = get_handler_class(task)
    assert set(cls.param_types) == set(cls.defaults)


@pytest.mark.parametrize("task", sorted(HANDLERS))
def test_described_defaults_are_json_and_accepted_when_sent_back(task):
    h = handler(task)
    described = h.describe()
    json.dumps(described)  # what /v1/models sends
    assert [p["name"] for p in described["parameters"]] == list(h.defaults)
    for p in described["parameters"]:
        assert p["type"] in {"integer", "boolean", "string", "strings"}
        assert "choices" not in p or p["default"] is None or p["default"] in p["choices"]
    sent = {p["name"]: p["default"] for p in described["parameters"] if p["default"] is not None}
    h.check_params(sent)  # a client that sends the shown defaults gets no error


@pytest.mark.parametrize(("family", "mask"), [("distilbert", "[MASK]"), ("roberta", "<mask>")])
def test_fill_mask_names_its_mask_token(family, mask):
    described = handler("fill-mask", family).describe()
    assert described["mask_token"] == mask
    assert {p["name"]: p["default"] for p in described["parameters"]} == {"top_k": 5, "targets": None}


def test_text_classification_hides_the_legacy_top_k_sentinel_and_lists_labels():
    described = handler("text-classification").describe()
    params = {p["name"]: p for p in described["parameters"]}
    assert params["top_k"] == {"name": "top_k", "type": "integer", "default": None}
    assert params["function_to_apply"]["choices"] == ["default", "softmax", "sigmoid", "none"]
    assert described["labels"] == ["NEGATIVE", "POSITIVE"]


def test_token_classification_shows_the_effective_ignore_labels_and_strategies():
    described = handler("token-classification").describe()
    params = {p["name"]: p for p in described["parameters"]}
    assert params["ignore_labels"]["default"] == ["O"]
    assert params["aggregation_strategy"]["choices"] == ["none", "simple", "first", "average", "max"]
    assert described["labels"] == ["O", "B-PER", "I-PER"]

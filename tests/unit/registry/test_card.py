"""Registry cards: a snapshot of the full card for a fixed entry, and the sample format per task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distilkit.registry.card import render_card

EXPECTED = Path(__file__).with_name("expected_card.md")


def test_card_matches_the_committed_snapshot(registry, make_dir):
    """Re-record after an intended change with DISTILKIT_UPDATE_SNAPSHOTS=1."""
    metrics = {"squad_v1.1_dev": {"exact_match": 77.7, "f1": 85.8123456}, "eval_samples": 10570}
    source = make_dir("card-model", arch="DistilBertForQuestionAnswering", metrics=metrics)
    registry.register(
        source,
        "distilbert-squad",
        version="1.0",
        license="apache-2.0",
        languages=["en"],
        datasets=["squad"],
        hub_id="distilbert-base-cased-distilled-squad",
        aliases=["prod"],
        description="DistilBERT base cased, fine-tuned with knowledge distillation on SQuAD v1.1.",
    )
    card = render_card(registry.get("distilbert-squad:prod").to_dict())
    if os.environ.get("DISTILKIT_UPDATE_SNAPSHOTS") == "1":
        EXPECTED.write_text(card)
    assert card == EXPECTED.read_text(), (
        "card changed; re-record with DISTILKIT_UPDATE_SNAPSHOTS=1 if intended"
    )


def _sample(card: str) -> tuple[object, object]:
    section = card.split("## Sample input and output")[1].split("##")[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    return json.loads(blocks[0]), json.loads(blocks[1])


@pytest.mark.parametrize(
    ("arch", "config", "request_key", "response"),
    [("DistilBertForMaskedLM", {}, "input_data", ["part"]),
     ("DistilBertForSequenceClassification", {"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}, "input_data",
      [{"label": "POSITIVE", "score": 0.98}]),
     ("DistilBertForSequenceClassification", {"id2label": {"0": "anger", "1": "fear"}}, "input_data",
      [{"label": "anger", "score": 0.98}]),
     ("BertForTokenClassification",
      {"id2label": {"0": "O", "1": "B-LOC", "2": "I-LOC", "3": "B-PER", "4": "I-PER"}}, "input_data",
      [[{"entity_group": "PER", "score": 0.99, "word": "John", "start": 11, "end": 15}]]),
     ("BertForTokenClassification", {"id2label": {"0": "O", "1": "B-ORG"}, "lowercase": True},
      "input_data", [[{"entity_group": "ORG", "score": 0.99, "word": "john", "start": 11, "end": 15}]])],
)
def test_sample_answers_with_a_label_of_the_model_that_fits_the_sample_text(
        registry, make_dir, arch, config, request_key, response):
    """"I love this movie!" -> a positive label and "John" -> a person where the model has one (else its
    first label); an uncased model's word comes out lowercased, as its pipeline writes it."""
    registry.register(make_dir("m", arch=arch, **config), "m")
    request, got = _sample(render_card(registry.get("m").to_dict()))
    assert request_key in request and got == response


def test_roberta_fill_mask_sample_uses_its_own_mask_token(registry, make_dir):
    registry.register(make_dir("r", arch="RobertaForMaskedLM"), "r")
    card = render_card(registry.get("r").to_dict())
    request, response = _sample(card)
    assert request["inputs"]["input_string"][0] == "Paris is the <mask> of France." and len(response[0]) == 2
    assert "The mask token is `<mask>`." in card and "[MASK]" not in card


def test_card_without_metrics_or_datasets_says_so(registry, make_dir):
    registry.register(make_dir("plain"), "plain")
    card = render_card(registry.get("plain").to_dict())
    assert "No `metrics.json` was registered with this version." in card
    assert "Not recorded; pass `--dataset NAME` when registering." in card

"""examples/real's QA splits: hyperparameters are chosen on articles the test never scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "real"))

from common import SQUAD_TRAIN_ARTICLES, prepare_data, squad_articles

ARTICLES = [{"title": f"article {i}", "paragraphs": []} for i in range(1, 49)]


def titles(split: str) -> list[str]:
    return [a["title"] for a in squad_articles(ARTICLES, split)]


def test_qa_validation_runs_train_and_score_only_on_the_training_articles():
    train, test = titles("train"), titles("test")
    validation_train, validation = titles("validation_train"), titles("validation")
    assert len(train) == SQUAD_TRAIN_ARTICLES and set(train).isdisjoint(test)
    assert validation_train + validation == train  # the validation articles are cut from the end of train
    assert set(validation_train).isdisjoint(validation) and validation
    assert validation == [f"article {i}" for i in range(33, 39)]


@pytest.mark.shared
def test_prepared_qa_validation_files_hold_no_test_question(shared_dir, tmp_path):
    squad = prepare_data(shared_dir, tmp_path, quick=False)["squad"]

    def ids(split: str) -> set[str]:
        data = json.loads(squad[split].read_text(encoding="utf-8"))["data"]
        return {qa["id"] for a in data for p in a["paragraphs"] for qa in p["qas"]}

    train, test = ids("train"), ids("test")
    validation_train, validation = ids("validation_train"), ids("validation")
    assert validation_train | validation == train and not validation_train & validation
    assert not (train & test) and len(validation) > 1000


@pytest.mark.shared
def test_qa_transfer_questions_are_unanswerable_and_only_on_training_paragraphs(shared_dir, tmp_path):
    squad = prepare_data(shared_dir, tmp_path, quick=False)["squad"]

    def contexts(split: str) -> set[str]:
        data = json.loads(squad[split].read_text(encoding="utf-8"))["data"]
        return {p["context"].strip() for a in data for p in a["paragraphs"]}

    for transfer, train in (("transfer", "train"), ("validation_transfer", "validation_train")):
        data = json.loads(squad[transfer].read_text(encoding="utf-8"))["data"]
        questions = [qa for a in data for p in a["paragraphs"] for qa in p["qas"]]
        assert len(questions) > 1000 and all(qa["is_impossible"] and not qa["answers"] for qa in questions)
        assert contexts(transfer) <= contexts(train)
    assert contexts("transfer").isdisjoint(contexts("test"))
    assert contexts("validation_transfer").isdisjoint(contexts("validation"))

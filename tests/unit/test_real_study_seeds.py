"""examples/real/distill_tasks.py --seeds and --student-steps: students per seed, judged by their means,
and students trained longer than their teacher."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "real"))

from distill_tasks import over_seeds, results_table, seeds_of, steps_cell, variant, with_steps

from distilkit.config import FinetuneConfig


def test_over_seeds_gives_means_sample_deviations_and_same_seed_wins():
    summary = over_seeds({"distilled": [0.90, 0.88, 0.89], "plain": [0.89, 0.89, 0.87]})
    assert summary["distilled"]["mean"] == pytest.approx(0.89)
    assert summary["distilled"]["std"] == pytest.approx(0.01)  # n - 1 in the denominator
    assert summary["plain"]["mean"] == pytest.approx(0.8833, abs=1e-4)
    assert summary["distilled_wins"] == 2  # seed by seed: 0.90>0.89, 0.88<0.89, 0.89>0.87
    assert over_seeds({"distilled": [0.5]})["distilled"] == {"mean": 0.5, "std": 0.0, "scores": [0.5]}


def test_other_seeds_get_folders_of_their_own_and_the_default_seed_keeps_the_old_names():
    args = argparse.Namespace(pre_distill=0, alpha_ce=0.5, alpha_task=0.5, temperature=2.0, alpha_cos=0.0,
                              alpha_hidden=0.0, transfer=False)
    default = variant(args, 1e-4)
    assert default == ("student-plain-lr0.0001", "student-distilled-lr0.0001-ce0.5-task0.5-T2")
    assert variant(args, 1e-4, FinetuneConfig.seed) == default
    assert variant(args, 1e-4, 7) == ("student-plain-lr0.0001-seed7",
                                      "student-distilled-lr0.0001-ce0.5-task0.5-T2-seed7")
    args.transfer = True  # a distilled student that also learned on teacher-labelled inputs
    assert variant(args, 1e-4)[1] == "student-distilled-lr0.0001-ce0.5-task0.5-T2-transfer"
    args.transfer, args.alpha_hidden = False, 1.0  # every layer against its teacher layer
    assert variant(args, 1e-4)[1] == "student-distilled-lr0.0001-ce0.5-task0.5-T2-hidden1"


@pytest.mark.parametrize("bad", ["", "1,x", "3,3"])
def test_seeds_must_be_distinct_integers(bad):
    with pytest.raises(SystemExit, match="--seeds"):
        seeds_of(argparse.Namespace(seeds=bad))


def test_the_table_shows_the_students_means_over_seeds_and_each_seed():
    scores = {"teacher": 0.9, "distilled": 0.89, "plain": 0.89, "distilled@7": 0.88, "plain@7": 0.87}
    task = {"task": "text-classification", "metric": "dev accuracy", "steps": 10, "student_lr": 1e-4,
            "scores": {k: {"score": v} for k, v in scores.items()}, "seeds": [42, 7],
            "over_seeds": over_seeds({"distilled": [0.89, 0.88], "plain": [0.89, 0.87]}),
            "retained": 0.9833, "plain_retained": 0.9778, "distilled_beats_plain": True, "speed": None,
            "train_minutes": {"teacher": 1.0, "distilled": 1.0, "plain": 1.0}, "minutes": 5.0}
    settings = {"evaluate_on": "test", "teacher_lr": 1e-4, "layers": "0,2,5", "alpha_ce": 0.5,
                "alpha_task": 0.5, "temperature": 2.0, "batch_size": 32, "threads": 2, "student_lr": None}
    table = results_table({"settings": settings, "tasks": {"sst2": task}, "minutes": 5.0})
    row = next(line for line in table.splitlines() if line.startswith("| SST-2"))
    assert "| **0.8850 ± 0.0071** | 0.8800 ± 0.0141 |" in row
    assert "seeds 42, 7" in table and "distilled 0.8900, 0.8800" in table
    assert "distilled ahead with 1 of 2 seeds" in table


def test_students_trained_longer_get_folders_of_their_own_and_their_steps():
    args = argparse.Namespace(pre_distill=0, alpha_ce=0.5, alpha_task=0.5, temperature=2.0, alpha_cos=0.0,
                              alpha_hidden=0.0, transfer=False)
    assert variant(args, 8e-4, FinetuneConfig.seed, 900) == (
        "student-plain-lr0.0008-steps-900", "student-distilled-lr0.0008-ce0.5-task0.5-T2-steps-900")
    assert variant(args, 8e-4, 7, 900)[0] == "student-plain-lr0.0008-steps-900-seed7"
    common = ["question-answering", "--train", "t.json", "--max-steps", "300", "--batch-size", "32"]
    assert with_steps(common, 900) == ["question-answering", "--train", "t.json", "--max-steps", "900",
                                       "--batch-size", "32"]
    assert with_steps(common, None) == common and common[4] == "300"  # the teacher's list is untouched
    assert steps_cell({"steps": 300, "student_steps": 900}) == "300 / 900"
    assert steps_cell({"steps": 300, "student_steps": 300}) == steps_cell({"steps": 300}) == "300"

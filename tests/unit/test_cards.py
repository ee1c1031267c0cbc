"""The one card layout: results rows of every metrics.json layout, GLUE's row, swapping the section."""

from __future__ import annotations

import math

from distilkit import cards
from distilkit.evaluation.results import merge

FINETUNE = {"model": "run", "data": "/data/dev.jsonl", "task": "text-classification", "examples": 8,
            "seconds": 0.1, "examples_per_second": 80.0, "metrics": {"accuracy": 1.0, "f1": 0.75}}
SQUAD = {"model": "run", "data": "/d/squad/dev-v1.1.json", "task": "question-answering", "examples": 3,
         "metrics": {"squad_version": "1.1", "exact_match": 33.33333, "f1": 50.0}}
GLUE = {"model": "run", "data_dir": "/glue", "split": "dev", "errors": {"STS-B": "needs a regression model"},
        "glue": {"SST-2": {"examples": 2, "metrics": {"accuracy": 0.5, "score": 50.0}},
                 "MRPC": {"examples": 2, "metrics": {"accuracy": 0.5, "f1": 0.6667, "score": 58.335}}}}


def test_render_lays_out_title_summary_fields_and_sections():
    card = cards.render("run", "A model.", [("task", "fill-mask")],
                        [cards.section("Notes", "one", "two"), cards.usage_section("fill-mask", "run")])
    assert card == ("# run\n\nA model.\n\n| field | value |\n|---|---|\n| task | fill-mask |\n\n## Notes\n\n"
                    "one\ntwo\n\n## How to use\n\n```python\nimport distilkit\n\n"
                    'model = distilkit.pipeline("fill-mask", model="run")\n```\n')
    assert cards.render("x", "y", [], []) == "# x\n\ny\n"


def test_results_section_rows_and_the_cards_glue_table():
    section = cards.results_section(merge(merge(FINETUNE, "squad/dev-v1.1.json", SQUAD),
                                                     "glue/dev", GLUE))
    assert section[0] == "## Evaluation results" and section[-1] == ""
    assert "- `dev.jsonl`: 8 examples of `/data/dev.jsonl`" in section
    assert "- `glue/dev`: the GLUE dev files in `/glue`: SST-2 (2 examples), MRPC (2 examples); " \
           "not evaluated: STS-B" in section
    for row in ["| dev.jsonl | accuracy | 1 |", "| squad/dev-v1.1.json | squad_version | 1.1 |",
                "| squad/dev-v1.1.json | exact_match | 33.3333 |", "| glue/dev/MRPC | f1 | 0.6667 |"]:
        assert row in section
    table = section[section.index("| Task | MNLI | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE |"):]
    assert table[1] == "|---|---|---|---|---|---|---|---|---|"
    assert table[2] == "| score | - | - | - | 50.0 | - | - | 58.3 | - |"


def test_glue_scores_come_from_every_glue_evaluation_and_the_newest_wins():
    mrpc = {"data": "MRPC/dev.tsv", "glue_task": "MRPC", "examples": 4, "metrics": {"score": 70.0}}
    merged = merge(merge({**FINETUNE, "glue_task": "RTE", "metrics": {"score": 55.0}},
                                         "glue/dev", GLUE), "MRPC/dev.tsv", mrpc)
    assert cards.glue_scores(merged) == {"RTE": 55.0, "SST-2": 50.0, "MRPC": 70.0}
    assert cards.glue_scores(FINETUNE) == {}


def test_other_metrics_layouts_and_no_metrics():
    section = cards.results_section({"squad_v1.1_dev": {"exact_match": 77.7}, "eval_samples": 10570})
    assert "| squad_v1.1_dev | exact_match | 77.7 |" in section and "| - | eval_samples | 10570 |" in section
    assert cards.results_section({})[2].startswith("Not evaluated: fine-tune with `--validation FILE`")


def test_replace_section_swaps_only_the_results_section():
    card = "# run\n\nintro\n\n## Evaluation results\n\nold\n\n## How to use\n\ncode\n"
    new = cards.replace_section(card, ["## Evaluation results", "", "new", ""])
    assert new == "# run\n\nintro\n\n## Evaluation results\n\nnew\n\n## How to use\n\ncode\n"
    assert cards.replace_section(new, ["## Evaluation results", "", "new", ""]) == new
    assert cards.replace_section("# x\n\n## How to use\n\ncode\n", ["## Evaluation results", "", "r", ""]) \
        == "# x\n\n## Evaluation results\n\nr\n\n## How to use\n\ncode\n"
    assert cards.replace_section("# user card\ntext", ["## Evaluation results", "", "r", ""]) \
        == "# user card\ntext\n\n## Evaluation results\n\nr\n"


def test_glue_table_shows_missing_and_nan_scores_as_a_dash():
    names, row = cards.glue_table({"MRPC": 87.54, "CoLA": math.nan, "RTE": None})
    assert names == ["MNLI", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE"]
    assert row == ["-", "-", "-", "-", "-", "-", "87.5", "-"]


def test_metric_rows_flatten_nested_metrics_into_dataset_metric_value():
    rows = cards.metric_rows(
        {
            "squad_v1.1_dev": {"exact_match": 77.7, "f1": 85.8123456},
            "eval_samples": 10570,
            "flag": True,
            "per_type": {"PER": {"f1": 0.5}},
        },
        "dev.json/",
    )
    assert rows == [("dev.json/squad_v1.1_dev", "exact_match", "77.7"),
                    ("dev.json/squad_v1.1_dev", "f1", "85.8123"),
                    ("dev.json", "eval_samples", "10570"),
                    ("dev.json/per_type/PER", "f1", "0.5")]

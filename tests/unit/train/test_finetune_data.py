"""Fine-tuning data: label discovery, first-sub-token alignment, QA targets over windows, batches, losses."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_models import make_config, wordpiece_tokenizer

from distilkit.config import FinetuneConfig
from distilkit.errors import UserError
from distilkit.evaluation.datasets import NERExample, TextExample
from distilkit.evaluation.evaluate import word_spans
from distilkit.train import label_space, task_data
from distilkit.train.finetune import MASKED_LOGIT, task_distillation_loss
from distilkit.train.task_data import IGNORE_INDEX, LabelSpace, QATrainExample


def texts(*labels: str) -> list[TextExample]:
    return [TextExample(f"text {i}", label) for i, label in enumerate(labels)]


# --- label discovery -------------------------------------------------------------------------------
def test_single_label_names_sorted_and_stored_in_config_fields():
    space = label_space.discover_labels("text-classification", texts("sadness", "joy", "anger", "joy"))
    assert space == LabelSpace(("anger", "joy", "sadness"), "single_label_classification")
    fields = space.config_fields()
    assert fields["id2label"] == {0: "anger", 1: "joy", 2: "sadness"} and fields["label2id"]["sadness"] == 2
    assert fields["problem_type"] == "single_label_classification"


def test_integer_labels_sort_numerically_and_glue_tasks_keep_glue_order():
    numbers = texts("10", "2", "0")
    assert label_space.discover_labels("text-classification", numbers).labels == ("0", "2", "10")
    mnli = texts("neutral", "contradiction", "entailment")
    assert label_space.discover_labels("text-classification", mnli, glue_task="MNLI").labels == (
        "entailment",
        "neutral",
        "contradiction",
    )


def test_regression_is_discovered_from_fractions_or_sts_b():
    space = label_space.discover_labels("text-classification", texts("3.8", "0", "5"))
    assert space == LabelSpace(("LABEL_0",), "regression")
    assert label_space.discover_labels(
        "text-classification", texts("3", "4"), glue_task="STS-B"
    ).problem_type == ("regression")
    with pytest.raises(ValueError, match="numeric labels"):
        label_space.discover_labels("text-classification", texts("a", "b"), problem_type="regression")


def test_multi_label_from_lists_or_commas():
    space = label_space.discover_labels("text-classification", texts("['joy', 'love']", "[]", "['fear']"))
    assert space == LabelSpace(("fear", "joy", "love"), "multi_label_classification")
    assert label_space.parse_multi_label("joy, love") == ["joy", "love"]
    explicit = label_space.discover_labels(
        "text-classification", texts("a,b", "c"), problem_type="multi_label_classification"
    )
    assert explicit.labels == ("a", "b", "c")
    targets = task_data._class_targets(texts("['c', 'a']"), explicit)
    assert targets == [[1.0, 0.0, 1.0]]


def test_ner_tags_o_first_then_type_then_prefix():
    examples = [
        NERExample(("a", "b", "c", "d"), ("I-PER", "O", "B-LOC", "B-PER")),
        NERExample(("e",), ("I-LOC",)),
    ]
    assert label_space.discover_labels("token-classification", examples).labels == (
        "O",
        "B-LOC",
        "I-LOC",
        "B-PER",
        "I-PER",
    )


def test_unknown_validation_labels_are_refused_before_training():
    space = LabelSpace(("anger", "joy"), "single_label_classification")
    label_space.check_known_labels(space, "text-classification", texts("joy"))
    with pytest.raises(ValueError, match=r"--validation has labels \['fear'\]"):
        label_space.check_known_labels(space, "text-classification", texts("joy", "fear"))
    with pytest.raises(ValueError, match="at least 2"):
        label_space.discover_labels("text-classification", texts("joy", "joy"))


# --- token classification: first sub-token ------------------------------------------------------
def test_first_subtoken_alignment_by_hand():
    spans = [(0, 5), (6, 16)]  # "Paris Seattleish"
    offsets = [(0, 0), (0, 5), (6, 13), (13, 14), (14, 16), (0, 0)]
    special = [1, 0, 0, 0, 0, 1]
    assert task_data.first_subtoken_labels(offsets, special, spans, [3, 1]) == [-100, 3, 1, -100, -100, -100]


def test_first_subtoken_alignment_with_a_wordpiece_tokenizer():
    tok = wordpiece_tokenizer()
    examples = [NERExample(("John", "livesz", "in", "Seattle", "."), ("B-PER", "O", "O", "B-LOC", "O"))]
    space = label_space.discover_labels("token-classification", examples)
    config = make_config("distilbert", "token-classification", len(tok), num_labels=len(space.labels))
    data = task_data.build_features("token-classification", examples, tok, config, space, max_seq_len=64)
    tokens = tok.convert_ids_to_tokens(data.input_ids[0])
    labelled = [
        (t, space.labels[y]) for t, y in zip(tokens, data.targets[0], strict=True) if y != IGNORE_INDEX
    ]
    assert labelled == [("John", "B-PER"), ("live", "O"), ("in", "O"), ("Seattle", "B-LOC"), (".", "O")]
    assert tokens[0] == "[CLS]" and data.targets[0][0] == IGNORE_INDEX  # specials and "##s" "##z" ignored
    assert sum(y != IGNORE_INDEX for y in data.targets[0]) == 5
    assert data.input_ids[0] == tok(word_spans(examples[0].words)[0])["input_ids"]  # inference's tokens


# --- question answering: targets over the inference windows --------------------------------------
def test_answer_positions_by_hand():
    offsets = np.array([[0, 0], [0, 4], [0, 0], [10, 15], [16, 20], [21, 25], [0, 0]])
    seq = np.array([-1, 0, -1, 1, 1, 1, -1])
    assert task_data.answer_positions(offsets, seq, 1, 16, 25) == (4, 5)
    assert task_data.answer_positions(offsets, seq, 1, 17, 19) == (4, 4)  # inside one token
    assert task_data.answer_positions(offsets, seq, 1, 5, 12) == (0, 0)  # starts before the window
    assert task_data.answer_positions(offsets, seq, 1, 21, 30) == (0, 0)  # ends after it
    assert task_data.answer_positions(offsets, seq, 1, None, None) == (0, 0)  # unanswerable -> CLS


def test_qa_answer_in_the_second_window_of_a_long_context():
    tok = wordpiece_tokenizer()
    config = make_config("distilbert", "question-answering", len(tok))
    filler = " ".join(["the city of London"] * 20)  # 80 words: more than one 48-token window
    context = f"{filler} and my name is John ."
    start = context.index("John")
    examples = [
        QATrainExample("What is my name?", context, "John", start),
        QATrainExample("Where?", "the river", None, None),
    ]
    data = task_data.build_features(
        "question-answering", examples, tok, config, LabelSpace(()), max_seq_len=48, doc_stride=16
    )
    windows = [i for i in range(len(data)) if i < len(data) - 1]  # the last row is the short question
    assert len(windows) >= 2
    hits = [i for i in windows if data.targets[i] != (0, 0)]
    assert hits and hits[0] > 0  # not in the first window
    for i in hits:
        s, e = data.targets[i]
        assert tok.decode(data.input_ids[i][s : e + 1]) == "John"
    assert data.targets[0] == (0, 0) and data.targets[-1] == (0, 0)  # outside / impossible -> CLS
    assert all(len(ids) <= 48 for ids in data.input_ids)


def test_qa_windows_are_the_inference_windows():
    from distilkit.tasks.question_answering import QAItem, QuestionAnsweringHandler

    tok = wordpiece_tokenizer()
    config = make_config("distilbert", "question-answering", len(tok))
    context = " ".join(["the river of Paris"] * 30)
    data = task_data.build_features(
        "question-answering",
        [QATrainExample("where?", context, None, None)],
        tok,
        config,
        LabelSpace(()),
        max_seq_len=64,
        doc_stride=16,
    )
    handler = QuestionAnsweringHandler(tok, config)
    features = handler.encode(
        [QAItem("where?", context)], handler.check_params({"max_seq_len": 64, "doc_stride": 16})
    )
    assert data.input_ids == [f.input_ids for f in features]


# --- collation ------------------------------------------------------------------------------------
def test_training_batch_pads_to_multiples_of_8_with_ignored_labels():
    data = task_data.TrainData(
        [[2, 5, 3], [2, 5, 6, 7, 3]], None, [[-100, 1, -100], [-100, 0, 2, 1, -100]], 2
    )
    batch = task_data.training_batch(data, [0, 1], pad_id=0, task="token-classification", problem_type=None)
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 5
    assert batch["labels"][0].tolist() == [-100, 1, -100] + [-100] * 5
    qa = task_data.TrainData([[2, 3]], [[0, 0]], [(1, 1)], 1)
    batch = task_data.training_batch(qa, [0], 0, "question-answering", None)
    assert batch["start_positions"].tolist() == [1] and "token_type_ids" in batch
    reg = task_data.TrainData([[2, 3]], None, [3.5], 1)
    assert (
        task_data.training_batch(reg, [0], 0, "text-classification", "regression")["labels"].dtype
        == torch.float
    )


# --- transfer rows (--transfer) ----------------------------------------------------------------------
def builder(task: str, tok, config, space: LabelSpace, max_seq_len: int):
    """``build_features`` with one run's settings, as finetune hands it to ``transfer_features``."""
    return functools.partial(task_data.build_features, task, tokenizer=tok, config=config, space=space,
                             max_seq_len=max_seq_len)


def test_transfer_rows_keep_their_inputs_and_get_only_ignored_targets():
    tok = wordpiece_tokenizer()
    ner_space = LabelSpace(("O", "B-LOC", "B-PER"))
    ner = [NERExample(("John", "lives", "in", "Paris"), ("B-PER", "O", "O", "B-LOC"))]
    config = make_config("distilbert", "token-classification", len(tok), num_labels=3)
    build = builder("token-classification", tok, config, ner_space, 32)
    rows = task_data.transfer_features("token-classification", ner, ner_space, build)
    labelled = build(ner)
    assert rows.input_ids == labelled.input_ids and labelled.targets[0].count(IGNORE_INDEX) < len(
        labelled.targets[0]
    )
    assert rows.targets == [[IGNORE_INDEX] * len(labelled.targets[0])]
    space = LabelSpace(("joy", "sadness"), label_space.SINGLE)
    config = make_config("distilbert", "text-classification", len(tok), num_labels=2)
    unseen = [TextExample("a label the model has not got", "anger"), TextExample("no label", "")]
    build = builder("text-classification", tok, config, space, 32)
    rows = task_data.transfer_features("text-classification", unseen, space, build)
    assert rows.targets == [IGNORE_INDEX, IGNORE_INDEX] and len(rows) == 2
    qa = [QATrainExample("Where does John live?", "John lives in Paris.", "Paris", 14)]
    config = make_config("distilbert", "question-answering", len(tok))
    qa_build = builder("question-answering", tok, config, LabelSpace(()), 64)
    rows = task_data.transfer_features("question-answering", qa, LabelSpace(()), qa_build)
    assert rows.targets == [(task_data.UNLABELLED_POSITION,) * 2]
    with pytest.raises(UserError, match="--transfer is for single-label"):
        task_data.transfer_features("text-classification", unseen,
                                    LabelSpace(("score",), label_space.REGRESSION), build)


def test_batches_of_training_and_transfer_rows_count_their_labelled_rows():
    data = task_data.TrainData([[2, 5, 3], [2, 6, 3]], None, [1, 0], 2)
    transfer = task_data.TrainData([[2, 7, 3], [2, 8, 8, 3]], None, [IGNORE_INDEX] * 2, 2)
    both = task_data.with_transfer(data, transfer)
    assert len(both) == 4 and both.labelled_rows == 2 and (both.examples, both.transfer_examples) == (2, 2)
    batch = task_data.training_batch(both, [3, 0, 2], 0, "text-classification", label_space.SINGLE)
    assert batch[task_data.LABELLED_ROWS] == 1 and batch["labels"].tolist() == [IGNORE_INDEX, 1, IGNORE_INDEX]
    assert task_data.LABELLED_ROWS not in task_data.training_batch(data, [0], 0, "text-classification",
                                                                 label_space.SINGLE)


def test_a_transfer_file_may_lack_the_label_column_a_training_file_needs(tmp_path):
    path = tmp_path / "extra.jsonl"
    path.write_text('{"text": "an unlabelled review"}\n{"text": "another"}\n')
    examples = task_data.read_examples("text-classification", path, flag="--transfer", labels=False)
    assert [e.text for e in examples] == ["an unlabelled review", "another"]
    with pytest.raises(UserError, match="no label column"):
        task_data.read_examples("text-classification", path)


# --- the distillation term on task logits --------------------------------------------------------
class Out:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_distillation_term_matches_a_hand_kl_and_is_zero_for_equal_logits():
    s, t = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    attention = torch.ones(1, 4)
    got = task_distillation_loss(
        "text-classification", "single_label_classification", Out(logits=s), Out(logits=t), attention, 2.0
    )
    p_t = F.softmax(t / 2, -1)
    expected = (p_t * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum() * 4
    assert torch.allclose(got, expected)
    same = task_distillation_loss(
        "text-classification", "single_label_classification", Out(logits=t), Out(logits=t), attention, 2.0
    )
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_qa_distillation_ignores_padding_and_stays_finite():
    attention = torch.tensor([[1, 1, 1, 0]])
    s = torch.tensor([[0.5, 1.0, -1.0, 99.0]])
    t = torch.tensor([[0.5, 1.0, -1.0, -99.0]])  # differs only at the padded position
    got = task_distillation_loss(
        "question-answering",
        None,
        Out(start_logits=s, end_logits=s),
        Out(start_logits=t, end_logits=t),
        attention,
        2.0,
    )
    assert torch.isfinite(got) and float(got) == pytest.approx(0.0, abs=1e-6)
    assert MASKED_LOGIT < -1000


# --- config: early errors that name the flag -----------------------------------------------------
BASE = {"task": "text-classification", "model": "m", "train": "t.txt", "output": "o"}


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"alpha_ce": 1.0}, "--alpha-ce .* needs --teacher"),
        ({"num_layers": 2}, "--init scratch"),
        ({"init": "scratch", "hidden_size": 100}, "--hidden-size must be a positive multiple of 64"),
        ({"task": "fill-mask"}, "finetune supports"),
        ({"task": "ner", "problem_type": "regression"}, "--problem-type is for text-classification"),
        ({"lr": 0}, "--lr must be > 0"),
        ({"teacher": "x", "alpha_ce": 0.0, "alpha_task": 0.0}, "nothing to train"),
        ({"alpha_cos": 1.0}, "--alpha-cos compares hidden states .* needs --teacher"),
        ({"teacher": "x", "alpha_cos": -1.0}, "--alpha-cos must be >= 0"),
        ({"alpha_hidden": 1.0}, "--alpha-hidden compares hidden states .* needs --teacher"),
        ({"teacher": "x", "alpha_hidden": -1.0}, "--alpha-hidden must be >= 0"),
        ({"max_seq_len": 64, "doc_stride": 64}, "--doc-stride"),
        ({"train": ""}, "--train is required"),
        ({"label_names": "negative"}, "--label-names takes 2 or more distinct"),
        ({"label_names": "a,a"}, "--label-names takes 2 or more distinct"),
        ({"task": "ner", "label_names": "a,b"}, "--label-names is for text-classification"),
        ({"transfer": "extra.jsonl"}, "--transfer rows are labelled by the teacher alone: .* --teacher"),
        ({"transfer": "x", "teacher": "x", "alpha_ce": 0.0}, "--transfer rows train the distillation terms"),
    ],
)
def test_bad_options_raise_naming_the_flag(over, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**{**BASE, **over})


def test_loss_weights_and_aliases():
    assert FinetuneConfig(**BASE).loss_weights() == (0.0, 1.0)
    assert FinetuneConfig(**BASE, teacher="t").loss_weights() == (0.5, 0.5)
    assert FinetuneConfig(**{**BASE, "task": "ner"}).task == "token-classification"


# --- label names ---------------------------------------------------------------------------------------
def test_label_names_name_the_sorted_labels_and_glue_tasks_get_glue_names():
    space = label_space.discover_labels("text-classification", texts("1", "0", "1"))
    named, renames = label_space.name_labels(space, ["negative", "positive"])
    assert named.labels == ("negative", "positive") and renames == {"0": "negative", "1": "positive"}
    relabelled = label_space.rename_examples(texts("1", "0"), renames)
    assert [ex.label for ex in relabelled] == ["positive", "negative"]
    assert label_space.name_labels(space, None, "SST-2")[0].labels == ("negative", "positive")
    assert label_space.name_labels(space, None, "MRPC")[0].labels == ("not_equivalent", "equivalent")
    assert label_space.name_labels(space, None, None) == (space, {})  # no names: labels stay as in the data
    already = label_space.discover_labels(
        "text-classification", texts("positive", "negative"), glue_task="SST-2"
    )
    assert label_space.name_labels(already, None, "SST-2") == (already, {})


def test_label_names_must_match_the_label_count_and_problem_type():
    space = label_space.discover_labels("text-classification", texts("b", "a", "c"))
    with pytest.raises(ValueError, match=r"gives 2 names for the data's 3 labels \['a', 'b', 'c'\]"):
        label_space.name_labels(space, ["x", "y"])
    regression = label_space.discover_labels("text-classification", texts("0.5", "1.5"))
    with pytest.raises(ValueError, match="single-label"):
        label_space.name_labels(regression, ["x", "y"])


def test_label_names_from_yaml_lists_are_kept_as_text():
    cfg = FinetuneConfig(**BASE, label_names=["negative", "positive"])
    assert cfg.label_names == "negative,positive" and cfg.label_name_list() == ["negative", "positive"]

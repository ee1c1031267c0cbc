"""Per-row validation and prediction of one chunk (tiny fill-mask model, fp32)."""

from __future__ import annotations

import pytest

from distilkit.batch.rows import Columns, InputRow, predict_rows
from distilkit.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="float32")


def test_each_bad_row_fails_alone_and_good_rows_match_single_predictions(predictor):
    too_long = "the [MASK] " + "city " * 200  # over the tiny model's 128 positions: only encoding sees it
    rows = [InputRow(0, {"id": "a", "text": "the [MASK] of France"}), InputRow(1, {"id": "b", "text": " "}),
            InputRow(2, None, "malformed JSON: x"), InputRow(3, {"text": too_long}),
            InputRow(4, {"text": "Paris <mask>"}), InputRow(5, {"other": "x"}),
            InputRow(6, {"input_string": "a [MASK] day"})]
    out = predict_rows(predictor, rows, {"top_k": 2}, Columns("fill-mask"))
    assert [r["id"] for r in out] == ["a", "b", 2, 3, 4, 5, 6]
    assert [r["error"] for r in out][1:6] == [
        "text is empty", "malformed JSON: x",
        (f"has {len(predictor.tokenizer(too_long)['input_ids'])} tokens; this model accepts at most 128 "
         "(shorten the text)"),
        "it has <mask>, but this model's mask token is [MASK]", "missing column 'text'"]
    for i, text in ((0, "the [MASK] of France"), (6, "a [MASK] day")):
        assert out[i]["error"] is None
        (expected,) = predictor.predict([text], {"top_k": 2})
        assert [c["token"] for c in out[i]["prediction"]] == [c["token"] for c in expected]
        assert out[i]["prediction"][0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


def test_a_chunk_of_only_bad_rows_predicts_nothing(predictor):
    out = predict_rows(predictor, [InputRow(0, {"text": ""})], {}, Columns("fill-mask"))
    assert out == [{"id": 0, "prediction": None, "error": "text is empty"}]


def test_columns_resolve_against_a_header_and_name_the_flag():
    assert Columns("fill-mask").check_header(["id", "input_string"]).text == "input_string"
    assert Columns("fill-mask").check_header(["text", "input_string"]).text == "text"
    with pytest.raises(ValueError, match="--text-column 'body': no such column"):
        Columns("fill-mask", text="body").check_header(["text"])
    with pytest.raises(ValueError, match="--context-column 'context'"):
        Columns("question-answering").check_header(["question", "passage"])
    qa = Columns("question-answering", question="q", context="c")
    assert qa.item({"q": "Who?", "c": "Ann."}) == {"question": "Who?", "context": "Ann."}
    assert (Columns("text-classification").item({"text": "a", "text_pair": "b"})
            == {"text": "a", "text_pair": "b"})

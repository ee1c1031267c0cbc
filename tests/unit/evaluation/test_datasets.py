"""Readers for SQuAD JSON, CoNLL columns, labelled text, plain text and GLUE folders."""

from __future__ import annotations

import json

import pytest

from distilkit.evaluation import datasets
from distilkit.evaluation.datasets import TextExample


def squad_doc(version: str, impossible: bool = False) -> dict:
    qas = [{"id": "a", "question": "Who?", "answers": [{"text": "John", "answer_start": 0}]}]
    if impossible:
        qas.append({"id": "b", "question": "Why?", "answers": [], "is_impossible": True})
    paragraph = {"context": "John lives here.", "qas": qas}
    return {"version": version, "data": [{"title": "t", "paragraphs": [paragraph]}]}


def test_read_squad_versions(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(squad_doc("1.1")))
    examples, version = datasets.read_squad(path)
    assert version == "1.1"
    assert examples == [datasets.QAExample("a", "Who?", "John lives here.", ("John",))]
    path.write_text(json.dumps(squad_doc("v2.0", impossible=True)))
    examples, version = datasets.read_squad(path)
    assert version == "2.0" and examples[1].answers == ()


def test_read_squad_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="is not SQuAD JSON"):
        datasets.read_squad(path)
    with pytest.raises(ValueError, match="no such file"):
        datasets.read_squad(tmp_path / "missing.json")


def test_read_conll_skips_docstart_and_keeps_last_column(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\n\n"
                    "Peter NNP B-NP I-PER\n")
    sentences = datasets.read_conll(path)
    assert [s.words for s in sentences] == [("EU", "rejects"), ("Peter",)]
    assert sentences[0].tags == ("I-ORG", "O")
    path.write_text("EU\n")
    with pytest.raises(ValueError, match="c.txt:1: expected 'word ... tag'"):
        datasets.read_conll(path)


def test_read_labelled_formats(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n')
    assert datasets.read_labelled(jsonl) == [TextExample("a", "1"), TextExample("b", "0")]
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('sentence1,sentence2,label\n"x, y",z,entailment\n')
    assert datasets.read_labelled(csv_file) == [TextExample("x, y", "entailment", "z")]
    tsv = tmp_path / "d.tsv"
    tsv.write_text('text\tlabel\nit "quotes" fine \t1\n')
    assert datasets.read_labelled(tsv) == [TextExample('it "quotes" fine ', "1")]
    txt = tmp_path / "d.txt"
    txt.write_text("i feel good; really;joy\ni am sad;sadness\n")
    expected = [TextExample("i feel good; really", "joy"), TextExample("i am sad", "sadness")]
    assert datasets.read_labelled(txt) == expected
    txt.write_text("no label here\n")
    with pytest.raises(ValueError, match="d.txt:1: expected 'text;label'"):
        datasets.read_labelled(txt)
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"content": "a", "label": 1}\n')
    with pytest.raises(ValueError, match="no text column"):
        datasets.read_labelled(bad)


def test_read_glue_tsv_with_and_without_header(tmp_path):
    mrpc = tmp_path / "MRPC_dev.tsv"
    mrpc.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b.\tA c.\n")
    assert datasets.read_glue_tsv(mrpc, "MRPC") == [TextExample("A b.", "1", "A c.")]
    mrpc.write_text("0\t1\t2\tA b.\tA c.\n")
    assert datasets.read_glue_tsv(mrpc, "MRPC") == [TextExample("A b.", "0", "A c.")]
    stsb = tmp_path / "STS-B_dev.tsv"
    stsb.write_text("4\tmain\tMSRvid\t2012\t0009\tnone\tnone\tA man.\tA men.\t4.250\n")
    assert datasets.read_glue_tsv(stsb, "STS-B") == [TextExample("A man.", "4.250", "A men.")]
    with pytest.raises(ValueError, match="too few for the STS-B layout"):
        datasets.read_glue_tsv(mrpc, "STS-B")


def test_find_glue_files_layouts(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n")
    (tmp_path / "MNLI").mkdir()
    (tmp_path / "MNLI" / "dev_mismatched.tsv").write_text("")
    (tmp_path / "MNLI" / "dev_matched.tsv").write_text("")
    (tmp_path / "resplit").mkdir()
    (tmp_path / "resplit" / "STS-B_dev.tsv").write_text("")
    (tmp_path / "resplit" / "MRPC_train.tsv").write_text("")
    found = datasets.find_glue_files(tmp_path)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in found.items()} == {
        "SST-2": "SST-2/dev.tsv", "MNLI": "MNLI/dev_matched.tsv", "STS-B": "resplit/STS-B_dev.tsv"}
    assert list(datasets.find_glue_files(tmp_path, "train")) == ["MRPC"]


def test_split_sentences_drops_headings_and_short_ones():
    lines = ["= Robert Boulter =", "He is an actor . He had a guest role in 2000 . Yes ."]
    assert datasets.split_sentences(lines) == ["He is an actor .", "He had a guest role in 2000 ."]


@pytest.mark.shared
def test_shared_data_counts(shared_dir):
    data = shared_dir / "data"
    v1, version = datasets.read_squad(data / "squad/dev-v1.1.json")
    assert (len(v1), version) == (10570, "1.1")
    v2, version = datasets.read_squad(data / "squad/dev-v2.0.json")
    assert (len(v2), version, sum(not e.answers for e in v2)) == (11873, "2.0", 5945)
    assert len(datasets.read_conll(data / "conll2003/test.txt")) == 3453
    emotion = datasets.read_labelled(data / "emotion/test.txt")
    assert len(emotion) == 2000
    assert {e.label for e in emotion} == {"sadness", "joy", "love", "anger", "fear", "surprise"}
    assert len(datasets.read_labelled(data / "sst2/dev.tsv")) == 872
    found = datasets.find_glue_files(data)
    assert set(found) == {"SST-2", "MRPC", "STS-B"}
    mrpc = datasets.read_glue_tsv(found["MRPC"], "MRPC")
    assert len(mrpc) == 1500 and {e.label for e in mrpc} == {"0", "1"}
    stsb = datasets.read_glue_tsv(found["STS-B"], "STS-B")
    assert len(stsb) == 1500 and all(0.0 <= float(e.label) <= 5.0 for e in stsb)

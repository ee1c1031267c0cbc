"""prepare-data shards: specials, chunking, dropping, counts, pairs; the dataset, batches, collation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from distilkit.train.data import (
    TokenShards,
    length_grouped_batches,
    pad_sequences,
    prepare_data,
    shard_dtype,
    special_template,
)

LINES = [
    "Paris is the capital of France",
    "a",  # too short: dropped
    "",  # blank: skipped
    " ".join(["London"] * 150),  # long: cut into chunks of max_length - 2
    "John was in Seattle and played music with his band",
]


@pytest.fixture(scope="module")
def bert_dir(tiny_model):
    return tiny_model("fill-mask", "bert")


def _prepare(tmp_path, model_dir, lines, **kw):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "shards"
    stats = prepare_data(str(model_dir), [corpus], out, progress=False, **kw)
    return stats, TokenShards(out), AutoTokenizer.from_pretrained(model_dir)


def test_lines_become_cls_text_sep_chunked_and_short_ones_dropped(tmp_path, bert_dir):
    stats, ds, tok = _prepare(tmp_path, bert_dir, LINES, max_length=64, min_tokens=3)
    texts = [tok(line, add_special_tokens=False)["input_ids"] for line in LINES if line]
    long = texts[2]
    expected = [texts[0], long[:62], long[62:124], long[124:], texts[3]]  # 150 -> 62 + 62 + 26
    assert [list(ds[i][1:-1]) for i in range(len(ds))] == expected
    assert all(ds[i][0] == tok.cls_token_id and ds[i][-1] == tok.sep_token_id for i in range(len(ds)))
    assert stats.dropped_short == 1 and stats.sequences == 5
    assert list(ds.lengths) == [len(s) + 2 for s in expected]
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == len(tok)
    assert manifest["mask_token_id"] == tok.mask_token_id and manifest["pad_token_id"] == tok.pad_token_id
    all_ids = np.concatenate([ds[i] for i in range(len(ds))])
    assert (ds.counts() == np.bincount(all_ids, minlength=len(tok))).all()


def test_many_shards_read_back_in_order(tmp_path, bert_dir):
    lines = [f"the city {w} is good" for w in ["Paris", "London", "Berlin"] * 20]
    stats, ds, tok = _prepare(tmp_path, bert_dir, lines, min_tokens=1, shard_tokens=50)
    assert stats.shards > 3 and len(ds) == 60
    assert [tok.decode(ds[i][1:-1]) for i in range(3)] == lines[:3]


def test_roberta_uses_its_own_specials(tmp_path, tiny_model):
    _, ds, tok = _prepare(tmp_path, tiny_model("fill-mask", "roberta"), ["the city of London"], min_tokens=1)
    assert ds[0][0] == tok.bos_token_id == 0 and ds[0][-1] == tok.eos_token_id == 2
    assert special_template(tok, True) == [0, "A", 2, 2, "B", 2]


def test_pairs_are_cls_a_sep_b_sep_half_consecutive(tmp_path, bert_dir):
    words = [
        "Paris",
        "London",
        "Berlin",
        "France",
        "Germany",
        "England",
        "Seattle",
        "John",
        "Microsoft",
        "Apple",
    ]
    lines = [f"{a} {b} {c}" for a in words for b in words for c in words[:4]]  # 400 distinct lines
    _, ds, tok = _prepare(tmp_path, bert_dir, lines, min_tokens=1, pairs=True)
    assert len(ds) == len(lines) - 1
    consecutive = 0
    for i in range(len(ds)):
        seq = list(ds[i])
        sep = seq.index(tok.sep_token_id)
        assert seq[0] == tok.cls_token_id and seq[-1] == tok.sep_token_id and seq.count(tok.sep_token_id) == 2
        a, b = tok.decode(seq[1:sep]), tok.decode(seq[sep + 1 : -1])
        assert a == lines[i]
        consecutive += b == lines[i + 1]
    assert 0.4 < consecutive / len(ds) < 0.6


def test_user_errors(tmp_path, bert_dir):
    with pytest.raises(ValueError, match="--input"):
        prepare_data(str(bert_dir), [tmp_path / "missing.txt"], tmp_path / "out", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "c.txt").write_text("the city\n")
    with pytest.raises(ValueError, match="--output"):
        prepare_data(str(bert_dir), [tmp_path / "c.txt"], tmp_path / "full", progress=False)
    with pytest.raises(ValueError, match="--min-tokens"):
        prepare_data(str(bert_dir), [tmp_path / "c.txt"], tmp_path / "out2", min_tokens=50, progress=False)
    with pytest.raises(ValueError, match="prepare-data"):
        TokenShards(tmp_path)


def test_shard_dtype_by_vocab_size():
    assert shard_dtype(30_522) == np.uint16 and shard_dtype(65_535) == np.uint16
    assert shard_dtype(65_536) == np.uint32 and shard_dtype(250_002) == np.uint32


def test_length_grouped_batches_cover_everything_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    batches = length_grouped_batches(lengths, batch_size=16, seed=1, epoch=0, group_factor=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.15 * lengths.sum()  # sorted groups: little padding
    again = length_grouped_batches(lengths, batch_size=16, seed=1, epoch=0, group_factor=10)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again))
    other = length_grouped_batches(lengths, batch_size=16, seed=1, epoch=1, group_factor=10)
    assert not all(np.array_equal(x, y) for x, y in zip(batches, other))


def test_pad_sequences_pads_to_the_longest():
    ids, mask = pad_sequences([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == torch.long

"""Length-aware batch planning and padding."""

from __future__ import annotations

import random

import pytest

from distilkit.inference.packing import TOKEN_STEP, packed_rows, pad_batch, padded_length, plan_batches


def test_every_row_is_planned_exactly_once():
    lengths = [random.Random(i).randint(1, 300) for i in range(500)]
    batches = plan_batches(lengths, max_batch_tokens=4096, max_batch_size=32)
    assert sorted(i for b in batches for i in b) == list(range(500))


def test_batches_respect_the_token_budget_and_size():
    lengths = [random.Random(i).randint(5, 120) for i in range(300)]
    for batch in plan_batches(lengths, max_batch_tokens=1000, max_batch_size=16, multiple=8):
        width = padded_length(max(lengths[i] for i in batch), 8, 512)
        assert len(batch) <= 16
        assert len(batch) * width <= 1000


def test_similar_lengths_share_a_batch_so_padding_stays_small():
    lengths = [10] * 8 + [200] * 8
    batches = plan_batches(lengths, max_batch_tokens=100_000, max_batch_size=8)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[200] * 8, [10] * 8]


def test_a_row_longer_than_the_budget_gets_its_own_batch():
    assert plan_batches([600, 5], max_batch_tokens=100, max_batch_size=8) == [[0], [1]]


def test_padded_length_rounds_up_to_the_multiple_but_not_past_the_model_limit():
    assert padded_length(13, 8, 512) == 16
    assert padded_length(510, 8, 512) == 512
    assert padded_length(509, 8, 510) == 510


def test_pad_batch_right_pads_and_masks():
    batch = pad_batch([[5, 6, 7], [8]], pad_id=0, width=4, type_rows=[[0, 0, 1], [0]])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]


def test_invalid_budget_is_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        plan_batches([3], max_batch_tokens=0, max_batch_size=1)


def test_a_much_shorter_row_starts_a_new_batch_once_the_batch_is_big_enough():
    batches = plan_batches([384, 380, 200, 190], max_batch_tokens=4096, max_batch_size=64,
                           min_batch_tokens=512)
    assert batches == [[0, 1], [2, 3]]


def test_short_rows_are_not_split_off_a_batch_below_the_minimum_size():
    batches = plan_batches([100, 40], max_batch_tokens=4096, max_batch_size=64, min_batch_tokens=512)
    assert batches == [[0, 1]]


def test_packed_rows_come_in_few_sizes_and_add_at_most_a_step_or_one_64th():
    sizes = [packed_rows(n) for n in range(1, 4097)]
    assert all(p >= n for n, p in enumerate(sizes, start=1))
    assert all(p % TOKEN_STEP == 0 for p in sizes)
    assert all(p - n < TOKEN_STEP for n, p in enumerate(sizes[:2047], start=1))
    assert all((p - n) / n <= 1 / 64 for n, p in enumerate(sizes, start=1) if n >= 1024)
    assert len(set(sizes)) <= 4096 // TOKEN_STEP // 2 + 64  # 1-4,096 tokens in under 200 GEMM shapes
    assert sizes == sorted(sizes)

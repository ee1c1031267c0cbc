"""Packing token rows into padded batches: length-aware planning under a budget, and padding.

``plan_batches`` groups rows of very different lengths for offline callers (the Predictor's
``run``); the server's scheduler plans its own passes with ``padded_length`` as the cost of a
row and hands each one to ``Predictor.run_batch``; ``pad_batch`` builds the tensors of one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def round_up(n: int, step: int) -> int:
    """``n`` rounded up to a multiple of ``step`` (>= 1)."""
    return -(-n // step) * step


def padded_length(length: int, multiple: int, cap: int) -> int:
    """Round ``length`` up to ``multiple`` without exceeding ``cap`` (the model's max length)."""
    rounded = round_up(length, multiple) if multiple > 1 else length
    return max(length, min(rounded, cap))


# The packed rows of a pass are rounded up to a step of 16 (2^(k-6) from 2^k = 2,048 rows on):
# oneDNN compiles a GEMM kernel per row count (~1.5-2.5 ms each on this CPU) and keeps 1,024 of
# them, each holding memory. A server's passes come in ever new sizes (1-64 rows x 17-23 tokens:
# ~1,400 counts x 3 weight shapes), so without the step its kernels keep being compiled, evicted
# and compiled again, and the process grows (in process, 400 random 1-64-row passes: 811 -> 1,619 MB
# exact at 199.6-219.3 rows/s; 1,226-1,237 MB at 212.7-227.5 in steps of 16; 1,132 / 1,090 MB in
# steps of 32 / 64, the latter no faster than exact). From 1,024 rows on the step adds
# at most 1/64; below it costs less than the kernels it saves.
TOKEN_STEP = 16

# Attention runs on sequences rounded up to a multiple of this (the extra ones are read by nobody):
# its batched GEMMs compile a kernel per batch size too. In process, 600 random 1-64-row passes:
# 1,169 MB exact, 1,107 / 1,096 / 1,088 MB in steps of 4 / 8 / 16, rows/s within the run-to-run
# noise (~5%).
SEQUENCE_STEP = 4


def packed_rows(n: int) -> int:
    """The rows the GEMMs of a pass of ``n`` packed real tokens run on: ``n`` rounded up (TOKEN_STEP)."""
    return round_up(n, max(TOKEN_STEP, 1 << max(n.bit_length() - 7, 0)))


def packed_sequences(b: int) -> int:
    """The sequences the attention of a pass of ``b`` rows runs on: ``b`` rounded up (SEQUENCE_STEP)."""
    return round_up(b, SEQUENCE_STEP)


def plan_batches(
    lengths: Sequence[int],
    max_batch_tokens: int,
    max_batch_size: int,
    multiple: int = 1,
    cap: int = 1 << 30,
    max_padding: float = 0.25,
    min_batch_tokens: int = 512,
) -> list[list[int]]:
    """Group row indices into batches, longest first, so each batch pads to little more than its rows.

    A batch's cost is ``rows x padded length of its longest row``; rows are taken in decreasing
    length and a batch closes when one more row would pass ``max_batch_tokens`` or
    ``max_batch_size``, or when it already holds ``min_batch_tokens`` and the next row is more
    than ``max_padding`` shorter than its width (on CPU a batch of ~512 tokens runs as
    efficiently as a big one, so padding is pure waste). A row longer than the budget still gets
    a batch of its own.

    Returns:
        Batches of indices into ``lengths``; every index appears exactly once.
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        full = (len(current) + 1) * width > max_batch_tokens or len(current) == max_batch_size
        ragged = len(current) * width >= min_batch_tokens and lengths[i] < (1 - max_padding) * width
        if current and (full or ragged):
            batches.append(current)
            current = []
        if not current:
            width = padded_length(lengths[i], multiple, cap)
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(
    rows: Sequence[Sequence[int]],
    pad_id: int,
    width: int,
    type_rows: Sequence[Sequence[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad token rows to ``width``; return input_ids, attention_mask (and token_type_ids)."""
    n = len(rows)
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=n)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)  # (B, T)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
    attention_mask = (np.arange(width) < lengths[:, None]).astype(np.int64)  # (B, T)
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
    if type_rows is not None:
        token_type_ids = np.zeros((n, width), dtype=np.int64)
        for i, row in enumerate(type_rows):
            token_type_ids[i, : len(row)] = row
        batch["token_type_ids"] = torch.from_numpy(token_type_ids)
    return batch

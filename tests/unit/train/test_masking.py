"""Dynamic masking: exact counts, never specials/pad, 80/10/10, smoothing, seeded draws."""

from __future__ import annotations

import math

import torch

from distilkit.train.masking import mask_tokens, token_weights

CLS, SEP, PAD, MASK = 2, 3, 0, 4
SPECIALS = [PAD, 1, CLS, SEP, MASK]
V = 1000


def _batch(lengths, seed=0, low=5, high=V):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths) + 2
    ids = torch.full((len(lengths), width), PAD)
    attention = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, 0], ids[row, n + 1] = CLS, SEP
        ids[row, 1 : n + 1] = torch.randint(low, high, (n,), generator=g)
        attention[row, : n + 2] = 1
    return ids, attention


def _mask(ids, attention, seed=0, weights=None):
    return mask_tokens(
        ids,
        attention,
        special_ids=SPECIALS,
        mask_token_id=MASK,
        vocab_size=V,
        weights=weights,
        generator=torch.Generator().manual_seed(seed),
    )


def test_exactly_ceil_p_n_positions_and_never_specials_or_pad():
    lengths = [1, 2, 6, 7, 13, 20, 33, 100]
    ids, attention = _batch(lengths)
    out = _mask(ids, attention)
    assert out.chosen.sum(dim=1).tolist() == [math.ceil(0.15 * n) for n in lengths]
    special = torch.isin(ids, torch.tensor(SPECIALS))
    assert not (out.chosen & special).any()
    assert (out.input_ids[special] == ids[special]).all()  # specials and pad untouched
    assert (out.labels[out.chosen] == ids[out.chosen]).all()
    assert (out.labels[~out.chosen] == -100).all()


def test_80_10_10_over_many_draws():
    ids, attention = _batch([120] * 200)
    out = _mask(ids, attention, seed=1)
    chosen = out.chosen
    n = int(chosen.sum())
    masked = (out.input_ids == MASK) & chosen
    unchanged = (out.input_ids == ids) & chosen
    replaced = chosen & ~masked & ~unchanged
    assert abs(int(masked.sum()) / n - 0.8) < 0.03
    assert abs(int(replaced.sum()) / n - 0.1) < 0.02
    assert abs(int(unchanged.sum()) / n - 0.1) < 0.02
    assert not torch.isin(
        out.input_ids[replaced], torch.tensor(SPECIALS)
    ).any()  # random ids are never specials


def test_smoothing_favours_rare_tokens():
    # every sequence: 18 frequent tokens (id 10) and 2 rare ones (id 11)
    ids, attention = _batch([20] * 400)
    ids[:, 1:19], ids[:, 19:21] = 10, 11
    counts = torch.ones(V, dtype=torch.long)
    counts[10], counts[11] = 1_000_000, 10
    rates = {}
    for smoothing in (0.0, 0.7):
        out = _mask(ids, attention, weights=token_weights(counts, smoothing))
        rates[smoothing] = (
            out.chosen[ids == 11].float().mean().item(),
            out.chosen[ids == 10].float().mean().item(),
        )
    rare0, freq0 = rates[0.0]
    assert abs(rare0 - freq0) < 0.05  # uniform: 3 of 20 either way
    rare7, freq7 = rates[0.7]
    assert rare7 > 0.95 and freq7 < 0.07  # rare tokens are taken first


def test_same_seed_same_draw_other_seed_other_draw():
    ids, attention = _batch([30, 40, 50])
    a, b, c = _mask(ids, attention, seed=7), _mask(ids, attention, seed=7), _mask(ids, attention, seed=8)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.chosen, b.chosen)
    assert not torch.equal(a.chosen, c.chosen)


def test_token_weights():
    w = token_weights(torch.tensor([0, 1, 8]), 1 / 3)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64))

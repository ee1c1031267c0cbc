"""Dynamic MLM masking per batch: which tokens to predict and what the student sees there.

Recipe (DistilBERT): in each sequence of n maskable tokens (real tokens that are not special
tokens), exactly ⌈p·n⌉ positions are chosen without replacement, with probability proportional
to max(count, 1)^-s (s = ``mlm_smoothing``, 0.7: rare tokens are chosen more often than their
frequency). Of the chosen positions 80% become the mask token, 10% a random non-special token
and 10% stay unchanged; the labels keep the original token there and -100 elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from distilkit.train.losses import IGNORE_INDEX


def token_weights(counts: np.ndarray | torch.Tensor, smoothing: float = 0.7) -> torch.Tensor:
    """Sampling weight per vocabulary id, max(count, 1)^-smoothing (smoothing 0 = uniform).

    Args:
        counts: (V,) token counts of the corpus.
        smoothing: exponent s >= 0.

    Returns:
        (V,) float64 weights.
    """
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    return counts.clamp(min=1.0).pow(-smoothing)


@dataclass(frozen=True)
class MaskedBatch:
    """What one masking draw produces for a batch."""

    input_ids: torch.Tensor  # (B, T) long, the student's input (masked / replaced / kept)
    labels: torch.Tensor  # (B, T) long, original id at chosen positions, -100 elsewhere
    chosen: torch.Tensor  # (B, T) bool, the chosen (predicted) positions


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    special_ids: list[int] | torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    weights: torch.Tensor | None = None,
    mlm_probability: float = 0.15,
    mask_replace: float = 0.8,
    random_replace: float = 0.1,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Choose ⌈p·n⌉ positions per sequence and corrupt them 80/10/10.

    Args:
        input_ids: (B, T) long, CPU.
        attention_mask: (B, T), 1 for real tokens, 0 for pad.
        special_ids: ids never chosen and never used as random replacements ([CLS], [SEP], pad, ...).
        mask_token_id: the tokenizer's mask id.
        vocab_size: V; random replacements are drawn from the non-special ids below it.
        weights: (V,) sampling weights (``token_weights``); None samples uniformly.
        mlm_probability: p, the share of maskable tokens to predict.
        mask_replace: share of chosen positions shown as the mask token (0.8).
        random_replace: share shown as a random non-special token (0.1); the rest stay unchanged.
        generator: CPU generator; the same seed gives the same draw.

    Returns:
        A ``MaskedBatch`` on the device of ``input_ids``.
    """
    special = torch.as_tensor(special_ids, dtype=torch.long)
    maskable = attention_mask.bool() & ~torch.isin(input_ids, special)  # (B, T)
    n = maskable.sum(dim=1)  # (B,)
    k = torch.tensor([math.ceil(mlm_probability * int(x)) for x in n], dtype=torch.long)  # (B,)

    # Weighted sampling without replacement, vectorised over rows: Gumbel-top-k on log-weights
    # is exactly successive sampling ∝ weight (Efraimidis-Spirakis).
    log_w = torch.zeros(input_ids.shape, dtype=torch.float64) if weights is None else weights.log()[input_ids]
    u = torch.rand(input_ids.shape, generator=generator, dtype=torch.float64).clamp(min=1e-300)
    keys = (log_w - torch.log(-torch.log(u))).masked_fill(~maskable, -math.inf)  # (B, T)
    order = keys.argsort(dim=1, descending=True)  # (B, T)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    chosen = (rank < k[:, None]) & maskable  # (B, T)

    action = torch.rand(input_ids.shape, generator=generator)  # (B, T) in [0, 1)
    to_mask = chosen & (action < mask_replace)
    to_random = chosen & (action >= mask_replace) & (action < mask_replace + random_replace)
    candidates = torch.arange(vocab_size)[~torch.isin(torch.arange(vocab_size), special)]  # (V',)
    random_ids = candidates[torch.randint(len(candidates), input_ids.shape, generator=generator)]  # (B, T)

    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_token_id
    corrupted[to_random] = random_ids[to_random]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return MaskedBatch(input_ids=corrupted, labels=labels, chosen=chosen)

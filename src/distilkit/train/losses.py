"""The distillation objective as small pure functions (DistilBERT: L_ce, L_mlm, L_cos; plus MSE, CLM).

Every function takes flat rows, one per position that may count, and optional per-row weights (1 for
a real token, 0 for padding; None: every row counts once). It returns the weighted mean over the rows
as an fp32 scalar; rows that weigh nothing in total give exactly 0 (with a zero gradient), never NaN,
so a batch without a masked token is harmless. Inputs may be bf16 (teacher in bf16, student under
autocast): losses compute in fp32. Callers flatten (B, T, .) tensors with ``.flatten(0, 1)`` (a view)
and the attention mask with ``.flatten()``.

Shapes: N rows, V vocabulary (or labels), H hidden size; B batch, T sequence length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _nonzero(total: torch.Tensor) -> torch.Tensor:
    """The total weight as a divisor: 1 when it is 0 (the weighted sum is then 0 as well)."""
    return torch.where(total > 0, total, torch.ones_like(total))


def weighted_mean(per_row: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ w·x / Σ w over rows (plain mean without weights); 0, not NaN, when nothing weighs.

    Args:
        per_row: (N,) one value per row.
        weights: (N,) row weights >= 0, or None.
    """
    if weights is None:
        return per_row.sum() / max(per_row.numel(), 1)
    weights = weights.to(per_row.dtype)
    # A NaN anywhere stays NaN (0 · NaN): the loop's NaN check then stops the run, where skipping the
    # row would leave its NaN in the gradient unseen.
    return (per_row * weights).sum() / _nonzero(weights.sum())


def distillation_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    weights: torch.Tensor | None = None,
    temperature: float = 2.0,
) -> torch.Tensor:
    """L_ce = KL(softmax(t/T) || softmax(s/T)) · T², the weighted mean over rows.

    Args:
        student_logits: (N, V) student scores.
        teacher_logits: (N, V) teacher scores (no gradient needed).
        weights: (N,) row weights (the attention mask, or the masked positions only), or None.
        temperature: T > 0; the T² factor keeps gradient magnitudes comparable across T.

    Returns:
        () fp32 scalar; 0 when no row weighs.
    """
    rows = student_logits.shape[0]
    if weights is None:
        weights = torch.ones(rows, dtype=torch.float32, device=student_logits.device)
    weights = weights.float()
    total = _ChunkedKL.apply(student_logits, teacher_logits.detach(), weights, temperature)
    return total / _nonzero(weights.sum()) * temperature**2


KL_CHUNK = 64  # rows per chunk: a (64, V) fp32 block stays in cache for the softmax passes


class _ChunkedKL(torch.autograd.Function):
    """Σ_rows w · KL(softmax(t/T) || softmax(s/T)) computed a block of rows at a time, in fp32.

    The straightforward form materialises several (N, V) fp32 tensors (casts, two log-softmaxes,
    their difference, the probabilities) and autograd keeps them for backward; for N = 32 x 128
    positions and V = 29k that is ~0.5 GB per tensor, and the loss dominated the step on a CPU.
    Here forward and backward stream over blocks of rows; the saved tensors are the (bf16) logits
    the models produced anyway. The gradient is the closed form d/ds = w · (softmax(s/T) - softmax(t/T)) / T.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, t: torch.Tensor, weights: torch.Tensor, temperature: float):
        total = torch.zeros((), dtype=torch.float32, device=s.device)
        for start in range(0, s.shape[0], KL_CHUNK):
            log_p_s = F.log_softmax(s[start : start + KL_CHUNK].float() / temperature, dim=-1)  # (n, V)
            log_p_t = F.log_softmax(t[start : start + KL_CHUNK].float() / temperature, dim=-1)
            per_row = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)  # (n,)
            total += (per_row * weights[start : start + KL_CHUNK]).sum()
        ctx.save_for_backward(s, t, weights)
        ctx.temperature = temperature
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        s, t, weights = ctx.saved_tensors
        temperature = ctx.temperature
        grad_s = torch.empty_like(s)
        scale = grad_total.float() / temperature
        for start in range(0, s.shape[0], KL_CHUNK):
            p_s = F.softmax(s[start : start + KL_CHUNK].float() / temperature, dim=-1)  # (n, V)
            p_t = F.softmax(t[start : start + KL_CHUNK].float() / temperature, dim=-1)
            w = (weights[start : start + KL_CHUNK] * scale)[:, None]  # (n, 1)
            grad_s[start : start + KL_CHUNK] = ((p_s - p_t) * w).to(s.dtype)
        return grad_s, None, None, None


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_mlm = cross-entropy of the original token, over the rows whose label is not -100.

    Args:
        student_logits: (N, V), usually the rows of the masked positions only.
        labels: (N,) long, the original token id, or -100 for a row that does not count.

    Returns:
        () fp32 scalar; 0 when no row has a label.
    """
    total = F.cross_entropy(student_logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp_min(1)


def cosine_embedding_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """L_cos = 1 − cos(h_s, h_t), the weighted mean over rows (CosineEmbeddingLoss with target 1).

    Args:
        student_hidden: (N, H) last hidden states of the student.
        teacher_hidden: (N, H) last hidden states of the teacher (same H).
        weights: (N,) row weights (usually the attention mask), or None.

    Returns:
        () fp32 scalar in [0, 2]; 0 when no row weighs.
    """
    # eps like torch's CosineEmbeddingLoss: an all-zero vector gives cos 0, not NaN
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1, eps=1e-8)  # (N,)
    return weighted_mean(1.0 - cos, weights)


def logits_mse_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """α_mse term: squared error between logits, summed over V, the weighted mean over rows.

    Args:
        student_logits: (N, V).
        teacher_logits: (N, V).
        weights: (N,) row weights, or None.

    Returns:
        () fp32 scalar; 0 when no row weighs.
    """
    diff = student_logits.float() - teacher_logits.float()  # (N, V)
    return weighted_mean(diff.pow(2).sum(dim=-1), weights)


def next_token_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Causal-LM targets: position t predicts token t+1; -100 where t or t+1 is padding, and at the end.

    Args:
        input_ids: (B, T) long.
        attention_mask: (B, T) 1 for real tokens, 0 for pad.

    Returns:
        (B, T) long.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    keep = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()  # (B, T-1)
    labels[:, :-1] = torch.where(keep, input_ids[:, 1:], IGNORE_INDEX)
    return labels


def causal_lm_loss(
    student_logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """α_clm term: next-token cross-entropy over real tokens (``masked_lm_loss`` of shifted labels).

    Args:
        student_logits: (B, T, V) scores of a causal student.
        input_ids: (B, T) long.
        attention_mask: (B, T) 1 for real tokens, 0 for pad.

    Returns:
        () fp32 scalar; 0 for sequences of length <= 1.
    """
    labels = next_token_labels(input_ids, attention_mask)  # (B, T)
    return masked_lm_loss(student_logits.flatten(0, 1), labels.flatten())


def weighted_sum(terms: dict[str, torch.Tensor], alphas: dict[str, float]) -> torch.Tensor:
    """Total loss Σ α_k · L_k over the terms present (alphas without a term are ignored)."""
    return sum(alphas[name] * value for name, value in terms.items())

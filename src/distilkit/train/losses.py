"""The distillation objective as small pure functions (DistilBERT: L_ce, L_mlm, L_cos; plus MSE, CLM).

Every function averages over the positions it selects and returns an fp32 scalar; selecting no
position gives exactly 0 (with a zero gradient), never NaN, so a batch without a masked token
is harmless. Inputs may be bf16 (teacher in bf16, student under autocast): losses compute in fp32.

Shapes: B batch, T sequence length, V vocabulary, H hidden size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _mean_over(per_position: torch.Tensor) -> torch.Tensor:
    """Mean of a 1-D tensor; 0 (not NaN) when it is empty."""
    return per_position.sum() / max(per_position.numel(), 1)


def distillation_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    positions: torch.Tensor,
    temperature: float = 2.0,
) -> torch.Tensor:
    """L_ce = KL(softmax(t/T) || softmax(s/T)) · T², averaged over the selected positions.

    Args:
        student_logits: (B, T, V) student scores.
        teacher_logits: (B, T, V) teacher scores (no gradient needed).
        positions: (B, T) bool, the positions that count (non-pad, or masked only).
        temperature: T > 0; the T² factor keeps gradient magnitudes comparable across T.

    Returns:
        () fp32 scalar; 0 when ``positions`` selects nothing.
    """
    vocab = student_logits.shape[-1]
    rows = positions.reshape(-1).nonzero().squeeze(1)  # (N,) flat indices of the counted positions
    total = _ChunkedKL.apply(
        student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab).detach(), rows, temperature
    )
    return total / max(rows.numel(), 1) * temperature**2


KL_CHUNK = 64  # rows per chunk: a (64, V) fp32 block stays in cache for the softmax passes


class _ChunkedKL(torch.autograd.Function):
    """Σ_rows KL(softmax(t/T) || softmax(s/T)) computed a block of rows at a time, in fp32.

    The straightforward form materialises several (N, V) fp32 tensors (casts, two log-softmaxes,
    their difference, the probabilities) and autograd keeps them for backward; for N = 32 x 128
    positions and V = 29k that is ~0.5 GB per tensor, and the loss dominated the step on a CPU.
    Here forward and backward stream over blocks of rows; the saved tensors are the (bf16) logits
    the models produced anyway. The gradient is the closed form d/ds = (softmax(s/T) - softmax(t/T)) / T.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, t: torch.Tensor, rows: torch.Tensor, temperature: float):
        total = torch.zeros((), dtype=torch.float32, device=s.device)
        for start in range(0, rows.numel(), KL_CHUNK):
            r = rows[start : start + KL_CHUNK]
            log_p_s = F.log_softmax(s.index_select(0, r).float() / temperature, dim=-1)
            log_p_t = F.log_softmax(t.index_select(0, r).float() / temperature, dim=-1)
            total += F.kl_div(log_p_s, log_p_t, log_target=True, reduction="sum")
        ctx.save_for_backward(s, t, rows)
        ctx.temperature = temperature
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        s, t, rows = ctx.saved_tensors
        temperature = ctx.temperature
        grad_s = torch.zeros_like(s)
        scale = grad_total.float() / temperature
        for start in range(0, rows.numel(), KL_CHUNK):
            r = rows[start : start + KL_CHUNK]
            p_s = F.softmax(s.index_select(0, r).float() / temperature, dim=-1)
            p_t = F.softmax(t.index_select(0, r).float() / temperature, dim=-1)
            grad_s.index_copy_(0, r, ((p_s - p_t) * scale).to(s.dtype))
        return grad_s, None, None, None


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_mlm = cross-entropy of the original token at masked positions (labels != -100).

    Args:
        student_logits: (B, T, V).
        labels: (B, T) long, the original token id at masked positions and -100 elsewhere.

    Returns:
        () fp32 scalar; 0 when no position is masked.
    """
    selected = labels != IGNORE_INDEX  # (B, T)
    logits = student_logits[selected].float()  # (N, V)
    return _mean_over(F.cross_entropy(logits, labels[selected], reduction="none"))


def cosine_embedding_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """L_cos = 1 − cos(h_s, h_t) averaged over the selected positions (CosineEmbeddingLoss, target 1).

    Args:
        student_hidden: (B, T, H) last hidden states of the student.
        teacher_hidden: (B, T, H) last hidden states of the teacher (same H).
        positions: (B, T) bool, usually the non-pad positions.

    Returns:
        () fp32 scalar in [0, 2]; 0 when ``positions`` selects nothing.
    """
    h_s = student_hidden[positions].float()  # (N, H)
    h_t = teacher_hidden[positions].float()  # (N, H)
    # eps like torch's CosineEmbeddingLoss: an all-zero vector gives cos 0, not NaN
    return _mean_over(1.0 - F.cosine_similarity(h_s, h_t, dim=-1, eps=1e-8))


def logits_mse_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """α_mse term: squared error between logits, summed over V and averaged over selected positions.

    Args:
        student_logits: (B, T, V).
        teacher_logits: (B, T, V).
        positions: (B, T) bool.

    Returns:
        () fp32 scalar; 0 when ``positions`` selects nothing.
    """
    diff = student_logits[positions].float() - teacher_logits[positions].float()  # (N, V)
    return _mean_over(diff.pow(2).sum(dim=-1))


def causal_lm_loss(
    student_logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """α_clm term: next-token cross-entropy (position t predicts token t+1), real tokens only.

    Args:
        student_logits: (B, T, V) scores of a causal student.
        input_ids: (B, T) long.
        attention_mask: (B, T) 1 for real tokens, 0 for pad.

    Returns:
        () fp32 scalar; 0 for sequences of length <= 1.
    """
    logits = student_logits[:, :-1].float()  # (B, T-1, V)
    targets = input_ids[:, 1:]  # (B, T-1)
    keep = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()  # (B, T-1)
    return _mean_over(F.cross_entropy(logits[keep], targets[keep], reduction="none"))


def weighted_sum(terms: dict[str, torch.Tensor], alphas: dict[str, float]) -> torch.Tensor:
    """Total loss Σ α_k · L_k over the terms present (alphas without a term are ignored)."""
    return sum(alphas[name] * value for name, value in terms.items())

"""Each distillation loss against a hand computation on flat rows with weights; no weight gives 0, not NaN."""

from __future__ import annotations

import math

import pytest
import torch

from distilkit.train import losses


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_kl_matches_hand_computation_with_t_squared():
    s = [[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]
    t = [[2.0, 1.0, 0.0], [1.0, -1.0, 0.5]]
    T = 2.0
    expected = 0.0
    for srow, trow in zip(s, t):
        ps, pt = _softmax([x / T for x in srow]), _softmax([x / T for x in trow])
        expected += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    expected = expected / 2 * T**2
    got = losses.distillation_kl_loss(torch.tensor(s), torch.tensor(t), None, T)
    assert losses.distillation_kl_loss(torch.tensor(s), torch.tensor(t), torch.ones(2), T).item() == \
        pytest.approx(got.item(), rel=1e-6)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # same as torch's KLDivLoss(batchmean) over the selected rows, the HF distiller's formulation
    ref = (
        torch.nn.KLDivLoss(reduction="batchmean")(
            torch.log_softmax(torch.tensor(s) / T, -1), torch.softmax(torch.tensor(t) / T, -1)
        )
        * T**2
    )
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_kl_ignores_rows_of_weight_zero_and_is_zero_for_equal_logits():
    torch.manual_seed(0)
    s = torch.randn(8, 7)
    t = s.clone()
    t[3, 0] += 100.0  # garbage at a row of weight 0 (padding)
    weights = torch.ones(8)
    weights[3] = 0.0
    assert losses.distillation_kl_loss(s, t, weights, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.distillation_kl_loss(s, t, None, 2.0).item() > 0.1  # the garbage counts


def test_weights_weigh_rows():
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    per_row = [losses.distillation_kl_loss(s[i : i + 1], t[i : i + 1], None, 1.0).item() for i in range(3)]
    got = losses.distillation_kl_loss(s, t, torch.tensor([2.0, 1.0, 0.0]), 1.0).item()
    assert got == pytest.approx((2 * per_row[0] + per_row[1]) / 3, rel=1e-5)


def test_masked_lm_loss_is_cross_entropy_at_labelled_rows():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 0.0], [2.0, 2.0, 2.0]])  # (3, 3)
    labels = torch.tensor([2, -100, 0])
    expected = (-math.log(_softmax([1.0, 2.0, 3.0])[2]) - math.log(1 / 3)) / 2
    assert losses.masked_lm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_cosine_matches_torch_cosine_embedding_loss_over_real_positions():
    h_s, h_t = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    h_s[0, 3:] = 1e6  # pad positions must not count
    got = losses.cosine_embedding_loss(h_s.flatten(0, 1), h_t.flatten(0, 1), real.flatten())
    mask = real.bool()
    ref = torch.nn.CosineEmbeddingLoss()(h_s[mask], h_t[mask], torch.ones(int(real.sum())))
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0]])
    assert losses.cosine_embedding_loss(a, b).item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-6)


def test_mse_is_summed_over_vocab_and_averaged_over_rows():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert losses.logits_mse_loss(s, t, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx((5 + 2) / 2)


def test_causal_lm_loss_predicts_the_next_real_token():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 2.0
    ids = torch.tensor([[1, 2, 3]])
    attention = torch.tensor([[1, 1, 0]])  # only position 0 -> token 2 counts
    expected = -math.log(_softmax([0.0, 0.0, 2.0, 0.0])[2])
    assert losses.causal_lm_loss(logits, ids, attention).item() == pytest.approx(expected, rel=1e-6)
    assert losses.next_token_labels(ids, attention).tolist() == [[2, -100, -100]]


@pytest.mark.parametrize("name", ["kl", "mlm", "cos", "mse", "clm", "kl-empty"])
def test_nothing_selected_gives_zero_with_finite_gradient(name):
    s = torch.randn(2, 3, 5, requires_grad=True)
    t = torch.randn(2, 3, 5)
    none = torch.zeros(6)
    value = {
        "kl": lambda: losses.distillation_kl_loss(s.flatten(0, 1), t.flatten(0, 1), none, 2.0),
        "kl-empty": lambda: losses.distillation_kl_loss(s.flatten(0, 1)[:0], t.flatten(0, 1)[:0], None, 2.0),
        "mlm": lambda: losses.masked_lm_loss(s.flatten(0, 1), torch.full((6,), -100)),
        "cos": lambda: losses.cosine_embedding_loss(s.flatten(0, 1), t.flatten(0, 1), none),
        "mse": lambda: losses.logits_mse_loss(s.flatten(0, 1), t.flatten(0, 1), none),
        "clm": lambda: losses.causal_lm_loss(s, torch.zeros(2, 3, dtype=torch.long), none.view(2, 3).long()),
    }[name]()
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(s.grad).all() and (s.grad == 0).all()


def test_bf16_inputs_give_an_fp32_loss():
    s, t = torch.randn(2, 6).bfloat16(), torch.randn(2, 6).bfloat16()
    out = losses.distillation_kl_loss(s, t, torch.ones(2), 2.0)
    assert out.dtype == torch.float32


def test_weighted_sum():
    terms = {"ce": torch.tensor(1.0), "mlm": torch.tensor(2.0), "cos": torch.tensor(3.0)}
    alphas = {"ce": 5.0, "mlm": 2.0, "cos": 1.0, "mse": 0.0}
    assert losses.weighted_sum(terms, alphas).item() == pytest.approx(5 + 4 + 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_blockwise_kl_equals_the_straightforward_form_in_value_and_gradient(dtype):
    """More rows than one block, a ragged last block, unselected rows: value and gradient agree."""
    g = torch.Generator().manual_seed(0)
    B, T, V, temp = 3, 50, 37, 2.0  # 150 positions = 2 full blocks of KL_CHUNK + a ragged one
    s = (torch.randn(B, T, V, generator=g) * 3).to(dtype).requires_grad_(True)
    t = (torch.randn(B, T, V, generator=g) * 3).to(dtype)
    positions = torch.rand(B, T, generator=g) > 0.2
    assert positions.sum() > losses.KL_CHUNK

    got = losses.distillation_kl_loss(s.flatten(0, 1), t.flatten(0, 1), positions.flatten(), temp)
    (grad_got,) = torch.autograd.grad(got, s)

    s_ref = s.detach().double().requires_grad_(True)
    log_p_s = torch.log_softmax(s_ref[positions] / temp, dim=-1)
    log_p_t = torch.log_softmax(t.double()[positions] / temp, dim=-1)
    want = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean() * temp**2
    (grad_want,) = torch.autograd.grad(want, s_ref)

    tol = 1e-9 if dtype == torch.float64 else 1e-5
    assert got.dtype == torch.float32 and abs(float(got.detach()) - float(want.detach())) < max(tol, 1e-6)
    assert grad_got.dtype == dtype
    assert torch.allclose(grad_got.double(), grad_want, atol=tol if dtype == torch.float64 else 2e-4)
    assert not grad_got[~positions].any()  # unselected positions get no gradient

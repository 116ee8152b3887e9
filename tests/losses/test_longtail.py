"""LDAM, BalancedSoftmax, LogitAdjusted and class_balanced_weights against their papers' formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from lt_noise.losses import LDAM, BalancedSoftmax, LogitAdjusted, class_balanced_weights, ldam_margins


def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ref_ce(z, y):
    return -np_log_softmax(z)[np.arange(len(y)), y]


def ref_margins(counts, max_m):
    # Cao et al. 2019: m_j = C / n_j^(1/4), C chosen so that max_j m_j = max_m
    counts = np.asarray(counts, dtype=float)
    raw = 1.0 / counts**0.25
    return raw * max_m / raw.max()


def ref_ldam(z, y, counts, max_m, s):
    m = ref_margins(counts, max_m)
    shifted = z.copy()
    for i, label in enumerate(y):  # subtract the margin at the labelled logit only
        shifted[i, label] -= m[label]
    return ref_ce(s * shifted, y)


def test_ldam_margins_follow_the_quarter_power_law(case):
    margins = ldam_margins(case.class_counts, max_m=0.5)
    np.testing.assert_allclose(margins.numpy(), ref_margins(case.class_counts, 0.5), rtol=1e-6)
    assert margins.max().item() == pytest.approx(0.5)
    # rarest class gets max_m; ratio of margins = (n_i / n_j)^(1/4)
    counts = np.asarray(case.class_counts, dtype=float)
    assert margins[int(np.argmin(counts))].item() == pytest.approx(0.5)
    assert (margins[0] / margins[-1]).item() == pytest.approx((counts[-1] / counts[0]) ** 0.25, rel=1e-6)


@pytest.mark.parametrize(("max_m", "s"), [(0.5, 30.0), (0.3, 1.0)])
def test_ldam_matches_reference(case, max_m, s, numeric_grad, autograd):
    loss = LDAM(case.class_counts, max_m=max_m, s=s)
    x, y = case.logits.numpy(), case.target.numpy()
    values, grad = autograd(loss, case.logits, case.target)
    ref = lambda z: ref_ldam(z, y, case.class_counts, max_m, s)  # noqa: E731
    # margins are a float32 buffer: compare with relative precision ~1e-7 times s
    np.testing.assert_allclose(values, ref(x), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(grad, numeric_grad(ref, x, step=1e-7), rtol=1e-4, atol=1e-5)


def test_balanced_softmax_is_ce_on_logits_plus_log_counts(case, numeric_grad, autograd):
    x, y = case.logits.numpy(), case.target.numpy()
    log_n = np.log(np.asarray(case.class_counts, dtype=float))
    values, grad = autograd(BalancedSoftmax(case.class_counts), case.logits, case.target)
    np.testing.assert_allclose(values, ref_ce(x + log_n, y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref_ce(z + log_n, y), x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_matches_menon(case, tau, autograd):
    x, y = case.logits.numpy(), case.target.numpy()
    prior = np.asarray(case.class_counts, dtype=float) / sum(case.class_counts)
    values, _ = autograd(LogitAdjusted(case.class_counts, tau=tau), case.logits, case.target)
    np.testing.assert_allclose(values, ref_ce(x + tau * np.log(prior), y), rtol=1e-6, atol=1e-7)


def test_logit_adjusted_tau1_equals_balanced_softmax(case):
    a = LogitAdjusted(case.class_counts, tau=1.0)(case.logits, case.target)
    b = BalancedSoftmax(case.class_counts)(case.logits, case.target)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_soft_targets_for_bias_adjusted_losses(case):
    soft = case.soft_target()
    log_n = np.log(np.asarray(case.class_counts, dtype=float))
    expected = -(soft.numpy() * np_log_softmax(case.logits.numpy() + log_n)).sum(axis=1)
    np.testing.assert_allclose(BalancedSoftmax(case.class_counts)(case.logits, soft).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="LDAM accepts only class indices"):
        LDAM(case.class_counts)(case.logits, soft)


@pytest.mark.parametrize("make", [LDAM, BalancedSoftmax, LogitAdjusted])
def test_gradcheck(small_case, make):
    loss = make(small_case.class_counts)
    x = small_case.logits.clone().requires_grad_(True)
    assert gradcheck(lambda z: loss(z, small_case.target), (x,))


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_class_balanced_weights_closed_form(case, beta):
    counts = np.asarray(case.class_counts, dtype=float)
    raw = (1.0 - beta) / (1.0 - beta**counts)
    expected = raw / raw.sum() * len(counts)
    weights = class_balanced_weights(case.class_counts, beta=beta)
    assert weights.dtype == torch.float32 and weights.shape == (len(counts),)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert weights.sum().item() == pytest.approx(len(counts), rel=1e-6)


def test_class_balanced_weights_limits():
    counts = [1000, 100, 10]
    np.testing.assert_allclose(class_balanced_weights(counts, beta=0.0).numpy(), np.ones(3))
    # β -> 1: inverse frequency
    inv = 1.0 / np.asarray(counts, dtype=float)
    np.testing.assert_allclose(class_balanced_weights(counts, beta=1 - 1e-9).numpy(), inv / inv.sum() * 3, rtol=1e-5)


def test_buffers_move_and_are_saved():
    loss = LDAM([50, 5])
    assert set(loss.state_dict()) == {"class_counts", "margins"}
    assert set(LogitAdjusted([50, 5]).state_dict()) == {"class_counts", "log_prior"}
    assert list(loss.parameters()) == []
    assert loss.double().margins.dtype == torch.float64


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LDAM([10, 0, 5]), r"positive integers, but got 0 at index 1"),
        (lambda: LDAM([10, 5], max_m=0.0), r"Expected argument `max_m` in \(0, inf\), but got 0"),
        (lambda: LDAM([10, 5], s=-1.0), r"Expected argument `s` in \(0, inf\), but got -1"),
        (lambda: BalancedSoftmax([10.5, 5]), r"to hold integers, but got 10.5 at index 0"),
        (lambda: LogitAdjusted([10, 5], tau=-1.0), r"Expected argument `tau` in \[0, inf\), but got -1"),
        (lambda: class_balanced_weights([10, 5], beta=1.0), r"Expected argument `beta` in \[0, 1\), but got 1"),
        (lambda: ldam_margins([3]), r"at least 2 classes"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make", [LDAM, BalancedSoftmax, LogitAdjusted])
def test_logits_width_must_match_counts(make):
    with pytest.raises(ValueError, match=r"Expected logits with 3 classes \(len\(class_counts\)\), but got shape \(2, 4\)"):
        make([30, 20, 10])(torch.zeros(2, 4), torch.tensor([0, 1]))

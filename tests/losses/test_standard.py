"""CrossEntropy (with label smoothing), FocalLoss and MSE against references written from the formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from lt_noise.losses import MSE, CrossEntropy, FocalLoss



def np_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _py(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np_softmax(logits)[np.arange(len(target)), target]


def ref_ce(logits, target, label_smoothing=0.0):
    num_classes = logits.shape[1]
    p = np_softmax(logits)
    out = np.empty(len(target))
    for i, y in enumerate(target):  # slow loop, straight from -Σ_j t_j log p_j
        t = np.full(num_classes, label_smoothing / num_classes)
        t[y] += 1.0 - label_smoothing
        out[i] = -(t * np.log(p[i])).sum()
    return out


def ref_ce_soft(logits, soft, label_smoothing=0.0):
    t = (1.0 - label_smoothing) * soft + label_smoothing / logits.shape[1]
    return -(t * np.log(np_softmax(logits))).sum(axis=1)


def ref_focal(logits, target, gamma):
    p = _py(logits, target)
    return -((1.0 - p) ** gamma) * np.log(p)


def ref_mse(logits, target):
    onehot = np.eye(logits.shape[1])[target]
    return ((onehot - np_softmax(logits)) ** 2).sum(axis=1)


def ref_mse_soft(logits, soft):
    return ((soft - np_softmax(logits)) ** 2).sum(axis=1)


CASES = [
    ("ce", lambda: CrossEntropy(), lambda x, y: ref_ce(x, y)),
    ("ce_ls0.1", lambda: CrossEntropy(label_smoothing=0.1), lambda x, y: ref_ce(x, y, 0.1)),
    ("focal_g0.5", lambda: FocalLoss(gamma=0.5), lambda x, y: ref_focal(x, y, 0.5)),
    ("focal_g2", lambda: FocalLoss(gamma=2.0), lambda x, y: ref_focal(x, y, 2.0)),
    ("focal_g0", lambda: FocalLoss(gamma=0.0), lambda x, y: ref_focal(x, y, 0.0)),
    ("mse", lambda: MSE(), ref_mse),
]


@pytest.mark.parametrize(("make", "ref"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_values_and_gradients_match_reference(case, make, ref, numeric_grad, autograd):
    x, y = case.logits.numpy(), case.target.numpy()
    values, grad = autograd(make(), case.logits, case.target)
    np.testing.assert_allclose(values, ref(x, y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref(z, y), x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("make", "ref"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_float32_values_match_reference(case, make, ref):
    values = make()(case.logits.float(), case.target)
    assert values.dtype == torch.float32 and values.shape == case.target.shape
    np.testing.assert_allclose(values.numpy(), ref(case.logits.numpy(), case.target.numpy()), rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_gradcheck(small_case, make):
    x = small_case.logits.clone().requires_grad_(True)
    assert gradcheck(lambda z: make()(z, small_case.target), (x,))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_soft_targets(case, label_smoothing, numeric_grad, autograd):
    soft = case.soft_target()
    x, t = case.logits.numpy(), soft.numpy()
    values, grad = autograd(CrossEntropy(label_smoothing=label_smoothing), case.logits, soft)
    np.testing.assert_allclose(values, ref_ce_soft(x, t, label_smoothing), rtol=1e-10)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref_ce_soft(z, t, label_smoothing), x), rtol=1e-5, atol=1e-7)


def test_mse_soft_targets(case, numeric_grad, autograd):
    soft = case.soft_target()
    x, t = case.logits.numpy(), soft.numpy()
    values, grad = autograd(MSE(), case.logits, soft)
    np.testing.assert_allclose(values, ref_mse_soft(x, t), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref_mse_soft(z, t), x), rtol=1e-5, atol=1e-7)


def test_mse_hard_equals_one_minus_two_py_plus_sum_squares(case):
    # Table 7 of the curriculum paper: MSE = 1 - 2 p_y + Σ_i p_i^2
    p = np_softmax(case.logits.numpy())
    py = p[np.arange(len(case.target)), case.target.numpy()]
    expected = 1.0 - 2.0 * py + (p**2).sum(axis=1)
    np.testing.assert_allclose(MSE()(case.logits, case.target).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_weight_is_table6(gamma):
    # Table 6: w_FL = (1 - p)^γ (1 - p - γ p log p)
    delta = torch.linspace(-12, 12, 241, dtype=torch.float64)
    p = torch.sigmoid(delta).numpy()
    expected = (1 - p) ** gamma * (1 - p - gamma * p * np.log(p))
    np.testing.assert_allclose(FocalLoss(gamma=gamma).weight(delta).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_cross_entropy_weight_is_one_minus_py():
    delta = torch.linspace(-12, 12, 241, dtype=torch.float64)
    np.testing.assert_allclose(CrossEntropy().weight(delta).numpy(), 1 - torch.sigmoid(delta).numpy(), rtol=1e-9)
    assert CrossEntropy().max_weight() == 1.0


def test_focal_max_weight_matches_dense_search():
    # Independent search over p in (0, 1) with the Table 6 formula; the maximum exceeds 1 for γ > 0.
    p = np.logspace(-30, 0, 400001, endpoint=False)
    p = np.concatenate([p, 1 - np.logspace(-12, np.log10(0.5), 200001)])
    w = (1 - p) ** 2.0 * (1 - p - 2.0 * p * np.log(p))
    assert w.max() > 1.0
    assert FocalLoss(gamma=2.0).max_weight() == pytest.approx(w.max(), rel=1e-6)


def test_label_smoothing_is_not_a_py_loss():
    loss = CrossEntropy(label_smoothing=0.1)
    assert not loss.is_py_loss
    with pytest.raises(ValueError, match="p_y alone"):
        loss.weight(torch.zeros(3))


def test_bf16_logits_are_computed_in_float32(case):
    logits = case.logits.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = CrossEntropy()(logits, case.target)
    assert values.dtype == torch.float32
    expected = ref_ce(logits.double().numpy(), case.target.numpy())
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CrossEntropy(label_smoothing=1.0), r"Expected argument `label_smoothing` in \[0, 1\), but got 1"),
        (lambda: CrossEntropy(label_smoothing=-0.1), r"Expected argument `label_smoothing` in \[0, 1\), but got -0.1"),
        (lambda: FocalLoss(gamma=-1.0), r"Expected argument `gamma` in \[0, inf\), but got -1"),
        (lambda: FocalLoss(gamma=float("nan")), r"Expected argument `gamma` in \[0, inf\), but got nan"),
        (lambda: FocalLoss(gamma="2"), r"Expected argument `gamma` in \[0, inf\), but got '2'"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_focal_rejects_soft_targets(case):
    with pytest.raises(ValueError, match="FocalLoss accepts only class indices.*soft targets"):
        FocalLoss()(case.logits, case.soft_target())


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_detached_factor_has_the_apl_gradient_and_the_same_value(case, gamma, autograd):
    # APL / ALFs code: (1 - p_y)^γ from a detached p_y, so dL/ds_k = (1 - p_y)^γ (p_k - 1[k = y]).
    x, y = case.logits.numpy(), case.target.numpy()
    p = np_softmax(x)
    py = p[np.arange(len(y)), y]
    values, grad = autograd(FocalLoss(gamma=gamma, detach_focal_factor=True), case.logits, case.target)
    np.testing.assert_allclose(values, ref_focal(x, y, gamma), rtol=1e-9, atol=1e-12)
    expected = (1 - py)[:, None] ** gamma * (p - np.eye(x.shape[1])[y])
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-10)


def test_focal_detached_factor_weight_is_the_gradient_in_delta():
    # w = -dL/dΔ with the factor constant: (1 - p)^γ (1 - p) = (1 - p)^(γ+1).
    delta = torch.linspace(-12, 12, 241, dtype=torch.float64)
    p = torch.sigmoid(delta).numpy()
    got = FocalLoss(gamma=0.5, detach_focal_factor=True).weight(delta).numpy()
    np.testing.assert_allclose(got, (1 - p) ** 1.5, rtol=1e-9, atol=1e-12)

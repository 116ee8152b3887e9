"""Robust losses against references written from the papers' formulas (values, gradients, weights)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.loss_reference import np_softmax, prob_of_label, ref_nce, ref_nfl, ref_ngce, ref_rce
from torch.autograd import gradcheck

from lt_noise.losses import AEL, AGCE, AUL, GCE, MAE, NCE, NFL, NGCE, NSL, RCE, SCE, TCE

_py = prob_of_label


def ref_tce(x, y, order):
    p = _py(x, y)
    return sum((1 - p) ** i / i for i in range(1, order + 1))


REFS = [
    ("mae", lambda: MAE(), lambda x, y: 1 - _py(x, y)),
    ("rce", lambda: RCE(), lambda x, y: ref_rce(x, y)),
    ("rce_A-9.2", lambda: RCE(A=math.log(1e-4)), lambda x, y: ref_rce(x, y, math.log(1e-4))),
    ("gce_q0.7", lambda: GCE(q=0.7), lambda x, y: (1 - _py(x, y) ** 0.7) / 0.7),
    ("gce_q1", lambda: GCE(q=1.0), lambda x, y: 1 - _py(x, y)),
    (
        "sce",
        lambda: SCE(alpha=0.1, beta=1.0, A=-4.0),
        lambda x, y: 0.1 * -np.log(_py(x, y)) + 1.0 * ref_rce(x, y, -4.0),
    ),
    ("agce", lambda: AGCE(a=0.6, q=0.6), lambda x, y: ((0.6 + 1) ** 0.6 - (0.6 + _py(x, y)) ** 0.6) / 0.6),
    ("agce_q3", lambda: AGCE(a=1.8, q=3.0), lambda x, y: ((1.8 + 1) ** 3 - (1.8 + _py(x, y)) ** 3) / 3),
    ("aul", lambda: AUL(a=5.5, q=3.0), lambda x, y: ((5.5 - _py(x, y)) ** 3 - 4.5**3) / 3),
    ("aul_q0.7", lambda: AUL(a=3.0, q=0.7), lambda x, y: ((3.0 - _py(x, y)) ** 0.7 - 2.0**0.7) / 0.7),
    ("ael", lambda: AEL(a=2.5), lambda x, y: np.exp(-_py(x, y) / 2.5)),
    ("tce_1", lambda: TCE(order=1), lambda x, y: ref_tce(x, y, 1)),
    ("tce_2", lambda: TCE(order=2), lambda x, y: ref_tce(x, y, 2)),
    ("tce_6", lambda: TCE(order=6), lambda x, y: ref_tce(x, y, 6)),
    ("nce", lambda: NCE(), ref_nce),
    ("nfl_0.5", lambda: NFL(gamma=0.5), lambda x, y: ref_nfl(x, y, 0.5)),
    ("nfl_0", lambda: NFL(gamma=0.0), ref_nce),
    ("ngce_0.1", lambda: NGCE(q=0.1), lambda x, y: ref_ngce(x, y, 0.1)),
    ("ngce_0.7", lambda: NGCE(q=0.7), lambda x, y: ref_ngce(x, y, 0.7)),
    ("nsl", lambda: NSL(), lambda x, y: -x[np.arange(len(y)), y]),
]
IDS = [r[0] for r in REFS]
PAIRS = [r[1:] for r in REFS]


@pytest.mark.parametrize(("make", "ref"), PAIRS, ids=IDS)
def test_values_and_gradients_match_reference(case, make, ref, numeric_grad, autograd):
    x, y = case.logits.numpy(), case.target.numpy()
    values, grad = autograd(make(), case.logits, case.target)
    np.testing.assert_allclose(values, ref(x, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref(z, y), x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("make", "ref"), PAIRS, ids=IDS)
def test_float32_values_match_reference(case, make, ref):
    values = make()(case.logits.float(), case.target)
    assert values.dtype == torch.float32 and values.shape == case.target.shape
    expected = ref(case.logits.float().double().numpy(), case.target.numpy())
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [r[1] for r in REFS], ids=IDS)
def test_gradcheck(small_case, make):
    x = small_case.logits.clone().requires_grad_(True)
    assert gradcheck(lambda z: make()(z, small_case.target), (x,))


SOFT_REFS = [
    ("mae", lambda: MAE(), lambda x, t: 1 - (t * np_softmax(x)).sum(1)),
    ("rce", lambda: RCE(A=-4.0), lambda x, t: 4.0 * (1 - (t * np_softmax(x)).sum(1))),
    (
        "sce",
        lambda: SCE(alpha=0.1, beta=1.0, A=-4.0),
        lambda x, t: 0.1 * -(t * np.log(np_softmax(x))).sum(1) + 4.0 * (1 - (t * np_softmax(x)).sum(1)),
    ),
    ("nce", lambda: NCE(), lambda x, t: (t * -np.log(np_softmax(x))).sum(1) / (-np.log(np_softmax(x))).sum(1)),
    ("nsl", lambda: NSL(), lambda x, t: -(t * x).sum(1)),
]


@pytest.mark.parametrize(("make", "ref"), [r[1:] for r in SOFT_REFS], ids=[r[0] for r in SOFT_REFS])
def test_soft_targets_match_reference(case, make, ref, numeric_grad, autograd):
    soft = case.soft_target()
    x, t = case.logits.numpy(), soft.numpy()
    values, grad = autograd(make(), case.logits, soft)
    np.testing.assert_allclose(values, ref(x, t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref(z, t), x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [lambda: MAE(), lambda: RCE(), lambda: SCE(), lambda: NCE(), lambda: NSL()])
def test_soft_target_is_expectation_over_labels(case, make):
    # Σ_i t_i L(s, i), assembled from hard-label calls, equals the soft-target value.
    loss, soft = make(), case.soft_target()
    per_class = torch.stack(
        [loss(case.logits, torch.full_like(case.target, i)) for i in range(case.num_classes)], dim=1
    )
    torch.testing.assert_close(loss(case.logits, soft), (soft * per_class).sum(1), rtol=1e-10, atol=1e-12)


def _weight_cases():
    # Table 1 / Table 6 sample-weighting functions, with each loss's constant factor restored.
    return [
        ("mae", MAE(), lambda p: p * (1 - p)),
        ("rce", RCE(A=-4.0), lambda p: 4.0 * p * (1 - p)),
        ("gce", GCE(q=0.3), lambda p: p**0.3 * (1 - p)),
        ("sce", SCE(alpha=0.1, beta=1.0, A=-4.0), lambda p: (0.1 + 4.0 * p) * (1 - p)),
        ("sce_flat", SCE(alpha=3.0, beta=0.5, A=-4.0), lambda p: (3.0 + 2.0 * p) * (1 - p)),
        ("agce", AGCE(a=0.1, q=0.1), lambda p: p * (0.1 + p) ** (0.1 - 1) * (1 - p)),
        ("agce_q4", AGCE(a=3.0, q=4.0), lambda p: p * (3.0 + p) ** 3.0 * (1 - p)),
        ("aul", AUL(a=1.1, q=5.0), lambda p: p * (1 - p) * (1.1 - p) ** 4.0),
        ("aul_q0.7", AUL(a=3.0, q=0.7), lambda p: p * (1 - p) * (3.0 - p) ** (0.7 - 1)),
        ("ael", AEL(a=2.5), lambda p: p * (1 - p) * np.exp(-p / 2.5) / 2.5),
        ("tce", TCE(order=3), lambda p: p * sum((1 - p) ** i for i in range(1, 4))),
    ]


@pytest.mark.parametrize(("loss", "formula"), [c[1:] for c in _weight_cases()], ids=[c[0] for c in _weight_cases()])
def test_weight_is_table_formula(loss, formula):
    delta = torch.linspace(-15, 15, 301, dtype=torch.float64)
    p = torch.sigmoid(delta).numpy()
    np.testing.assert_allclose(loss.weight(delta).numpy(), formula(p), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(("loss", "formula"), [c[1:] for c in _weight_cases()], ids=[c[0] for c in _weight_cases()])
def test_max_weight_matches_dense_search(loss, formula):
    # Independent dense search over p in (0, 1), both tails refined logarithmically.
    p = np.concatenate(
        [np.logspace(-30, -3, 20001), np.linspace(1e-3, 1 - 1e-3, 400001), 1 - np.logspace(-3, -15, 20001)]
    )
    assert loss.max_weight() == pytest.approx(formula(p).max(), rel=1e-6)


def test_weights_are_nonnegative_and_vanish_at_high_margin():
    for _, loss, _ in _weight_cases():
        w = loss.weight(torch.linspace(-40, 40, 801, dtype=torch.float64))
        assert bool((w >= 0).all())
        assert float(w[-1]) < 1e-12


def test_value_is_precise_near_py_one():
    # Δ = 30: 1 - p_y ≈ 9.4e-14. The cancellation-free forms keep the relative precision in float64.
    logits = torch.tensor([[30.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0])
    one_minus_p = math.exp(-30.0) / (1 + math.exp(-30.0))
    # AGCE ≈ (a+1)^(q-1) (1-p), AUL ≈ (a-1)^(q-1) (1-p), GCE ≈ (1-p) for small 1-p
    assert AGCE(a=0.6, q=0.6)(logits, target).item() == pytest.approx(1.6 ** (0.6 - 1) * one_minus_p, rel=1e-9)
    assert AUL(a=5.5, q=3.0)(logits, target).item() == pytest.approx(4.5**2.0 * one_minus_p, rel=1e-9)
    assert MAE()(logits, target).item() == pytest.approx(one_minus_p, rel=1e-12)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GCE(q=1.5), r"^Expected argument `q` in \(0, 1\], but got 1.5$"),
        (lambda: GCE(q=0.0), r"Expected argument `q` in \(0, 1\], but got 0"),
        (lambda: NGCE(q=2), r"Expected argument `q` in \(0, 1\], but got 2"),
        (lambda: AGCE(a=0.0), r"Expected argument `a` in \(0, inf\), but got 0"),
        (lambda: AGCE(q=-1.0), r"Expected argument `q` in \(0, inf\), but got -1"),
        (lambda: AUL(a=1.0), r"Expected argument `a` in \(1, inf\), but got 1"),
        (lambda: AUL(q=0.0), r"Expected argument `q` in \(0, inf\), but got 0"),
        (lambda: AEL(a=-2.0), r"Expected argument `a` in \(0, inf\), but got -2"),
        (lambda: TCE(order=0), r"Expected argument `order` to be an integer >= 1, but got 0"),
        (lambda: TCE(order=2.0), r"Expected argument `order` to be an integer >= 1, but got 2.0"),
        (lambda: RCE(A=1.0), r"Expected argument `A` in \(-inf, 0\), but got 1"),
        (lambda: SCE(A=0.0), r"Expected argument `A` in \(-inf, 0\), but got 0"),
        (lambda: SCE(alpha=0.0, beta=0.0), r"not both 0"),
        (lambda: SCE(alpha=-0.1), r"Expected argument `alpha` in \[0, inf\), but got -0.1"),
        (lambda: NFL(gamma=-0.5), r"Expected argument `gamma` in \[0, inf\), but got -0.5"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "make", [lambda: GCE(), lambda: AGCE(), lambda: AUL(), lambda: AEL(), lambda: TCE(), lambda: NFL(), lambda: NGCE()]
)
def test_soft_targets_rejected(case, make):
    with pytest.raises(ValueError, match="accepts only class indices.*soft targets"):
        make()(case.logits, case.soft_target())


def _apl_nfl_gradient(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    """d/ds of the APL code's NFL, whose focusing factors (1 - p_j)^γ are constants (``pt.data``): the
    quotient rule on N = -(1-p_y)^γ log p_y and D = Σ_j -(1-p_j)^γ log p_j with the factors held fixed."""
    p = np_softmax(x)
    rows = np.arange(len(y))
    factor = (1 - p) ** gamma
    onehot = np.eye(x.shape[1])[y]
    n = -factor[rows, y] * np.log(p[rows, y])
    d = (-factor * np.log(p)).sum(axis=1)
    dn = -factor[rows, y][:, None] * (onehot - p)  # d log p_y / ds_k = 1[k=y] - p_k
    dd = -factor + p * factor.sum(axis=1, keepdims=True)  # Σ_j -c_j (1[k=j] - p_k)
    return (dn * d[:, None] - n[:, None] * dd) / d[:, None] ** 2


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_nfl_detached_focal_factor_has_the_apl_gradient_and_the_same_value(case, gamma, autograd):
    x, y = case.logits.numpy(), case.target.numpy()
    values, grad = autograd(NFL(gamma=gamma, detach_focal_factor=True), case.logits, case.target)
    np.testing.assert_allclose(values, ref_nfl(x, y, gamma), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad, _apl_nfl_gradient(x, y, gamma), rtol=1e-7, atol=1e-10)
    _, exact = autograd(NFL(gamma=gamma), case.logits, case.target)
    assert not np.allclose(grad, exact, rtol=1e-3, atol=1e-6)  # the option changes the gradient


def test_detach_focal_factor_must_be_a_bool():
    with pytest.raises(ValueError, match="detach_focal_factor"):
        NFL(detach_focal_factor=1)

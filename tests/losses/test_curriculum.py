"""The curriculum view (papers/003): soft margin, sample-weighting functions, Eq. (4), Reweighted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.distributed import run_on_ranks
from support.loss_reference import np_softmax

from lt_noise.losses import (
    AEL,
    AGCE,
    AUL,
    GCE,
    MAE,
    MSE,
    NCE,
    SCE,
    TCE,
    CrossEntropy,
    FocalLoss,
    LabelProbabilityLoss,
    Reweighted,
    available_losses,
    build_loss,
    expected_initial_margin,
    soft_margin,
)

PY_NAMES = sorted(
    n for n in available_losses()
    if isinstance(m := build_loss(n, class_counts=[2, 1]), LabelProbabilityLoss) and m.is_py_loss
)  # fmt: skip
# Extra settings from the paper's Tables 8 and 12 (and its inferior ones), covering other shapes of w.
VARIANTS = {
    "focal_g2": lambda: FocalLoss(gamma=2.0),
    "gce_q0.3": lambda: GCE(q=0.3),
    "sce_a0.3": lambda: SCE(alpha=0.3, beta=0.7, A=-1.0),
    "agce_a0.1_q0.1": lambda: AGCE(a=0.1, q=0.1),
    "agce_a1.6_q2": lambda: AGCE(a=1.6, q=2.0),
    "aul_a1.1_q5": lambda: AUL(a=1.1, q=5.0),
    "aul_a3_q0.7": lambda: AUL(a=3.0, q=0.7),
    "ael_a1": lambda: AEL(a=1.0),
    "tce_4": lambda: TCE(order=4),
}
PY_LOSSES = {**{n: (lambda n=n: build_loss(n)) for n in PY_NAMES}, **VARIANTS}


def ref_margin(x, y):
    out = np.empty(len(y))
    for n, label in enumerate(y):  # Δ_y = s_y - log Σ_{i≠y} exp(s_i), slow loop
        others = np.delete(x[n], label)
        out[n] = x[n, label] - (others.max() + np.log(np.exp(others - others.max()).sum()))
    return out


def ref_margin_grad(x, y):
    # App. A.5.1: ∂Δ_y/∂s_j = 1 if j = y else -p_j / (1 - p_y)
    p = np_softmax(x)
    rows = np.arange(len(y))
    py = p[rows, y]
    grad = -p / (1 - py)[:, None]
    grad[rows, y] = 1.0
    return grad


def test_the_py_losses_are_those_of_table_1_and_6():
    assert PY_NAMES == ["ael", "agce", "aul", "ce", "focal", "gce", "mae", "rce", "sce", "tce"]


def test_soft_margin_matches_definition(case, numeric_grad):
    x, y = case.logits.numpy(), case.target.numpy()
    logits = case.logits.clone().requires_grad_(True)
    delta = soft_margin(logits, case.target)
    np.testing.assert_allclose(delta.detach().numpy(), ref_margin(x, y), rtol=1e-12, atol=1e-12)
    # sigmoid(Δ_y) is the softmax probability of the label
    py = np_softmax(x)[np.arange(len(y)), y]
    np.testing.assert_allclose(torch.sigmoid(delta).detach().numpy(), py, rtol=1e-10)
    # Δ_y >= 0 implies y is the arg-max
    assert bool((case.logits.argmax(1)[delta >= 0] == case.target[delta >= 0]).all())
    delta.sum().backward()
    np.testing.assert_allclose(logits.grad.numpy(), ref_margin_grad(x, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logits.grad.abs().sum(1).numpy(), 2.0, rtol=1e-12)  # ||∇Δ||_1 = 2


def test_soft_margin_gradcheck(small_case):
    x = small_case.logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: soft_margin(z, small_case.target), (x,))


def test_soft_margin_is_float32_for_bf16_and_finite_for_large_logits():
    logits = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 100.0]], dtype=torch.bfloat16)
    delta = soft_margin(logits, torch.tensor([0, 0]))
    assert delta.dtype == torch.float32
    assert delta.tolist() == pytest.approx([100.0, -100.0 - 100.0 - math.log(2)], abs=1e-3)


def test_soft_margin_rejects_soft_targets(case):
    with pytest.raises(ValueError, match="Expected class indices of shape"):
        soft_margin(case.logits, case.soft_target())


def test_expected_initial_margin_is_eq4():
    for k, sigma in [(10, 1.0), (100, 1.0), (1000, 0.5), (2, 2.0)]:
        expected = -math.log(k - 1) - sigma**2 / 2 + (math.exp(sigma**2) - 1) / (2 * (k - 1))
        assert expected_initial_margin(k, sigma) == pytest.approx(expected, rel=1e-12)
    # the paper quotes |E[Δ]| = 5.097 (CIFAR-100) and 2.717 (CIFAR-10), measured on real networks
    assert expected_initial_margin(100) == pytest.approx(-5.097, abs=0.02)
    assert expected_initial_margin(10) == pytest.approx(-2.717, abs=0.12)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_expected_initial_margin_matches_simulation(num_classes):
    # The assumption behind Eq. (4): i.i.d. N(0, 1) scores. Monte-Carlo mean of Δ_y.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, num_classes, generator=gen, dtype=torch.float64)
    target = torch.randint(0, num_classes, (20000,), generator=gen)
    simulated = soft_margin(logits, target).mean().item()
    assert simulated == pytest.approx(expected_initial_margin(num_classes), abs=0.05)


def test_expected_initial_margin_errors():
    with pytest.raises(ValueError, match="Expected argument `num_classes` to be an integer >= 2, but got 1"):
        expected_initial_margin(1)
    with pytest.raises(ValueError, match=r"Expected argument `sigma` in \(0, inf\), but got 0"):
        expected_initial_margin(10, sigma=0.0)


@pytest.mark.parametrize("make", PY_LOSSES.values(), ids=PY_LOSSES.keys())
def test_weight_is_minus_dloss_dmargin(case, make):
    # Moving s_y by ±h moves Δ_y by ±h and nothing else that p_y depends on.
    loss, x, y = make(), case.logits, case.target
    h = 1e-6
    bump = torch.nn.functional.one_hot(y, case.num_classes).double() * h
    numeric = (loss(x + bump, y) - loss(x - bump, y)) / (2 * h)
    weight = loss.weight(soft_margin(x, y))
    np.testing.assert_allclose(weight.numpy(), -numeric.numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", PY_LOSSES.values(), ids=PY_LOSSES.keys())
def test_max_weight_bounds_the_weight(make):
    loss = make()
    delta = torch.linspace(-60, 60, 24001, dtype=torch.float64)
    w = loss.weight(delta)
    assert bool((w >= 0).all())
    assert w.max().item() <= loss.max_weight() * (1 + 1e-9)
    assert w.max().item() == pytest.approx(loss.max_weight(), rel=1e-4)


@pytest.mark.parametrize("make", PY_LOSSES.values(), ids=PY_LOSSES.keys())
def test_reweighted_gradient_is_parallel_to_the_loss_gradient(case, make, autograd):
    loss = make()
    rw = Reweighted(loss)
    _, g_loss = autograd(loss, case.logits, case.target)
    values, g_rw = autograd(rw, case.logits, case.target)
    # the same positive factor 1 / max w for every sample
    np.testing.assert_allclose(g_rw * loss.max_weight(), g_loss, rtol=1e-7, atol=1e-12)
    norms = np.linalg.norm(g_loss, axis=1) * np.linalg.norm(g_rw, axis=1)
    live = norms > 1e-20
    cosine = (g_loss * g_rw).sum(1)[live] / norms[live]
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-9)
    # per-sample value -ŵ(Δ) Δ with ŵ = w / max w
    delta = soft_margin(case.logits, case.target)
    expected = -(loss.weight(delta) / loss.max_weight()) * delta
    np.testing.assert_allclose(values, expected.numpy(), rtol=1e-12)


def _mae_w_hat(delta: np.ndarray) -> np.ndarray:
    # MAE's w = p(1-p), max 1/4; p(1-p) = e/(1+e)^2 with e = exp(-|Δ|) avoids forming 1 - p
    e = np.exp(-np.abs(delta))
    return 4 * e / (1 + e) ** 2


@pytest.mark.parametrize("mode", ["scale", "shift"])
@pytest.mark.parametrize("expected_margin", [None, -5.097, 2.717])
def test_fix_reads_the_weight_at_the_transformed_margin(case, mode, expected_margin):
    rw = Reweighted(MAE(), mode=mode, tau=2.6, expected_margin=expected_margin)
    delta = soft_margin(case.logits, case.target).numpy()
    e = abs(expected_initial_margin(case.num_classes) if expected_margin is None else expected_margin)
    read_at = delta / e * 2.6 if mode == "scale" else delta + e - 2.6
    np.testing.assert_allclose(rw.sample_weights(case.logits, case.target).numpy(), _mae_w_hat(read_at), rtol=1e-9)
    # and the gradient is -ŵ(Δ̂) ∇Δ
    x = case.logits.clone().requires_grad_(True)
    rw(x, case.target).sum().backward()
    expected_grad = -_mae_w_hat(read_at)[:, None] * ref_margin_grad(case.logits.numpy(), case.target.numpy())
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("mode", ["scale", "shift"])
@pytest.mark.parametrize("tau", [2.0, 4.0])
def test_both_fixes_map_the_expected_margin_to_minus_tau(mode, tau):
    e = expected_initial_margin(100)
    rw = Reweighted(MAE(), mode=mode, tau=tau, expected_margin=e)
    logits = torch.tensor([[e, 0.0]], dtype=torch.float64)  # two classes: Δ_0 = s_0 - s_1 = E[Δ]
    assert rw.sample_weights(logits, torch.tensor([0])).item() == pytest.approx(_mae_w_hat(np.array(-tau))[()])
    # without an explicit value, Eq. (4) at the logits' number of classes
    assert Reweighted(MAE(), mode=mode, tau=tau).margin_estimate(100) == pytest.approx(e)


def test_fixes_make_initial_weights_non_marginal_for_100_classes():
    """Fig. 7: with 100 classes and N(0, 1) initial scores MAE's weights are ~0; scale/shift restore them."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4096, 100, generator=gen)
    target = torch.randint(0, 100, (4096,), generator=gen)
    vanilla = Reweighted(MAE()).sample_weights(logits, target)
    scaled = Reweighted(MAE(), mode="scale", tau=2.0).sample_weights(logits, target)  # Table 9, clean
    shifted = Reweighted(MAE(), mode="shift", tau=2.0).sample_weights(logits, target)
    # measured: mean ŵ 0.039 (vanilla) vs 0.43 (scale) and 0.46 (shift)
    assert vanilla.mean().item() < 0.06 and vanilla.median().item() < 0.03
    assert scaled.mean().item() > 0.35 and shifted.mean().item() > 0.35
    assert scaled.median().item() > 10 * vanilla.median().item()
    # with 10 classes the vanilla weights are not marginal: the issue is the number of classes
    logits10 = torch.randn(4096, 10, generator=gen)
    target10 = torch.randint(0, 10, (4096,), generator=gen)
    assert Reweighted(MAE()).sample_weights(logits10, target10).mean().item() > 0.25


def test_measure_fills_a_buffer_from_the_first_training_batches(case):
    rw = Reweighted(MAE(), mode="scale", tau=2.0, expected_margin="measure", measure_batches=2)
    eq4 = expected_initial_margin(case.num_classes)
    # eval mode before training (e.g. a sanity check): Eq. (4) stands in, nothing is recorded
    rw.eval()
    rw(case.logits, case.target)
    assert rw.margin_estimate(case.num_classes) == pytest.approx(eq4)
    assert int(rw.measured_batches) == 0
    rw.train()
    first, second, third = case.logits, case.logits * 2.0, case.logits * 3.0
    rw(first, case.target)
    d1 = soft_margin(first, case.target)
    assert float(rw.margin_estimate(case.num_classes)) == pytest.approx(d1.mean().item())
    rw(second, case.target)
    d2 = soft_margin(second, case.target)
    both = torch.cat([d1, d2]).mean().item()
    assert float(rw.margin_estimate(case.num_classes)) == pytest.approx(both)
    rw(third, case.target)  # beyond measure_batches: unchanged
    assert float(rw.margin_estimate(case.num_classes)) == pytest.approx(both)
    assert int(rw.measured_batches) == 2
    # the fix uses the measured value
    expected = _mae_w_hat(soft_margin(first, case.target).numpy() / abs(both) * 2.0)
    np.testing.assert_allclose(rw.sample_weights(first, case.target).numpy(), expected, rtol=1e-9)
    # checkpoints restore it, and a resumed run does not measure again
    restored = Reweighted(MAE(), mode="scale", tau=2.0, expected_margin="measure", measure_batches=2)
    restored.load_state_dict(rw.state_dict())
    restored.train()
    restored(third, case.target)
    assert float(restored.margin_estimate(case.num_classes)) == pytest.approx(both)


def test_measure_state_is_reset_by_loading_an_unmeasured_checkpoint(case):
    rw = Reweighted(MAE(), mode="shift", tau=2.0, expected_margin="measure")
    fresh_state = {k: v.clone() for k, v in rw.state_dict().items()}
    rw(case.logits, case.target)
    assert int(rw.measured_batches) == 1
    rw.load_state_dict(fresh_state)
    rw(case.logits * 2.0, case.target)
    assert float(rw.margin_estimate(case.num_classes)) == pytest.approx(
        soft_margin(case.logits * 2.0, case.target).mean().item()
    )


def _measure_on_rank(rank: int, world_size: int, out_dir: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 10, (12,), generator=gen)
    rw = Reweighted(MAE(), mode="scale", tau=2.0, expected_margin="measure")
    rw(logits[rank::world_size], target[rank::world_size])  # each rank sees its shard
    with open(f"{out_dir}/rank{rank}.txt", "w") as fh:
        fh.write(repr(float(rw.margin_estimate(10))))


@pytest.mark.ddp
def test_measure_uses_the_global_mean_under_ddp(tmp_path):
    run_on_ranks(_measure_on_rank, str(tmp_path))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 10, (12,), generator=gen)
    global_mean = soft_margin(logits, target).mean().item()
    for rank in range(2):
        assert float((tmp_path / f"rank{rank}.txt").read_text()) == pytest.approx(global_mean, rel=1e-12)


@pytest.mark.parametrize("make", PY_LOSSES.values(), ids=PY_LOSSES.keys())
@pytest.mark.parametrize("mode", [None, "scale", "shift"])
def test_reweighted_is_finite_for_large_logits_under_autocast(make, mode):
    gen = torch.Generator().manual_seed(0)
    logits = ((torch.rand(16, 100, generator=gen) * 2 - 1) * 100).to(torch.bfloat16).requires_grad_(True)
    target = torch.randint(0, 100, (16,), generator=gen)
    rw = Reweighted(make(), mode=mode, tau=None if mode is None else 2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = rw(logits, target)
    assert values.dtype == torch.float32 and bool(torch.isfinite(values).all())
    values.sum().backward()
    assert bool(torch.isfinite(logits.grad.float()).all())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Reweighted(NCE()), "Expected argument `loss` to be a loss of p_y alone"),
        (lambda: Reweighted(MSE()), "Expected argument `loss` to be a loss of p_y alone"),
        (lambda: Reweighted(CrossEntropy(label_smoothing=0.1)), "Expected argument `loss` to be a loss of p_y alone"),
        (lambda: Reweighted(MAE(), mode="scaled", tau=1.0), r"Expected argument `mode` in \(None, 'scale', 'shift'\), but got 'scaled'"),
        (lambda: Reweighted(MAE(), mode="scale"), r"Expected argument `tau` > 0 with mode='scale', but got None"),
        (lambda: Reweighted(MAE(), mode="shift", tau=0.0), r"Expected argument `tau` in \(0, inf\), but got 0"),
        (lambda: Reweighted(MAE(), tau=2.0), "Expected `tau` and `expected_margin` to be None without a `mode`"),
        (lambda: Reweighted(MAE(), expected_margin="measure"), "to be None without a `mode`"),
        (lambda: Reweighted(MAE(), mode="scale", tau=2.0, expected_margin="eq4"), "None, a number or 'measure', but got 'eq4'"),
        (lambda: Reweighted(MAE(), mode="scale", tau=2.0, expected_margin=0.0), "non-zero, but got 0"),
        (lambda: Reweighted(MAE(), mode="scale", tau=2.0, measure_batches=0), "`measure_batches` to be an integer >= 1"),
    ],
)
def test_reweighted_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_reweighted_rejects_soft_targets(case):
    with pytest.raises(ValueError, match="Expected class indices of shape"):
        Reweighted(MAE())(case.logits, case.soft_target())


def test_weight_requires_a_floating_tensor():
    with pytest.raises(ValueError, match="Expected `delta` to be a floating-point torch.Tensor, but got float"):
        MAE().weight(0.5)

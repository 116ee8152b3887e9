"""Tests of lt_noise.weighting (ABSGD attentional weights, paper 004 Algorithm 1 / eq. 2 / eq. 8).

The independent reference is `_plain_absgd`: Algorithm 1 written out literally as a float64 NumPy loop
(exp, mean, moving average, divide), with the authors' s_0 = 0 convention and their α factor. Where it
overflows, the reference is the same loop on shifted losses L - c: every weight exp(L/λ)/s is invariant
under a shift of all losses by c, and log s moves by c/λ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.distributed import run_on_ranks

from lt_noise.weighting import (
    AUTHORS_ERM_THRESHOLD,
    AttentionalWeights,
    log_mean_exp,
    update_log_normalizer,
    weighted_mean,
)

# ----------------------------------------------------------------------------------------------------
# Independent reference and fixtures
# ----------------------------------------------------------------------------------------------------


def _plain_absgd(batches, lam, gamma, alpha=1.0, init="zero", floor=None):
    """Algorithm 1 as written (float64, no log space): returns per-step weights and normalizers."""
    s = 0.0
    all_weights, all_s = [], []
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for step, losses in enumerate(batches):
            losses = np.asarray(losses, dtype=np.float64)
            e = np.exp(losses / lam)
            g = e.mean()
            if init == "first_batch" and step == 0:
                s = alpha * g
            else:
                s = (1.0 - gamma) * s + gamma * alpha * g
            p = e / s
            if floor == "add":
                p = p + 1.0
            elif floor == "max":
                p = np.maximum(p, 1.0)
            all_weights.append(p)
            all_s.append(s)
    return all_weights, all_s


def _batches(seed=0, sizes=(8, 8, 5, 8, 3, 8), scale=2.0, offset=0.0):
    """A fixed sequence of per-sample loss batches (varying sizes: the mean is per batch)."""
    rng = np.random.default_rng(seed)
    return [offset + scale * rng.exponential(1.0, size=n) for n in sizes]


def _run(module, batches, dtype=torch.float32):
    weights, log_s = [], []
    for batch in batches:
        weights.append(module(torch.tensor(batch, dtype=dtype)))
        log_s.append(module.log_normalizer.clone())
    return weights, log_s


# ----------------------------------------------------------------------------------------------------
# Equality with Algorithm 1 where the plain version is finite
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["zero", "first_batch"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("lam", [5.0, 1.0, 0.5, -0.5, -1.0, -3.0])
def test_matches_algorithm_1(lam, gamma, alpha, init):
    batches = _batches()
    ref_w, ref_s = _plain_absgd(batches, lam, gamma, alpha, init)
    assert all(np.isfinite(w).all() for w in ref_w)

    # float32 (the default buffer dtype), float32 losses
    module = AttentionalWeights(lam, gamma, alpha=alpha, init=init)
    batches32 = [np.asarray(b, dtype=np.float32).astype(np.float64) for b in batches]
    ref_w32, ref_s32 = _plain_absgd(batches32, lam, gamma, alpha, init)
    weights, log_s = _run(module, batches, torch.float32)
    for w, lw, rw, rs in zip(weights, log_s, ref_w32, ref_s32):
        assert w.dtype == torch.float32 and w.shape == rw.shape and not w.requires_grad
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-5)  # float32: relative error ~ eps·|L/λ|
        np.testing.assert_allclose(lw.item(), math.log(rs), rtol=1e-6, atol=1e-6)
    assert module.num_updates.item() == len(batches)

    # float64 module and losses: equal to rounding
    module64 = AttentionalWeights(lam, gamma, alpha=alpha, init=init).double()
    weights, log_s = _run(module64, batches, torch.float64)
    for w, lw, rw, rs in zip(weights, log_s, ref_w, ref_s):
        assert w.dtype == torch.float64
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-12)
        np.testing.assert_allclose(lw.item(), math.log(rs), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(module64.normalizer.item(), ref_s[-1], rtol=1e-12)


def test_first_step_conventions():
    """zero init: s_1 = γ α g_1 (first weights average 1/(γα)); first_batch: s_1 = α g_1 (mean 1/α)."""
    losses = torch.tensor([0.3, 1.0, 2.5, 0.1], dtype=torch.float64)
    e = torch.exp(losses / 2.0)
    zero = AttentionalWeights(2.0, 0.25, alpha=0.5).double()
    first = AttentionalWeights(2.0, 0.25, alpha=0.5, init="first_batch").double()
    w_zero, w_first = zero(losses), first(losses)
    torch.testing.assert_close(w_zero, e / (0.25 * 0.5 * e.mean()))
    torch.testing.assert_close(w_first, e / (0.5 * e.mean()))
    torch.testing.assert_close(w_zero.mean(), torch.tensor(1 / (0.25 * 0.5), dtype=torch.float64))
    torch.testing.assert_close(w_first.mean(), torch.tensor(1 / 0.5, dtype=torch.float64))


@pytest.mark.parametrize("floor", ["add", "max"])
@pytest.mark.parametrize("lam", [2.0, -1.0])
def test_floor_matches_authors_noisy_code(floor, lam):
    batches = _batches(seed=3)
    ref_w, _ = _plain_absgd(batches, lam, 0.5, 0.5, "zero", floor)
    module = AttentionalWeights(lam, 0.5, alpha=0.5, floor=floor).double()
    weights, _ = _run(module, batches, torch.float64)
    for w, rw in zip(weights, ref_w):
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-12)
        assert (w >= 1.0).all()
    if floor == "max":  # the clip must actually bind somewhere, or this test could not fail
        assert any((w == 1.0).any() for w in weights)


def test_losses_are_detached():
    losses = torch.tensor([0.2, 1.0, 3.0], requires_grad=True)
    weights = AttentionalWeights(1.0, 0.5)(losses * 2)
    assert not weights.requires_grad and weights.grad_fn is None
    weighted_mean(losses, weights).backward()
    torch.testing.assert_close(losses.grad, weights / 3)  # no term from d(weights)/d(losses)


def test_ordering_follows_sign_of_lambda():
    losses = torch.tensor([0.1, 0.5, 1.0, 3.0, 7.0])
    up = AttentionalWeights(1.0, 0.5)(losses)
    down = AttentionalWeights(-1.0, 0.5)(losses)
    assert (up.diff() > 0).all()  # λ > 0: hard samples weigh more (imbalance)
    assert (down.diff() < 0).all()  # λ < 0: easy samples weigh more (noise)


# ----------------------------------------------------------------------------------------------------
# Finite where the plain version overflows / underflows
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lam", "offset", "scale", "init"),
    [
        (0.05, 50.0, 0.1, "zero"),  # L/λ ≈ 1000: exp overflows, plain weights inf/inf = nan
        (0.05, 50.0, 0.1, "first_batch"),
        (-0.05, 50.0, 0.1, "zero"),  # L/λ ≈ -1000: exp underflows, plain normalizer 0, weights 0/0
        (-1.0, 1000.0, 2.0, "first_batch"),  # λ < 0 with large losses: zero normalizer
        (-1.0, 1000.0, 2.0, "zero"),
    ],
)
def test_finite_where_plain_version_is_not(lam, offset, scale, init):
    batches = _batches(seed=1, scale=scale, offset=offset)
    plain_w, plain_s = _plain_absgd(batches, lam, 0.5, 1.0, init)
    assert not all(np.isfinite(w).all() for w in plain_w)  # the case is really out of the plain range
    assert plain_s[0] == 0.0 or math.isinf(plain_s[0])

    # reference: the same loop on shifted losses (weights invariant, log s shifted by offset/λ)
    shifted = [b - offset for b in batches]
    ref_w, ref_s = _plain_absgd(shifted, lam, 0.5, 1.0, init)

    module = AttentionalWeights(lam, 0.5, init=init).double()
    weights, log_s = _run(module, batches, torch.float64)
    for w, lw, rw, rs, batch in zip(weights, log_s, ref_w, ref_s, batches):
        assert torch.isfinite(w).all() and torch.isfinite(lw)
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-9)
        np.testing.assert_allclose(lw.item(), math.log(rs) + offset / lam, rtol=1e-12)
        order = np.argsort(batch if lam > 0 else -batch, kind="stable")
        assert (np.diff(w.numpy()[order]) >= 0).all()

    # float32 (default): finite, correctly ordered, close to the exact weights
    module32 = AttentionalWeights(lam, 0.5, init=init)
    batches32 = [np.asarray(b, dtype=np.float32).astype(np.float64) for b in batches]
    ref_w32, _ = _plain_absgd([b - offset for b in batches32], lam, 0.5, 1.0, init)
    weights32, log_s32 = _run(module32, batches, torch.float32)
    for w, lw, rw, batch in zip(weights32, log_s32, ref_w32, batches32):
        assert torch.isfinite(w).all() and torch.isfinite(lw)
        np.testing.assert_allclose(w.numpy(), rw, rtol=5e-3, atol=1e-30)
        order = np.argsort(batch if lam > 0 else -batch, kind="stable")
        assert (np.diff(w.numpy()[order]) >= 0).all()


def test_weights_are_bounded_by_batch_size_over_gamma_alpha():
    # one huge loss among small ones with λ > 0: the plain weight would be inf/inf
    module = AttentionalWeights(0.01, 0.3, alpha=0.5)
    weights = module(torch.tensor([0.0, 1.0, 2.0, 80.0]))
    assert torch.isfinite(weights).all()
    assert weights.max() <= 4 / (0.3 * 0.5) * (1 + 1e-6)
    # float32 holds log s ≈ 8000 to ±5e-4, hence the tolerance; float64 is exact
    torch.testing.assert_close(weights.max(), torch.tensor(4 / (0.3 * 0.5)), rtol=1e-3, atol=0)
    losses64 = torch.tensor([0.0, 1.0, 2.0, 80.0], dtype=torch.float64)
    exact = AttentionalWeights(0.01, 0.3, alpha=0.5).double()(losses64)
    torch.testing.assert_close(exact, torch.tensor([0.0, 0.0, 0.0, 4 / (0.3 * 0.5)], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------
# ERM, λ schedule, reset, eval mode
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [math.inf, -math.inf])
def test_infinite_lambda_is_erm(lam):
    module = AttentionalWeights(lam, 0.5)
    for dtype in (torch.float32, torch.float64):
        losses = torch.tensor([0.1, 5.0, 300.0, 1e4], dtype=dtype, requires_grad=True)
        weights = module(losses)
        assert weights.dtype == dtype and not weights.requires_grad
        torch.testing.assert_close(weights, torch.ones(4, dtype=dtype), rtol=0, atol=0)
    assert module.num_updates.item() == 0 and module.log_normalizer.item() == -math.inf
    assert module.is_erm


def test_erm_threshold_replicates_authors_shortcut():
    batches = _batches(seed=5)
    module = AttentionalWeights(AUTHORS_ERM_THRESHOLD, 0.5, erm_threshold=AUTHORS_ERM_THRESHOLD, floor="add")
    assert module.is_erm
    for batch in batches[:2]:  # stage 1 (authors: λ = 200): plain mean, u untouched, no floor
        ones = torch.ones(len(batch), dtype=torch.float64)
        torch.testing.assert_close(module(torch.tensor(batch)), ones, rtol=0, atol=0)
    assert module.num_updates.item() == 0
    module.lam = 5.0  # stage 2: continues from u = 0 exactly like a fresh module
    assert not module.is_erm
    ref_w, _ = _plain_absgd(batches[2:], 5.0, 0.5, 1.0, "zero", "add")
    weights, _ = _run(module.double(), batches[2:], torch.float64)
    for w, rw in zip(weights, ref_w):
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-12)
    # without the option 200 is an ordinary finite λ
    plain = AttentionalWeights(AUTHORS_ERM_THRESHOLD, 0.5)
    assert not plain.is_erm
    assert not torch.equal(plain(torch.tensor([0.0, 100.0])), torch.ones(2))


def test_lambda_change_keeps_normalizer_and_reset_restarts():
    batches = _batches(seed=6)
    module = AttentionalWeights(1.0, 0.5).double()
    _run(module, batches[:2], torch.float64)
    log_s = module.log_normalizer.clone()
    module.lam = 2.0
    assert torch.equal(module.log_normalizer, log_s) and module.num_updates.item() == 2
    module.reset()
    assert module.log_normalizer.item() == -math.inf and module.num_updates.item() == 0
    weights, _ = _run(module, batches[2:], torch.float64)
    ref_w, _ = _plain_absgd(batches[2:], 2.0, 0.5)
    for w, rw in zip(weights, ref_w):
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-12)


def test_eval_mode_does_not_update_state():
    batches = _batches(seed=7)
    losses = torch.tensor(batches[1], dtype=torch.float64)
    e = torch.exp(losses / 2.0)

    # before any update: the normalizer the first training step would produce, not stored
    module = AttentionalWeights(2.0, 0.5, alpha=0.5).double().eval()
    torch.testing.assert_close(module(losses), e / (0.5 * 0.5 * e.mean()))
    assert module.num_updates.item() == 0 and module.log_normalizer.item() == -math.inf

    # after training steps: the stored s_t, unchanged
    module.train()
    _run(module, batches[:3], torch.float64)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    _, ref_s = _plain_absgd(batches[:3], 2.0, 0.5, 0.5)
    module.eval()
    for _ in range(2):
        torch.testing.assert_close(module(losses), e / ref_s[-1], rtol=1e-12, atol=0)
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key])


# ----------------------------------------------------------------------------------------------------
# State: checkpoint / resume, dtype moves
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["zero", "first_batch"])
def test_state_dict_resume_continues_identically(init):
    batches = _batches(seed=8, sizes=(8, 6, 8, 8, 4, 8))
    uninterrupted = AttentionalWeights(-1.5, 0.3, alpha=0.7, init=init)
    expected, expected_log_s = _run(uninterrupted, batches)

    first = AttentionalWeights(-1.5, 0.3, alpha=0.7, init=init)
    _run(first, batches[:3])
    state = first.state_dict()
    assert set(state) == {"log_normalizer", "num_updates"}
    assert state["num_updates"].item() == 3 and state["num_updates"].dtype == torch.int64
    restored = AttentionalWeights(-1.5, 0.3, alpha=0.7, init=init)
    restored.load_state_dict(state)
    weights, log_s = _run(restored, batches[3:])
    for w, e in zip(weights, expected[3:]):
        assert torch.equal(w, e)
    for a, b in zip(log_s, expected_log_s[3:]):
        assert torch.equal(a, b)


def test_to_dtype_moves_buffers():
    module = AttentionalWeights(0.7, 0.4).to(torch.float64)
    assert module.log_normalizer.dtype == torch.float64
    assert module.num_updates.dtype == torch.int64  # integer buffers are never cast
    batches = _batches(seed=9)
    # float32 losses into a float64 module: computed in float64, returned in the losses' dtype
    weights, log_s = _run(module, batches, torch.float32)
    batches32 = [np.asarray(b, dtype=np.float32).astype(np.float64) for b in batches]
    ref_w, ref_s = _plain_absgd(batches32, 0.7, 0.4)
    for w, lw, rw, rs in zip(weights, log_s, ref_w, ref_s):
        assert w.dtype == torch.float32 and lw.dtype == torch.float64
        np.testing.assert_allclose(w.numpy(), rw, rtol=1e-6)
        np.testing.assert_allclose(lw.item(), math.log(rs), rtol=1e-13, atol=1e-14)
    module.to(torch.float32)
    assert module.log_normalizer.dtype == torch.float32
    np.testing.assert_allclose(module.log_normalizer.item(), math.log(ref_s[-1]), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0, "gamma": 0.5}, "`lam`"),
        ({"lam": 0, "gamma": 0.5}, "`lam`"),
        ({"lam": math.nan, "gamma": 0.5}, "`lam`"),
        ({"lam": "1", "gamma": 0.5}, "`lam`"),
        ({"lam": 1.0, "gamma": 0.0}, r"`gamma` in \(0, 1\]"),
        ({"lam": 1.0, "gamma": 1.5}, r"`gamma` in \(0, 1\], but got 1.5"),
        ({"lam": 1.0, "gamma": -0.1}, "`gamma`"),
        ({"lam": 1.0, "gamma": math.nan}, "`gamma`"),
        ({"lam": 1.0, "gamma": 0.5, "alpha": 0.0}, "`alpha`"),
        ({"lam": 1.0, "gamma": 0.5, "alpha": -1.0}, "`alpha`"),
        ({"lam": 1.0, "gamma": 0.5, "alpha": math.inf}, "`alpha`"),
        ({"lam": 1.0, "gamma": 0.5, "init": "ones"}, "`init`"),
        ({"lam": 1.0, "gamma": 0.5, "floor": "uniform"}, "`floor`"),
        ({"lam": 1.0, "gamma": 0.5, "erm_threshold": 0.0}, "`erm_threshold`"),
        ({"lam": 1.0, "gamma": 0.5, "erm_threshold": math.inf}, "`erm_threshold`"),
        ({"lam": 1.0, "gamma": 0.5, "sync_dist": 1}, "`sync_dist`"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionalWeights(**kwargs)


def test_invalid_lambda_assignment():
    module = AttentionalWeights(1.0, 0.5)
    with pytest.raises(ValueError, match="`lam`"):
        module.lam = 0.0
    assert module.lam == 1.0


@pytest.mark.parametrize(
    ("losses", "match"),
    [
        (torch.ones(4, 1), r"1-D tensor .* but got shape \(4, 1\)"),
        (torch.ones(2, 3), r"but got shape \(2, 3\)"),
        (torch.tensor(1.0), r"but got shape \(\)"),
        (torch.arange(4), "floating-point"),
        (torch.empty(0), "non-empty"),
        ([0.1, 0.2], "torch.Tensor"),
    ],
)
def test_invalid_losses(losses, match):
    module = AttentionalWeights(1.0, 0.5)
    with pytest.raises(ValueError, match=match):
        module(losses)


@pytest.mark.parametrize("lam", [1.0, -2.0, math.inf])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_losses_raise_and_leave_state(lam, bad):
    module = AttentionalWeights(lam, 0.5)
    module(torch.tensor([0.5, 1.0, 2.0]))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    losses = torch.tensor([0.5, 1.0, 2.0, 0.3, 1.1])
    losses[1] = bad
    losses[3] = bad
    with pytest.raises(ValueError, match=r"non-finite losses at batch indices \[1, 3\]"):
        module(losses)
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key])


def test_overflowing_scaled_losses_raise():
    module = AttentionalWeights(1e-3, 0.5)  # float32: 1e37 / 1e-3 = inf
    with pytest.raises(ValueError, match=r"L/lam overflows at batch indices \[0\]"):
        module(torch.tensor([1e37, 1.0]))
    module.double()(torch.tensor([1e37, 1.0], dtype=torch.float64))  # fine in float64


def test_check_finite_off_skips_the_check():
    module = AttentionalWeights(1.0, 0.5, check_finite=False)
    weights = module(torch.tensor([1.0, math.nan]))
    assert torch.isnan(weights).all() and torch.isnan(module.log_normalizer)


# ----------------------------------------------------------------------------------------------------
# Pure functions and the reduction
# ----------------------------------------------------------------------------------------------------


def test_pure_log_space_update_matches_formula():
    z = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    g = np.exp(z.numpy()).mean()
    np.testing.assert_allclose(log_mean_exp(z).item(), math.log(g), rtol=1e-14)
    s = 1.7
    new = update_log_normalizer(torch.tensor(math.log(s), dtype=torch.float64), log_mean_exp(z), 0.3, 0.6)
    np.testing.assert_allclose(new.item(), math.log(0.7 * s + 0.3 * 0.6 * g), rtol=1e-14)
    first = update_log_normalizer(torch.tensor(-math.inf, dtype=torch.float64), log_mean_exp(z), 1.0, 1.0)
    np.testing.assert_allclose(first.item(), math.log(g), rtol=1e-14)
    huge = update_log_normalizer(torch.tensor(5000.0), torch.tensor(-3000.0), 0.5)  # s ~ e^5000: no overflow
    np.testing.assert_allclose(huge.item(), 5000.0 + math.log(0.5), rtol=1e-7)


def test_weighted_mean_divides_by_batch_size():
    losses = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    value = weighted_mean(losses, weights)
    torch.testing.assert_close(value, torch.tensor((0.5 + 2.0 + 12.0) / 3, dtype=torch.float64))
    value.backward()
    torch.testing.assert_close(losses.grad, weights / 3)
    # weights are constants even if they carry a graph
    w = weights.clone().requires_grad_(True)
    weighted_mean(losses, w).backward()
    assert w.grad is None
    assert torch.autograd.gradcheck(lambda x: weighted_mean(x, weights), (losses.detach().requires_grad_(),))
    with pytest.raises(ValueError, match="same shape"):
        weighted_mean(losses, weights[:2])
    with pytest.raises(ValueError, match="1-D"):
        weighted_mean(losses.reshape(3, 1), weights.reshape(3, 1))


@pytest.mark.parametrize(("lam", "init"), [(1.5, "zero"), (-0.7, "first_batch")])
def test_momentum_sgd_step_is_equation_2(lam, init):
    """AttentionalWeights + weighted_mean + torch.optim.SGD(momentum, weight_decay) is eq. (2):
    w_{t+1} = w_t - η((1/B) Σ p_i ∇L_i + wd·w_t) + β(w_t - w_{t-1}),  L_i = ½ (x_i·w - y_i)²."""
    rng = np.random.default_rng(11)
    dim, steps, lr, beta, wd, gamma, alpha = 3, 4, 0.1, 0.9, 5e-3, 0.4, 0.8
    xs = [rng.normal(size=(6, dim)) for _ in range(steps)]
    ys = [rng.normal(size=6) for _ in range(steps)]
    w0 = rng.normal(size=dim)

    # by hand, from the paper's formulas
    w, w_prev, s = w0.copy(), w0.copy(), 0.0
    expected = []
    for t in range(steps):
        r = xs[t] @ w - ys[t]
        e = np.exp(0.5 * r**2 / lam)
        if t == 0 and init == "first_batch":
            s = alpha * e.mean()
        else:
            s = (1 - gamma) * s + gamma * alpha * e.mean()
        p = e / s
        grad = (p[:, None] * r[:, None] * xs[t]).mean(axis=0)
        w, w_prev = w - lr * (grad + wd * w) + beta * (w - w_prev), w
        expected.append(w.copy())

    # with the library
    model = torch.nn.Linear(dim, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w0)[None])
    weighting = AttentionalWeights(lam, gamma, alpha=alpha, init=init).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=beta, weight_decay=wd)
    for t in range(steps):
        out = model(torch.tensor(xs[t])).squeeze(1)
        losses = 0.5 * (out - torch.tensor(ys[t])) ** 2
        loss = weighted_mean(losses, weighting(losses))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        np.testing.assert_allclose(model.weight.detach().numpy()[0], expected[t], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------------
# DDP: 2 gloo processes with B samples each == 1 process with 2B
# ----------------------------------------------------------------------------------------------------

# (lam, gamma, alpha, init, offset): an ordinary case and one where exp(L/λ) overflows on every rank.
_DDP_CONFIGS = [(2.0, 0.5, 1.0, "zero", 0.0), (0.05, 0.3, 0.5, "first_batch", 50.0)]


def _ddp_worker(rank, world_size, out_path, batch_sets):
    results = []
    for (lam, gamma, alpha, init, _), batches in zip(_DDP_CONFIGS, batch_sets):
        module = AttentionalWeights(lam, gamma, alpha=alpha, init=init).double()
        weights, log_s = [], []
        for batch in batches:
            half = len(batch) // world_size
            weights.append(module(torch.tensor(batch[rank * half : (rank + 1) * half])))
            log_s.append(module.log_normalizer.clone())
        results.append({"weights": weights, "log_s": log_s})
    # a NaN on rank 1 only: every rank must raise (nobody left waiting in a collective)
    local = torch.ones(4, dtype=torch.float64)
    if rank == 1:
        local[2] = math.nan
    try:
        module(local)
        error = None
    except ValueError as exc:
        error = str(exc)
    # and the collectives still line up afterwards
    after = module(torch.full((4,), 50.0 + rank, dtype=torch.float64))
    torch.save(
        {"results": results, "error": error, "after": after, "updates": module.num_updates.item()},
        out_path / f"rank{rank}.pt",
    )


@pytest.mark.ddp
def test_ddp_global_normalizer_equals_single_process(tmp_path):
    batch_sets = [
        _batches(seed=12 + i, sizes=(8, 8, 8, 8), offset=cfg[4]) for i, cfg in enumerate(_DDP_CONFIGS)
    ]
    run_on_ranks(_ddp_worker, tmp_path, batch_sets)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    for i, ((lam, gamma, alpha, init, offset), batches) in enumerate(zip(_DDP_CONFIGS, batch_sets)):
        single = AttentionalWeights(lam, gamma, alpha=alpha, init=init).double()
        weights, log_s = _run(single, batches, torch.float64)
        ref_w, ref_s = _plain_absgd([b - offset for b in batches], lam, gamma, alpha, init)
        for t in range(len(batches)):
            for rank, out in enumerate(ranks):
                got = out["results"][i]
                torch.testing.assert_close(got["log_s"][t], log_s[t], rtol=1e-13, atol=1e-12)
                mine = slice(rank * 4, (rank + 1) * 4)
                torch.testing.assert_close(got["weights"][t], weights[t][mine], rtol=1e-12, atol=0)
                np.testing.assert_allclose(got["weights"][t].numpy(), ref_w[t][mine], rtol=1e-9)
            np.testing.assert_allclose(log_s[t].item(), math.log(ref_s[t]) + offset / lam, rtol=1e-12)

    assert "batch indices [2] (rank 1" in ranks[1]["error"]
    assert "on another rank (this is rank 0)" in ranks[0]["error"]
    assert ranks[0]["updates"] == ranks[1]["updates"] == len(batch_sets[1]) + 1
    # the step after the error used the global batch [50]*4 + [51]*4
    e = np.exp(np.r_[np.zeros(4), np.ones(4)] / 0.05)
    ratio = torch.full((4,), e[0] / e[-1], dtype=torch.float64)
    torch.testing.assert_close(ranks[0]["after"] / ranks[1]["after"], ratio)

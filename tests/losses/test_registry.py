"""The loss registry, and the checks every registered loss gets without a line of new test code."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from lt_noise.losses import GCE, LOSSES, available_losses, build_loss, loss_hyperparameters, register_loss

NAMES = available_losses()
# Logit magnitude the losses must survive in float32 and under bf16 autocast (values and gradients).
LARGE = 100.0

EXPECTED_NAMES = {
    "ce", "focal", "mae", "rce", "nce", "nfl", "gce", "sce", "agce", "aul", "ael", "tce", "mse", "nsl", "ngce",
    "nce+mae", "nce+rce", "nfl+rce", "nce+agce", "nce+aul", "nce+ael", "ngce+mae", "ngce+rce",
    "ldam", "balanced_softmax", "logit_adjusted",
}  # fmt: skip
# The documented losses whose formulas are defined for a probability vector per row.
SOFT_TARGET_LOSSES = {"ce", "mse", "mae", "rce", "sce", "nce", "nsl", "nce+mae", "nce+rce", "balanced_softmax", "logit_adjusted"}


def _build(name: str, class_counts: list[int]) -> nn.Module:
    return build_loss(name, num_classes=len(class_counts), class_counts=class_counts)


def _large_inputs(num_classes: int, batch: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of magnitude up to 100: random ones, plus rows where the label is far below / far above."""
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.rand(batch, num_classes, generator=gen) * 2 - 1) * LARGE
    target = torch.randint(0, num_classes, (batch,), generator=gen)
    rows = torch.arange(batch)
    logits[: batch // 3] = -LARGE
    logits[: batch // 3, 0] = LARGE
    target[: batch // 3] = 1  # p_y ≈ exp(-200): hopeless samples
    logits[batch // 3 : 2 * batch // 3] = -LARGE
    logits[rows[batch // 3 : 2 * batch // 3], target[batch // 3 : 2 * batch // 3]] = LARGE  # p_y ≈ 1
    return logits, target


def test_the_contract_names_are_registered():
    assert set(NAMES) == EXPECTED_NAMES
    assert NAMES == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_nonzero_finite_gradients(case, name):
    loss = _build(name, case.class_counts)
    logits = case.logits.float().requires_grad_(True)
    values = loss(logits, case.target)
    assert values.shape == case.target.shape and values.dtype == torch.float32
    assert bool(torch.isfinite(values).all())
    values.sum().backward(retain_graph=True)
    assert bool(torch.isfinite(logits.grad).all())
    assert logits.grad.abs().sum().item() > 0
    # per-sample: each row's gradient depends on that row's loss only (no reduction inside)
    logits.grad = None
    values[0].backward()
    assert logits.grad[1:].abs().sum().item() == 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_finite_for_large_logits_float32(name, num_classes):
    counts = [max(1, 500 // (i + 1)) for i in range(num_classes)]
    loss = _build(name, counts)
    logits, target = _large_inputs(num_classes)
    logits.requires_grad_(True)
    values = loss(logits, target)
    assert bool(torch.isfinite(values).all()), values
    values.sum().backward()
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("name", NAMES)
def test_finite_under_bf16_autocast(name):
    num_classes = 10
    loss = _build(name, [100 - 9 * i for i in range(num_classes)])
    logits, target = _large_inputs(num_classes)
    weight = torch.eye(num_classes, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = logits @ weight  # a bf16 matmul, as a bf16-mixed head would produce
        assert out.dtype == torch.bfloat16
        values = loss(out, target)
    assert values.dtype == torch.float32
    assert bool(torch.isfinite(values).all())
    values.sum().backward()
    assert bool(torch.isfinite(weight.grad).all())


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(small_case, name):
    loss = _build(name, small_case.class_counts)
    x = small_case.logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, small_case.target), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_soft_targets_either_match_one_hot_or_are_rejected(case, name):
    loss = _build(name, case.class_counts)
    one_hot = torch.nn.functional.one_hot(case.target, case.num_classes).double()
    if name in SOFT_TARGET_LOSSES:
        torch.testing.assert_close(loss(case.logits, one_hot), loss(case.logits, case.target))
    else:
        with pytest.raises(ValueError, match="accepts only class indices"):
            loss(case.logits, one_hot)


@pytest.mark.parametrize("name", NAMES)
def test_no_parameters_and_state_moves_with_the_module(case, name):
    loss = _build(name, case.class_counts)
    assert list(loss.parameters()) == []
    moved = loss.double()
    for buffer in moved.buffers():
        assert buffer.dtype in (torch.float64, torch.int64)
    values = moved(case.logits, case.target)
    assert values.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_every_hyperparameter_has_a_default_and_roundtrips(name):
    hparams = loss_hyperparameters(name)
    counts = [30, 20, 10]
    rebuilt = build_loss(name, class_counts=counts, **hparams)  # defaults passed explicitly are accepted
    default = build_loss(name, class_counts=counts)
    assert repr(rebuilt) == repr(default)


def test_hyperparameters_reach_the_module():
    loss = build_loss("gce", q=0.3)
    assert isinstance(loss, GCE) and loss.q == 0.3
    assert build_loss("nfl+rce", gamma=0.2, A=-6.0).active.gamma == 0.2
    assert build_loss("ldam", class_counts=[5, 50], max_m=0.3).margins.max().item() == pytest.approx(0.3)


def test_documented_defaults():
    assert loss_hyperparameters("ce") == {"label_smoothing": 0.0}
    assert loss_hyperparameters("focal") == {"gamma": 0.5, "detach_focal_factor": False}
    assert loss_hyperparameters("gce") == {"q": 0.7}
    assert loss_hyperparameters("sce") == {"alpha": 0.1, "beta": 1.0, "A": -4.0}
    assert loss_hyperparameters("agce") == {"a": 0.6, "q": 0.6}
    assert loss_hyperparameters("aul") == {"a": 5.5, "q": 3.0}
    assert loss_hyperparameters("ael") == {"a": 2.5}
    assert loss_hyperparameters("tce") == {"order": 2}
    assert loss_hyperparameters("ldam") == {"max_m": 0.5, "s": 30.0}
    assert loss_hyperparameters("logit_adjusted") == {"tau": 1.0}
    assert loss_hyperparameters("mae") == {}


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Expected a registered loss name, one of \['ael', .*'tce'\], but got 'gcee'"):
        build_loss("gcee")


def test_misspelt_hyperparameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Expected hyperparameters of loss 'focal' among \['detach_focal_factor', 'gamma'\], but got unknown \['gama'\]"):
        build_loss("focal", gama=2.0)
    with pytest.raises(ValueError, match=r"among \['A', 'alpha', 'beta', 'detach_focal_factor', 'gamma'\], but got unknown \['q'\]"):
        build_loss("nfl+rce", q=0.5)


def test_invalid_hyperparameter_value_is_reported_by_the_loss():
    with pytest.raises(ValueError, match=r"Expected argument `q` in \(0, 1\], but got 1.5"):
        build_loss("gce", q=1.5)


@pytest.mark.parametrize("name", ["ldam", "balanced_softmax", "logit_adjusted"])
def test_missing_class_counts(name):
    with pytest.raises(ValueError, match=f"Loss '{name}' needs `class_counts`.*but got None"):
        build_loss(name, num_classes=10)


def test_class_counts_must_agree_with_num_classes():
    with pytest.raises(ValueError, match="Expected argument `class_counts` to have num_classes=3 entries, but got 2"):
        build_loss("ldam", num_classes=3, class_counts=[10, 5])
    with pytest.raises(ValueError, match="positive integers, but got 0"):
        build_loss("balanced_softmax", class_counts=[10, 0])


def test_data_arguments_reach_only_factories_that_take_them():
    received = {}

    def factory(num_classes: int | None = None, scale: float = 1.0) -> nn.Module:
        received.update(num_classes=num_classes, scale=scale)
        return GCE()

    register_loss("_test_needs_num_classes", factory)
    try:
        build_loss("_test_needs_num_classes", num_classes=7, class_counts=[1] * 7, scale=2.0)
        assert received == {"num_classes": 7, "scale": 2.0}
        assert "num_classes" not in loss_hyperparameters("_test_needs_num_classes")
    finally:
        del LOSSES["_test_needs_num_classes"]
    # a factory without them gets neither
    assert "class_counts" not in inspect.signature(GCE).parameters
    build_loss("gce", num_classes=7, class_counts=[1] * 7)


def test_registration_errors():
    with pytest.raises(ValueError, match="'gce' is already registered"):
        register_loss("gce", GCE)
    with pytest.raises(ValueError, match=r"no \*args, \*\*kwargs"):
        register_loss("_test_kwargs", lambda **kw: GCE())
    with pytest.raises(ValueError, match="`q` has none"):
        register_loss("_test_nodefault", lambda q: GCE(q))
    with pytest.raises(ValueError, match="non-empty string"):
        register_loss("", GCE)
    assert "_test_kwargs" not in LOSSES and "_test_nodefault" not in LOSSES


def test_register_as_decorator():
    @register_loss("_test_decorated")
    def factory(q: float = 0.5) -> nn.Module:
        return GCE(q=q)

    try:
        assert build_loss("_test_decorated", q=0.25).q == 0.25
        assert factory is LOSSES["_test_decorated"]
    finally:
        del LOSSES["_test_decorated"]


def test_the_documented_table_matches_the_registry():
    import lt_noise.losses.registry as registry

    rows = {}
    for line in registry.__doc__.splitlines():
        name, _, rest = line.strip().partition(" ")
        if name in LOSSES:
            rows[name] = rest.strip()
    assert set(rows) == set(NAMES)
    for name, text in rows.items():
        for key, default in loss_hyperparameters(name).items():
            assert f"{key}={default!r}" in text, (name, key, text)
        if "class_counts" in inspect.signature(LOSSES[name]).parameters:
            assert "class_counts (required)" in text

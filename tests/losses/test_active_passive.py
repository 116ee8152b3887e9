"""ActivePassive and the registered APL/ALFs combinations against α·active + β·passive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.loss_reference import prob_of_label, ref_nce, ref_nfl, ref_ngce, ref_rce
from torch import nn

from lt_noise.losses import MAE, NCE, NFL, RCE, ActivePassive, build_loss, loss_hyperparameters

_py = prob_of_label


COMBOS = [
    ("nce+mae", {"alpha": 2.0, "beta": 0.5}, lambda x, y: 2.0 * ref_nce(x, y) + 0.5 * (1 - _py(x, y))),
    ("nce+rce", {"alpha": 10.0, "beta": 1.0, "A": -6.0}, lambda x, y: 10.0 * ref_nce(x, y) + ref_rce(x, y, -6.0)),
    (
        "nfl+rce",
        {"alpha": 1.0, "beta": 2.0, "gamma": 0.3, "A": -4.0, "detach_focal_factor": False},
        lambda x, y: ref_nfl(x, y, 0.3) + 2.0 * ref_rce(x, y, -4.0),
    ),
    (
        "nce+agce",
        {"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5},
        lambda x, y: ref_nce(x, y) + 4.0 * ((7.0**1.5 - (6.0 + _py(x, y)) ** 1.5) / 1.5),
    ),
    (
        "nce+aul",
        {"alpha": 1.0, "beta": 4.0, "a": 6.3, "q": 1.5},
        lambda x, y: ref_nce(x, y) + 4.0 * (((6.3 - _py(x, y)) ** 1.5 - 5.3**1.5) / 1.5),
    ),
    ("nce+ael", {"alpha": 1.0, "beta": 4.0, "a": 5.0}, lambda x, y: ref_nce(x, y) + 4.0 * np.exp(-_py(x, y) / 5.0)),
    (
        "ngce+mae",
        {"alpha": 1.0, "beta": 1.0, "q": 0.1},
        lambda x, y: ref_ngce(x, y, 0.1) + (1 - _py(x, y)),
    ),
    (
        "ngce+rce",
        {"alpha": 3.0, "beta": 1.0, "q": 0.7, "A": -4.0},
        lambda x, y: 3.0 * ref_ngce(x, y, 0.7) + ref_rce(x, y, -4.0),
    ),
]


@pytest.mark.parametrize(("name", "hparams", "ref"), COMBOS, ids=[c[0] for c in COMBOS])
def test_registered_combination_matches_reference(case, name, hparams, ref, numeric_grad, autograd):
    loss = build_loss(name, **hparams)
    assert isinstance(loss, ActivePassive)
    x, y = case.logits.numpy(), case.target.numpy()
    values, grad = autograd(loss, case.logits, case.target)
    np.testing.assert_allclose(values, ref(x, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: ref(z, y), x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "hparams", "ref"), COMBOS, ids=[c[0] for c in COMBOS])
def test_hyperparameter_names_pass_through(name, hparams, ref):
    assert set(loss_hyperparameters(name)) == set(hparams)


def test_defaults_are_the_authors_cifar10_configs():
    assert loss_hyperparameters("nce+rce") == {"alpha": 1.0, "beta": 1.0, "A": -4.0}
    assert loss_hyperparameters("nfl+rce") == {"alpha": 1.0, "beta": 1.0, "gamma": 0.5, "A": -4.0, "detach_focal_factor": False}
    assert loss_hyperparameters("nce+agce") == {"alpha": 1.0, "beta": 4.0, "a": 6.0, "q": 1.5}
    assert loss_hyperparameters("ngce+mae") == {"alpha": 1.0, "beta": 1.0, "q": 0.1}


def test_soft_targets_follow_the_components(case):
    soft = case.soft_target()
    combo = ActivePassive(NCE(), MAE(), alpha=1.0, beta=2.0)
    expected = NCE()(case.logits, soft) + 2.0 * MAE()(case.logits, soft)
    torch.testing.assert_close(combo(case.logits, soft), expected)
    with pytest.raises(ValueError, match="NFL accepts only class indices"):
        ActivePassive(NFL(), RCE())(case.logits, soft)


def test_positional_alpha_beta_and_zero_weight_allowed(case):
    # ALFs' MNIST configs use alpha = 0 (the passive loss alone).
    combo = ActivePassive(NCE(), MAE(), 0.0, 1.0)
    torch.testing.assert_close(combo(case.logits, case.target), MAE()(case.logits, case.target))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0, "beta": 0.0}, r"not both 0"),
        ({"alpha": -1.0}, r"Expected argument `alpha` in \[0, inf\), but got -1"),
        ({"beta": float("inf")}, r"Expected argument `beta` in \[0, inf\), but got inf"),
    ],
)
def test_invalid_weights(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivePassive(NCE(), MAE(), **kwargs)


def test_components_must_be_modules():
    with pytest.raises(ValueError, match=r"Expected argument `passive` to be a loss nn.Module, but got function"):
        ActivePassive(NCE(), lambda x, y: x)
    assert isinstance(ActivePassive(NCE(), nn.Identity()).passive, nn.Identity)

"""Tests of lt_noise.models.AnchoredHead (PAL paper, papers/000: anchored prototypes, eqs. 1-2).

Independent references: logits written out in float64 NumPy (``W z`` for PAL, ``s W z/||z||`` for FNPAL),
the simplex Gram matrix ``-1/(k-1)`` of Lemma 3.1, and the prototype files of lt_noise.prototypes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lt_noise.models import AnchoredHead, available_heads, build_head
from lt_noise.prototypes import save_prototypes, simplex_prototypes


def _features(n=7, d=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)) * 3.0)


@pytest.mark.parametrize("normalize,scale", [(False, 1.0), (True, 1.0), (True, 0.3846), (False, 2.5)])
def test_logits_equal_an_independent_computation(normalize, scale):
    head = AnchoredHead(6, 5, normalize=normalize, scale=scale, seed=3).double()
    z = _features()
    W = head.prototypes.numpy()
    zn = z.numpy()
    if normalize:
        zn = zn / np.sqrt((zn**2).sum(axis=1, keepdims=True))
    expected = scale * np.einsum("kd,nd->nk", W, zn)
    np.testing.assert_allclose(head(z).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_prototypes_are_an_optimal_simplex_buffer_not_a_parameter():
    head = AnchoredHead(16, 7, seed=1)
    assert list(head.parameters()) == [] and "prototypes" in dict(head.named_buffers())
    assert "prototypes" in head.state_dict()
    gram = (head.prototypes.double() @ head.prototypes.double().T).numpy()
    expected = np.full((7, 7), -1.0 / 6.0)
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(gram, expected, atol=1e-6)
    torch.testing.assert_close(head.prototypes, simplex_prototypes(7, 16, seed=1))
    assert not torch.equal(head.prototypes, AnchoredHead(16, 7, seed=2).prototypes)  # the seed orients
    assert head.double().prototypes.dtype == torch.float64  # a buffer follows .to()


@pytest.mark.parametrize("normalize", [False, True])
def test_no_gradient_reaches_the_prototypes_and_features_get_the_right_one(normalize):
    head = AnchoredHead(5, 4, normalize=normalize, scale=1.7, seed=0).double()
    z = _features(d=5).requires_grad_()
    head(z).pow(2).sum().backward()
    assert head.prototypes.grad is None and not head.prototypes.requires_grad
    assert torch.autograd.gradcheck(head, (_features(n=3, d=5).requires_grad_(),))


def test_registered_as_anchored_and_rejects_unknown_hyperparameters():
    assert "anchored" in available_heads()
    head = build_head("anchored", feature_dim=8, num_classes=3, normalize=True, scale=2.0)
    assert isinstance(head, AnchoredHead) and head.normalize and head.scale == 2.0
    with pytest.raises(ValueError, match=r"head \'anchored\'.*unknown \[\'normalise\'\]"):
        build_head("anchored", feature_dim=8, num_classes=3, normalise=True)


def test_loads_prototypes_from_a_file_and_checks_their_shape(tmp_path):
    prototypes = simplex_prototypes(4, 9, seed=5)
    path = tmp_path / "p.pt"
    save_prototypes(path, prototypes)
    head = AnchoredHead(9, 4, prototypes_path=str(path))
    assert torch.equal(head.prototypes, prototypes)
    with pytest.raises(ValueError, match="dim=8"):
        AnchoredHead(8, 4, prototypes_path=str(path))
    with pytest.raises(ValueError, match="num_classes=5"):
        AnchoredHead(9, 5, prototypes_path=str(path))
    with pytest.raises(FileNotFoundError):
        AnchoredHead(9, 4, prototypes_path=str(tmp_path / "missing.pt"))


def test_beyond_the_simplex_limit_closed_form_is_a_clear_error_and_auto_optimises():
    with pytest.raises(ValueError, match=r"num_classes.*<= dim \+ 1 = 4"):
        AnchoredHead(3, 5, method="closed_form")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is many times faster on a busy machine
    try:
        head = AnchoredHead(2, 5, method="auto", steps=300)  # k > d + 1: the numerical procedure (5 points on a circle)
    finally:
        torch.set_num_threads(threads)
    angles = torch.rad2deg(torch.acos((head.prototypes @ head.prototypes.T).clamp(-1, 1)))
    angles.fill_diagonal_(360.0)
    assert float(angles.min()) > 60.0  # spread out (72 degrees is the optimum)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scale=0.0), "scale"),
        (dict(scale=math.inf), "scale"),
        (dict(normalize=1), "normalize"),
        (dict(method="simplex"), "method"),
    ],
)
def test_bad_hyperparameters_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnchoredHead(4, 3, **kwargs)

"""Tests of lt_noise.methods.mixup (Zhang et al. 2018; the mixup of MiSLAS and of PAL's Table 2).

Independent references: the mixed batch ``λ x + (1 - λ) x[π]`` and the loss ``λ L(y) + (1 - λ) L(y[π])``
written out in float64 NumPy (softmax cross entropy of a linear model in closed form), the pairing by
index order written as a Python loop, and the mean and variance of Beta(α, α). DDP parity with mixup:
tests/methods/test_pal.py (PAL with mixup) and tests/test_reliability.py.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from support.methods import Flatten, build_method

from lt_noise.methods import Classifier, MixupClassifier, PAL
from lt_noise.methods import mixup as mixup_module
from lt_noise.methods.mixup import draw_mixup, mixup_partners

NUM_CLASSES = 3


def _model(cls=MixupClassifier, **kwargs):
    model = build_method(cls, seed=0, num_classes=NUM_CLASSES, input_shape=(1, 2, 3), backbone=Flatten(6), **kwargs).double()
    model.log = lambda *args, **kwargs: None  # training_step outside a Trainer
    return model


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (torch.from_numpy(rng.normal(size=(n, 1, 2, 3))), torch.from_numpy(rng.integers(0, NUM_CLASSES, size=n)),
            torch.arange(100, 100 + n))


def _ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]


def test_draw_mixup_is_a_seeded_beta_and_permutation():
    lam, permutation = draw_mixup(1.0, 8, seed=3)
    assert 0.0 <= lam <= 1.0 and sorted(permutation.tolist()) == list(range(8))
    again = draw_mixup(1.0, 8, seed=3)
    assert again[0] == lam and np.array_equal(again[1], permutation)
    assert draw_mixup(1.0, 8, seed=4)[0] != lam
    assert draw_mixup(0.0, 5, seed=3)[0] == 1.0 and np.array_equal(draw_mixup(0.0, 5, seed=3)[1], np.arange(5))


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    lams = np.array([draw_mixup(alpha, 2, seed)[0] for seed in range(3000)])
    # Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1)); standard errors ~0.01 and ~0.003 here
    assert abs(lams.mean() - 0.5) < 0.03
    assert abs(lams.var() - 1.0 / (4 * (2 * alpha + 1))) < 0.015


def test_partners_pair_canonical_positions_whatever_the_order_of_the_batch():
    index = torch.tensor([42, 7, 19, 3, 88, 7])  # a repeated index (class-aware sampling) is allowed
    permutation = np.array([2, 0, 5, 1, 3, 4])
    partner = mixup_partners(index, permutation)
    canonical = sorted(range(6), key=lambda row: (int(index[row]), row))  # rows by index, stable
    expected = [canonical[permutation[canonical.index(row)]] for row in range(6)]
    assert partner.tolist() == expected
    shuffled = torch.tensor([4, 2, 0, 5, 3, 1])  # the same samples in another order: the same index pairs
    pairs = sorted(zip(index.tolist(), index[partner].tolist()))
    other = index[shuffled]
    assert sorted(zip(other.tolist(), other[mixup_partners(other, permutation)].tolist())) == pairs
    with pytest.raises(ValueError, match="permutation of 6"):
        mixup_partners(index, np.arange(5))


@pytest.mark.parametrize("class_weighted", [False, True])
def test_mixup_loss_is_lambda_mix_of_the_per_sample_losses(class_weighted):
    model = _model(mixup_alpha=1.0)
    if class_weighted:  # DRW's per-class weights: each label set is reduced with its own weights
        model.class_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    x, y, index = _batch()
    recorded = {}

    def recording(alpha, size, seed):
        recorded["out"] = draw_mixup(alpha, size, seed)
        return recorded["out"]

    with mock.patch.object(mixup_module, "draw_mixup", recording):
        loss = model.training_step((x, y, index), 0)
    lam, permutation = recorded["out"]
    assert 0.0 < lam < 1.0
    # the batch's indices are increasing, so canonical positions are rows and row i pairs with row π(i)
    mixed = lam * x.numpy() + (1 - lam) * x.numpy()[permutation]
    W = model.net.head.weight.detach().numpy()
    b = model.net.head.bias.detach().numpy()
    logits = mixed.reshape(8, -1) @ W.T + b
    y_a, y_b = y.numpy(), y.numpy()[permutation]
    w = model.class_weights.numpy()
    expected = (lam * (w[y_a] * _ce(logits, y_a)).sum() / w[y_a].sum()
                + (1 - lam) * (w[y_b] * _ce(logits, y_b)).sum() / w[y_b].sum())
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    if not class_weighted:
        assert float(loss) == pytest.approx((lam * _ce(logits, y_a) + (1 - lam) * _ce(logits, y_b)).mean(), rel=1e-12)


def test_without_mixup_the_step_is_the_plain_classifier_step():
    batch = _batch()
    plain = _model(Classifier)
    mixed = _model(mixup_alpha=0.0)
    assert float(mixed.training_step(batch, 0)) == float(plain.training_step(batch, 0))


def test_pal_has_the_mixup_option():
    model = _model(PAL, mixup_alpha=0.4)
    assert isinstance(model, MixupClassifier) and model.mixup_alpha == 0.4
    assert MixupClassifier.BENCHMARK_KWARGS["mixup_alpha"] > 0

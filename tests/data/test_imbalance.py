"""Tests of lt_noise.data.imbalance against the published CIFAR-LT sizes and a slow LDAM-DRW-style loop."""

from __future__ import annotations

import numpy as np
import pytest

from lt_noise.data import imbalance

# Training-set sizes of CIFAR-10-LT / CIFAR-100-LT as published with LDAM-DRW and reused by every
# long-tailed paper (n_max 5000 / 500 images per class).
PUBLISHED_TOTALS = [
    (10, 5000, 100, 12406),
    (10, 5000, 10, 20431),
    (100, 500, 100, 10847),
    (100, 500, 10, 19573),
]


@pytest.mark.parametrize(("num_classes", "n_max", "ratio", "total"), PUBLISHED_TOTALS)
def test_long_tailed_totals_match_published_cifar_lt(num_classes, n_max, ratio, total):
    counts = imbalance.long_tailed_counts(n_max, num_classes, ratio)
    assert len(counts) == num_classes and sum(counts) == total
    assert counts[0] == n_max and counts[-1] == n_max // ratio
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert all(isinstance(n, int) for n in counts)


def test_long_tailed_cifar10_ratio_100_profile():
    assert imbalance.long_tailed_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_long_tailed_ratio_one_is_balanced():
    assert imbalance.long_tailed_counts(600, 10, 1) == [600] * 10


def test_step_counts():
    assert imbalance.step_counts(5000, 10, 10) == [5000] * 5 + [500] * 5  # LDAM-DRW 'step'
    assert imbalance.step_counts(500, 100, 100) == [500] * 50 + [5] * 50
    assert imbalance.step_counts(1000, 10, 4, minority_fraction=0.3) == [1000] * 7 + [250] * 3
    assert imbalance.step_counts(1000, 5, 10) == [1000] * 3 + [100] * 2  # odd C: the extra class is majority
    assert imbalance.step_counts(1000, 100, 10, minority_fraction=0.29).count(100) == 29  # 0.29 * 100 in floats


def test_imbalance_counts_dispatch():
    assert imbalance.IMBALANCE_KINDS == ("none", "exp", "step")
    assert imbalance.imbalance_counts("none", 300, 4, 1) == [300] * 4
    assert imbalance.imbalance_counts("exp", 5000, 10, 100) == imbalance.long_tailed_counts(5000, 10, 100)
    assert imbalance.imbalance_counts("step", 5000, 10, 10, minority_fraction=0.2) == [5000] * 8 + [500] * 2


# --------------------------------------------------------------------------------------------------
# subsampling
def _labels(per_class=300, num_classes=10, seed=9):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _ldam_reference(labels, counts, seed):
    """LDAM-DRW's gen_imbalanced_data as a loop: seed numpy's legacy generator, then per class shuffle
    the positions of that class and keep the first counts[c]."""
    state = np.random.RandomState(seed)
    kept = []
    for c, n in enumerate(counts):
        positions = np.where(labels == c)[0]
        state.shuffle(positions)
        kept.extend(positions[:n].tolist())
    return sorted(kept)


def test_subsample_picks_exact_counts_sorted_and_seeded():
    labels = _labels()
    before = labels.copy()
    counts = imbalance.long_tailed_counts(300, 10, 50)
    picked = imbalance.subsample_indices(labels, counts, seed=3)
    assert np.array_equal(labels, before)
    assert picked.dtype == np.int64
    assert np.all(np.diff(picked) > 0)  # sorted, hence no position twice
    assert picked[0] >= 0 and picked[-1] < len(labels)
    assert np.bincount(labels[picked], minlength=10).tolist() == counts
    assert np.array_equal(picked, imbalance.subsample_indices(labels, counts, seed=3))
    assert not np.array_equal(picked, imbalance.subsample_indices(labels, counts, seed=4))
    assert picked.tolist() == _ldam_reference(labels, counts, seed=3)


def test_subsample_full_counts_keeps_everything():
    labels = _labels(per_class=7, num_classes=3)
    assert np.array_equal(imbalance.subsample_indices(labels, [7, 7, 7], seed=0), np.arange(21))


# --------------------------------------------------------------------------------------------------
# errors
LABELS = _labels(per_class=20, num_classes=4)

ERRORS = [
    (lambda: imbalance.long_tailed_counts(5000, 10, 0.01),
     r"`ratio` in \[1, inf\), but got 0.01"),
    (lambda: imbalance.long_tailed_counts(5000, 10, float("inf")), r"`ratio` .* but got inf"),
    (lambda: imbalance.step_counts(5000, 10, float("nan")), r"`ratio` .* but got nan"),
    (lambda: imbalance.long_tailed_counts(5000, 1, 10), r"`num_classes` to be an integer >= 2, but got 1"),
    (lambda: imbalance.long_tailed_counts(0, 10, 10), r"`n_max` to be an integer >= 1, but got 0"),
    (lambda: imbalance.long_tailed_counts(50.0, 10, 10), r"`n_max` to be an integer >= 1, but got 50.0"),
    (lambda: imbalance.long_tailed_counts(5, 10, 100),
     r"class 4 gets 0 \(n_max=5, ratio=100\): empty class after subsampling"),
    (lambda: imbalance.step_counts(5, 10, 10), r"class 5 gets 0 .* empty class after subsampling"),
    (lambda: imbalance.step_counts(50, 10, 10, minority_fraction=1.0), r"`minority_fraction` in \(0, 1\), but got 1.0"),
    (lambda: imbalance.step_counts(50, 10, 10, minority_fraction=0.05), r"`minority_fraction` to make between 1 and 9"),
    (lambda: imbalance.imbalance_counts("longtail", 50, 10, 10),
     r"`kind` in \('none', 'exp', 'step'\), but got 'longtail'"),
    (lambda: imbalance.imbalance_counts("none", 50, 10, 10), r"`ratio` to be 1 when kind='none', but got 10"),
    (lambda: imbalance.subsample_indices(LABELS, [5, 0, 5, 5], 0),
     r"`counts` .* but got 0 for class 1: empty class after subsampling"),
    (lambda: imbalance.subsample_indices(LABELS, [5, 21, 5, 5], 0),
     r"`counts` to ask at most the 20 samples class 1 has, but got 21"),
    (lambda: imbalance.subsample_indices(LABELS, [5, 5, 5], 0),
     r"`labels` to hold class indices in \[0, 3\), but got values in \[0, 3\]"),
    (lambda: imbalance.subsample_indices(LABELS, [5.0, 5, 5, 5], 0), r"`counts` to be a sequence of integer counts"),
    (lambda: imbalance.subsample_indices(LABELS.reshape(8, 10), [5, 5, 5, 5], 0), r"`labels` to be a 1-D array"),
    (lambda: imbalance.subsample_indices(LABELS.astype(float), [5, 5, 5, 5], 0), r"`labels` to have an integer dtype"),
    (lambda: imbalance.subsample_indices(LABELS, [5, 5, 5, 5], -1),
     r"`seed` to be an integer in \[0, 2\*\*32\), but got -1"),
]


@pytest.mark.parametrize(("call", "match"), ERRORS)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()

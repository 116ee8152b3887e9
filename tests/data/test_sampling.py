"""Tests for lt_noise.data.sampling against slow per-class reference loops written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lt_noise.data.sampling import (
    META_FRACTION,
    PRIMARY_FRACTION,
    RANK_BINS,
    hierarchical_meta_split,
    loss_rank_bins,
    meta_split_sizes,
    naive_meta_split,
)

# ----------------------------------------------------------------------------------------------------
# Fixtures: balanced, long-tailed (ratio 100) and noisy label sets, with losses that contain ties.


def _long_tailed_labels(rng: np.random.Generator, n_max: int, num_classes: int, ratio: float) -> np.ndarray:
    counts = [int(n_max * ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return rng.permutation(labels)


def _make_case(kind: str) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng({"balanced": 0, "long_tailed": 1, "noisy": 2}[kind])
    num_classes = 10
    if kind == "balanced":
        labels = rng.permutation(np.repeat(np.arange(num_classes), 60))
    else:
        labels = _long_tailed_labels(rng, 500, num_classes, 100.0)
    if kind == "noisy":
        flip = rng.random(labels.size) < 0.3
        labels = np.where(flip, rng.integers(0, num_classes, labels.size), labels)
    # Rounded losses: many exact ties, to exercise the (loss, index) tie-break.
    losses = np.round(rng.exponential(1.0, labels.size), 1)
    return losses, labels.astype(np.int64), num_classes


CASES = ["balanced", "long_tailed", "noisy"]


@pytest.fixture(params=CASES)
def case(request):
    return _make_case(request.param)


# ----------------------------------------------------------------------------------------------------
# Reference implementations: plain Python loops over classes and samples.


def _ref_sorted_members(losses, labels, c):
    members = [j for j in range(len(labels)) if labels[j] == c]
    return sorted(members, key=lambda j: (float(losses[j]), j))


def _ref_rank_bins(losses, labels, num_classes, bins):
    out = [None] * len(labels)
    for c in range(num_classes):
        members = _ref_sorted_members(losses, labels, c)
        n = len(members)
        for i, j in enumerate(members):
            out[j] = (i * bins) // (n + 1)  # floor(i / (n + 1) * R) in exact integer arithmetic
    return np.array(out, dtype=np.int64)


def _ref_hierarchical(losses, labels, num_classes, primary, meta, seed):
    # The documented random draw: one uniform key per sample, smallest (key, index) per class.
    keys = np.random.default_rng(seed).random(len(labels))
    meta_set = []
    for c in range(num_classes):
        members = [j for j in range(len(labels)) if labels[j] == c]
        primary_set = sorted(members, key=lambda j: (keys[j], j))[:primary]
        meta_set += sorted(primary_set, key=lambda j: (float(losses[j]), j))[:meta]
    return sorted(meta_set)


# ----------------------------------------------------------------------------------------------------
# loss_rank_bins


@pytest.mark.parametrize("bins", [1, 7, 50, 100])
def test_rank_bins_match_reference_loop(case, bins):
    losses, labels, num_classes = case
    got = loss_rank_bins(losses, labels, num_classes, bins)
    assert got.dtype == np.int64 and got.shape == labels.shape
    np.testing.assert_array_equal(got, _ref_rank_bins(losses, labels, num_classes, bins))


def test_rank_bins_range_and_monotone_within_class(case):
    losses, labels, num_classes = case
    got = loss_rank_bins(losses, labels, num_classes, RANK_BINS)
    assert got.min() >= 0 and got.max() <= RANK_BINS - 1
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        order = members[np.argsort(losses[members], kind="stable")]
        assert np.all(np.diff(got[order]) >= 0), f"bins not monotone in loss for class {c}"
        # Lowest-loss sample of every class is in bin 0.
        assert got[order[0]] == 0


def test_rank_bins_even_when_class_size_plus_one_divisible():
    # n + 1 = R * k: positions i = 0..n-1 give floor(i / k): k samples in every bin except the last (k - 1).
    bins, k = 10, 7
    n = bins * k - 1
    rng = np.random.default_rng(3)
    losses = rng.random(2 * n)
    labels = np.repeat([0, 1], n)
    got = loss_rank_bins(losses, labels, 2, bins)
    for c in (0, 1):
        counts = np.bincount(got[labels == c], minlength=bins)
        np.testing.assert_array_equal(counts, [k] * (bins - 1) + [k - 1])


def test_rank_bins_ties_broken_by_index():
    losses = np.array([0.5, 0.5, 0.5, 0.5, 0.1])
    labels = np.zeros(5, dtype=np.int64)
    # Order by (loss, index): 4, 0, 1, 2, 3 -> positions 0..4, bins floor(i * 6 / 6) = i.
    np.testing.assert_array_equal(loss_rank_bins(losses, labels, 1, 6), [1, 2, 3, 4, 0])


def test_rank_bins_invariant_to_sample_order_for_distinct_losses():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 400)
    losses = rng.random(400)  # distinct almost surely
    perm = rng.permutation(400)
    direct = loss_rank_bins(losses, labels, 5, 20)
    permuted = loss_rank_bins(losses[perm], labels[perm], 5, 20)
    np.testing.assert_array_equal(permuted, direct[perm])


def test_rank_bins_exact_where_authors_float_formula_rounds_down():
    # R = 50, n = 49, i = 29: 29 / 50 * 50 = 28.999999999999996 in float; the exact bin is 29.
    losses = np.arange(49, dtype=float)
    got = loss_rank_bins(losses, np.zeros(49, dtype=np.int64), 1, 50)
    assert got[29] == 29
    assert int(1.0 * 29 / 50 * 50) == 28  # the authors' expression, for the record


def test_rank_bins_accept_torch_and_numpy_alike(case):
    losses, labels, num_classes = case
    expected = loss_rank_bins(losses, labels, num_classes, 13)
    got = loss_rank_bins(torch.from_numpy(losses).float().requires_grad_(), torch.from_numpy(labels),
                         num_classes, 13)
    # float32 rounding of one-decimal losses keeps their order and ties.
    np.testing.assert_array_equal(got, expected)
    assert isinstance(got, np.ndarray)


def test_rank_bins_do_not_modify_inputs():
    losses, labels, num_classes = _make_case("noisy")
    losses_copy, labels_copy = losses.copy(), labels.copy()
    loss_rank_bins(losses, labels, num_classes, 10)
    np.testing.assert_array_equal(losses, losses_copy)
    np.testing.assert_array_equal(labels, labels_copy)


# ----------------------------------------------------------------------------------------------------
# hierarchical_meta_split


def _sizes(labels, num_classes):
    return meta_split_sizes(np.bincount(labels, minlength=num_classes))


def test_split_disjoint_covering_sorted(case):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    meta_idx, train_idx = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed=0)
    assert meta_idx.dtype == np.int64 and train_idx.dtype == np.int64
    assert np.all(np.diff(meta_idx) > 0) and np.all(np.diff(train_idx) > 0)
    assert np.intersect1d(meta_idx, train_idx).size == 0
    np.testing.assert_array_equal(np.union1d(meta_idx, train_idx), np.arange(labels.size))


def test_split_meta_set_balanced(case):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    meta_idx, _ = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed=5)
    np.testing.assert_array_equal(np.bincount(labels[meta_idx], minlength=num_classes), [meta] * num_classes)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_split_matches_reference_loop(case, seed):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    meta_idx, _ = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed)
    np.testing.assert_array_equal(meta_idx, _ref_hierarchical(losses, labels, num_classes, primary, meta, seed))


def test_split_primary_equal_class_size_is_lowest_loss_per_class():
    # Balanced classes and primary = n: the primary set is the whole class for every seed.
    losses, labels, num_classes = _make_case("balanced")
    n = int(np.bincount(labels).min())
    expected = []
    for c in range(num_classes):
        expected += _ref_sorted_members(losses, labels, c)[:4]
    for seed in (0, 1, 2):
        meta_idx, _ = hierarchical_meta_split(losses, labels, num_classes, n, 4, seed)
        np.testing.assert_array_equal(meta_idx, sorted(expected))


def test_split_meta_members_beat_at_least_primary_minus_meta_of_their_class(case):
    # A meta sample is lower than the (primary - meta) unselected primary samples of its class, so its
    # within-class position (ascending (loss, index)) is at most n_c - 1 - (primary - meta).
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    for seed in range(5):
        meta_idx, _ = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed)
        for c in range(num_classes):
            order = _ref_sorted_members(losses, labels, c)
            position = {j: i for i, j in enumerate(order)}
            worst = max(position[j] for j in meta_idx if labels[j] == c)
            assert worst <= len(order) - 1 - (primary - meta)


def test_split_primary_set_is_uniformly_random():
    # The class's single lowest-loss sample enters the meta set iff it is drawn into the primary set,
    # which happens with probability primary / n_c. Check the frequency over many seeds (binomial test).
    rng = np.random.default_rng(7)
    n_c, primary, meta, trials = 40, 10, 3, 2000
    labels = np.repeat([0, 1], n_c)
    losses = rng.random(2 * n_c)
    best = int(np.argmin(np.where(labels == 0, losses, np.inf)))
    hits = sum(best in hierarchical_meta_split(losses, labels, 2, primary, meta, s)[0] for s in range(trials))
    p = primary / n_c
    assert abs(hits / trials - p) < 4 * np.sqrt(p * (1 - p) / trials)


def test_split_unselected_primary_samples_return_to_training(case):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    meta_idx, train_idx = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed=3)
    assert train_idx.size == labels.size - meta * num_classes


def test_split_deterministic_per_seed_and_differs_between_seeds(case):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    first = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed=11)
    again = hierarchical_meta_split(losses, labels, num_classes, primary, meta, seed=11)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    epochs = [hierarchical_meta_split(losses, labels, num_classes, primary, meta,
                                      np.random.SeedSequence([11, epoch]))[0] for epoch in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.array_equal(epochs[a], epochs[b])
    # SeedSequence seeds are deterministic too.
    np.testing.assert_array_equal(
        epochs[2], hierarchical_meta_split(losses, labels, num_classes, primary, meta,
                                           np.random.SeedSequence([11, 2]))[0])


def test_split_does_not_touch_global_rng():
    losses, labels, num_classes = _make_case("noisy")
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    hierarchical_meta_split(losses, labels, num_classes, 4, 2, seed=1)
    assert np.random.random() == before


def test_split_accepts_torch(case):
    losses, labels, num_classes = case
    primary, meta = _sizes(labels, num_classes)
    expected = hierarchical_meta_split(losses, labels, num_classes, primary, meta, 2)
    got = hierarchical_meta_split(torch.from_numpy(losses), torch.from_numpy(labels), num_classes, primary,
                                  meta, 2)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


# ----------------------------------------------------------------------------------------------------
# naive_meta_split


def test_naive_split_is_lowest_loss_per_class(case):
    losses, labels, num_classes = case
    meta = 5
    meta_idx, train_idx = naive_meta_split(losses, labels, num_classes, meta)
    expected = []
    for c in range(num_classes):
        expected += _ref_sorted_members(losses, labels, c)[:meta]
    np.testing.assert_array_equal(meta_idx, sorted(expected))
    np.testing.assert_array_equal(np.union1d(meta_idx, train_idx), np.arange(labels.size))
    assert np.intersect1d(meta_idx, train_idx).size == 0


# ----------------------------------------------------------------------------------------------------
# meta_split_sizes


@pytest.mark.parametrize("counts, expected", [
    ([5000, 2000, 50], (25, 12)),        # CIFAR-10-LT ratio 100 tail
    ([500, 51], (25, 12)),
    ([4, 4, 4], (2, 1)),
    ([5000, 500], (250, 125)),           # ratio 10
])
def test_meta_split_sizes_paper_defaults(counts, expected):
    assert (PRIMARY_FRACTION, META_FRACTION) == (0.5, 0.25)
    assert meta_split_sizes(np.array(counts)) == expected


def test_meta_split_sizes_equals_authors_two_ratio_form():
    # Authors: int(0.5 * n_min) and int(0.5 * n_min * 0.5).
    for n_min in range(4, 3000):
        assert meta_split_sizes(np.array([n_min, n_min + 3])) == (int(0.5 * n_min), int(0.5 * n_min * 0.5))


def test_meta_split_sizes_custom_fractions():
    assert meta_split_sizes(np.array([100, 80]), primary_fraction=1.0, meta_fraction=0.1) == (80, 8)


# ----------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("call, match", [
    (lambda L, y: loss_rank_bins(L, y, 10, 0), "`bins`"),
    (lambda L, y: loss_rank_bins(L, y, 10, 2.5), "`bins`"),
    (lambda L, y: loss_rank_bins(L, y, 0, 10), "`num_classes`"),
    (lambda L, y: loss_rank_bins(L[:-1], y, 10, 10), "`losses`"),
    (lambda L, y: loss_rank_bins(L, y, 3, 10), "`labels`"),
    (lambda L, y: loss_rank_bins(L, y.astype(float), 10, 10), "`labels`"),
    (lambda L, y: loss_rank_bins(L.reshape(-1, 1), y, 10, 10), "`losses`"),
    (lambda L, y: hierarchical_meta_split(L, y, 10, 2, 3, 0), "`meta`"),
    (lambda L, y: hierarchical_meta_split(L, y, 10, 10_000, 3, 0), "`primary`"),
    (lambda L, y: hierarchical_meta_split(L, y, 10, 2, 0, 0), "`meta`"),
    (lambda L, y: hierarchical_meta_split(L, y, 10, 2, 1, -1), "`seed`"),
    (lambda L, y: hierarchical_meta_split(L, y, 10, 2, 1, 1.5), "`seed`"),
    (lambda L, y: hierarchical_meta_split(L[:5], y, 10, 2, 1, 0), "`losses`"),
    (lambda L, y: hierarchical_meta_split(L, y, 11, 2, 1, 0), "`primary`"),  # class 10 is empty
    (lambda L, y: naive_meta_split(L, y, 10, 10_000), "`meta`"),
    (lambda L, y: naive_meta_split(L, y - 1, 10, 1), "`labels`"),
])
def test_validation_errors(call, match):
    losses, labels, _ = _make_case("long_tailed")
    with pytest.raises(ValueError, match=match):
        call(losses, labels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_losses_rejected_with_indices(bad):
    losses, labels, num_classes = _make_case("noisy")
    losses = losses.copy()
    losses[17] = bad
    with pytest.raises(ValueError, match=r"`losses` to be finite.*\[17\]"):
        loss_rank_bins(losses, labels, num_classes, 10)
    with pytest.raises(ValueError, match=r"\[17\]"):
        hierarchical_meta_split(losses, labels, num_classes, 2, 1, 0)


def test_out_of_range_label_message_names_value():
    with pytest.raises(ValueError, match=r"`labels` to hold class indices in \[0, 3\).*e\.g\. 7"):
        loss_rank_bins(np.zeros(3), np.array([0, 7, 1]), 3, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(primary_fraction=0.0), "`primary_fraction`"),
    (dict(primary_fraction=1.5), "`primary_fraction`"),
    (dict(meta_fraction=0.6), "`meta_fraction`"),
    (dict(meta_fraction=-0.1), "`meta_fraction`"),
])
def test_meta_split_sizes_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        meta_split_sizes(np.array([100, 100]), **kwargs)


def test_meta_split_sizes_too_small_class():
    with pytest.raises(ValueError, match=r"n_min=3 \(class 1\)"):
        meta_split_sizes(np.array([100, 3, 50]))
    with pytest.raises(ValueError, match="`class_counts`"):
        meta_split_sizes(np.array([1.5, 2.0]))

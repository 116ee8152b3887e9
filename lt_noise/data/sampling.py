"""Per-class loss-rank bins and the hierarchical meta-set split of Dynamic Loss.

Paper: Jiang et al., "Dynamic Loss For Robust Learning" (``papers/002_*``): section "Label Corrector"
(the loss bin index r of a sample within its own class), section "Hierarchical Sampling Strategy" (a
random primary set of M0 samples per class, then its M1 lowest-loss samples form the balanced meta set),
Algorithm 1 (both are recomputed at the start of every epoch after warm-up) and Table 7 (M0 = 0.5,
M1 = 0.25, R = 100, or 50 for CIFAR-100).

Conventions (all functions):

* ``losses`` and ``labels`` are 1-D numpy arrays or torch tensors of equal length N, one entry per
  training sample, indexed by the sample's position in the training set (the ``index`` of the batches).
  ``labels`` are the *observed* (possibly corrupted) labels, integers in ``[0, num_classes)``: classes
  are the observed classes, as in the authors' code, which never sees the clean labels.
* Within a class, samples are ordered by ``(loss, index)`` ascending: a stable sort on the loss, so equal
  losses are broken by the smaller training-set index first. The authors' code (jiangwenj02/dynamic_loss,
  ``mmcls/core/runners/dynamic_epochbased_runner.py``, ``compute_rank``) uses ``np.argsort`` (quicksort,
  not stable) over samples in data-loader order, so its tie order is arbitrary; ours is reproducible.
* Every returned index array is ``int64``, sorted ascending.
* Nothing here draws from a global RNG. :func:`hierarchical_meta_split` is a pure function of
  ``(losses, labels, num_classes, primary, meta, seed)``. The caller makes the split differ between
  epochs by deriving the seed from ``(seed, epoch)``, e.g. ``np.random.SeedSequence([seed, epoch])``
  (accepted directly) so that a resumed run and every DDP rank rebuild the same split; under DDP all
  ranks must pass the same gathered (deduplicated) losses.

:class:`EpochSplit` holds one epoch's outcome (losses, bins, meta set, training remainder), and
:func:`split_digest` its checksum, by which ranks and runs compare splits.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from lt_noise.validation import check_class_counts, check_finite_values, check_int, check_interval, check_labels, check_seed

__all__ = [
    "EpochSplit",
    "split_digest",
    "PRIMARY_FRACTION",
    "META_FRACTION",
    "RANK_BINS",
    "loss_rank_bins",
    "meta_split_sizes",
    "hierarchical_meta_split",
    "naive_meta_split",
]

# Paper Table 7, "M0": the primary set holds int(M0 * n_min) random samples of every class, where n_min is
# the smallest observed class size (authors' runner: first_random_select_ratio * dataset.min_number).
PRIMARY_FRACTION = 0.5
# Paper Table 7, "M1": the meta set keeps int(M1 * n_min) lowest-loss samples of every class's primary
# set. The authors' runner writes it as first_random_select_ratio * second_random_select_ratio = 0.5 * 0.5.
META_FRACTION = 0.25
# Paper Table 7, "Rank Number" R for CIFAR-10, WebVision and Animal-10N (CIFAR-100 uses 50).
RANK_BINS = 100


@dataclass(frozen=True)
class EpochSplit:
    """The outcome of one epoch's ranking pass and split (Dynamic Loss's ``rank_and_split``), all arrays by
    training index.

    Attributes:
        epoch: the epoch it was made for.
        losses: (N,) float64 per-sample losses (eval mode, un-augmented view, observed labels).
        predictions: (N,) int64 arg-max classes of the same forward pass (for diagnostics).
        bins: (N,) int64 loss-rank bin of each sample within its observed class (0 = lowest loss).
        meta_indices: the epoch's meta set (sorted), or None in a warm-up epoch.
        train_indices: the epoch's training samples (sorted; everything outside the meta set).
    """

    epoch: int
    losses: np.ndarray
    predictions: np.ndarray
    bins: np.ndarray
    meta_indices: np.ndarray | None
    train_indices: np.ndarray


def split_digest(split: EpochSplit) -> int:
    """A 31-bit checksum (CRC-32) of an epoch's bins and meta set, to compare splits across ranks and runs."""
    checksum = zlib.crc32(np.ascontiguousarray(split.bins, dtype=np.int64).tobytes())
    meta = split.meta_indices if split.meta_indices is not None else np.zeros(0, dtype=np.int64)
    return zlib.crc32(np.ascontiguousarray(meta, dtype=np.int64).tobytes(), checksum) & 0x7FFFFFFF


def _validate(losses: Any, labels: Any, num_classes: Any) -> tuple[np.ndarray, np.ndarray, int]:
    num_classes = check_int("num_classes", num_classes, minimum=1)
    labels = check_labels(labels, num_classes)
    losses = check_finite_values(losses, name="losses", length=labels.shape[0])
    return losses, labels, num_classes


# ----------------------------------------------------------------------------------------------------
# Core (pure numpy, vectorized: one O(N log N) sort, no loop over classes).


def _within_class_order(losses: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sample indices sorted by (label, loss, index): classes in turn, each by ascending (loss, index)."""
    # np.lexsort sorts by the last key first and is stable, so ties in (label, loss) keep index order.
    return np.lexsort((losses, labels))


def _positions_in_class(sorted_labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For samples already grouped by class, each one's 0-based position within its class."""
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.arange(sorted_labels.shape[0]) - starts[sorted_labels]


def _lowest_per_class(candidates: np.ndarray, losses: np.ndarray, labels: np.ndarray, num_classes: int,
                      keep: int) -> np.ndarray:
    """Among ``candidates`` (sample indices), the ``keep`` lowest-(loss, index) ones of every class."""
    order = candidates[_within_class_order(losses[candidates], labels[candidates])]
    counts = np.bincount(labels[order], minlength=num_classes)
    position = _positions_in_class(labels[order], counts)
    return np.sort(order[position < keep])


def _split(meta_indices: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    in_meta = np.zeros(length, dtype=bool)
    in_meta[meta_indices] = True
    return np.flatnonzero(in_meta).astype(np.int64), np.flatnonzero(~in_meta).astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# Public API.


def loss_rank_bins(losses: Any, labels: Any, num_classes: int, bins: int) -> np.ndarray:
    """The loss bin index r of every sample within its own observed class (0 = lowest loss).

    Paper section "Label Corrector": the samples of each class are sorted by loss and "evenly divided"
    into R bins. As in the authors' code (``compute_rank``), the sample at 0-based position ``i`` of a
    class of ``n`` samples (ascending ``(loss, index)``) gets bin ``floor(i * R / (n + 1))``, which lies in
    ``[0, R - 1]``; a class with fewer than R samples leaves some bins empty. We evaluate the floor in
    exact integer arithmetic; the authors' float expression ``int(1.0 * i / (n + 1) * R)`` lands one bin
    lower in rare cases where ``i * R / (n + 1)`` is an exact integer (e.g. R = 50, n = 49, i = 29).

    Args:
        losses: (N,) per-sample losses (the authors use CE against the observed label, model in eval
            mode, un-augmented view). Must be finite.
        labels: (N,) observed labels in ``[0, num_classes)``.
        num_classes: number of classes K.
        bins: number of bins R (paper Table 7 "Rank Number"), >= 1.

    Returns:
        (N,) int64 array: the bin of sample j at position j.
    """
    losses, labels, num_classes = _validate(losses, labels, num_classes)
    bins = check_int("bins", bins, minimum=1)
    order = _within_class_order(losses, labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    position = _positions_in_class(labels[order], counts)
    result = np.empty(labels.shape[0], dtype=np.int64)
    result[order] = (position * bins) // (counts[labels[order]] + 1)
    return result


def meta_split_sizes(class_counts: Any, *, primary_fraction: float = PRIMARY_FRACTION,
                     meta_fraction: float = META_FRACTION) -> tuple[int, int]:
    """Per-class primary-set and meta-set sizes ``(int(M0 * n_min), int(M1 * n_min))``.

    Paper Table 7 gives M0 = 0.5 and M1 = 0.25 without saying of what; the authors' runner
    (``hier_sampling``) takes them as fractions of the smallest *observed* class size n_min (counted from
    the corrupted labels), with Python ``int()`` truncation of the float product, as here. It writes M1 as
    M0 times a second ratio (0.5 * 0.5); for these defaults the sizes are identical.

    Args:
        class_counts: (K,) number of training samples per observed class, e.g.
            ``np.bincount(labels, minlength=K)``.
        primary_fraction: M0, in (0, 1].
        meta_fraction: M1, in (0, 1], at most ``primary_fraction``.

    Returns:
        ``(primary, meta)`` per-class sizes, both >= 1, for :func:`hierarchical_meta_split`.

    Raises:
        ValueError: on invalid fractions, or when the smallest class is too small to give at least one
            meta sample per class.
    """
    primary_fraction = check_interval("primary_fraction", primary_fraction, 0.0, 1.0, high_closed=True)
    meta_fraction = check_interval("meta_fraction", meta_fraction, 0.0, 1.0, high_closed=True)
    if meta_fraction > primary_fraction:
        raise ValueError(
            f"Expected argument `meta_fraction` <= primary_fraction={primary_fraction}, but got {meta_fraction}"
        )
    counts = check_class_counts(class_counts, min_classes=1).numpy()
    n_min = int(counts.min())
    primary, meta = int(primary_fraction * n_min), int(meta_fraction * n_min)
    if meta < 1:
        raise ValueError(
            f"Expected the smallest class to hold at least one meta sample (int({meta_fraction} * n_min) >= 1),"
            f" but got n_min={n_min} (class {int(counts.argmin())})"
        )
    return primary, meta


def hierarchical_meta_split(losses: Any, labels: Any, num_classes: int, primary: int, meta: int,
                            seed: int | np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical sampling: a class-balanced low-loss meta set and the training remainder.

    Paper section "Hierarchical Sampling Strategy": i) the primary set holds ``primary`` samples drawn
    uniformly at random without replacement from every class; ii) the ``meta`` lowest-loss samples of
    each class's primary set form the meta set (``meta`` per class, so it is balanced). Everything else is
    the training set of that epoch, *including* the primary samples not selected for the meta set (the
    authors' runner returns ``np.setdiff1d(full_mask, meta)``).

    Random draw (the reproducibility contract): ``keys = np.random.default_rng(seed).random(N)``; the
    primary set of class c is its ``primary`` members with the smallest ``(key, index)``. Within the
    primary set, losses are ordered by ``(loss, index)``.

    Args:
        losses: (N,) per-sample losses (finite).
        labels: (N,) observed labels in ``[0, num_classes)``.
        num_classes: number of classes K; every class must hold at least ``primary`` samples.
        primary: per-class primary-set size (``int(M0 * n_min)``, see :func:`meta_split_sizes`).
        meta: per-class meta-set size, ``1 <= meta <= primary``.
        seed: non-negative int or ``np.random.SeedSequence``; derive it from ``(seed, epoch)`` to get a
            different primary set every epoch, e.g. ``np.random.SeedSequence([seed, epoch])``.

    Returns:
        ``(meta_indices, train_indices)``: disjoint sorted int64 arrays covering ``range(N)``.
    """
    losses, labels, num_classes = _validate(losses, labels, num_classes)
    primary = check_int("primary", primary, minimum=1)
    meta = check_int("meta", meta, minimum=1)
    if meta > primary:
        raise ValueError(f"Expected argument `meta` <= primary={primary}, but got {meta}")
    seed = check_seed(seed, sequence=True)
    counts = np.bincount(labels, minlength=num_classes)
    smallest = int(counts.argmin())
    if primary > counts[smallest]:
        raise ValueError(
            f"Expected argument `primary` <= the smallest class size ({int(counts[smallest])}, class "
            f"{smallest}), but got {primary}"
        )
    keys = np.random.default_rng(seed).random(labels.shape[0])
    primary_set = _lowest_per_class(np.arange(labels.shape[0]), keys, labels, num_classes, primary)
    meta_indices = _lowest_per_class(primary_set, losses, labels, num_classes, meta)
    return _split(meta_indices, labels.shape[0])


def naive_meta_split(losses: Any, labels: Any, num_classes: int, meta: int) -> tuple[np.ndarray, np.ndarray]:
    """The "naive sampling" baseline: the ``meta`` lowest-loss samples of every whole class.

    Paper section "Hierarchical Sampling Strategy": "we can build the meta set simply by selecting M1
    samples with the lowest loss values from each class in D. However, [...] such a sampling strategy
    tends to select fixed easy samples at each epoch"; Fig. 5 and Table 4 (row without H) compare against
    this "naive sampling". (The ablation paragraph calls it "naive random sampling"; we follow the
    definition given in the method section. The authors' public code has no such switch.) Deterministic:
    no primary set, no seed. Ties are broken by ``(loss, index)``.

    Args:
        losses: (N,) per-sample losses (finite).
        labels: (N,) observed labels in ``[0, num_classes)``.
        num_classes: number of classes K; every class must hold at least ``meta`` samples.
        meta: per-class meta-set size, >= 1.

    Returns:
        ``(meta_indices, train_indices)``: disjoint sorted int64 arrays covering ``range(N)``.
    """
    losses, labels, num_classes = _validate(losses, labels, num_classes)
    meta = check_int("meta", meta, minimum=1)
    counts = np.bincount(labels, minlength=num_classes)
    smallest = int(counts.argmin())
    if meta > counts[smallest]:
        raise ValueError(
            f"Expected argument `meta` <= the smallest class size ({int(counts[smallest])}, class "
            f"{smallest}), but got {meta}"
        )
    meta_indices = _lowest_per_class(np.arange(labels.shape[0]), losses, labels, num_classes, meta)
    return _split(meta_indices, labels.shape[0])

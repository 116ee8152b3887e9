"""Class-count profiles of imbalanced training sets, and seeded subsampling to those counts.

The profiles are those of LDAM-DRW (Cao et al., NeurIPS 2019; code kaidic/LDAM-DRW,
``imbalance_cifar.py``), which CIFAR-10/100-LT and the Dynamic Loss, PAL and ABSGD long-tailed tables
use. The imbalance ``ratio`` is rho = n_max / n_min >= 1 (LDAM's ``imb_factor`` and Dynamic Loss's
``imb_ratio`` are its inverse, e.g. 0.01 for rho = 100).

- ``"exp"`` (long-tailed): n_i = int(n_max * (1 / ratio) ** (i / (C - 1))), class 0 the largest.
  CIFAR-10-LT (n_max 5000) keeps 12,406 images at ratio 100 and 20,431 at ratio 10; CIFAR-100-LT
  (n_max 500) keeps 10,847 and 19,573.
- ``"step"``: the first classes keep n_max, the last ``minority_fraction`` of them keep
  int(n_max / ratio).
- ``"none"``: every class keeps n_max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lt_noise.validation import SEED_LIMIT, check_int, check_interval, check_labels, check_seed

__all__ = ["IMBALANCE_KINDS", "imbalance_counts", "long_tailed_counts", "step_counts", "subsample_indices"]

IMBALANCE_KINDS = ("none", "exp", "step")

# Slack when turning minority_fraction * num_classes into a class count, so that a product such as
# 0.29 * 100 = 28.999999999999996 counts as 29 classes and not 28.
_COUNT_SLACK = 1e-9


def long_tailed_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Exponential (long-tailed) profile: n_i = int(n_max * (1 / ratio) ** (i / (C - 1))), i = 0..C-1.

    LDAM-DRW's ``imb_type='exp'`` with ``imb_factor = 1 / ratio``, computed in the same floating-point
    order so that the truncated counts agree with theirs (CIFAR-10, ratio 100:
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]).

    Raises:
        ValueError: on invalid arguments, or if a class would keep no sample (n_max too small for ratio).
    """
    _check_profile(n_max, num_classes, ratio)
    factor = 1.0 / ratio
    counts = [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    _check_nonempty(counts, f"n_max={n_max}, ratio={ratio}")
    return counts


def step_counts(n_max: int, num_classes: int, ratio: float, minority_fraction: float = 0.5) -> list[int]:
    """Step profile: the first classes keep n_max, the last ``minority_fraction`` of them int(n_max / ratio).

    LDAM-DRW's ``imb_type='step'`` (there always half of the classes: ``C // 2`` majority, ``C // 2``
    minority). Here the number of minority classes is floor(minority_fraction * C), at least one and at
    most C - 1; the majority classes come first, as in LDAM-DRW. With the default 0.5 and an even C this
    is LDAM-DRW's profile; for an odd C the extra class is a majority class (LDAM-DRW drops it).
    """
    _check_profile(n_max, num_classes, ratio)
    check_interval("minority_fraction", minority_fraction, 0.0, 1.0)
    num_minority = math.floor(minority_fraction * num_classes + _COUNT_SLACK)
    if not 1 <= num_minority <= num_classes - 1:
        raise ValueError(
            f"Expected argument `minority_fraction` to make between 1 and {num_classes - 1} of the "
            f"{num_classes} classes minority classes, but got {minority_fraction} ({num_minority} classes)"
        )
    minority = int(n_max * (1.0 / ratio))
    counts = [n_max] * (num_classes - num_minority) + [minority] * num_minority
    _check_nonempty(counts, f"n_max={n_max}, ratio={ratio}")
    return counts


def imbalance_counts(
    kind: str, n_max: int, num_classes: int, ratio: float, *, minority_fraction: float = 0.5
) -> list[int]:
    """Per-class counts of the profile ``kind`` in :data:`IMBALANCE_KINDS`.

    ``"none"``: ``[n_max] * num_classes`` (``ratio`` must then be 1, so that a ratio given without an
    imbalance kind is an error rather than a silently balanced run); ``"exp"``:
    :func:`long_tailed_counts`; ``"step"``: :func:`step_counts`.
    """
    if kind not in IMBALANCE_KINDS:
        raise ValueError(f"Expected argument `kind` in {IMBALANCE_KINDS}, but got {kind!r}")
    if kind == "exp":
        return long_tailed_counts(n_max, num_classes, ratio)
    if kind == "step":
        return step_counts(n_max, num_classes, ratio, minority_fraction=minority_fraction)
    _check_profile(n_max, num_classes, ratio)
    if ratio != 1:
        raise ValueError(f"Expected argument `ratio` to be 1 when kind='none', but got {ratio}")
    return [n_max] * num_classes


def subsample_indices(labels: Any, counts: Sequence[int], seed: int) -> np.ndarray:
    """Sorted int64 positions of a random subset holding exactly ``counts[c]`` samples of every class c.

    The draws are LDAM-DRW's (``gen_imbalanced_data``): with ``RandomState(seed)``, for every class in
    increasing order, shuffle the positions of that class and keep the first ``counts[c]``. For the
    CIFAR training labels in their file order, ``subsample_indices(targets, long_tailed_counts(...),
    seed)`` is therefore the same subset as LDAM-DRW's ``IMBALANCECIFAR10/100(rand_number=seed)``
    (returned sorted here, grouped by class there).

    Args:
        labels: 1-D integer array of class indices in ``[0, len(counts))``; it is not modified.
        counts: the number of samples to keep per class (each >= 1).
        seed: integer seed in ``[0, 2**32)``.

    Raises:
        ValueError: if a count is < 1 (an empty class after subsampling) or larger than the number of
            samples the class has, or on invalid labels or seed.
    """
    wanted = np.asarray(counts)
    if wanted.ndim != 1 or len(wanted) < 2 or not np.issubdtype(wanted.dtype, np.integer):
        raise ValueError(
            f"Expected argument `counts` to be a sequence of integer counts, one per class, for at least 2 "
            f"classes, but got {counts!r}"
        )
    num_classes = len(wanted)
    empty = np.flatnonzero(wanted < 1)
    if empty.size:
        raise ValueError(
            f"Expected argument `counts` to be >= 1 for every class, but got {int(wanted[empty[0]])} for "
            f"class {int(empty[0])}: empty class after subsampling"
        )
    check_seed(seed, below=SEED_LIMIT)  # numpy.random.RandomState (LDAM-DRW's draws) takes seeds < 2**32
    y = check_labels(labels, num_classes)
    available = np.bincount(y, minlength=num_classes)
    short = np.flatnonzero(available < wanted)
    if short.size:
        c = int(short[0])
        raise ValueError(
            f"Expected argument `counts` to ask at most the {int(available[c])} samples class {c} has, "
            f"but got {int(wanted[c])}"
        )
    rng = np.random.RandomState(seed)
    kept = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        kept.append(members[: int(wanted[c])])
    return np.sort(np.concatenate(kept)).astype(np.int64)


def _check_profile(n_max: Any, num_classes: Any, ratio: Any) -> None:
    check_int("n_max", n_max, minimum=1)
    check_int("num_classes", num_classes, minimum=2)
    check_interval("ratio", ratio, 1.0, math.inf, low_closed=True)


def _check_nonempty(counts: list[int], context: str) -> None:
    for c, n in enumerate(counts):
        if n < 1:
            raise ValueError(
                f"Expected every class to keep at least one sample, but class {c} gets {n} ({context}): "
                f"empty class after subsampling"
            )

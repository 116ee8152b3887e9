"""Synthetic label noise: pure, seeded functions that return a *new* int64 label array.

Every function takes clean labels (a 1-D integer array of class indices in ``[0, num_classes)``), a
noise ``rate`` in ``[0, 1)`` and an integer ``seed``, and never modifies its input. Names follow the
conventions of the papers whose tables the project reproduces; where two codebases disagree, both
variants are offered under plain names:

- :func:`symmetric_noise`: with probability ``rate`` a label becomes a uniformly drawn *different*
  class, so the realized flip rate is ``rate`` (PAL, APL, the curriculum paper, ABSGD).
- :func:`uniform_noise`: with probability ``rate`` a label is redrawn uniformly over *all* classes, so
  the realized flip rate is ``rate * (C - 1) / C`` (DivideMix, Dynamic Loss on CIFAR-N).
- :func:`asymmetric_noise`: a class ``s`` of the flip map becomes ``flip_map[s]`` with probability
  ``rate``; other classes never change (every paper; maps in :data:`FLIP_MAPS` and the two CIFAR-100
  maps :func:`cifar100_superclass_flip_map` and :func:`cifar100_block_flip_map`).
- :func:`class_frequency_noise`: with probability ``rate`` a label is redrawn from the observed class
  frequencies N_j / N (Dynamic Loss on CIFAR-N-LT).
- :func:`apply_noise`: the dispatcher the datamodules call, by ``kind`` in :data:`NOISE_KINDS`.

``exact=True`` (symmetric and asymmetric only) is a convention of the public Active-Passive-Losses
code (HanxunH/Active-Passive-Losses, ``dataset.py``), which PAL's and the curriculum paper's noisy
tables follow: exactly ``int(rate * n_c)`` samples of every affected class ``c`` are flipped, instead
of an independent coin per sample. That code uses it for symmetric noise and for CIFAR-10 asymmetric
noise; its MNIST and CIFAR-100 asymmetric noise is per sample (``exact=False``).

Random streams: the per-sample (Bernoulli) variants draw from ``numpy.random.default_rng(seed)``; the
``exact=True`` variants use ``numpy.random.RandomState(seed)`` and draw in the order of the APL code,
which seeds numpy's legacy global generator and then calls ``np.random.choice`` (see
:func:`symmetric_noise`). Seeds are therefore integers in ``[0, 2**32)``, the legacy generator's range.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from lt_noise.validation import SEED_LIMIT, check_int, check_interval, check_labels, check_seed

__all__ = [
    "CIFAR100_COARSE_LABELS",
    "FLIP_MAPS",
    "FLIP_MAP_NAMES",
    "NOISE_KINDS",
    "apply_noise",
    "asymmetric_noise",
    "cifar100_block_flip_map",
    "cifar100_superclass_flip_map",
    "class_frequency_noise",
    "resolve_flip_map",
    "symmetric_noise",
    "uniform_noise",
]

NOISE_KINDS = ("none", "symmetric", "uniform", "asymmetric", "class_frequency")

# CIFAR-100 has 100 fine classes in 20 superclasses of 5 each.
_CIFAR100_NUM_CLASSES = 100
_CIFAR100_GROUP_SIZE = 5

# Coarse (superclass) index of every CIFAR-100 fine class index, in the dataset's own numbering: fine
# and coarse names are each sorted alphabetically in the ``meta`` file of cifar-100-python (fine 0 =
# apple, 1 = aquarium_fish, ...; coarse 0 = aquatic_mammals, 1 = fish, ...). The grouping is the one on
# https://www.cs.toronto.edu/~kriz/cifar.html ; tests/data/test_noise.py rebuilds it from class names.
CIFAR100_COARSE_LABELS: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)

# Flip maps {source_class: target_class} of asymmetric (class-conditional) noise. Keys are the true
# classes that may be corrupted; each flips only to its own target.
FLIP_MAPS: Mapping[str, Mapping[int, int]] = MappingProxyType(
    {
        # APL (Ma et al., ICML 2020) and PAL appendix: 7 -> 1, 2 -> 7, 5 <-> 6, 3 -> 8.
        "mnist": MappingProxyType({7: 1, 2: 7, 5: 6, 6: 5, 3: 8}),
        # APL / PAL appendix / Dynamic Loss code: truck -> automobile, bird -> airplane,
        # cat <-> dog, deer -> horse.
        "cifar10": MappingProxyType({9: 1, 2: 0, 3: 5, 5: 3, 4: 7}),
        # Generalized Cross Entropy (Zhang & Sabuncu, NeurIPS 2018, Sec. 4, class-dependent noise),
        # also used by NLNL (Kim et al., ICCV 2019): ankle boot -> sneaker, sneaker -> sandal,
        # pullover -> shirt, coat <-> dress (classes 9 -> 7, 7 -> 5, 2 -> 6, 4 <-> 3).
        "fashion_mnist": MappingProxyType({9: 7, 7: 5, 2: 6, 4: 3, 3: 4}),
    }
)

FLIP_MAP_NAMES = (*FLIP_MAPS, "cifar100_superclass", "cifar100_block")


# --------------------------------------------------------------------------------------------------
# CIFAR-100 flip maps
def cifar100_superclass_flip_map() -> dict[int, int]:
    """CIFAR-100 asymmetric noise within the *true* superclasses.

    Each fine class flips to the next fine class of its own superclass (in increasing class index),
    cyclically, so every superclass is one 5-cycle. This is what the PAL and curriculum papers'
    text describes ("grouped into 20 super-classes ... flipped within the same super-class into the
    next in a circular fashion"), using the real grouping :data:`CIFAR100_COARSE_LABELS`.

    The public APL code, which those papers' numbers come from, does something else: see
    :func:`cifar100_block_flip_map`.
    """
    flip_map: dict[int, int] = {}
    for coarse in range(_CIFAR100_NUM_CLASSES // _CIFAR100_GROUP_SIZE):
        members = [fine for fine, c in enumerate(CIFAR100_COARSE_LABELS) if c == coarse]
        for position, fine in enumerate(members):
            flip_map[fine] = members[(position + 1) % len(members)]
    return dict(sorted(flip_map.items()))


def cifar100_block_flip_map() -> dict[int, int]:
    """CIFAR-100 asymmetric noise as the public APL code makes it: cycles in blocks of 5 indices.

    Class ``i`` flips to ``5 * (i // 5) + (i + 1) % 5``: classes 0-4 form one cycle, 5-9 the next, and
    so on (HanxunH/Active-Passive-Losses, ``dataset.py``, ``build_for_cifar100``). Consecutive fine
    indices are alphabetical, *not* superclasses (0-4 are apple, aquarium_fish, baby, bear, beaver), so
    this noise is not semantically structured. Use it to reproduce APL/PAL/curriculum CIFAR-100 tables;
    :func:`cifar100_superclass_flip_map` is the grouping their text describes.
    """
    group = _CIFAR100_GROUP_SIZE
    return {i: group * (i // group) + (i + 1) % group for i in range(_CIFAR100_NUM_CLASSES)}


def resolve_flip_map(flip_map: Mapping[int, int] | str, num_classes: int | None = None) -> dict[int, int]:
    """Validate a flip map given as a dict or a name in :data:`FLIP_MAP_NAMES`; return a plain dict.

    With ``num_classes``, every source and target class must lie in ``[0, num_classes)``.
    """
    if isinstance(flip_map, str):
        if flip_map == "cifar100_superclass":
            flip_map = cifar100_superclass_flip_map()
        elif flip_map == "cifar100_block":
            flip_map = cifar100_block_flip_map()
        elif flip_map in FLIP_MAPS:
            flip_map = FLIP_MAPS[flip_map]
        else:
            raise ValueError(
                f"Expected argument `flip_map` to be a dict or one of {FLIP_MAP_NAMES}, but got {flip_map!r}"
            )
    if not isinstance(flip_map, Mapping):
        raise ValueError(
            f"Expected argument `flip_map` to be a dict {{source_class: target_class}} or one of "
            f"{FLIP_MAP_NAMES}, but got {flip_map!r}"
        )
    if not flip_map:
        raise ValueError("Expected argument `flip_map` to map at least one class, but got an empty map")
    upper = math.inf if num_classes is None else num_classes
    resolved: dict[int, int] = {}
    for source, target in flip_map.items():
        for cls in (source, target):
            if not isinstance(cls, numbers.Integral) or isinstance(cls, (bool, np.bool_)):
                raise ValueError(
                    f"Expected argument `flip_map` to map integer classes to integer classes, but got "
                    f"the entry {source!r}: {target!r}"
                )
            if not 0 <= cls < upper:
                expected = "non-negative classes" if num_classes is None else f"classes in [0, {num_classes})"
                raise ValueError(
                    f"Expected argument `flip_map` to use {expected}, but got unknown flip-map class {cls} "
                    f"(entry {source}: {target})"
                )
        if source == target:
            raise ValueError(
                f"Expected argument `flip_map` to map every class to a different class, but got {source}: {target}"
            )
        resolved[int(source)] = int(target)
    return resolved


# --------------------------------------------------------------------------------------------------
# Noise models
def symmetric_noise(
    labels: Any, num_classes: int, rate: float, seed: int, *, exact: bool = False
) -> np.ndarray:
    """Symmetric noise: a corrupted label is drawn uniformly from the *other* ``num_classes - 1`` classes.

    This is the "symmetric" noise of APL / PAL (appendix, "Noise generation") and of the curriculum
    paper (App. B: "randomly flipped to a *different* class with probabilities eta"): the transition
    matrix is ``1 - rate`` on the diagonal and ``rate / (C - 1)`` elsewhere, so the realized fraction of
    wrong labels is ``rate`` itself. Contrast :func:`uniform_noise`.

    Args:
        labels: 1-D integer array of clean class indices in ``[0, num_classes)``.
        num_classes: number of classes C (>= 2).
        rate: flip probability in ``[0, 1)``.
        seed: integer seed in ``[0, 2**32)``.
        exact: ``False``: every sample flips independently with probability ``rate``. ``True``: the
            public APL code's convention (HanxunH/Active-Passive-Losses, ``dataset.py``): in every class
            ``c``, exactly ``int(rate * n_c)`` samples (int truncation) flip, chosen without replacement;
            each gets a uniformly drawn other class. The draws follow that code's order with a
            ``RandomState(seed)``: one ``choice(members_c, k_c, replace=False)`` per class in class
            order, then one uniform draw among the other classes per chosen sample, in that order.
            APL computes ``k_c = int(int(rate * N) / C)`` from the total size N, which equals
            ``int(rate * n_c)`` for the balanced sets it uses; the per-class form here is also right
            for long-tailed sets.

    Returns:
        A new int64 array of noisy labels.
    """
    y = _check_inputs(labels, num_classes, rate, seed)
    noisy = y.copy()
    if exact:
        rng = np.random.RandomState(seed)
        chosen = [
            rng.choice(np.flatnonzero(y == c), int(rate * np.count_nonzero(y == c)), replace=False)
            for c in range(num_classes)
        ]
        flipped = np.concatenate(chosen).astype(np.int64)
        # A uniform index among the C - 1 other classes, then skip over the true class.
        other = rng.randint(0, num_classes - 1, size=len(flipped))
        noisy[flipped] = other + (other >= y[flipped])
        return noisy
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < rate
    shift = rng.integers(1, num_classes, size=int(flip.sum()))  # 1..C-1: never the true class
    noisy[flip] = (y[flip] + shift) % num_classes
    return noisy


def uniform_noise(labels: Any, num_classes: int, rate: float, seed: int) -> np.ndarray:
    """Uniform noise: with probability ``rate`` a label is replaced by a uniform draw over *all* classes.

    The convention of DivideMix and of Dynamic Loss on CIFAR-N (paper App.: "randomly changing the
    labels with all possible labels according to a fixed probability"; authors' code
    jiangwenj02/dynamic_loss, ``uniform_mix_C``: transition matrix ``rate / C + (1 - rate) * I``). The
    draw can return the true class, so the realized fraction of wrong labels is
    ``rate * (C - 1) / C``. Contrast :func:`symmetric_noise`.

    Args:
        labels: 1-D integer array of clean class indices in ``[0, num_classes)``.
        num_classes: number of classes C (>= 2).
        rate: resampling probability in ``[0, 1)``.
        seed: integer seed in ``[0, 2**32)``.

    Returns:
        A new int64 array of noisy labels.
    """
    y = _check_inputs(labels, num_classes, rate, seed)
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    resample = rng.random(len(y)) < rate
    noisy[resample] = rng.integers(0, num_classes, size=int(resample.sum()))
    return noisy


def asymmetric_noise(
    labels: Any,
    flip_map: Mapping[int, int] | str,
    rate: float,
    seed: int,
    *,
    exact: bool = False,
    num_classes: int | None = None,
) -> np.ndarray:
    """Asymmetric (class-conditional) noise: class ``s`` becomes ``flip_map[s]`` with probability ``rate``.

    Only classes that are keys of ``flip_map`` can change, and only to their own target. The flip
    applies to the *clean* label, so chains do not compound: with MNIST's 2 -> 7 and 7 -> 1, a true 2
    becomes 7 or stays 2, never 1.

    Args:
        labels: 1-D integer array of clean class indices.
        flip_map: ``{source_class: target_class}``, or a name in :data:`FLIP_MAP_NAMES`
            (``"mnist"``, ``"cifar10"``, ``"fashion_mnist"`` from :data:`FLIP_MAPS`,
            ``"cifar100_superclass"``, ``"cifar100_block"``).
        rate: flip probability in ``[0, 1)``.
        seed: integer seed in ``[0, 2**32)``.
        exact: ``False``: each sample of a source class flips independently with probability ``rate``
            (as the APL code does for MNIST and CIFAR-100, and the Dynamic Loss code for CIFAR-10).
            ``True``: exactly ``int(rate * n_s)`` samples of each source class ``s`` flip, chosen
            without replacement by a ``RandomState(seed)`` in the order of the flip map (as the APL code
            does for CIFAR-10). Unlike that code, which flips the classes one after another on the
            already-corrupted labels, so that its 5 -> 3 step also draws among the cats just relabelled
            3 -> 5, the samples are always drawn from the *clean* members of ``s``.
        num_classes: if given, labels and flip-map classes must lie in ``[0, num_classes)``.

    Returns:
        A new int64 array of noisy labels.
    """
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=2)
    resolved = resolve_flip_map(flip_map, num_classes)
    y = _check_inputs(labels, num_classes, rate, seed)
    noisy = y.copy()
    if exact:
        rng = np.random.RandomState(seed)
        for source, target in resolved.items():
            members = np.flatnonzero(y == source)
            noisy[rng.choice(members, int(rate * len(members)), replace=False)] = target
        return noisy
    rng = np.random.default_rng(seed)
    lookup = np.arange(max(int(y.max(initial=0)), *resolved, *resolved.values()) + 1, dtype=np.int64)
    lookup[list(resolved)] = list(resolved.values())
    flip = (rng.random(len(y)) < rate) & (lookup[y] != y)
    noisy[flip] = lookup[y[flip]]
    return noisy


def class_frequency_noise(labels: Any, num_classes: int, rate: float, seed: int) -> np.ndarray:
    """Class-frequency noise of Dynamic Loss's CIFAR-N-LT (paper Sec. "Results on CIFAR-N-LT").

    "The label of each sample is independently changed to class j with probability rate * N_j / N",
    where N_j are the class counts of ``labels`` itself (apply it *after* long-tail subsampling, as the
    paper does) and N = len(labels). The target may be the true class: the authors' code
    (jiangwenj02/dynamic_loss, ``uniform_mix_C_imb``) uses the transition matrix
    ``(1 - rate) * I + rate * N_j / N`` (every row, including the diagonal), i.e. with probability
    ``rate`` the label is redrawn from the empirical class distribution. A sample of class i therefore
    keeps its label with probability ``1 - rate + rate * N_i / N``, and noise concentrates on head
    classes as targets.

    Args:
        labels: 1-D integer array of clean class indices in ``[0, num_classes)``.
        num_classes: number of classes C (>= 2).
        rate: redraw probability (the paper's lambda) in ``[0, 1)``.
        seed: integer seed in ``[0, 2**32)``.

    Returns:
        A new int64 array of noisy labels.
    """
    y = _check_inputs(labels, num_classes, rate, seed)
    noisy = y.copy()
    if len(y) == 0:
        return noisy
    frequencies = np.bincount(y, minlength=num_classes) / len(y)
    rng = np.random.default_rng(seed)
    redraw = rng.random(len(y)) < rate
    noisy[redraw] = rng.choice(num_classes, size=int(redraw.sum()), p=frequencies)
    return noisy


def apply_noise(
    labels: Any,
    *,
    kind: str,
    rate: float,
    num_classes: int,
    seed: int,
    flip_map: Mapping[int, int] | str | None = None,
    exact: bool = False,
) -> np.ndarray:
    """Corrupt ``labels`` with the noise model named ``kind`` (one of :data:`NOISE_KINDS`).

    ``"none"`` returns an int64 copy (and requires ``rate == 0``, so that a rate given without a noise
    kind is an error rather than a silently clean run). ``flip_map`` is required for
    ``"asymmetric"``; for the other kinds it is validated but unused, so that a datamodule can pass its
    dataset's default map unconditionally. ``exact`` exists for ``"symmetric"`` and ``"asymmetric"``
    only.

    Returns:
        A new int64 array of (possibly) noisy labels.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"Expected argument `kind` in {NOISE_KINDS}, but got {kind!r}")
    if not isinstance(exact, (bool, np.bool_)):
        raise ValueError(f"Expected argument `exact` to be a bool, but got {exact!r}")
    if exact and kind not in ("symmetric", "asymmetric"):
        raise ValueError(
            f"Expected argument `exact` to be False for kind={kind!r} (only 'symmetric' and 'asymmetric' "
            f"have an exact-count variant), but got True"
        )
    check_int("num_classes", num_classes, minimum=2)
    if flip_map is not None:
        flip_map = resolve_flip_map(flip_map, num_classes)
    if kind == "none":
        y = _check_inputs(labels, num_classes, rate, seed)
        if rate != 0:
            raise ValueError(f"Expected argument `rate` to be 0 when kind='none', but got {rate}")
        return y.copy()
    if kind == "symmetric":
        return symmetric_noise(labels, num_classes, rate, seed, exact=exact)
    if kind == "uniform":
        return uniform_noise(labels, num_classes, rate, seed)
    if kind == "class_frequency":
        return class_frequency_noise(labels, num_classes, rate, seed)
    if flip_map is None:
        raise ValueError(
            f"Expected argument `flip_map` (a dict or one of {FLIP_MAP_NAMES}) for kind='asymmetric', but got None"
        )
    return asymmetric_noise(labels, flip_map, rate, seed, exact=exact, num_classes=num_classes)


def _check_inputs(labels: Any, num_classes: int | None, rate: Any, seed: Any) -> np.ndarray:
    """The checked labels (an int64 array, not a copy) after checking ``num_classes``, ``rate`` and ``seed``."""
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=2)
    y = check_labels(labels, num_classes)
    check_interval("rate", rate, 0.0, 1.0, low_closed=True)
    check_seed(seed, below=SEED_LIMIT)  # numpy.random.RandomState (the APL-ordered draws) takes seeds < 2**32
    return y

"""Class-count-aware losses for long-tailed data: LDAM, Balanced Softmax, logit adjustment, and the
class-balanced (effective number) weights.

``class_counts`` are the observed training samples per class (after noise, DESIGN.md §3), linked from
the datamodule; they are validated once and kept as buffers, so ``.to()`` and checkpoints carry them.
A logits width different from ``len(class_counts)`` is an error at ``forward``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lt_noise.losses._base import PerSampleLoss
from lt_noise.validation import check_class_counts, check_interval
from lt_noise.losses.registry import register_loss

__all__ = ["LDAM", "BalancedSoftmax", "LogitAdjusted", "class_balanced_weights", "ldam_margins"]

ClassCounts = Sequence[int] | np.ndarray | Tensor


def ldam_margins(class_counts: ClassCounts, max_m: float = 0.5) -> Tensor:
    """LDAM's per-class margins m_j ∝ n_j^(-1/4), scaled so that the largest is ``max_m`` (float32, (C,)).

    Cao et al. (2019): m_j = C / n_j^(1/4); C is fixed by the authors' code (kaidic/LDAM-DRW)
    as max_m / max_j n_j^(-1/4), i.e. m_j = max_m (n_min / n_j)^(1/4).
    """
    counts = check_class_counts(class_counts).double()
    max_m = check_interval("max_m", max_m, 0.0)
    inv_root = counts.pow(-0.25)
    return (inv_root * (max_m / inv_root.max())).float()


def class_balanced_weights(class_counts: ClassCounts, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights from the effective number of samples (Cui et al. 2019), float32 (C,).

    w_j = (1 - β) / (1 - β^{n_j}), normalised to sum to C as in the LDAM-DRW code (the DRW stage's
    per-class weights). β in [0, 1): β = 0 gives all ones, β -> 1 inverse-frequency weights.
    Default 0.9999 (LDAM-DRW and Cui et al.'s CIFAR-LT setting).
    """
    counts = check_class_counts(class_counts).double()
    beta = check_interval("beta", beta, 0.0, 1.0, low_closed=True)
    # 1 - β^n = -expm1(n log β) keeps precision when β^n is close to 1 (β near 1, small n).
    effective = -torch.expm1(counts * math.log(beta)) if beta > 0.0 else torch.ones_like(counts)
    weights = (1.0 - beta) / effective
    return (weights * (len(counts) / weights.sum())).to(torch.get_default_dtype())


class _CountAware(PerSampleLoss):
    """Shared part: the validated counts as a buffer and the logits-width check."""

    def __init__(self, class_counts: ClassCounts) -> None:
        super().__init__()
        self.register_buffer("class_counts", check_class_counts(class_counts))

    def _check_width(self, logits: Tensor) -> None:
        if logits.shape[1] != self.class_counts.numel():
            raise ValueError(
                f"Expected logits with {self.class_counts.numel()} classes (len(class_counts)), "
                f"but got shape {tuple(logits.shape)}"
            )


class _BiasedSoftmax(_CountAware):
    """Cross entropy on logits + a per-class bias (a buffer named by the subclass)."""

    supports_soft_targets = True

    def _bias(self) -> Tensor:
        raise NotImplementedError

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._check_width(logits)
        return F.cross_entropy(logits + self._bias().to(logits.dtype), target, reduction="none")

    _soft_forward = _hard_forward


@register_loss("ldam")
class LDAM(_CountAware):
    """Label-distribution-aware margin loss CE(s · (z - m_y e_y), y) (Cao et al. 2019).

    Args:
        class_counts: training samples per class, positive integers.
        max_m: largest margin (the rarest class), > 0. Default 0.5.
        s: logit scale, > 0. Default 30. As in the authors' code, s multiplies all logits, which are
            meant to be cosine similarities (a normalised linear head).

    Margins: :func:`ldam_margins`, kept in the ``margins`` buffer. Class indices only (the margin is
    subtracted at the labelled class). The DRW stage's per-class weights
    (:func:`class_balanced_weights`) are applied by the method, which owns the reduction.
    """

    def __init__(self, class_counts: ClassCounts, max_m: float = 0.5, s: float = 30.0) -> None:
        super().__init__(class_counts)
        self.max_m = check_interval("max_m", max_m, 0.0)
        self.s = check_interval("s", s, 0.0)
        self.register_buffer("margins", ldam_margins(self.class_counts, self.max_m))

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._check_width(logits)
        margin = self.margins.to(logits.dtype)[target]
        shifted = logits.scatter_add(1, target.unsqueeze(1), -margin.unsqueeze(1))
        return F.cross_entropy(self.s * shifted, target, reduction="none")

    @property
    def logit_scale(self) -> float:
        """``s``: the cosine logits' scale, part of the model's predictive distribution softmax(s z)."""
        return self.s

    def extra_repr(self) -> str:
        return f"num_classes={self.class_counts.numel()}, max_m={self.max_m}, s={self.s}"


@register_loss("balanced_softmax")
class BalancedSoftmax(_BiasedSoftmax):
    """Balanced Softmax: cross entropy on z_j + log n_j (Ren et al. 2020).

    Accepts soft targets (cross entropy against them on the adjusted logits).
    """

    def __init__(self, class_counts: ClassCounts) -> None:
        super().__init__(class_counts)
        self.register_buffer("log_counts", self.class_counts.double().log().float())

    def _bias(self) -> Tensor:
        return self.log_counts

    def extra_repr(self) -> str:
        return f"num_classes={self.class_counts.numel()}"


@register_loss("logit_adjusted")
class LogitAdjusted(_BiasedSoftmax):
    """Logit-adjusted loss: cross entropy on z_j + τ log π_j with π_j = n_j / Σ n (Menon et al. 2021).

    Args:
        class_counts: training samples per class.
        tau: τ >= 0. Default 1.0 (Menon et al.; τ = 1 equals :class:`BalancedSoftmax`, since the two
            differ by a per-row constant).

    Accepts soft targets.
    """

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0) -> None:
        super().__init__(class_counts)
        self.tau = check_interval("tau", tau, 0.0, low_closed=True)
        counts = self.class_counts.double()
        self.register_buffer("log_prior", (counts / counts.sum()).log().float())

    def _bias(self) -> Tensor:
        return self.tau * self.log_prior

    def extra_repr(self) -> str:
        return f"num_classes={self.class_counts.numel()}, tau={self.tau}"

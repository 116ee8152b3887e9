"""Base classes: the shared ``forward`` contract and the p_y-loss (curriculum) interface.

:class:`PerSampleLoss` owns the contract every loss honours (DESIGN.md §2): ``forward(logits,
target)`` takes logits (B, C) and class indices (B,) int64 or, where the math allows it, a
probability vector per row (B, C); it returns the per-sample losses (B,), never reduced, computed in
at least float32 whatever the autocast dtype of the logits.

:class:`LabelProbabilityLoss` is a loss that is a function of p_y alone, L(s, y) = l(p_y). By the
curriculum paper's Eq. (1) its gradient is ∇_s L = -w(Δ_y) ∇_s Δ_y with the soft margin Δ_y and the
sample-weighting function w(Δ_y) = -dl/dp_y · dp_y/dΔ_y >= 0 (the paper writes w <= 0 and tabulates
|w|; we use the non-negative sign, like its Tables 1 and 6). Subclasses write l and w once, as
functions of (log p_y, log(1 - p_y)) = (logsigmoid(Δ), logsigmoid(-Δ)), so the value, its gradient
and ``weight`` share one numerically safe parametrisation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_noise.losses._core import margin_from_logits, upcast
from lt_noise.validation import check_delta, check_logits, check_target

__all__ = ["LabelProbabilityLoss", "PerSampleLoss", "numeric_max_weight"]

# Grid for the numerical supremum of w(Δ) (losses without a closed form). Beyond |Δ| = 60 one of
# p_y, 1 - p_y is below 1e-26, where every tabulated w is within 1e-20 of its limit (0, or the
# CE-like supremum approached as Δ -> -inf), so the grid edge cannot hide a larger value.
MAX_WEIGHT_GRID_LIMIT = 60.0
# A coarse pass (spacing 1e-2) finds the peak, a fine pass (spacing 1e-5) around it refines it: w is
# smooth, so the result is within about |w''| * 1e-10 of the true maximum, for ~14k evaluations.
MAX_WEIGHT_COARSE_STEP = 1e-2
MAX_WEIGHT_FINE_POINTS = 2001


class PerSampleLoss(nn.Module):
    """Checks inputs, casts logits up to float32 and dispatches on the kind of target.

    Subclasses implement ``_hard_forward(logits, target)`` for class indices and, if they set
    ``supports_soft_targets = True``, ``_soft_forward(logits, target)`` for probability vectors.
    Both receive logits already in float32 (or float64) and return shape (B,).
    """

    supports_soft_targets: ClassVar[bool] = False

    def __init__(self) -> None:
        # Explicit, so that losses without hyperparameters expose an empty signature to the registry.
        super().__init__()

    @property
    def logit_scale(self) -> float:
        """The factor this loss multiplies the model's logits by before its softmax (1; LDAM: its ``s``).

        The model's predictive distribution is ``softmax(logit_scale * logits)``: what the methods'
        evaluation metrics (ECE, NLL), predictions and label-issue scores use.
        """
        return 1.0

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-sample losses (B,) for logits (B, C) and class indices (B,) or probabilities (B, C)."""
        kind = check_target(target, check_logits(logits))
        logits = upcast(logits)
        if kind == "hard":
            return self._hard_forward(logits, target)
        if not self.supports_soft_targets:
            raise ValueError(
                f"{type(self).__name__} accepts only class indices of shape (B,) as `target`; soft targets "
                f"(a probability vector per row, here shape {tuple(target.shape)}) are not defined for it"
            )
        return self._soft_forward(logits, target.to(logits.dtype))

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


class LabelProbabilityLoss(PerSampleLoss):
    """A loss L(s, y) = l(p_y) of the labelled class's softmax probability only (a "p_y-loss").

    Subclasses implement ``_value(log_p, log_q)`` = l(p_y) and ``_weight(log_p, log_q)`` = w, where
    ``log_p = log p_y`` and ``log_q = log(1 - p_y)``, and may override :meth:`max_weight` with a
    closed form. ``forward`` evaluates l at p_y = sigmoid(Δ_y), which is the softmax probability.
    """

    @property
    def is_py_loss(self) -> bool:
        """True when the loss depends on p_y only (so that :meth:`weight` is defined)."""
        return True

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        delta = margin_from_logits(logits, target)
        return self._value(F.logsigmoid(delta), F.logsigmoid(-delta))

    def weight(self, delta: Tensor) -> Tensor:
        """The sample-weighting function w(Δ_y) = -dL/dΔ_y >= 0 (curriculum paper, Eq. (1)).

        Exact, including the loss's constant factors (e.g. -A for RCE, 1/a for AEL), so that
        ∇_s L = -weight(Δ_y) ∇_s Δ_y holds; Tables 1 and 6 of the paper drop those constants.
        ``delta`` may have any shape; the result has the same shape.
        """
        self._require_py_loss()
        delta = upcast(check_delta(delta))
        return self._weight(F.logsigmoid(delta), F.logsigmoid(-delta))

    def max_weight(self) -> float:
        """sup over Δ of w(Δ): the constant that normalises w to unit maximum.

        This default takes the maximum over a grid of Δ in [-60, 60] (float64; spacing 1e-2, then
        1e-5 around the peak); subclasses with a closed form override it and say so.
        """
        self._require_py_loss()
        return numeric_max_weight(self)

    def _require_py_loss(self) -> None:
        if not self.is_py_loss:
            raise ValueError(
                f"The sample-weighting function is defined only for losses of p_y alone, but {self!r} "
                "also depends on the probabilities of the other classes"
            )

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        raise NotImplementedError

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        raise NotImplementedError


def numeric_max_weight(loss: LabelProbabilityLoss) -> float:
    """max of ``loss._weight`` over Δ in [-60, 60] (float64): coarse grid, then a fine one around its peak."""

    def weight_on(grid: Tensor) -> Tensor:
        return loss._weight(F.logsigmoid(grid), F.logsigmoid(-grid))

    num = int(round(2 * MAX_WEIGHT_GRID_LIMIT / MAX_WEIGHT_COARSE_STEP)) + 1
    with torch.no_grad():
        coarse = torch.linspace(-MAX_WEIGHT_GRID_LIMIT, MAX_WEIGHT_GRID_LIMIT, num, dtype=torch.float64)
        peak = float(coarse[weight_on(coarse).argmax()])
        low = max(peak - MAX_WEIGHT_COARSE_STEP, -MAX_WEIGHT_GRID_LIMIT)
        high = min(peak + MAX_WEIGHT_COARSE_STEP, MAX_WEIGHT_GRID_LIMIT)
        fine = torch.linspace(low, high, MAX_WEIGHT_FINE_POINTS, dtype=torch.float64)
        return float(weight_on(fine).max())

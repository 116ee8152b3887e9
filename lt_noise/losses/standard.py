"""Standard classification losses: cross entropy (with label smoothing), focal loss, MSE.

Formulas and sample-weighting functions follow the curriculum paper (Ou & Zhang, ICLR 2023;
papers/003), Appendix A.1 / A.5 and Table 6; p_y is the softmax probability of the labelled class and
Δ_y its soft margin (§4).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lt_noise.losses._base import LabelProbabilityLoss, PerSampleLoss
from lt_noise.losses._core import class_mask
from lt_noise.validation import check_flag, check_interval
from lt_noise.losses.registry import register_loss

__all__ = ["CrossEntropy", "FocalLoss", "MSE"]


@register_loss("ce")
class CrossEntropy(LabelProbabilityLoss):
    """Cross entropy -Σ_i t_i log p_i, optionally label-smoothed.

    Args:
        label_smoothing: ε in [0, 1). The target becomes (1 - ε) t + ε / C, smoothing over all C
            classes including the labelled one (Szegedy et al. 2016; torch's convention).

    Accepts soft targets (a probability vector per row). With ``label_smoothing=0`` it is the
    p_y-loss -log p_y with w(Δ_y) = 1 - p_y (Table 6), whose supremum 1 is approached as Δ -> -inf
    (closed form, not attained). With ε > 0 it also depends on the other classes (Table 7, "CE+GLS"),
    so :meth:`weight` raises.
    """

    supports_soft_targets = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = check_interval("label_smoothing", label_smoothing, 0.0, 1.0, low_closed=True)

    @property
    def is_py_loss(self) -> bool:
        return self.label_smoothing == 0.0

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        # torch's fused kernel; for ε = 0 it is the p_y form -log p_y = -logsigmoid(Δ_y).
        return F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)

    _soft_forward = _hard_forward

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return log_q.exp()

    def max_weight(self) -> float:
        """1: the supremum of 1 - p_y, approached as Δ_y -> -inf (closed form)."""
        self._require_py_loss()
        return 1.0

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


@register_loss("focal")
class FocalLoss(LabelProbabilityLoss):
    """Focal loss -(1 - p_y)^γ log p_y (Lin et al. 2017; Table 6 "FL", where γ is written q).

    Args:
        gamma: γ >= 0 (γ = 0 is cross entropy). Default 0.5, the setting of the APL/PAL noisy-label
            baselines (Ma et al. 2020 configs), which the PAL and curriculum tables follow.

    w(Δ_y) = (1 - p_y)^γ (1 - p_y - γ p_y log p_y) (Table 6); its maximum has no closed form, so it is
    taken on the Δ grid (it exceeds 1 for γ > 0). Class indices only.

        detach_focal_factor: treat the focusing factor (1 - p_y)^γ as a constant in the gradient, as
            the APL and ALFs reference code does (clcarwin's focal loss computes it from a detached
            p_y). The value is the same; the gradient becomes (1 - p_y)^γ times that of cross entropy,
            so w(Δ_y) = (1 - p_y)^(γ+1). Default False: the true derivative of the loss (the formula of
            Lin et al. and of the curriculum paper's Table 6). Set it to reproduce the APL/PAL tables.
    """

    def __init__(self, gamma: float = 0.5, detach_focal_factor: bool = False) -> None:
        super().__init__()
        self.gamma = check_interval("gamma", gamma, 0.0, low_closed=True)
        self.detach_focal_factor = check_flag("detach_focal_factor", detach_focal_factor)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        factor = (self.gamma * log_q).exp()
        return -(factor.detach() if self.detach_focal_factor else factor) * log_p

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        p, q = log_p.exp(), log_q.exp()
        if self.detach_focal_factor:
            return ((self.gamma + 1.0) * log_q).exp()
        return (self.gamma * log_q).exp() * (q - self.gamma * p * log_p)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, detach_focal_factor={self.detach_focal_factor}"


@register_loss("mse")
class MSE(PerSampleLoss):
    """Mean squared error between the target distribution and the softmax, Σ_i (t_i - p_i)^2.

    Ghosh et al. (2017); with class indices it is 1 - 2 p_y + Σ_i p_i^2 (curriculum paper Table 7),
    i.e. MAE plus the entropy regularizer Σ_i p_i^2, so it is not a p_y-loss (no ``weight``).
    Accepts soft targets, for which it is the squared distance to that distribution (zero when the
    softmax equals it).
    """

    supports_soft_targets = True

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._soft_forward(logits, class_mask(logits, target).to(logits.dtype))

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return (target - logits.softmax(dim=1)).square().sum(dim=1)

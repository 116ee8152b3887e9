"""Noise-robust losses: symmetric, asymmetric, combined (curriculum paper, papers/003, §3.1 and App. A).

p_y is the softmax probability of the labelled class, Δ_y its soft margin, w(Δ_y) = -dL/dΔ_y >= 0 the
sample-weighting function (§4, Eq. (1)); Table 1/6 list w without the losses' constant factors, the
``weight`` methods here keep them. The p_y-losses (MAE, RCE, GCE, SCE, AGCE, AUL, AEL, TCE) derive
from :class:`~lt_noise.losses._base.LabelProbabilityLoss`; NCE, NFL, NGCE and NSL depend on every
class's score and have no ``weight``.

Soft targets (a probability vector t per row) are accepted by MAE, RCE, SCE, NCE and NSL, whose
formulas are linear in the target: for MAE/RCE/SCE the value is the expectation over labels drawn
from t, Σ_i t_i L(s, i) (mixup's convention); for NCE it is the APL code's literal
-Σ_i t_i log p_i / Σ_j -log p_j, and for NSL -Σ_i t_i s_i. All other losses raise ``ValueError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lt_noise.losses._base import LabelProbabilityLoss, PerSampleLoss
from lt_noise.losses._core import label_logit, log1m_softmax
from lt_noise.validation import check_flag, check_interval, check_positive_int
from lt_noise.losses.registry import register_loss

__all__ = ["AEL", "AGCE", "AUL", "GCE", "MAE", "NCE", "NFL", "NGCE", "NSL", "RCE", "SCE", "TCE"]

# RCE's log 0 is truncated to A (Wang et al. 2019, "A = -4" in their experiments). Note: the APL and
# ALFs reference code clamps the one-hot label at 1e-4 instead, i.e. uses A = log(1e-4) ≈ -9.21;
# pass A=math.log(1e-4) to reproduce their numbers exactly.
DEFAULT_A = -4.0


def _expected_label_probability(logits: Tensor, target: Tensor) -> Tensor:
    """Σ_i t_i p_i: the expectation of p_y over labels y ~ t."""
    return (target * logits.softmax(dim=1)).sum(dim=1)


@register_loss("mae")
class MAE(LabelProbabilityLoss):
    """Mean absolute error 1 - p_y (Ghosh et al. 2017; Σ_i |1(i=y) - p_i| = 2 - 2 p_y, halved as in APL).

    Symmetric. w(Δ_y) = p_y (1 - p_y), maximum 1/4 at Δ = 0 (closed form). Soft targets: 1 - Σ_i t_i p_i.
    """

    supports_soft_targets = True

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return log_q.exp()

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return (log_p + log_q).exp()

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return 1.0 - _expected_label_probability(logits, target)

    def max_weight(self) -> float:
        """1/4, at p_y = 1/2 (closed form)."""
        return 0.25


@register_loss("rce")
class RCE(LabelProbabilityLoss):
    """Reverse cross entropy -Σ_i p_i log t_i with log 0 := A, i.e. -A (1 - p_y) (Wang et al. 2019).

    Args:
        A: the truncated log 0, A < 0. Default -4 (Wang et al.); the APL/ALFs code effectively uses
            log(1e-4) ≈ -9.21 (see :data:`DEFAULT_A`).

    w(Δ_y) = -A p_y (1 - p_y), maximum -A/4 (closed form). Soft targets: -A (1 - Σ_i t_i p_i), the
    expectation over labels (not the literal truncated -Σ_i p_i log t_i).
    """

    supports_soft_targets = True

    def __init__(self, A: float = DEFAULT_A) -> None:  # noqa: N803 - the paper's name
        super().__init__()
        self.A = check_interval("A", A, high=0.0)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return -self.A * log_q.exp()

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return -self.A * (log_p + log_q).exp()

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return -self.A * (1.0 - _expected_label_probability(logits, target))

    def max_weight(self) -> float:
        """-A/4, at p_y = 1/2 (closed form)."""
        return -self.A / 4.0

    def extra_repr(self) -> str:
        return f"A={self.A}"


@register_loss("gce")
class GCE(LabelProbabilityLoss):
    """Generalized cross entropy (1 - p_y^q) / q (Zhang & Sabuncu 2018).

    Args:
        q: in (0, 1]; q -> 0 is CE, q = 1 is MAE. Default 0.7 (Zhang & Sabuncu; APL configs).

    w(Δ_y) = p_y^q (1 - p_y); its maximum, at p_y = q / (1 + q), is (q / (1 + q))^q / (1 + q)
    (closed form). Class indices only.
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = check_interval("q", q, 0.0, 1.0, high_closed=True)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return -torch.expm1(self.q * log_p) / self.q

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return (self.q * log_p + log_q).exp()

    def max_weight(self) -> float:
        """(q/(1+q))^q / (1+q), at p_y = q/(1+q) (closed form)."""
        return (self.q / (1.0 + self.q)) ** self.q / (1.0 + self.q)

    def extra_repr(self) -> str:
        return f"q={self.q}"


@register_loss("sce")
class SCE(LabelProbabilityLoss):
    """Symmetric cross entropy α CE + β RCE = -α log p_y - β A (1 - p_y) (Wang et al. 2019).

    Args:
        alpha, beta: >= 0, not both 0. Defaults 0.1 and 1.0 (Wang et al.'s CIFAR-10 setting, APL configs).
        A: RCE's truncated log 0, < 0 (see :class:`RCE`).

    w(Δ_y) = (1 - p_y)(α - β A p_y) (Table 6 with constants). With B = -βA its supremum is
    (α + B)^2 / (4B) at p_y = (B - α) / (2B) when B > α, else α approached as Δ -> -inf (closed form).
    Soft targets: α CE(t) + β RCE(t) with the expectation form of :class:`RCE`.
    """

    supports_soft_targets = True

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, A: float = DEFAULT_A) -> None:  # noqa: N803
        super().__init__()
        self.alpha = check_interval("alpha", alpha, 0.0, low_closed=True)
        self.beta = check_interval("beta", beta, 0.0, low_closed=True)
        if self.alpha == 0.0 and self.beta == 0.0:
            raise ValueError("Expected arguments `alpha` and `beta` not both 0, but got alpha=0 and beta=0")
        self.A = check_interval("A", A, high=0.0)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return -self.alpha * log_p - self.beta * self.A * log_q.exp()

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return log_q.exp() * (self.alpha - self.beta * self.A * log_p.exp())

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, target, reduction="none")
        return self.alpha * ce - self.beta * self.A * (1.0 - _expected_label_probability(logits, target))

    def max_weight(self) -> float:
        """Closed form: (α+B)²/(4B) if B = -βA > α, else the supremum α (Δ -> -inf)."""
        b = -self.beta * self.A
        return (self.alpha + b) ** 2 / (4.0 * b) if b > self.alpha else self.alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, A={self.A}"


@register_loss("agce")
class AGCE(LabelProbabilityLoss):
    """Asymmetric generalized cross entropy ((a + 1)^q - (a + p_y)^q) / q (Zhou et al. 2021).

    Args:
        a: > 0. q: > 0. Defaults a=0.6, q=0.6 (the ALFs code's CIFAR-10/100 setting).

    The curriculum paper (Table 1, App. A.3) writes the constant as (a + 1) instead of (a + 1)^q; we
    follow the authors' code (hitcszx/ALFs, lnl/losses.py), which makes the loss 0 at p_y = 1; the
    gradient is the same. (Table 6 swaps the AGCE and AUL expressions; the weights there are right.)
    w(Δ_y) = p_y (1 - p_y)(a + p_y)^(q - 1); its maximum is taken on the Δ grid. Class indices only.
    """

    def __init__(self, a: float = 0.6, q: float = 0.6) -> None:
        super().__init__()
        self.a = check_interval("a", a, 0.0)
        self.q = check_interval("q", q, 0.0)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        # (a+1)^q - (a+p)^q = (a+1)^q (1 - (1 - (1-p)/(a+1))^q), formed from 1 - p without cancellation.
        shrink = torch.log1p(-log_q.exp() / (self.a + 1.0))
        return (self.a + 1.0) ** self.q * -torch.expm1(self.q * shrink) / self.q

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return (log_p + log_q + (self.q - 1.0) * torch.log(self.a + log_p.exp())).exp()

    def extra_repr(self) -> str:
        return f"a={self.a}, q={self.q}"


@register_loss("aul")
class AUL(LabelProbabilityLoss):
    """Asymmetric unhinged loss ((a - p_y)^q - (a - 1)^q) / q (Zhou et al. 2021).

    Args:
        a: > 1. q: > 0. Defaults a=5.5, q=3 (the ALFs code's CIFAR-10/100 setting).

    w(Δ_y) = p_y (1 - p_y)(a - p_y)^(q - 1); its maximum is taken on the Δ grid. Class indices only.
    """

    def __init__(self, a: float = 5.5, q: float = 3.0) -> None:
        super().__init__()
        self.a = check_interval("a", a, 1.0)
        self.q = check_interval("q", q, 0.0)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        # (a-p)^q - (a-1)^q = (a-1)^q ((1 + (1-p)/(a-1))^q - 1), formed from 1 - p without cancellation.
        grow = torch.log1p(log_q.exp() / (self.a - 1.0))
        return (self.a - 1.0) ** self.q * torch.expm1(self.q * grow) / self.q

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        a_minus_p = (self.a - 1.0) + log_q.exp()
        return (log_p + log_q + (self.q - 1.0) * torch.log(a_minus_p)).exp()

    def extra_repr(self) -> str:
        return f"a={self.a}, q={self.q}"


@register_loss("ael")
class AEL(LabelProbabilityLoss):
    """Asymmetric exponential loss exp(-p_y / a) (Zhou et al. 2021; the curriculum paper calls a "q").

    Args:
        a: > 0. Default 2.5 (the ALFs code's CIFAR-10/100 setting).

    w(Δ_y) = p_y (1 - p_y) exp(-p_y / a) / a; its maximum is taken on the Δ grid. Class indices only.
    """

    def __init__(self, a: float = 2.5) -> None:
        super().__init__()
        self.a = check_interval("a", a, 0.0)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return torch.exp(-log_p.exp() / self.a)

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return (log_p + log_q - log_p.exp() / self.a).exp() / self.a

    def extra_repr(self) -> str:
        return f"a={self.a}"


@register_loss("tce")
class TCE(LabelProbabilityLoss):
    """Taylor cross entropy Σ_{i=1}^{order} (1 - p_y)^i / i (Feng et al. 2020; Table 6, order written q).

    Args:
        order: the Taylor order t, a positive integer; t = 1 is MAE, t -> inf is CE. Default 2.

    w(Δ_y) = p_y Σ_{i=1}^t (1 - p_y)^i = (1 - p_y)(1 - (1 - p_y)^t); its maximum, at
    1 - p_y = u = (t + 1)^(-1/t), is u t / (t + 1) (closed form). Class indices only.
    """

    def __init__(self, order: int = 2) -> None:
        super().__init__()
        self.order = check_positive_int("order", order)

    def _value(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return sum((i * log_q).exp() / i for i in range(1, self.order + 1))

    def _weight(self, log_p: Tensor, log_q: Tensor) -> Tensor:
        return log_q.exp() * -torch.expm1(self.order * log_q)

    def max_weight(self) -> float:
        """u t/(t+1) with u = (t+1)^(-1/t) (closed form)."""
        t = self.order
        return (t + 1.0) ** (-1.0 / t) * t / (t + 1.0)

    def extra_repr(self) -> str:
        return f"order={self.order}"


@register_loss("nce")
class NCE(PerSampleLoss):
    """Normalized cross entropy -log p_y / Σ_j -log p_j (Ma et al. 2020), symmetric.

    The normaliser sums the log-softmax over all C classes, as in the APL code
    (HanxunH/Active-Passive-Losses, loss.py). Not a p_y-loss (its Eq. (2) adds a regularizer).
    Soft targets: -Σ_i t_i log p_i / Σ_j -log p_j.
    """

    supports_soft_targets = True

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = logits.log_softmax(dim=1)
        return label_logit(log_p, target) / log_p.sum(dim=1)

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = logits.log_softmax(dim=1)
        return (target * log_p).sum(dim=1) / log_p.sum(dim=1)


@register_loss("nfl")
class NFL(PerSampleLoss):
    """Normalized focal loss FL(s, y) / Σ_j FL(s, j), FL(s, j) = -(1 - p_j)^γ log p_j (Ma et al. 2020).

    Args:
        gamma: γ >= 0 (γ = 0 is NCE). Default 0.5 (APL configs).
        detach_focal_factor: treat every focusing factor (1 - p_j)^γ, in the numerator and in the
            normaliser, as a constant in the gradient, as the APL code does (loss.py, NormalizedFocalLoss:
            ``pt.data``). Same value; default False, the true derivative (see :class:`FocalLoss`).

    Class indices only.
    """

    def __init__(self, gamma: float = 0.5, detach_focal_factor: bool = False) -> None:
        super().__init__()
        self.gamma = check_interval("gamma", gamma, 0.0, low_closed=True)
        self.detach_focal_factor = check_flag("detach_focal_factor", detach_focal_factor)

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        factor = (self.gamma * log1m_softmax(logits)).exp()
        focal = -(factor.detach() if self.detach_focal_factor else factor) * logits.log_softmax(dim=1)
        return label_logit(focal, target) / focal.sum(dim=1)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, detach_focal_factor={self.detach_focal_factor}"


@register_loss("ngce")
class NGCE(PerSampleLoss):
    """Normalized generalized cross entropy (1 - p_y^q) / Σ_j (1 - p_j^q) (Ma et al. 2020).

    Args:
        q: in (0, 1]. Default 0.1 (APL's CIFAR-10 configs for NGCE, NGCE+MAE, NGCE+RCE).

    The denominator Σ_j (1 - p_j^q) = C - Σ_j p_j^q of the APL code, formed without cancellation (the
    APL code also clamps p at 1e-7; we do not need to). Class indices only.
    """

    def __init__(self, q: float = 0.1) -> None:
        super().__init__()
        self.q = check_interval("q", q, 0.0, 1.0, high_closed=True)

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        gce = -torch.expm1(self.q * logits.log_softmax(dim=1))
        return label_logit(gce, target) / gce.sum(dim=1)

    def extra_repr(self) -> str:
        return f"q={self.q}"


@register_loss("nsl")
class NSL(PerSampleLoss):
    """Negative-signed sample logit loss -s_y (PAL paper, papers/000, Eq. (6)).

    Symmetric (Σ_i L(s, i) = 0) when the classifier's prototypes are anchored so that Σ_i w_i = 0
    (Proposition 4.3); meant for PAL's anchored-prototype heads, it is unbounded below otherwise.
    Soft targets: -Σ_i t_i s_i.
    """

    supports_soft_targets = True

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return -label_logit(logits, target)

    def _soft_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return -(target * logits).sum(dim=1)

"""Active-passive combinations α·L_active + β·L_passive (Ma et al. 2020, "APL") and their registry names.

Ma et al. pair a normalized *active* loss (NCE, NFL, NGCE: they only push up the labelled class) with
a *passive* one (MAE, RCE: they also push down the others); Zhou et al. (2021) pair NCE with their
asymmetric losses (AGCE, AUL, AEL). Defaults of the registered combinations are the authors' CIFAR-10
configs (APL: HanxunH/Active-Passive-Losses configs/cifar10; ALFs: hitcszx/ALFs config.py); the
component hyperparameters pass through by their own names, see :mod:`lt_noise.losses.registry`.
"""

from __future__ import annotations

from torch import Tensor, nn

from lt_noise.losses._base import PerSampleLoss
from lt_noise.validation import check_interval
from lt_noise.losses.registry import register_loss
from lt_noise.losses.robust import AEL, AGCE, AUL, DEFAULT_A, MAE, NCE, NFL, NGCE, RCE

__all__ = ["ActivePassive"]


class ActivePassive(PerSampleLoss):
    """α · active(logits, target) + β · passive(logits, target), per sample.

    Args:
        active, passive: per-sample loss modules (any module with this package's forward contract).
        alpha, beta: >= 0, not both 0.

    Soft targets are passed on to the components: accepted when both accept them (e.g. NCE+MAE,
    NCE+RCE), otherwise the component that does not raises.
    """

    supports_soft_targets = True

    def __init__(self, active: nn.Module, passive: nn.Module, alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        for name, module in (("active", active), ("passive", passive)):
            if not isinstance(module, nn.Module):
                raise ValueError(f"Expected argument `{name}` to be a loss nn.Module, but got {type(module).__name__}")
        self.active = active
        self.passive = passive
        self.alpha = check_interval("alpha", alpha, 0.0, low_closed=True)
        self.beta = check_interval("beta", beta, 0.0, low_closed=True)
        if self.alpha == 0.0 and self.beta == 0.0:
            raise ValueError("Expected arguments `alpha` and `beta` not both 0, but got alpha=0 and beta=0")

    def _combine(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.alpha * self.active(logits, target) + self.beta * self.passive(logits, target)

    _hard_forward = _combine
    _soft_forward = _combine

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"


@register_loss("nce+mae")
def nce_mae(alpha: float = 1.0, beta: float = 1.0) -> ActivePassive:
    """α NCE + β MAE (APL CIFAR-10: α = β = 1)."""
    return ActivePassive(NCE(), MAE(), alpha=alpha, beta=beta)


@register_loss("nce+rce")
def nce_rce(alpha: float = 1.0, beta: float = 1.0, A: float = DEFAULT_A) -> ActivePassive:  # noqa: N803
    """α NCE + β RCE(A) (APL CIFAR-10: α = β = 1; APL's RCE uses A = log(1e-4))."""
    return ActivePassive(NCE(), RCE(A=A), alpha=alpha, beta=beta)


@register_loss("nfl+rce")
def nfl_rce(
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    A: float = DEFAULT_A,  # noqa: N803
    detach_focal_factor: bool = False,
) -> ActivePassive:
    """α NFL(γ) + β RCE(A) (APL CIFAR-10: α = β = 1, γ = 0.5); ``detach_focal_factor`` as :class:`NFL`."""
    return ActivePassive(NFL(gamma=gamma, detach_focal_factor=detach_focal_factor), RCE(A=A), alpha=alpha, beta=beta)


@register_loss("nce+agce")
def nce_agce(alpha: float = 1.0, beta: float = 4.0, a: float = 6.0, q: float = 1.5) -> ActivePassive:
    """α NCE + β AGCE(a, q) (ALFs CIFAR-10: α = 1, β = 4, a = 6, q = 1.5)."""
    return ActivePassive(NCE(), AGCE(a=a, q=q), alpha=alpha, beta=beta)


@register_loss("nce+aul")
def nce_aul(alpha: float = 1.0, beta: float = 4.0, a: float = 6.3, q: float = 1.5) -> ActivePassive:
    """α NCE + β AUL(a, q) (ALFs CIFAR-10: α = 1, β = 4, a = 6.3, q = 1.5)."""
    return ActivePassive(NCE(), AUL(a=a, q=q), alpha=alpha, beta=beta)


@register_loss("nce+ael")
def nce_ael(alpha: float = 1.0, beta: float = 4.0, a: float = 5.0) -> ActivePassive:
    """α NCE + β AEL(a) (ALFs CIFAR-10: α = 1, β = 4, a = 5)."""
    return ActivePassive(NCE(), AEL(a=a), alpha=alpha, beta=beta)


@register_loss("ngce+mae")
def ngce_mae(alpha: float = 1.0, beta: float = 1.0, q: float = 0.1) -> ActivePassive:
    """α NGCE(q) + β MAE (APL CIFAR-10: α = β = 1, q = 0.1)."""
    return ActivePassive(NGCE(q=q), MAE(), alpha=alpha, beta=beta)


@register_loss("ngce+rce")
def ngce_rce(
    alpha: float = 1.0, beta: float = 1.0, q: float = 0.1, A: float = DEFAULT_A  # noqa: N803
) -> ActivePassive:
    """α NGCE(q) + β RCE(A) (APL CIFAR-10: α = β = 1, q = 0.1)."""
    return ActivePassive(NGCE(q=q), RCE(A=A), alpha=alpha, beta=beta)

"""Optimizer and learning-rate schedule settings, as small frozen dataclasses a config can spell out::

    model:
      init_args:
        optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 2.0e-4}
        lr_schedule: {name: multistep, milestones: [160, 180], gamma: 0.1, warmup_epochs: 5}

Optimizers by ``name``: ``sgd`` (momentum, optionally Nesterov), ``adam``, ``adamw`` (torch's), and
``abadam_eq9``: Adam exactly as eq. (9) of the ABSGD paper (:class:`ABAdamEq9`: no bias correction,
decoupled weight decay), the optimizer of ABAdam when read literally (with ``adam``, ABSGD is ABAdam as
the authors' package runs it).

The schedule is a per-epoch multiplicative factor of ``lr`` (a ``LambdaLR`` stepped once per epoch),
so it is a pure function of the epoch and resumes exactly from a checkpoint:

    factor(e) = warmup(e) * decay(e)
    warmup(e) = (e + 1) / warmup_epochs for e < warmup_epochs, else 1   (LDAM-DRW's linear warm-up)
    decay(e)  = 1                                       ("constant")
              = gamma ** #{m in milestones : m <= e}    ("multistep")
              = r + (1 - r) (1 + cos(pi t)) / 2,        ("cosine", r = min_lr_ratio,
                t = (e - warmup_epochs) / (max_epochs - warmup_epochs))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from lt_noise.validation import check_choice, check_int, check_interval, check_positive

__all__ = ["ABAdamEq9", "LRSchedule", "OPTIMIZERS", "OptimizerConfig", "SCHEDULES"]

#: The optimizer names of :class:`OptimizerConfig`.
OPTIMIZERS = ("sgd", "adam", "adamw", "abadam_eq9")
#: The schedule names of :class:`LRSchedule`.
SCHEDULES = ("constant", "multistep", "cosine")

# G_0 of eq. (9), "a constant to increase stability"; the paper gives no value: torch.optim.Adam's eps.
EQ9_EPS = 1e-8


class ABAdamEq9(torch.optim.Optimizer):
    """ABAdam exactly as eq. (9) of the ABSGD paper (Section 3.4)::

        v_{t+1} = β₁ v_t + (1 - β₁) G          u_{t+1} = β₂ u_t + (1 - β₂) G²
        w_{t+1} = w_t - η ( v_{t+1} / (sqrt(u_{t+1}) + G₀) + ∇r(w_t) ),    ∇r(w) = weight_decay · w

    with ``G`` the parameter's gradient (of ``(1/B) Σ p_i L_i``). Unlike ``torch.optim.Adam`` there is no
    bias correction of ``v``/``u``, and the weight decay is decoupled (outside the adaptive step; as
    ``torch.optim.AdamW`` has it). Parameters whose gradient is ``None`` are not touched.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = EQ9_EPS,
        weight_decay: float = 0.0,
    ) -> None:
        check_positive("lr", lr)
        if len(betas) != 2:
            raise ValueError(f"Expected argument `betas` to be two numbers in [0, 1), but got {betas}")
        for beta in betas:
            check_interval("betas", beta, 0.0, 1.0, low_closed=True)
        check_positive("eps", eps)
        check_interval("weight_decay", weight_decay, 0.0, math.inf, low_closed=True)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                v, u = state["exp_avg"], state["exp_avg_sq"]
                v.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                u.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                update = v / (u.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(param, alpha=group["weight_decay"])  # ∇r(w_t), at the current weights
                param.add_(update, alpha=-group["lr"])
        return loss


@dataclass(frozen=True)
class OptimizerConfig:
    """``sgd`` (momentum SGD, optionally Nesterov), ``adam``, ``adamw`` or ``abadam_eq9`` (:class:`ABAdamEq9`);
    one weight decay for all parameters (``momentum`` and ``nesterov`` apply to ``sgd`` only, ``betas`` to
    the Adam family)."""

    name: Literal["sgd", "adam", "adamw", "abadam_eq9"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_choice("name", self.name, OPTIMIZERS)
        check_positive("lr", self.lr)
        check_interval("momentum", self.momentum, 0.0, 1.0, low_closed=True)
        check_interval("weight_decay", self.weight_decay, 0.0, math.inf, low_closed=True)
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("Expected `nesterov: true` only with name 'sgd' and momentum > 0")

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        if self.name == "abadam_eq9":
            return ABAdamEq9(params, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)
        optimizer = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return optimizer(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)


@dataclass(frozen=True)
class LRSchedule:
    """Per-epoch learning-rate factor: linear warm-up, then constant, multi-step or cosine decay."""

    name: Literal["constant", "multistep", "cosine"] = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        check_choice("name", self.name, SCHEDULES)
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError(f"Expected argument `milestones` to be strictly increasing and positive, but got {list(self.milestones)}")
        check_interval("gamma", self.gamma, 0.0, 1.0, high_closed=True)
        check_int("warmup_epochs", self.warmup_epochs, minimum=0)
        check_interval("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, low_closed=True, high_closed=True)

    def factor(self, epoch: int, max_epochs: int | None) -> float:
        """The multiplier of the base learning rate during (0-based) ``epoch``."""
        warmup = (epoch + 1) / self.warmup_epochs if epoch < self.warmup_epochs else 1.0
        if self.name == "multistep":
            decay = self.gamma ** sum(m <= epoch for m in self.milestones)
        elif self.name == "cosine":
            if not max_epochs or max_epochs < 1:
                raise ValueError(
                    f"Expected a positive trainer `max_epochs` for a cosine schedule (its horizon), but got {max_epochs}"
                )
            # A run shorter than the warm-up (a smoke test) still gets a well-defined, one-epoch decay.
            t = min(max(epoch - self.warmup_epochs, 0) / max(max_epochs - self.warmup_epochs, 1), 1.0)
            decay = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            decay = 1.0
        return warmup * decay

    def build(self, optimizer: torch.optim.Optimizer, max_epochs: int | None) -> LambdaLR:
        self.factor(0, max_epochs)  # validate the horizon once, at configuration time
        return LambdaLR(optimizer, lambda epoch: self.factor(epoch, max_epochs))

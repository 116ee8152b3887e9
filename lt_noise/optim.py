"""Optimizer and learning-rate schedule settings, as small frozen dataclasses a config can spell out::

    model:
      init_args:
        optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 2.0e-4}
        lr_schedule: {name: multistep, milestones: [160, 180], gamma: 0.1, warmup_epochs: 5}

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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

from lt_noise.validation import check_choice, check_int, check_interval, check_positive

__all__ = ["LRSchedule", "OPTIMIZERS", "OptimizerConfig", "SCHEDULES"]

#: The optimizer names of :class:`OptimizerConfig`.
OPTIMIZERS = ("sgd", "adam", "adamw")
#: The schedule names of :class:`LRSchedule`.
SCHEDULES = ("constant", "multistep", "cosine")

@dataclass(frozen=True)
class OptimizerConfig:
    """``sgd`` (momentum SGD, optionally Nesterov), ``adam`` or ``adamw``; one weight decay for all parameters."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
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

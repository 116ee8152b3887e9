"""Building methods for the tests: one place for the defaults the method and callback tests share.

    model = build_method(DynamicLoss, dm, warmup_epochs=1)      # the datamodule's linked facts, an MLP
    model = build_method(ABSGD, backbone=Flatten(6), num_classes=3, input_shape=(1, 2, 3), seed=0)

Defaults: ``dm``'s facts as the CLI links them (when a datamodule is given), an MLP backbone with one
hidden layer of 32 (unless ``backbone`` is given), SGD at lr 0.05 and a constant schedule; keyword
options override them. ``seed`` seeds torch before construction (the initial weights).
"""

from __future__ import annotations

from typing import Any

import torch
from support.fashion import data_facts
from torch import nn

from lt_noise.optim import LRSchedule, OptimizerConfig

__all__ = ["Flatten", "build_method"]


class Flatten(nn.Module):
    """An identity backbone on (B, C, H, W) inputs: the network is then its head alone (closed-form logits)."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def build_method(cls: type, dm: Any = None, *, seed: int | None = None, **options: Any):
    """``cls`` with the shared test defaults (module docstring), ``options`` overriding them."""
    defaults: dict[str, Any] = dict(optimizer=OptimizerConfig(lr=0.05), lr_schedule=LRSchedule(name="constant"))
    if "backbone" not in options:
        defaults.update(backbone="mlp", backbone_args={"hidden": [32]})
    if dm is not None:
        defaults.update(data_facts(dm))
    defaults.update(options)
    if seed is not None:
        torch.manual_seed(seed)
    return cls(**defaults)

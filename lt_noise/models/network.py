"""The classifier network: a backbone (images -> features) followed by a head (features -> logits)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Network"]


class Network(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

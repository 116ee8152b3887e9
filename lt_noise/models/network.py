"""The classifier network: a backbone (images -> features) followed by a head (features -> logits)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Network", "last_block"]


def last_block(backbone: nn.Module) -> nn.Module:
    """The backbone's last block ("LB"): what second training stages fine-tune along with the head.

    Backbones say what theirs is with a ``last_block()`` method (the last residual stage of a ResNet);
    otherwise it is the last top-level child module that has parameters.
    """
    if hasattr(backbone, "last_block"):
        return backbone.last_block()
    with_parameters = [m for m in backbone.children() if any(True for _ in m.parameters())]
    if not with_parameters:
        raise ValueError(f"Expected backbone {type(backbone).__name__} to have a child module with parameters")
    return with_parameters[-1]


class Network(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

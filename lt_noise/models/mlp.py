"""A multilayer perceptron on flattened images: the smallest backbone, without batch normalisation.

Useful for quick experiments and for checks where per-process batch statistics would get in the way
(a 2-process DDP run equals a 1-process run with the doubled batch only without batch norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lt_noise.models.registry import register_backbone

__all__ = ["MLP", "mlp"]


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ValueError(f"Expected argument `hidden` to be positive layer widths, but got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        self.layers = nn.Sequential(*layers)
        self.feature_dim = int(hidden[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def last_block(self) -> nn.Module:
        """The last hidden linear layer."""
        return self.layers[-2]


@register_backbone("mlp")
def mlp(in_channels: int = 1, image_size: int = 28, hidden: Sequence[int] = (256,)) -> MLP:
    """Flatten, then Linear-ReLU layers of the given widths."""
    return MLP(in_channels * image_size * image_size, hidden)

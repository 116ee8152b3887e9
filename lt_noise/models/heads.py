"""Heads: features (B, D) -> logits (B, K).

- ``linear``: an affine layer (the standard softmax classifier).
- ``cosine``: cosine similarity between L2-normalised features and L2-normalised class weights, times a
  fixed ``scale`` (the "NormedLinear" of LDAM-DRW uses scale 1 and lets the LDAM loss apply s = 30).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt_noise.models.registry import register_head

__all__ = ["CosineHead", "LinearHead"]

# Keeps the L2 normalisation finite for an all-zero feature vector (e.g. after a ReLU).
NORM_EPS = 1e-12


@register_head("linear")
class LinearHead(nn.Linear):
    def __init__(self, feature_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(feature_dim, num_classes, bias=bias)


@register_head("cosine")
class CosineHead(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"Expected argument `scale` > 0, but got {scale}")
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=1, eps=NORM_EPS)
        weight = F.normalize(self.weight, dim=1, eps=NORM_EPS)
        return self.scale * features @ weight.t()

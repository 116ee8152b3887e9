"""Any torchvision classification model as a backbone: ``backbone: torchvision/<name>``.

The model's last linear layer (its classifier) is replaced by the identity; ``feature_dim`` is that
layer's input width. ``weights`` is passed to ``torchvision.models.get_model`` (e.g. ``"DEFAULT"`` or
``"IMAGENET1K_V1"``; downloading needs internet access).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["TorchvisionBackbone", "torchvision_backbone"]


class TorchvisionBackbone(nn.Module):
    def __init__(self, model: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model(x), 1)

    def last_block(self) -> nn.Module:
        """``layer4`` for ResNet-like models, else the last top-level child that has parameters."""
        if hasattr(self.model, "layer4"):
            return self.model.layer4
        with_parameters = [m for m in self.model.children() if any(True for _ in m.parameters())]
        return with_parameters[-1]


def _strip_last_linear(model: nn.Module, name: str) -> int:
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        raise ValueError(f"Expected torchvision model {name!r} to end in a linear classifier, but it has none")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    width = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return width


def torchvision_backbone(name: str, *, in_channels: int = 3, weights: str | None = None) -> TorchvisionBackbone:
    """Build torchvision model ``name`` without its classifier."""
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"Expected a torchvision classification model name (one of {len(available)}, e.g. "
                         f"'resnet50'), but got {name!r}")
    model = torchvision.models.get_model(name, weights=weights)
    if in_channels != 3:
        stem = getattr(model, "conv1", None)
        if not isinstance(stem, nn.Conv2d):
            raise ValueError(f"Expected 3 input channels for torchvision model {name!r}, but got {in_channels}")
        model.conv1 = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
    return TorchvisionBackbone(model, _strip_last_linear(model, name))

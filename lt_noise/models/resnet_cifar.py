"""The CIFAR ResNets of He et al. 2016 (Sec. 4.2): 6n+2 layers, widths 16/32/64, option-A shortcuts.

Option A: when a block halves the resolution and doubles the width, the shortcut subsamples the input
by 2 and zero-pads the new channels (parameter-free), as in the paper and in the LDAM-DRW code that the
long-tailed CIFAR tables of PAL, ABSGD and Dynamic Loss use (``resnet32``: n = 5, 0.46M parameters).
Weights are Kaiming-normal initialised (as in that code). Features: the 64-d global average pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt_noise.models.registry import register_backbone
from lt_noise.validation import check_positive_int

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]

WIDTHS = (16, 32, 64)


class _OptionAShortcut(nn.Module):
    """Parameter-free shortcut: stride-2 subsampling and symmetric zero-padding of the channels."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.pad = extra_channels // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = _OptionAShortcut(out_channels - in_channels) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; returns 64-d features."""

    def __init__(self, blocks_per_stage: int, in_channels: int = 3) -> None:
        super().__init__()
        check_positive_int("blocks_per_stage", blocks_per_stage)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, WIDTHS[0], 3, padding=1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU(inplace=True)
        )
        stages, channels = [], WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(_BasicBlock(channels, width, stride=2 if (i > 0 and j == 0) else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.feature_dim = WIDTHS[-1]
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def last_block(self) -> nn.Module:
        """The last residual stage (width 64)."""
        return self.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def _factory(n: int):
    def build(in_channels: int = 3, image_size: int = 32) -> CifarResNet:
        del image_size  # global pooling: any input size works
        return CifarResNet(n, in_channels)

    build.__doc__ = f"ResNet-{6 * n + 2} (CIFAR, option-A shortcuts)."
    return build


resnet20 = register_backbone("resnet20")(_factory(3))
resnet32 = register_backbone("resnet32")(_factory(5))
resnet44 = register_backbone("resnet44")(_factory(7))
resnet56 = register_backbone("resnet56")(_factory(9))
resnet110 = register_backbone("resnet110")(_factory(18))

"""ResNets with a basic-block body: ImageNet-style (ResNet-10 for ImageNet-LT / Places-LT), the 32x32
variants of ResNet-18/34 (3x3 stride-1 stem, no max-pool; the noisy-CIFAR tables of PAL and ABSGD), and
the pre-activation ResNet-18 (He et al. 2016b, "Identity Mappings in Deep Residual Networks"), which the
Dynamic Loss paper calls PAResNet-18.

The standard-activation variants reuse torchvision's ResNet body (same block, same Kaiming
initialisation) with the classifier removed; the pre-activation one is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from lt_noise.models.registry import register_backbone

__all__ = ["PreActResNet", "ResNetFeatures", "preact_resnet18", "resnet10", "resnet18_cifar", "resnet34_cifar"]


class ResNetFeatures(nn.Module):
    """torchvision's ResNet body returning the pooled features (``feature_dim`` = 512 for basic blocks)."""

    def __init__(self, layers: list[int], *, in_channels: int = 3, small_input: bool = False) -> None:
        super().__init__()
        body = ResNet(BasicBlock, layers)
        if small_input:
            # 32x32 inputs: a 3x3 stride-1 stem and no max-pool keep a 4x4 map before pooling.
            body.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            body.maxpool = nn.Identity()
        elif in_channels != 3:
            body.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.feature_dim = body.fc.in_features
        body.fc = nn.Identity()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def last_block(self) -> nn.Module:
        """The last residual stage, ``layer4`` ("LB" of the decoupling and ABSGD papers)."""
        return self.body.layer4


@register_backbone("resnet10")
def resnet10(in_channels: int = 3, image_size: int = 224) -> ResNetFeatures:
    """ResNet-10 ([1, 1, 1, 1] basic blocks, ImageNet stem): the ImageNet-LT backbone of Kang et al. 2020."""
    del image_size
    return ResNetFeatures([1, 1, 1, 1], in_channels=in_channels)


@register_backbone("resnet18_cifar")
def resnet18_cifar(in_channels: int = 3, image_size: int = 32) -> ResNetFeatures:
    """ResNet-18 for 32x32 inputs."""
    del image_size
    return ResNetFeatures([2, 2, 2, 2], in_channels=in_channels, small_input=True)


@register_backbone("resnet34_cifar")
def resnet34_cifar(in_channels: int = 3, image_size: int = 32) -> ResNetFeatures:
    """ResNet-34 for 32x32 inputs (the APL / PAL CIFAR-100 network)."""
    del image_size
    return ResNetFeatures([3, 4, 6, 3], in_channels=in_channels, small_input=True)


class _PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut takes the pre-activated input (He et al. 2016b, Fig. 4(e)).
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32x32 inputs with a final BN-ReLU before global pooling."""

    def __init__(self, layers: list[int], in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        stages, channels = [], 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(depth):
                blocks.append(_PreActBlock(channels, width, stride=2 if (i > 0 and j == 0) else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.feature_dim = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def last_block(self) -> nn.Module:
        """The last residual stage and the final batch norm."""
        return nn.ModuleList([self.blocks[-1], self.bn])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


@register_backbone("preact_resnet18")
def preact_resnet18(in_channels: int = 3, image_size: int = 32) -> PreActResNet:
    """Pre-activation ResNet-18 (DivideMix / Dynamic Loss "PAResNet-18")."""
    del image_size
    return PreActResNet([2, 2, 2, 2], in_channels)

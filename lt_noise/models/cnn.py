"""The plain CNNs of the APL papers (Ma et al. 2020, "Normalized Loss Functions for Deep Learning with
Noisy Labels"; public code HanxunH/Active-Passive-Losses, ``SCEModel``), used by PAL and ABSGD for their
MNIST / CIFAR-10 noisy-label tables.

- ``cnn4`` (MNIST): 2 conv blocks (conv3x3-BN-ReLU, max-pool) with 32 and 64 channels, then
  FC-BN-ReLU to 128 features: "4 layers" counting the classifier.
- ``cnn8`` (CIFAR-10): 3 stages of two conv blocks each (64, 128, 196 channels) with max-pools, then
  FC-BN-ReLU to 256 features.

The backbone stops at the features; the last linear layer is the head. Initialisation as in that code:
Kaiming-uniform (fan-in, ReLU) for convolutions, Xavier-uniform for linear layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lt_noise.models.registry import register_backbone

__all__ = ["PlainCNN", "cnn4", "cnn8"]


class MaxPool2x2(nn.MaxPool2d):
    """2x2 max-pooling, stride 2; without autograd, on the CPU, computed on channels-last memory.

    PyTorch's CPU max-pool kernel for NCHW tensors is about 10x slower than its channels-last kernel
    (torch 2.14, AVX512, one thread: 33 ms against 3 ms for a 128x64x28x28 batch). In a pass that records
    no gradient (evaluation, Dynamic Loss's ranking pass and the frozen part of its virtual step), converting
    to channels-last and back costs less than the kernel saves; in a training pass it does not (the
    gradient's conversions cost what the forward saves), so that pass keeps the NCHW kernel. The values
    and selected indices (ties included: both kernels scan the window in the same order) are those of
    ``nn.MaxPool2d``, and the output keeps the input's layout, so every later layer computes as before.
    """

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.requires_grad or x.device.type != "cpu" or x.dim() != 4 or x.shape[1] == 1
                or x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PlainCNN(nn.Module):
    """Stages of conv blocks, each stage followed by 2x2 max-pooling, then one FC-BN-ReLU layer."""

    def __init__(self, in_channels: int, image_size: int, stages: Sequence[Sequence[int]], feature_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in stages:
            for width in stage:
                layers.append(_conv_block(channels, width))
                channels = width
            layers.append(MaxPool2x2())
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(stages)
        if side < 1:
            raise ValueError(f"Expected an image size >= {2 ** len(stages)} for {len(stages)} pooling stages, but got {image_size}")
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = feature_dim
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def last_block(self) -> nn.Module:
        """The top feature layer (FC-BN-ReLU), fine-tuned with the head in second training stages."""
        return self.fc


@register_backbone("cnn4")
def cnn4(in_channels: int = 1, image_size: int = 28) -> PlainCNN:
    """The APL MNIST network: conv 32, conv 64, FC 128 (+ the linear head)."""
    return PlainCNN(in_channels, image_size, stages=((32,), (64,)), feature_dim=128)


@register_backbone("cnn8")
def cnn8(in_channels: int = 3, image_size: int = 32) -> PlainCNN:
    """The APL CIFAR-10 network: conv 64x2, 128x2, 196x2, FC 256 (+ the linear head)."""
    return PlainCNN(in_channels, image_size, stages=((64, 64), (128, 128), (196, 196)), feature_dim=256)

"""Backbones (images -> features, with ``feature_dim``) and heads (features -> logits), by name."""

from lt_noise.models import cnn, heads, mlp, resnet, resnet_cifar  # noqa: F401  (register the factories)
from lt_noise.models.cnn import PlainCNN
from lt_noise.models.mlp import MLP
from lt_noise.models.heads import AnchoredHead, CosineHead, LinearHead
from lt_noise.models.network import Network, last_block
from lt_noise.models.parts import FREEZE_OPTIONS, freeze_parts, load_network_weights
from lt_noise.models.registry import (
    BACKBONES,
    HEADS,
    available_backbones,
    available_heads,
    backbone_hyperparameters,
    build_backbone,
    build_head,
    head_hyperparameters,
    register_backbone,
    register_head,
)
from lt_noise.models.resnet import PreActResNet, ResNetFeatures
from lt_noise.models.resnet_cifar import CifarResNet

__all__ = [
    "AnchoredHead",
    "BACKBONES",
    "FREEZE_OPTIONS",
    "HEADS",
    "CifarResNet",
    "CosineHead",
    "LinearHead",
    "MLP",
    "Network",
    "PlainCNN",
    "PreActResNet",
    "ResNetFeatures",
    "available_backbones",
    "available_heads",
    "backbone_hyperparameters",
    "build_backbone",
    "build_head",
    "freeze_parts",
    "head_hyperparameters",
    "last_block",
    "load_network_weights",
    "register_backbone",
    "register_head",
]

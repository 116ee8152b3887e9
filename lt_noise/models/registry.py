"""Name registries for backbones and heads, so configs may give a name (``backbone: resnet32``).

A backbone factory takes ``(in_channels, image_size, **hparams)`` and returns an ``nn.Module`` whose
forward maps images (B, C, H, W) to features (B, D) and that has an int attribute ``feature_dim`` = D.
A head factory takes ``(feature_dim, num_classes, **hparams)`` and returns a module mapping features
(B, D) to logits (B, K).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "BACKBONES",
    "HEADS",
    "available_backbones",
    "available_heads",
    "build_backbone",
    "build_head",
    "register_backbone",
    "register_head",
]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}
HEADS: dict[str, Callable[..., nn.Module]] = {}
# Backbones of torchvision's model zoo are named "torchvision/<model name>".
TORCHVISION_PREFIX = "torchvision/"


def _register(table: dict[str, Callable[..., nn.Module]], kind: str, name: str):
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in table:
            raise ValueError(f"A {kind} named {name!r} is already registered")
        table[name] = factory
        return factory

    return decorator


def register_backbone(name: str):
    """Register a backbone factory ``f(in_channels, image_size, **hparams)`` under ``name``."""
    return _register(BACKBONES, "backbone", name)


def register_head(name: str):
    """Register a head factory ``f(feature_dim, num_classes, **hparams)`` under ``name``."""
    return _register(HEADS, "head", name)


def available_backbones() -> list[str]:
    return sorted(BACKBONES) + [TORCHVISION_PREFIX + "<name>"]


def available_heads() -> list[str]:
    return sorted(HEADS)


def check_hparams(kind: str, name: str, factory: Callable[..., Any], hparams: dict[str, Any], given: tuple[str, ...]) -> None:
    """Reject hyperparameters the factory does not take, listing those it does (no silent swallowing)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in given]
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(f"Unknown hyperparameter(s) {unknown} for {kind} {name!r}; expected some of {valid}")


def build_backbone(name: str, *, in_channels: int, image_size: int, **hparams: Any) -> nn.Module:
    """Build a registered backbone, or a torchvision one by ``"torchvision/<name>"``."""
    if name.startswith(TORCHVISION_PREFIX):
        from lt_noise.models.torchvision_zoo import torchvision_backbone

        return torchvision_backbone(name[len(TORCHVISION_PREFIX) :], in_channels=in_channels, **hparams)
    if name not in BACKBONES:
        raise ValueError(f"Expected a backbone in {available_backbones()}, but got {name!r}")
    factory = BACKBONES[name]
    check_hparams("backbone", name, factory, hparams, ("in_channels", "image_size"))
    module = factory(in_channels=in_channels, image_size=image_size, **hparams)
    if not isinstance(getattr(module, "feature_dim", None), int):
        raise TypeError(f"Backbone {name!r} must set an int attribute `feature_dim`")
    return module


def build_head(name: str, *, feature_dim: int, num_classes: int, **hparams: Any) -> nn.Module:
    """Build a registered head."""
    if name not in HEADS:
        raise ValueError(f"Expected a head in {available_heads()}, but got {name!r}")
    factory = HEADS[name]
    check_hparams("head", name, factory, hparams, ("feature_dim", "num_classes"))
    return factory(feature_dim=feature_dim, num_classes=num_classes, **hparams)

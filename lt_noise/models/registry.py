"""Name registries for backbones and heads, so configs may give a name (``backbone: resnet32``).

A backbone factory takes ``(in_channels, image_size, **hparams)`` and returns an ``nn.Module`` whose
forward maps images (B, C, H, W) to features (B, D) and that has an int attribute ``feature_dim`` = D.
A head factory takes ``(feature_dim, num_classes, **hparams)`` and returns a module mapping features
(B, D) to logits (B, K).

As strict as the loss registry (:mod:`lt_noise.losses.registry`): a factory's hyperparameters are named
parameters with defaults (no ``*args``/``**kwargs``, so that a misspelt one cannot be swallowed), and an
unknown name or hyperparameter is a ``ValueError`` that lists the valid ones. Backbones of torchvision's
model zoo are named ``"torchvision/<model name>"`` (hyperparameter: ``weights``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lt_noise.validation import check_factory, check_hyperparameters

__all__ = [
    "BACKBONES",
    "HEADS",
    "available_backbones",
    "available_heads",
    "backbone_hyperparameters",
    "build_backbone",
    "build_head",
    "head_hyperparameters",
    "register_backbone",
    "register_head",
]

Factory = Callable[..., nn.Module]

BACKBONES: dict[str, Factory] = {}
HEADS: dict[str, Factory] = {}
# Backbones of torchvision's model zoo are named "torchvision/<model name>".
TORCHVISION_PREFIX = "torchvision/"
# The facts about the data and the network that the builders pass to every factory.
_BACKBONE_ARGUMENTS = ("in_channels", "image_size")
_HEAD_ARGUMENTS = ("feature_dim", "num_classes")


def _register(table: dict[str, Factory], kind: str, name: str, given: tuple[str, ...]):
    if not isinstance(name, str) or not name or name.startswith(TORCHVISION_PREFIX):
        raise ValueError(f"Expected a non-empty {kind} name not starting with {TORCHVISION_PREFIX!r}, but got {name!r}")

    def decorator(factory: Factory) -> Factory:
        if name in table:
            raise ValueError(f"Expected a new {kind} name, but '{name}' is already registered to {table[name]!r}")
        check_factory(kind, name, factory, given, required=True)
        table[name] = factory
        return factory

    return decorator


def register_backbone(name: str):
    """Register a backbone factory ``f(in_channels, image_size, **hparams)`` under ``name``."""
    return _register(BACKBONES, "backbone", name, _BACKBONE_ARGUMENTS)


def register_head(name: str):
    """Register a head factory ``f(feature_dim, num_classes, **hparams)`` under ``name``."""
    return _register(HEADS, "head", name, _HEAD_ARGUMENTS)


def available_backbones() -> list[str]:
    return sorted(BACKBONES) + [TORCHVISION_PREFIX + "<name>"]


def available_heads() -> list[str]:
    return sorted(HEADS)


def _backbone_factory(name: str) -> tuple[Factory, tuple[str, ...]]:
    if isinstance(name, str) and name.startswith(TORCHVISION_PREFIX):
        from lt_noise.models.torchvision_zoo import torchvision_backbone  # torchvision's zoo only when asked

        return torchvision_backbone, ("name", "in_channels")
    if name not in BACKBONES:
        raise ValueError(f"Expected a backbone in {available_backbones()}, but got {name!r}")
    return BACKBONES[name], _BACKBONE_ARGUMENTS


def _head_factory(name: str) -> Factory:
    if name not in HEADS:
        raise ValueError(f"Expected a head in {available_heads()}, but got {name!r}")
    return HEADS[name]


def backbone_hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters of backbone ``name`` with their defaults (``in_channels``/``image_size`` excluded)."""
    factory, given = _backbone_factory(name)
    return {key: p.default for key, p in check_factory("backbone", name, factory, given, required=True).items()}


def head_hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters of head ``name`` with their defaults (``feature_dim``/``num_classes`` excluded)."""
    return {key: p.default for key, p in check_factory("head", name, _head_factory(name), _HEAD_ARGUMENTS, required=True).items()}


def build_backbone(name: str, *, in_channels: int, image_size: int, **hparams: Any) -> nn.Module:
    """Build a registered backbone, or a torchvision one by ``"torchvision/<name>"``."""
    factory, given = _backbone_factory(name)
    check_hyperparameters("backbone", name, check_factory("backbone", name, factory, given, required=True), hparams)
    if name.startswith(TORCHVISION_PREFIX):
        module = factory(name[len(TORCHVISION_PREFIX) :], in_channels=in_channels, **hparams)
    else:
        module = factory(in_channels=in_channels, image_size=image_size, **hparams)
    if not isinstance(getattr(module, "feature_dim", None), int):
        raise ValueError(f"Expected backbone {name!r} to set an int attribute `feature_dim`, but it has none")
    return module


def build_head(name: str, *, feature_dim: int, num_classes: int, **hparams: Any) -> nn.Module:
    """Build a registered head."""
    factory = _head_factory(name)
    check_hyperparameters("head", name, check_factory("head", name, factory, _HEAD_ARGUMENTS, required=True), hparams)
    return factory(feature_dim=feature_dim, num_classes=num_classes, **hparams)

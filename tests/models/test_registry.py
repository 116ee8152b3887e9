"""The backbone and head registries, and the checks every registered model gets without a line of new test
code (as tests/losses/test_registry.py does for the losses): output shape, ``feature_dim``, finite
gradients, and the strictness of the registry (unknown names and hyperparameters are ValueErrors that list
the valid ones)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lt_noise.models import (
    BACKBONES,
    HEADS,
    available_backbones,
    backbone_hyperparameters,
    build_backbone,
    build_head,
    head_hyperparameters,
    register_backbone,
    register_head,
)

BACKBONE_NAMES = sorted(BACKBONES)
HEAD_NAMES = sorted(HEADS)
# (in_channels, image_size) every backbone is tried on: grey 28 px (Fashion-MNIST) and colour 32 px (CIFAR).
INPUTS = [(1, 28), (3, 32)]


def test_the_documented_names_are_registered():
    assert {"cnn4", "cnn8", "mlp", "resnet10", "resnet18_cifar", "resnet34_cifar", "preact_resnet18", "resnet20",
            "resnet32", "resnet44", "resnet56", "resnet110"} == set(BACKBONE_NAMES)
    assert {"linear", "cosine", "anchored"} == set(HEAD_NAMES)
    assert available_backbones()[-1] == "torchvision/<name>"


@pytest.mark.parametrize(("in_channels", "image_size"), INPUTS)
@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_backbone_features_have_feature_dim_and_finite_gradients(name, in_channels, image_size, one_thread):
    torch.manual_seed(0)
    backbone = build_backbone(name, in_channels=in_channels, image_size=image_size)
    assert isinstance(backbone.feature_dim, int) and backbone.feature_dim > 0
    x = torch.randn(3, in_channels, image_size, image_size, requires_grad=True)
    features = backbone(x)
    assert features.shape == (3, backbone.feature_dim) and bool(torch.isfinite(features).all())
    features.square().sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0
    trained = [p for p in backbone.parameters() if p.grad is not None]
    assert trained and all(bool(torch.isfinite(p.grad).all()) for p in trained)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_head_logits_have_the_class_count_and_finite_gradients(name):
    torch.manual_seed(0)
    head = build_head(name, feature_dim=16, num_classes=5)
    features = torch.randn(4, 16, requires_grad=True)
    logits = head(features)
    assert logits.shape == (4, 5) and bool(torch.isfinite(logits).all())
    logits.sum().backward()
    assert bool(torch.isfinite(features.grad).all()) and features.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_every_backbone_hyperparameter_has_a_default_and_roundtrips(name):
    hparams = backbone_hyperparameters(name)
    torch.manual_seed(0)
    explicit = build_backbone(name, in_channels=3, image_size=32, **hparams)
    torch.manual_seed(0)
    default = build_backbone(name, in_channels=3, image_size=32)
    assert repr(explicit) == repr(default)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_every_head_hyperparameter_has_a_default_and_roundtrips(name):
    hparams = head_hyperparameters(name)
    assert repr(build_head(name, feature_dim=8, num_classes=3, **hparams)) == repr(build_head(name, feature_dim=8, num_classes=3))


@pytest.mark.parametrize("name", BACKBONE_NAMES + ["torchvision/resnet18"])
def test_every_backbone_rejects_a_misspelled_hyperparameter_listing_the_valid_ones(name):
    valid = sorted(backbone_hyperparameters(name))
    message = f"Expected hyperparameters of backbone '{name}' among {valid}, but got unknown ['hiden']"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_backbone(name, in_channels=3, image_size=32, hiden=[8])


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_every_head_rejects_a_misspelled_hyperparameter(name):
    with pytest.raises(ValueError, match=rf"head '{name}'.*unknown \['bais'\]"):
        build_head(name, feature_dim=8, num_classes=3, bais=True)


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match=r"Expected a backbone in \[.*'resnet32'.*\], but got 'resnet33'"):
        build_backbone("resnet33", in_channels=3, image_size=32)
    with pytest.raises(ValueError, match=r"Expected a head in \['anchored', 'cosine', 'linear'\], but got 'dot'"):
        build_head("dot", feature_dim=8, num_classes=3)


def test_registration_is_as_strict_as_the_loss_registry():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("mlp")(lambda in_channels=1, image_size=28: nn.Identity())
    with pytest.raises(ValueError, match=r"named parameters only.*\*\*kwargs"):
        register_backbone("_test_kwargs")(lambda in_channels=1, image_size=28, **kwargs: nn.Identity())
    with pytest.raises(ValueError, match="`width` has none"):
        register_head("_test_no_default")(lambda feature_dim, num_classes, width: nn.Identity())
    with pytest.raises(ValueError, match=r"to take \['feature_dim', 'num_classes'\], but it lacks \['num_classes'\]"):
        register_head("_test_no_num_classes")(lambda feature_dim, bias=True: nn.Identity())
    assert "_test_kwargs" not in BACKBONES and "_test_no_default" not in HEADS


def test_a_backbone_without_feature_dim_is_a_value_error():
    register_backbone("_test_no_feature_dim")(lambda in_channels=1, image_size=28: nn.Flatten())
    try:
        with pytest.raises(ValueError, match="int attribute `feature_dim`"):
            build_backbone("_test_no_feature_dim", in_channels=1, image_size=28)
    finally:
        del BACKBONES["_test_no_feature_dim"]

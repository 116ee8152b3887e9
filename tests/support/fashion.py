"""Shared pieces of the method and callback tests that train on a tiny Fashion-MNIST written in IDX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lt_noise.data.modules import FashionMNISTDataModule
from support.fixtures import write_mnist_like


def fashion_mnist_root(*, n_train: int, n_test: int):
    """A module-scoped fixture: a root holding a tiny Fashion-MNIST in the torchvision layout.

    Use as ``fm_root = fashion_mnist_root(n_train=400, n_test=100)`` at module level.
    """

    @pytest.fixture(scope="module")
    def fm_root(tmp_path_factory) -> Path:
        root = tmp_path_factory.mktemp("fm")
        write_mnist_like(root / "FashionMNIST" / "raw", n_train=n_train, n_test=n_test)
        return root

    return fm_root


def fashion_mnist_data(root: Path, **kwargs: Any) -> FashionMNISTDataModule:
    """The datamodule on ``root``, single-process loading, batch 32, seed 0 unless overridden."""
    options: dict[str, Any] = dict(root=str(root), num_workers=0, batch_size=32, seed=0)
    options.update(kwargs)
    return FashionMNISTDataModule(**options)


def data_facts(dm: FashionMNISTDataModule) -> dict[str, Any]:
    """What the CLI links from the datamodule into a method."""
    return dict(num_classes=dm.num_classes, class_counts=dm.class_counts, input_shape=dm.input_shape,
                noise_rate=dm.noise_rate)

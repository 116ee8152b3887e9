"""The command line in tests: a LightningCLI config of a method on the tiny Fashion-MNIST fixture, the
config ``lt-noise ... --print_config`` prints, and classes by their config ``class_path``."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

__all__ = ["cli_config", "load_class", "print_config"]

# The model settings the CLI tests start from: a small MLP and momentum SGD.
MODEL_ARGS = {"backbone": "mlp", "backbone_args": {"hidden": [64]},
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
              "lr_schedule": {"name": "cosine"}}


def cli_config(
    method: str,
    root: Path | str,
    *,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    callbacks: list[dict[str, Any]] | None = None,
    seed: int = 7,
    max_epochs: int = 2,
) -> dict[str, Any]:
    """A LightningCLI config (dict) of ``lt_noise.methods.<method>`` on the Fashion-MNIST under ``root``.

    ``model`` and ``data`` update the init args (model: :data:`MODEL_ARGS`; data: ``root``, no workers);
    ``callbacks`` are the trainer's, as ``{"class_path": ..., "init_args": ...}`` entries.
    """
    trainer: dict[str, Any] = {"max_epochs": max_epochs}
    if callbacks:
        trainer["callbacks"] = list(callbacks)
    return {
        "seed_everything": seed,
        "trainer": trainer,
        "model": {"class_path": f"lt_noise.methods.{method}", "init_args": {**MODEL_ARGS, **(model or {})}},
        "data": {"class_path": "lt_noise.data.modules.FashionMNISTDataModule",
                 "init_args": {"root": str(root), "num_workers": 0, **(data or {})}},
    }


def print_config(*args: str, subcommand: bool = False) -> dict[str, Any]:
    """The config ``lt-noise [fit] ARGS --print_config`` prints: parsed and validated, nothing instantiated.

    Without ``subcommand`` the CLI is built with ``run=False`` (one parser instead of one per subcommand,
    2-3x faster; the same model/data/trainer arguments as ``fit``).
    """
    from lt_noise.cli import LTNoiseCLI

    out = io.StringIO()
    args = ("fit", *args) if subcommand else args
    with mock.patch.object(sys, "argv", ["lt-noise"]), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        LTNoiseCLI(args=[*args, "--print_config"], run=subcommand)
    assert stop.value.code in (0, None), out.getvalue()
    return yaml.safe_load(out.getvalue())


def load_class(class_path: str) -> type:
    """The class a config's ``class_path`` names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)

"""Training runs for reliability tests: exact resume (in-process) and DDP parity (``lt-noise`` subprocesses).

Resume::

    straight, resumed = resume_pair(make_model, make_data, tmp_path, epochs=2, stop_after=1)
    assert_same_state(straight, resumed)

``make_model()`` / ``make_data()`` (and ``make_callbacks()``, extra trainer callbacks such as a schedule)
build fresh objects; the helper seeds the global RNG before each model
is built, fits ``epochs`` epochs straight, then fits the same run but stops it after ``stop_after``
epochs (``max_epochs`` unchanged, so a cosine schedule keeps its horizon), and resumes from that run's
``last.ckpt`` in a fresh Trainer, model and datamodule, with another global seed, up to ``epochs``. It returns the two final
checkpoints (dicts as saved by Lightning: ``state_dict``, ``optimizer_states``, ``lr_schedulers``,
``callbacks``, ``lt_noise``, ...).

DDP parity::

    single = run_cli_fit(config, tmp_path / "one", devices=1, batch_size=2 * B)
    double = run_cli_fit(config, tmp_path / "two", devices=2, batch_size=B)
    assert_same_weights(single, double, atol=...)

``config`` is a dict in LightningCLI form (seed_everything, trainer, model, data); the helper writes it
as YAML, runs ``python -m lt_noise.cli fit`` with ``strategy=ddp`` on CPU (gloo) when devices > 1, and
returns the ``last.ckpt`` checkpoint dict. Use a backbone without batch norm ("mlp") for parity: per-rank
batch statistics differ from full-batch ones by construction.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

SEED = 1234


def _trainer(root: Path, max_epochs: int, callbacks: list[L.Callback] = (), **kwargs: Any) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(dirpath=root, save_last=True, save_top_k=0), *callbacks],
        default_root_dir=root,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


class StopAfter(L.Callback):
    """Stop fitting after ``epochs`` epochs (as an interruption would), leaving ``max_epochs`` and with it
    any schedule horizon (cosine) as in the uninterrupted run."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def resume_pair(
    make_model: Callable[[], L.LightningModule],
    make_data: Callable[[], L.LightningDataModule],
    root: Path,
    *,
    epochs: int = 2,
    stop_after: int = 1,
    make_callbacks: Callable[[], list[L.Callback]] = list,
    **trainer_kwargs: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Final checkpoints of an uninterrupted run and of a stop-after-``stop_after``-then-resume run."""
    L.seed_everything(SEED, workers=True)
    _trainer(root / "straight", epochs, make_callbacks(), **trainer_kwargs).fit(make_model(), make_data())
    L.seed_everything(SEED, workers=True)
    first = _trainer(root / "first", epochs, make_callbacks(), **trainer_kwargs)
    first.callbacks.append(StopAfter(stop_after))
    first.fit(make_model(), make_data())
    assert first.current_epoch == stop_after, f"expected to stop after {stop_after} epochs, got {first.current_epoch}"
    # A different global RNG state before resuming: the resumed run must not depend on it.
    L.seed_everything(SEED + 1, workers=True)
    _trainer(root / "second", epochs, make_callbacks(), **trainer_kwargs).fit(
        make_model(), make_data(), ckpt_path=str(root / "first" / "last.ckpt")
    )
    return load_checkpoint(root / "straight" / "last.ckpt"), load_checkpoint(root / "second" / "last.ckpt")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}/"))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}{i}/"))
        return out
    return {prefix.rstrip("/"): value}


def assert_same_state(
    a: dict[str, Any], b: dict[str, Any], *, keys: tuple[str, ...] = ("state_dict", "optimizer_states", "lr_schedulers", "lt_noise", "callbacks")
) -> None:
    """Bitwise equality of the listed checkpoint sections (tensors with torch.equal, the rest with ==)."""
    for key in keys:
        # ModelCheckpoint's own state holds the run's directory, which differs by construction.
        flat_a, flat_b = ({k: v for k, v in _flatten(c.get(key)).items() if "ModelCheckpoint" not in k} for c in (a, b))
        assert flat_a.keys() == flat_b.keys(), f"{key}: different entries {set(flat_a) ^ set(flat_b)}"
        for name, value in flat_a.items():
            other = flat_b[name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), f"{key}/{name} differs (max |diff| {(value.float() - other.float()).abs().max()})"
            else:
                assert value == other or (value != value and other != other), f"{key}/{name}: {value!r} != {other!r}"


def assert_same_weights(a: dict[str, Any], b: dict[str, Any], *, atol: float, rtol: float = 0.0) -> None:
    """Model weights (and buffers) equal within tolerance."""
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name].float(), sb[name].float(), atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def run_cli_fit(
    config: dict[str, Any], root: Path, *, devices: int, batch_size: int, extra_args: tuple[str, ...] = (), timeout: int = 600
) -> dict[str, Any]:
    """Run ``lt-noise fit`` on ``config`` with ``devices`` CPU processes and return its ``last.ckpt``."""
    root.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy
    trainer = config.setdefault("trainer", {})
    trainer.update(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        deterministic=True,
        num_sanity_val_steps=0,
    )
    config["data"].setdefault("init_args", {})["batch_size"] = batch_size
    config["checkpoint"] = {"dirpath": str(root / "checkpoints"), "save_last": True, "save_top_k": 0}
    config["test_after_fit"] = False
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    # One thread per process: two ranks on two cores must not oversubscribe them.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "lt_noise.cli", "fit", "--config", str(path), *extra_args]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        # Drop warning lines so that the reason of the failure is what is shown.
        stderr = "\n".join(line for line in result.stderr.splitlines() if "Warning" not in line and "warn(" not in line
                           and "It is recommended" not in line and "is deprecated" not in line)
        raise AssertionError(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout[-3000:]}\n{stderr[-8000:]}")
    return load_checkpoint(root / "checkpoints" / "last.ckpt")

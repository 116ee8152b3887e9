"""The results file: ``results.json`` in the run's log directory, read by the reproduction tools.

Written on rank 0 at the end of ``fit`` (last- and best-epoch evaluation metrics and the per-epoch
history) and of ``test`` (the test report), merging into the same file::

    {"method": ..., "model": {hyperparameters}, "data": {hyperparameters, sizes, realised noise},
     "seed": ..., "fit": {"epochs": E, "last": {...}, "best": {...}, "history": [...]},
     "test": {"acc": ..., "many": ..., "per_class_acc": [...], "ece": ...}}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["ResultsWriter", "json_safe", "results_path"]

RESULTS_FILE = "results.json"


def json_safe(value: Any) -> Any:
    """Convert tensors, dataclasses, tuples and paths to JSON values; NaN/inf become null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def results_path(trainer: L.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir) / RESULTS_FILE


class ResultsWriter(Callback):
    """Write ``results.json`` at the end of fit and test (rank 0 only)."""

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule, section: str, payload: dict[str, Any]) -> None:
        path = results_path(trainer)  # trainer.log_dir is a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        results = json.loads(path.read_text()) if path.is_file() else {}
        datamodule = trainer.datamodule
        data: dict[str, Any] = dict(getattr(datamodule, "hparams", {}) or {})
        if hasattr(datamodule, "summary"):
            data.update(datamodule.summary())
        results.update(
            method=type(pl_module).__name__,
            model=dict(pl_module.hparams),
            data=data,
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),
        )
        results[section] = payload
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(json_safe(results), indent=2))
        tmp.replace(path)  # atomic: a reader never sees a half-written file

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        history = list(getattr(pl_module, "history", []))
        if not history:
            return
        best = max(history, key=lambda record: record["acc"])
        payload = {"epochs": trainer.current_epoch, "last": history[-1], "best": best, "history": history}
        self._update(trainer, pl_module, "fit", payload)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        report = getattr(pl_module, "reports", {}).get("test")
        if report is None:
            return
        keep = ("acc", "many", "medium", "few", "ece", "per_class_acc", "num_samples")
        self._update(trainer, pl_module, "test", {k: report[k] for k in keep if k in report})

"""The predictions file: ``predictions.csv`` after ``lt-noise predict`` (DESIGN.md §9), one row per sample.

:class:`PredictionWriter` is a Lightning :class:`~lightning.pytorch.callbacks.BasePredictionWriter`: the
CLI adds it to ``predict`` (its settings are the ``predictions`` section of the config), and a Python user
adds it to any ``Trainer``. Each process keeps the rows of its own batches (a few numbers per sample);
at the end of ``predict`` they are gathered to rank 0, which drops the duplicates a
``DistributedSampler`` pads with (by sample index), sorts by index and writes the file atomically
(temporary file + rename): every sample appears exactly once, and a failed run leaves no half-written
file. Works with the outputs of :meth:`lt_noise.methods.Classifier.predict_step` (a dict with ``probs``
or ``logits``, ``target`` and ``index``).

Columns: ``index`` (the sample's position in the predicted set: the training index for
``predict_split: train``), ``path`` (its file, for datasets of files; empty for in-memory sets),
``label`` and ``label_name`` (the given label, empty where there is none), ``predicted`` and
``predicted_name``, ``probability`` (of the predicted class) and ``top_k``: the ``k`` most probable
classes as ``"name:probability"`` pairs separated by ``"; "`` (the class index where there are no names).
With a datamodule that skipped unreadable images (``ImageListDataModule(skip_unreadable=True)``), the
skipped files are printed and written to ``<name>_skipped.txt`` beside the CSV (path, tab, reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lt_noise.callbacks.tables import format_float, run_directory, write_csv, write_lines
from lt_noise.distributed import all_gather_rows
from lt_noise.validation import check_int

__all__ = ["PREDICTIONS_FILE", "PredictionWriter"]

PREDICTIONS_FILE = "predictions.csv"
COLUMNS = ("index", "path", "label", "label_name", "predicted", "predicted_name", "probability", "top_k")


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv`` at the end of ``predict`` (see the module docstring).

    Args:
        output: the CSV file. None (default): ``predictions.csv`` in the run's directory, i.e. the folder
            above ``checkpoints/`` of the checkpoint given to ``predict`` (``--ckpt_path``), else the
            trainer's log directory. A bare file name (``train_predictions.csv``) goes into that same
            directory; a path with a folder (``./p.csv``, ``out/p.csv``) is taken as it is.
        top_k: number of classes in the ``top_k`` column (at most the number of classes).
    """

    def __init__(self, output: str | None = None, *, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        check_int("top_k", top_k, minimum=1)
        self.output = output
        self.top_k = top_k
        self.written: Path | None = None
        self._rows: list[torch.Tensor] = []

    # ----------------------------------------------------------------------------------------------
    def output_path(self, trainer: L.Trainer) -> Path:
        """Where the CSV goes (asks ``trainer.log_dir``, a collective under DDP, only without a checkpoint)."""
        if self.output is not None and Path(self.output).name != self.output:
            return Path(self.output).expanduser()
        ckpt_path = getattr(trainer, "ckpt_path", None)
        log_dir = None if ckpt_path else (trainer.log_dir or trainer.default_root_dir)
        return run_directory(ckpt_path, log_dir) / (self.output or PREDICTIONS_FILE)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []
        self.written = None
        num_classes = getattr(pl_module, "num_classes", None)
        if num_classes is not None and self.top_k > num_classes:
            raise ValueError(f"Expected argument `top_k` <= num_classes={num_classes}, but got {self.top_k}")

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any, batch_indices: Any, batch: Any,
        batch_idx: int, dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict) or not {"target", "index"} <= set(prediction) or not {"probs", "logits"} & set(prediction):
            raise ValueError(
                "Expected predict_step to return a dict with 'probs' or 'logits', 'target' and 'index' (as "
                f"lt_noise.methods.Classifier.predict_step does), but got {type(prediction).__name__}"
            )
        probs = prediction.get("probs")
        if probs is None:
            probs = prediction["logits"].float().softmax(dim=1)
        k = min(self.top_k, probs.shape[1])
        values, classes = probs.detach().double().topk(k, dim=1)
        index = prediction["index"].detach().double()[:, None]
        target = prediction["target"].detach().double()[:, None]
        # One float64 row per sample: index, label, k classes, k probabilities (exact for indices < 2^53).
        self._rows.append(torch.cat([index, target, classes.double(), values], dim=1))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        k = min(self.top_k, getattr(pl_module, "num_classes", self.top_k) or self.top_k)
        local = torch.cat(self._rows) if self._rows else torch.zeros(0, 2 + 2 * k, dtype=torch.float64)
        self._rows = []
        rows = all_gather_rows(local.to(pl_module.device)).cpu().numpy()  # every rank calls the collective
        path = self.output_path(trainer)
        if not trainer.is_global_zero:
            return
        index = rows[:, 0].astype(np.int64)
        _, first = np.unique(index, return_index=True)  # sorted by index, each sample once
        self.written = self._write(path, rows[first], trainer.datamodule)

    def _write(self, path: Path, rows: np.ndarray, datamodule: Any) -> Path:
        k = (rows.shape[1] - 2) // 2
        names = tuple(getattr(datamodule, "class_names", None) or ())
        sample_path = getattr(datamodule, "sample_path", None)

        def name(label: int) -> str:
            return str(names[label]) if 0 <= label < len(names) else ""

        table = []
        for row in rows:
            i, label = int(row[0]), int(row[1])
            classes, probs = row[2 : 2 + k].astype(np.int64), row[2 + k :]
            file = sample_path(i, "predict") if callable(sample_path) else None
            top = "; ".join(f"{name(int(c)) or int(c)}:{p:.4f}" for c, p in zip(classes, probs))
            table.append([i, file or "", label if label >= 0 else "", name(label), int(classes[0]), name(int(classes[0])),
                          format_float(probs[0]), top])
        write_csv(path, COLUMNS, table)
        skipped = list(getattr(datamodule, "skipped_files", None) or [])
        skipped_path = path.with_name(f"{path.stem}_skipped.txt")
        message = f"Predictions: wrote {path} ({len(table):,} samples, top {k})"
        if skipped:
            write_lines(skipped_path, (f"{file}\t{reason}" for file, reason in skipped))
            listed = "\n".join(f"  - {file}: {reason}" for file, reason in skipped)
            message += f"; skipped {len(skipped)} unreadable files (listed in {skipped_path}):\n{listed}"
        else:
            skipped_path.unlink(missing_ok=True)  # a list from an earlier run would no longer be true
        rank_zero_info(message)
        return path

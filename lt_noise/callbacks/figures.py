"""Evaluation figures: per-class accuracy vs training class size, and the reliability diagram."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.callbacks.plots import per_class_accuracy_figure, reliability_diagram_figure
from lt_noise.validation import check_positive_int

__all__ = ["EvaluationFigures"]


class EvaluationFigures(Callback):
    """Log the evaluation figures to TensorBoard after validation (every ``every_n_epochs``) and test.

    Reads the report the model keeps in ``pl_module.reports[stage]`` (see
    :class:`lt_noise.methods.Classifier`), which holds per-class accuracy and calibration bins.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        report = getattr(pl_module, "reports", {}).get(stage)
        if report is None or tensorboard(trainer) is None:
            return
        counts = getattr(pl_module, "class_counts", None)
        if counts is not None:
            names = getattr(trainer.datamodule, "class_names", None) if trainer.datamodule is not None else None
            figure = per_class_accuracy_figure(
                report["per_class_acc"].tolist(), counts, class_names=names or None,
                title=f"{stage}: per-class accuracy vs training class size",
            )
            log_figure(trainer, f"{stage}/per_class_accuracy", figure)
        figure = reliability_diagram_figure(
            report["bin_confidence"].tolist(), report["bin_accuracy"].tolist(), report["bin_count"].tolist(),
            ece=report["ece"], title=f"{stage}: reliability",
        )
        log_figure(trainer, f"{stage}/reliability_diagram", figure)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or not (last or (trainer.current_epoch + 1) % self.every_n_epochs == 0):
            return
        self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")

"""Helpers shared by the diagnostics callbacks: finding TensorBoard and writing figures to it."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

__all__ = ["log_figure", "tensorboard"]


def tensorboard(trainer: L.Trainer):
    """The SummaryWriter of the trainer's TensorBoard logger on rank 0, else None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_figure(trainer: L.Trainer, tag: str, figure: Figure, step: int | None = None) -> None:
    """Add ``figure`` under ``tag`` (at ``step``, default the global step) when TensorBoard is in use."""
    writer = tensorboard(trainer)
    if writer is not None:
        writer.add_figure(tag, figure, global_step=trainer.global_step if step is None else step, close=True)

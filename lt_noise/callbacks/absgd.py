"""ABSGD diagnostics: the average attentional weight per class over training (the paper's Fig. 4 right)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lt_noise.callbacks.absgd_plots import class_weight_figure
from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.validation import check_positive_int

__all__ = ["AttentionalWeightFigures"]


class AttentionalWeightFigures(Callback):
    """Average attentional weight ``p_i`` of each class's training samples per epoch, as a TensorBoard figure.

    Paper (``papers/004``), Section 4.3 and Fig. 4 (right two): minority classes should get larger average
    weights than majority classes under λ > 0. The weights are those the training steps actually used
    (``pl_module.last_weights`` of :class:`lt_noise.methods.ABSGD`, ``None`` = all ones in an ERM stage),
    averaged per observed label over the epoch; this costs no extra pass over the data. (The authors'
    code instead re-evaluates the whole training set in eval mode after each epoch with the current
    normalizer; the two agree up to the drift of the model within an epoch.) Under DDP the per-class sums
    are all-reduced, so every rank holds the global averages.

    :attr:`epochs` and :attr:`mean_weights` (``(epochs, C)``, NaN for a class without samples in an
    epoch) are kept in checkpoints (an epoch is complete on its last batch, before the end-of-epoch
    checkpoint; a run resumed from a mid-epoch checkpoint averages that epoch over its remaining batches). The figure ``train/absgd_class_weights`` is logged every
    ``every_n_epochs`` epochs and after the last one, when a TensorBoard logger is in use.
    :class:`lt_noise.methods.ABSGD` runs with this callback by default.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.epochs: list[int] = []
        self.mean_weights: list[list[float]] = []
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._pending_epoch: int | None = None

    # ----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = int(pl_module.num_classes)
        self._sums = torch.zeros(num_classes, dtype=torch.float64, device=pl_module.device)
        self._counts = torch.zeros(num_classes, dtype=torch.float64, device=pl_module.device)
        self._pending_epoch = trainer.current_epoch

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._sums is None or self._pending_epoch is None:
            return
        targets = batch[1]
        if outputs is not None and targets.ndim == 1:  # None: a skipped (non-finite) batch
            weights = getattr(pl_module, "last_weights", None)
            values = torch.ones_like(targets, dtype=torch.float64) if weights is None else weights.detach().double()
            self._sums.index_add_(0, targets, values)
            self._counts.index_add_(0, targets, torch.ones_like(values))
        # Finish the epoch on its last batch, before the end-of-epoch validation and checkpoint, so that
        # a checkpoint holds the complete history (and a resumed run continues it exactly).
        if batch_idx + 1 >= trainer.num_training_batches:
            self._finish_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending_epoch is not None:  # the epoch ended early (max_steps)
            self._finish_epoch(trainer)
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if not self.epochs or tensorboard(trainer) is None:
            return
        if last or trainer.should_stop or (epoch + 1) % self.every_n_epochs == 0:
            counts = getattr(pl_module, "class_counts", None)
            if counts is None:
                counts = [int(c) for c in self._counts.tolist()] if self._counts is not None else None
            datamodule = getattr(trainer, "datamodule", None)
            names = getattr(datamodule, "class_names", None) or None
            figure = class_weight_figure(self.epochs, self.mean_weights, counts, class_names=names)
            log_figure(trainer, "train/absgd_class_weights", figure)

    def _finish_epoch(self, trainer: L.Trainer) -> None:
        sums = trainer.strategy.reduce(self._sums, reduce_op="sum")
        counts = trainer.strategy.reduce(self._counts, reduce_op="sum")
        means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
        self.epochs.append(int(self._pending_epoch))
        self.mean_weights.append([float(v) for v in means.tolist()])
        self._pending_epoch = None

    # ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "mean_weights": [list(row) for row in self.mean_weights]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict["epochs"])
        self.mean_weights = [list(row) for row in state_dict["mean_weights"]]

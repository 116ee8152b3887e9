"""Training schedules as callbacks, so that they are visible in the config (STYLE.md habit 7)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from lt_noise.losses import class_balanced_weights
from lt_noise.validation import check_int, check_interval

__all__ = ["DeferredReweighting"]


class DeferredReweighting(Callback):
    """Deferred re-weighting, DRW (Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss", Sec. 3.3): plain (uniform) weights until ``start_epoch``, then the class-balanced
    weights of the effective number of samples with ``beta`` (Cui et al. 2019) in the method's reduction.

    Sets ``pl_module.class_weights`` (a buffer of :class:`lt_noise.methods.Classifier`) at the start of
    every training epoch from the model's observed ``class_counts``; as in the LDAM-DRW code, the weights
    are normalised to sum to the number of classes and the reduction is the weighted mean.
    """

    def __init__(self, start_epoch: int = 160, beta: float = 0.9999) -> None:
        self.start_epoch = check_int("start_epoch", start_epoch, minimum=0)
        self.beta = check_interval("beta", beta, 0.0, 1.0, low_closed=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = pl_module.class_weights
        if trainer.current_epoch < self.start_epoch:
            weights.fill_(1.0)
            return
        counts = getattr(pl_module, "class_counts", None)
        if counts is None:
            raise ValueError("Expected the model to know its `class_counts` for deferred re-weighting, but it has none")
        weights.copy_(class_balanced_weights(counts, self.beta).to(weights))

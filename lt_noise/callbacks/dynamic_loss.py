"""Diagnostics of Dynamic Loss (papers/002): label-corrector quality, learned weights and margins.

At the start of every training epoch, right after :class:`~lt_noise.methods.DynamicLoss` has ranked the
training set and split off the meta set (``pl_module.split``), this callback compares, against the
datamodule's diagnostics-only ``clean_targets`` / ``is_noisy`` (which the method never reads):

- ``dynamic_loss/observed_label_acc``: fraction of the epoch's training samples whose observed label is
  the clean one;
- ``dynamic_loss/corrected_label_acc``: the same for the label the corrector assigns,
  :meth:`DynamicLoss.corrected_labels` (argmax of eq. 3's y* with y' the eval-mode prediction of the
  ranking pass, i.e. the mode of the Gumbel sample used in training); ``..._noisy`` / ``..._clean``:
  on the noisy / clean samples only (paper Fig. 6, and the authors' per-batch log of the same);
- ``dynamic_loss/meta_clean_fraction``: how clean the epoch's meta set is;
- ``dynamic_loss/margin_count_correlation``: Spearman correlation between the learned q_j and the
  observed class counts (Fig. 4 expects it positive on long-tailed data).

At the end of every training epoch it logs the label corrector's meta-gradient dL_meta/dg(r|y) of the
epoch's meta steps (:attr:`DynamicLoss.corrector_grad_sum`, summed over the DDP ranks):
``dynamic_loss/corrector_grad_abs`` (mean magnitude per sample), ``..._high_bins`` / ``..._low_bins``
(its mean sign-carrying value over the top fifth and the bottom half of the loss bins: positive pushes g
down, so a corrector that learns shows positive high-bin and negative low-bin values), and records the
table g(r|y) of the ``g_classes`` largest classes.

Every ``every_n_epochs`` epochs (and at the end of fit) it logs four TensorBoard figures:
``dynamic_loss/label_weights`` (Fig. 3: g(r|y) per class with the noisy fraction per bin),
``dynamic_loss/label_weights_over_epochs`` (Fig. 7: g(r|y) of the largest classes at every recorded
epoch), ``dynamic_loss/margins`` (Fig. 4/8: q per class with the class counts) and
``dynamic_loss/corrected_label_accuracy`` (Fig. 6, over the epochs so far).

The per-epoch records (``history``, with a checksum ``split_digest`` of the bins and meta set, and the
recorded g tables) are the callback's checkpoint state. Every rank computes the same numbers (the split is identical on all
ranks); only rank 0 draws.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from lt_noise.callbacks.dynamic_loss_plots import (
    corrected_label_accuracy_figure,
    label_weight_figure,
    label_weights_over_epochs_figure,
    margin_figure,
    noisy_fraction_per_bin,
)
from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.data.sampling import split_digest
from lt_noise.distributed import all_reduce_
from lt_noise.validation import check_positive_int

__all__ = ["DynamicLossDiagnostics", "label_statistics", "spearman"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either input is constant."""
    def ranks(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        ranked = np.empty(len(x))
        ranked[order] = np.arange(len(x))
        for value in np.unique(x):  # average ranks of ties
            tie = x == value
            ranked[tie] = ranked[tie].mean()
        return ranked

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def label_statistics(corrected: np.ndarray, observed: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Accuracies (vs ``clean``) of the corrected and observed labels, overall and on noisy / clean samples."""
    noisy = observed != clean
    right = corrected == clean

    def mean(mask: np.ndarray) -> float:
        return float(right[mask].mean()) if mask.any() else float("nan")

    return {
        "observed_label_acc": float((observed == clean).mean()) if len(clean) else float("nan"),
        "corrected_label_acc": mean(np.ones_like(noisy)),
        "corrected_label_acc_noisy": mean(noisy),
        "corrected_label_acc_clean": mean(~noisy),
    }


class DynamicLossDiagnostics(Callback):
    """Per-epoch label-correction statistics and the paper's Fig. 3 / 4 / 6 (see the module docstring).

    Args:
        every_n_epochs: draw the figures every this many epochs (scalars are logged every epoch).
        max_classes: at most this many classes (evenly spaced) in the per-class g(r|y) figure.
        g_classes: how many of the largest classes (by observed count) the g-over-epochs record keeps.
    """

    # The bins counted as "high loss" (the top fifth) and "low loss" (the bottom half) by the gradient scalars.
    HIGH_BINS = 0.8
    LOW_BINS = 0.5

    def __init__(self, every_n_epochs: int = 5, max_classes: int = 10, g_classes: int = 3) -> None:
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.max_classes = check_positive_int("max_classes", max_classes)
        self.g_classes = check_positive_int("g_classes", g_classes)
        self.history: list[dict[str, Any]] = []
        # (epoch, g table of the recorded classes (R, g_classes)) at the end of each epoch.
        self.g_history: list[tuple[int, list[list[float]]]] = []

    # ----------------------------------------------------------------------------------------------
    def epoch_statistics(self, pl_module: L.LightningModule, datamodule: Any) -> dict[str, Any]:
        """The statistics of the module's current split (a record of ``history``)."""
        split = pl_module.split
        observed = np.asarray(datamodule.observed_targets, dtype=np.int64)
        clean = np.asarray(datamodule.clean_targets, dtype=np.int64)
        train = split.train_indices
        record: dict[str, Any] = {"epoch": int(split.epoch), "split_digest": split_digest(split)}
        if pl_module.metanet.use_corrector:
            device = pl_module.device
            corrected = pl_module.corrected_labels(
                torch.as_tensor(split.bins[train], device=device),
                torch.as_tensor(observed[train], device=device),
                torch.as_tensor(split.predictions[train], device=device),
            ).cpu().numpy()
            record.update(label_statistics(corrected, observed[train], clean[train]))
        else:
            record["observed_label_acc"] = float((observed[train] == clean[train]).mean())
        if split.meta_indices is not None:
            meta = split.meta_indices
            record["meta_clean_fraction"] = float((observed[meta] == clean[meta]).mean())
            record["meta_size"] = int(len(meta))
        margins = pl_module.margin().detach().float().cpu().numpy()
        record["margin_count_correlation"] = spearman(margins, np.bincount(observed, minlength=len(margins)))
        return record

    def _figures(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if tensorboard(trainer) is None or pl_module.split is None:
            return
        datamodule = trainer.datamodule
        split = pl_module.split
        observed = np.asarray(datamodule.observed_targets, dtype=np.int64)
        names = getattr(datamodule, "class_names", None) or None
        num_classes = pl_module.num_classes
        if pl_module.metanet.use_corrector:
            table = pl_module.metanet.corrector.table().detach().float().cpu().numpy()
            fraction = noisy_fraction_per_bin(split.bins, observed, np.asarray(datamodule.is_noisy), num_classes,
                                              pl_module.num_bins)
            classes = np.unique(np.linspace(0, num_classes - 1, min(num_classes, self.max_classes)).round().astype(int))
            log_figure(trainer, "dynamic_loss/label_weights",
                       label_weight_figure(table, fraction, classes=classes.tolist(), class_names=names))
            records = [r for r in self.history if "corrected_label_acc" in r]
            if records:
                log_figure(trainer, "dynamic_loss/corrected_label_accuracy", corrected_label_accuracy_figure(
                    [r["epoch"] for r in records], [r["corrected_label_acc"] for r in records],
                    [r["observed_label_acc"] for r in records],
                    corrected_noisy=[r["corrected_label_acc_noisy"] for r in records],
                    corrected_clean=[r["corrected_label_acc_clean"] for r in records],
                    warmup_epochs=pl_module.warmup_epochs,
                ))
            if self.g_history:
                classes = self._g_classes(observed, num_classes)
                tables = np.zeros((len(self.g_history), pl_module.num_bins, num_classes))
                for i, (_, table) in enumerate(self.g_history):
                    tables[i][:, classes] = np.asarray(table)
                log_figure(trainer, "dynamic_loss/label_weights_over_epochs", label_weights_over_epochs_figure(
                    [e for e, _ in self.g_history], tables, classes=classes, class_names=names))
        log_figure(trainer, "dynamic_loss/margins", margin_figure(
            pl_module.margin().detach().float().cpu().numpy(), np.bincount(observed, minlength=num_classes),
            clean_counts=getattr(datamodule, "clean_class_counts", None), class_names=names,
        ))

    # ----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        split = getattr(pl_module, "split", None)
        if split is None or split.epoch != trainer.current_epoch or trainer.datamodule is None:
            return
        record = self.epoch_statistics(pl_module, trainer.datamodule)
        self.history = [r for r in self.history if r["epoch"] < record["epoch"]] + [record]
        scalars = {f"dynamic_loss/{k}": float(v) for k, v in record.items()
                   if k not in ("epoch", "split_digest") and v == v}
        pl_module.log_dict(scalars, on_step=False, on_epoch=True)
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._figures(trainer, pl_module)

    def _g_classes(self, observed: np.ndarray, num_classes: int) -> list[int]:
        counts = np.bincount(observed, minlength=num_classes)
        return sorted(np.argsort(-counts, kind="stable")[: self.g_classes].tolist())

    def gradient_statistics(self, pl_module: L.LightningModule) -> dict[str, float]:
        """The epoch's corrector meta-gradient (summed over DDP ranks): mean |dL/dg| per sample and the mean
        dL/dg per sample in the high-loss and low-loss bins (NaN where no sample contributed)."""
        total = torch.stack([pl_module.corrector_grad_sum, pl_module.corrector_grad_count])
        all_reduce_(total)  # a collective: every rank calls it
        grad, count = total[0].cpu().numpy(), total[1].cpu().numpy()
        bins = grad.shape[0]
        high, low = slice(int(self.HIGH_BINS * bins), bins), slice(0, int(self.LOW_BINS * bins))

        def mean(values: np.ndarray, counts: np.ndarray) -> float:
            return float(values.sum() / counts.sum()) if counts.sum() > 0 else float("nan")

        visited = count > 0
        cell_means = np.where(visited, grad / np.maximum(count, 1), 0.0)
        return {
            "corrector_grad_abs": float(np.abs(cell_means[visited]).mean()) if visited.any() else float("nan"),
            "corrector_grad_high_bins": mean(grad[high], count[high]),
            "corrector_grad_low_bins": mean(grad[low], count[low]),
        }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.metanet.use_corrector or trainer.datamodule is None:
            return
        statistics = self.gradient_statistics(pl_module)
        if pl_module.split is not None and pl_module.split.meta_indices is not None:
            pl_module.log_dict({f"dynamic_loss/{k}": v for k, v in statistics.items() if v == v},
                               on_step=False, on_epoch=True)
            if self.history and self.history[-1]["epoch"] == trainer.current_epoch:
                self.history[-1].update(statistics)
        observed = np.asarray(trainer.datamodule.observed_targets, dtype=np.int64)
        classes = self._g_classes(observed, pl_module.num_classes)
        table = pl_module.metanet.corrector.table().detach().float().cpu().numpy()[:, classes]
        self.g_history = [(e, t) for e, t in self.g_history if e < trainer.current_epoch]
        self.g_history.append((int(trainer.current_epoch), np.round(table, 5).tolist()))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._figures(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history], "g_history": [(e, t) for e, t in self.g_history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state_dict.get("history", [])]
        self.g_history = [(int(e), t) for e, t in state_dict.get("g_history", [])]

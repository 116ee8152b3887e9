"""Prototype diagnostics of the PAL paper (papers/000): minimum angle between the classifier's prototypes
(Fig. 5b), prototype norms per class and the histogram of feature norms (Fig. 3).

The reliability diagram and ECE of Fig. 2 are not repeated here: every :class:`~lt_noise.methods.Classifier`
already logs them after each validation (``val/ece`` and the ``val/reliability_diagram`` figure of
:class:`lt_noise.callbacks.EvaluationFigures`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.callbacks.pal_plots import feature_norm_histogram_figure, min_angle_figure, prototype_norms_figure
from lt_noise.distributed import all_reduce_
from lt_noise.prototypes import min_pairwise_angle
from lt_noise.validation import check_positive_int

__all__ = ["PrototypeDiagnostics", "head_prototypes"]

# Bins of the feature-norm histogram: fine enough to show the shape of Fig. 3b, few enough to all-reduce.
DEFAULT_BINS = 30


def head_prototypes(head: nn.Module, num_classes: int | None = None) -> Tensor | None:
    """The ``(num_classes, d)`` prototype matrix of a classifier head, or None if it has none.

    Anchored heads: their ``prototypes`` buffer; learned heads (linear, cosine, MiSLAS's scaled head):
    their ``weight`` rows, one per class (Fig. 5b compares learned prototypes with anchored ones).
    """
    for name in ("prototypes", "weight"):
        value = getattr(head, name, None)
        if isinstance(value, Tensor) and value.ndim == 2 and (num_classes is None or value.shape[0] == num_classes):
            return value.detach()
    return None


class PrototypeDiagnostics(Callback):
    """After each validation epoch: the minimum angle between the head's prototypes, their norms, and the
    norms of the backbone's features on the validation set.

    Scalars (every validation epoch): ``val/min_prototype_angle`` (degrees) and ``val/feature_norm_mean``.
    Figures (TensorBoard, rank 0, every ``every_n_epochs`` epochs and after the last): ``val/prototype_angle``
    (the angle over epochs, with the simplex optimum ``arccos(-1/(k-1))``; Fig. 5b), ``val/prototype_norms``
    (Fig. 3a) and ``val/feature_norms`` (Fig. 3b; raw backbone features, before any normalisation of
    FNPAL). Feature norms are collected by a forward hook on the backbone during validation: no extra pass.
    Under DDP the histogram and the mean are over all ranks' samples.

    :attr:`epochs` and :attr:`min_angles` (the curve) are kept in checkpoints. PAL and FNPAL run with this
    callback by default; add it to ``trainer.callbacks`` for any other method (learned heads: a linear or
    cosine head's weight rows are its prototypes).
    """

    def __init__(self, every_n_epochs: int = 1, bins: int = DEFAULT_BINS) -> None:
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.bins = check_positive_int("bins", bins)
        self.epochs: list[int] = []
        self.min_angles: list[float] = []
        self._norms: list[Tensor] = []
        self._hook: Any = None

    # ----------------------------------------------------------------------------------------------
    def _collect(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._norms.append(output.detach().float().flatten(1).norm(dim=1))

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hook()
        self._norms = []
        if not trainer.sanity_checking:
            self._hook = pl_module.net.backbone.register_forward_hook(self._collect)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hook()
        if trainer.sanity_checking:
            return
        norms = torch.cat(self._norms) if self._norms else torch.zeros(0, device=pl_module.device)
        self._norms = []
        edges, counts, mean = self._feature_histogram(norms, pl_module.device)
        # Both scalars are already global (all-reduced / from the synchronised weights): sync_dist only
        # tells Lightning so; averaging equal values changes nothing.
        if mean == mean:
            pl_module.log("val/feature_norm_mean", mean, sync_dist=True)
        prototypes = head_prototypes(pl_module.net.head, getattr(pl_module, "num_classes", None))
        angle = min_pairwise_angle(prototypes) if prototypes is not None else math.nan
        if prototypes is not None:
            self.epochs.append(int(trainer.current_epoch))
            self.min_angles.append(angle)
            if angle == angle:
                pl_module.log("val/min_prototype_angle", angle, sync_dist=True)
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if tensorboard(trainer) is None or not (last or (epoch + 1) % self.every_n_epochs == 0):
            return
        if prototypes is not None:
            k = prototypes.shape[0]
            optimum = math.degrees(math.acos(-1.0 / (k - 1))) if k <= prototypes.shape[1] + 1 else None
            log_figure(trainer, "val/prototype_angle", min_angle_figure(self.epochs, self.min_angles, optimum=optimum))
            names = getattr(getattr(trainer, "datamodule", None), "class_names", None) or None
            figure = prototype_norms_figure(prototypes.double().norm(dim=1).tolist(), getattr(pl_module, "class_counts", None),
                                            class_names=names, title=f"Prototype norms (epoch {epoch})")
            log_figure(trainer, "val/prototype_norms", figure)
        if counts is not None:
            figure = feature_norm_histogram_figure(edges.tolist(), counts.tolist(), title=f"Feature norms (epoch {epoch})")
            log_figure(trainer, "val/feature_norms", figure)

    def _feature_histogram(self, norms: Tensor, device: torch.device) -> tuple[Tensor | None, Tensor | None, float]:
        """Global (all ranks) histogram edges and counts over [0, max norm], and the mean norm."""
        stats = torch.tensor([norms.numel(), float(norms.sum()) if norms.numel() else 0.0], dtype=torch.float64, device=device)
        all_reduce_(stats, dist.ReduceOp.SUM)
        top = torch.tensor([float(norms.max()) if norms.numel() else 0.0], dtype=torch.float64, device=device)
        all_reduce_(top, dist.ReduceOp.MAX)
        if stats[0] == 0:
            return None, None, math.nan
        high = float(top) if float(top) > 0 else 1.0
        counts = torch.histc(norms.double(), bins=self.bins, min=0.0, max=high) if norms.numel() else torch.zeros(
            self.bins, dtype=torch.float64, device=device)
        all_reduce_(counts, dist.ReduceOp.SUM)
        return torch.linspace(0.0, high, self.bins + 1, dtype=torch.float64), counts.cpu(), float(stats[1] / stats[0])

    # ----------------------------------------------------------------------------------------------
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._remove_hook()

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "min_angles": list(self.min_angles)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict["epochs"])
        self.min_angles = list(state_dict["min_angles"])

"""Per-sample loss modules and their curriculum (sample-weight) view.

Every loss is an ``nn.Module`` whose ``forward(logits, target)`` takes logits (B, C) and class indices
(B,) int64 or, where noted, a probability vector per row (B, C), and returns per-sample losses (B,)
in at least float32. Losses never reduce: the method does (DESIGN.md §1).

Soft targets are accepted by CrossEntropy, MSE, MAE, RCE, SCE, NCE, NSL, BalancedSoftmax,
LogitAdjusted and ActivePassive combinations of those; the others raise ``ValueError``.

Files: :mod:`~lt_noise.losses.standard` (CE, Focal, MSE), :mod:`~lt_noise.losses.robust`
(MAE, RCE, NCE, NFL, GCE, NGCE, SCE, AGCE, AUL, AEL, TCE, NSL), :mod:`~lt_noise.losses.active_passive`
(ActivePassive and the named combinations), :mod:`~lt_noise.losses.longtail` (LDAM, BalancedSoftmax,
LogitAdjusted, class_balanced_weights), :mod:`~lt_noise.losses.registry` (names -> factories) and
:mod:`~lt_noise.losses.curriculum` (soft margin, Eq. (4), Reweighted).
"""

from lt_noise.losses._base import LabelProbabilityLoss, PerSampleLoss
from lt_noise.losses.registry import LOSSES, available_losses, build_loss, loss_hyperparameters, register_loss
from lt_noise.losses.standard import MSE, CrossEntropy, FocalLoss
from lt_noise.losses.robust import AEL, AGCE, AUL, GCE, MAE, NCE, NFL, NGCE, NSL, RCE, SCE, TCE
from lt_noise.losses.active_passive import ActivePassive
from lt_noise.losses.longtail import LDAM, BalancedSoftmax, LogitAdjusted, class_balanced_weights, ldam_margins
from lt_noise.losses.curriculum import Reweighted, expected_initial_margin, soft_margin

__all__ = [
    "AEL",
    "AGCE",
    "AUL",
    "GCE",
    "LDAM",
    "LOSSES",
    "MAE",
    "MSE",
    "NCE",
    "NFL",
    "NGCE",
    "NSL",
    "RCE",
    "SCE",
    "TCE",
    "ActivePassive",
    "BalancedSoftmax",
    "CrossEntropy",
    "FocalLoss",
    "LabelProbabilityLoss",
    "LogitAdjusted",
    "PerSampleLoss",
    "Reweighted",
    "available_losses",
    "build_loss",
    "class_balanced_weights",
    "expected_initial_margin",
    "ldam_margins",
    "loss_hyperparameters",
    "register_loss",
    "soft_margin",
]

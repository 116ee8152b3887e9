"""Evaluation metrics as the papers report them.

- top-1 accuracy, overall and per class (classes absent from the evaluated targets get NaN, not 0:
  torchmetrics' ``MulticlassAccuracy(average=None)`` would report 0.0 for them);
- many / medium / few-shot accuracy (Liu et al. 2019, OLTR): the mean per-class accuracy over classes
  with more than 100, 20 to 100, and fewer than 20 *training* samples;
- expected calibration error (Guo et al. 2017) with 15 equal-width confidence bins, and the per-bin
  statistics behind a reliability diagram.

:class:`ClassificationMetrics` accumulates a confusion matrix and the bin statistics as sum-reduced
torchmetrics states, so under DDP every rank's samples are counted once when ``compute`` syncs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from lt_noise.validation import check_class_counts, check_int

__all__ = [
    "ClassificationMetrics",
    "ECE_BINS",
    "FEW_SHOT",
    "MANY_SHOT",
    "expected_calibration_error",
    "per_class_accuracy",
    "shot_accuracy",
    "shot_groups",
]

# OLTR's thresholds (Liu et al. 2019): many-shot > 100 training samples, few-shot < 20.
MANY_SHOT = 100
FEW_SHOT = 20
# Confidence bins of the ECE (Guo et al. 2017 use 15 equal-width bins).
ECE_BINS = 15


def per_class_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Recall of each class from a (true, predicted) confusion matrix; NaN where a class has no samples."""
    support = confmat.sum(dim=1).double()
    correct = confmat.diagonal().double()
    return torch.where(support > 0, correct / support.clamp_min(1), torch.full_like(support, float("nan")))


def shot_groups(class_counts: Sequence[int], *, many: int = MANY_SHOT, few: int = FEW_SHOT) -> dict[str, torch.Tensor]:
    """Boolean class masks of the many (> many), medium and few (< few) groups by training count."""
    counts = torch.as_tensor(list(class_counts))
    return {"many": counts > many, "medium": (counts <= many) & (counts >= few), "few": counts < few}


def shot_accuracy(per_class: torch.Tensor, class_counts: Sequence[int]) -> dict[str, float]:
    """Mean per-class accuracy within each shot group (NaN for an empty group or no evaluated class)."""
    result = {}
    for name, mask in shot_groups(class_counts).items():
        values = per_class[mask.to(per_class.device)]
        values = values[~values.isnan()]
        result[name] = float(values.mean()) if len(values) else float("nan")
    return result


def expected_calibration_error(count: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """ECE = sum_b (n_b / n) |acc_b - conf_b| from per-bin sample counts, confidence sums, correct counts."""
    total = count.sum()
    if total == 0:
        return float("nan")
    gap = (correct.double() - confidence.double()).abs()  # n_b * |acc_b - conf_b|
    return float(gap.sum() / total)


class ClassificationMetrics(Metric):
    """Confusion matrix and calibration bins; ``compute()`` returns a report dict.

    Report keys: ``acc`` (top-1), ``per_class_acc`` (C,), ``many``/``medium``/``few`` (when
    ``class_counts`` is given), ``ece``, ``confmat`` (C, C), ``bin_count``/``bin_confidence``/
    ``bin_accuracy`` (reliability diagram, per bin), ``num_samples``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, class_counts: Sequence[int] | None = None, n_bins: int = ECE_BINS) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        # Descriptive use: a class without training samples is a few-shot class (docs/conventions.md).
        counts = None if class_counts is None else check_class_counts(class_counts, num_classes=num_classes, allow_empty=True)
        self.class_counts = None if counts is None else counts.tolist()
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bin_count", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bin_confidence", torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bin_correct", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"Expected logits of shape (B, {self.num_classes}), but got {tuple(logits.shape)}")
        if target.shape != logits.shape[:1]:
            raise ValueError(f"Expected targets of shape ({logits.shape[0]},), but got {tuple(target.shape)}")
        probs = logits.detach().float().softmax(dim=1)
        confidence, predicted = probs.max(dim=1)
        target = target.long()
        self.confmat += torch.bincount(
            target * self.num_classes + predicted, minlength=self.num_classes**2
        ).view(self.num_classes, self.num_classes)
        bins = (confidence * self.n_bins).long().clamp_(max=self.n_bins - 1)
        correct = (predicted == target).long()
        self.bin_count += torch.bincount(bins, minlength=self.n_bins)
        self.bin_confidence += torch.bincount(bins, weights=confidence.double(), minlength=self.n_bins)
        self.bin_correct += torch.bincount(bins, weights=correct.double(), minlength=self.n_bins).long()

    def compute(self) -> dict[str, Any]:
        confmat = self.confmat
        total = int(confmat.sum())
        per_class = per_class_accuracy(confmat)
        report: dict[str, Any] = {
            "acc": float(confmat.diagonal().sum()) / total if total else float("nan"),
            "per_class_acc": per_class.cpu(),
            "ece": expected_calibration_error(self.bin_count, self.bin_confidence, self.bin_correct),
            "confmat": confmat.cpu(),
            "bin_count": self.bin_count.cpu(),
            "bin_confidence": (self.bin_confidence / self.bin_count.clamp_min(1)).cpu(),
            "bin_accuracy": (self.bin_correct.double() / self.bin_count.clamp_min(1)).cpu(),
            "num_samples": total,
        }
        if self.class_counts is not None:
            report.update(shot_accuracy(per_class, self.class_counts))
        return report

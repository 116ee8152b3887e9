"""The label-issue report's math and content (pure functions, NumPy and torch in, arrays out).

- :func:`assigned_margin`: the margin of the assigned label, z_y - max_{j != y} z_j (Pleiss et al.,
  "Identifying Mislabeled Data using the Area Under the Margin Ranking", NeurIPS 2020, eq. 1);
- :func:`suspect_order`, :func:`precision_recall_at_each_rank` and :func:`detection_metrics` (AUROC,
  average precision, precision at k = the number of noisy samples): how a score (low = suspect) ranks
  the truly noisy labels, where the noise mask is known;
- :func:`class_thresholds` and :func:`balanced_margin`: the margin of predicted probabilities with each
  class's divided by its confident threshold (the report's default score);
- :func:`confident_issue_count`: how many labels are wrong, as confident learning estimates it from
  predicted probabilities (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
  Dataset Labels", JAIR 2021): the report flags that many of its most suspect samples;
- :class:`LabelIssueReport`: scores, observed and suggested labels, the flag, and the CSV rows.

The callback that fills it is :class:`lt_noise.callbacks.LabelIssues`; ``tools/bench_label_issues.py``
uses the same metrics for the comparison with cleanlab.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lt_noise.callbacks.tables import format_float

__all__ = [
    "COLUMNS",
    "SUSPECT_THRESHOLD",
    "LabelIssueReport",
    "assigned_margin",
    "balanced_margin",
    "class_thresholds",
    "confident_issue_count",
    "detection_metrics",
    "most_suspect",
    "precision_recall_at_each_rank",
    "suspect_order",
]

# Score below which a sample is "suspected" when no class probabilities are kept (AUM < 0: another class
# was preferred on average).
SUSPECT_THRESHOLD = 0.0
# Tolerance of "a probability reaches its class's threshold" and of "the label is the arg-max" in the
# confident joint: float32 sums of softmaxes that should tie must not split on rounding (cleanlab uses the
# same 1e-6, so the counts agree).
CONFIDENCE_TOLERANCE = 1e-6
# Smallest probability a log is taken of: float32's smallest normal number (mean softmax sums are float32;
# a probability below it carries no ranking information).
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
# The report's columns (DESIGN.md §9, with class names, the suspected flag and the number of epochs).
COLUMNS = ("index", "path", "observed_label", "observed_name", "suggested_label", "suggested_name", "score",
           "rank", "suspected", "epochs")


def assigned_margin(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(z_y - max_{j != y} z_j, argmax_{j != y} z_j)`` of every row: the margin of the assigned label
    (Pleiss et al. 2020, eq. 1) and the largest other class. Half-precision logits are upcast to float32."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"Expected logits (B, K) with K >= 2, but got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"Expected labels of shape ({logits.shape[0]},), but got {tuple(labels.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    labels = labels.long()
    assigned = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf)
    largest, other_class = others.max(dim=1)
    return assigned - largest, other_class


def suspect_order(scores: np.ndarray) -> np.ndarray:
    """Sample indices from the most to the least suspect: ascending score, NaN (never seen) last, ties
    by index."""
    scores = np.asarray(scores, dtype=float)
    return np.argsort(np.where(np.isnan(scores), np.inf, scores), kind="stable")


def precision_recall_at_each_rank(scores: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (N,) of flagging the n most suspect samples, n = 1 .. N (:func:`suspect_order`)."""
    noisy = np.asarray(noisy, dtype=bool)
    hits = np.cumsum(noisy[suspect_order(scores)])
    flagged = np.arange(1, len(noisy) + 1)
    return hits / flagged, hits / max(int(noisy.sum()), 1)


def detection_metrics(scores: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    """How well ``scores`` (low = suspect) find the noisy labels ``noisy`` (bool): AUROC (the probability
    that a noisy sample scores below a clean one, ties counting one half), average precision (AP, the
    step-wise area under the precision-recall curve, ties flagged together, as scikit-learn computes it)
    and precision at k = the number of noisy samples (which equals recall there). NaN scores count as
    least suspect. NaN metrics where ``noisy`` has no noisy or no clean sample."""
    scores = np.asarray(scores, dtype=float)
    noisy = np.asarray(noisy, dtype=bool)
    if scores.shape != noisy.shape or scores.ndim != 1:
        raise ValueError(f"Expected 1-D scores and noise mask of one shape, but got {scores.shape} and {noisy.shape}")
    positives, negatives = int(noisy.sum()), int((~noisy).sum())
    if positives == 0 or negatives == 0:
        return {"auroc": math.nan, "average_precision": math.nan, "precision_at_k": math.nan, "k": positives}
    suspicion = -np.where(np.isnan(scores), np.inf, scores)  # higher = more suspect
    # AUROC by the rank-sum (Mann-Whitney U) statistic with average ranks for ties.
    values, inverse, counts = np.unique(suspicion, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    rank_sum = average_rank[inverse][noisy].sum()
    auroc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    # AP: thresholds at each distinct suspicion, from the most suspect down.
    order = np.argsort(-suspicion, kind="stable")
    ordered = suspicion[order]
    hits = np.cumsum(noisy[order])
    last_of_tie = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]
    precision = hits[last_of_tie] / (last_of_tie + 1)
    recall = hits[last_of_tie] / positives
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    at_k = float(np.cumsum(noisy[suspect_order(scores)])[positives - 1] / positives)
    return {"auroc": float(auroc), "average_precision": average_precision, "precision_at_k": at_k, "k": positives}


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each class's confident threshold t_j (K,): the mean probability of j over the samples labelled j
    (Northcutt et al. 2021, Sec. 3.1); 1 for a class no sample is labelled with."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=num_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def balanced_margin(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log(p_y / t_y) - max_{j != y} log(p_j / t_j), argmax_j p_j / t_j)`` of every row of predicted
    probabilities (N, K) with labels (N,), t the :func:`class_thresholds` of ``probs``: the margin of the
    observed label after dividing each class's probability by its confident threshold, and the class
    that is most probable so balanced. The division removes what a class's probabilities owe to its
    frequency (a long-tailed or flip-inflated class is predicted more often, its members more
    confidently), as confident learning's per-class thresholds do, whatever loss trained the model."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[1] < 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"Expected probabilities (N, K >= 2) and labels (N,), but got {probs.shape} and {labels.shape}")
    scaled = np.log(np.maximum(probs, PROBABILITY_FLOOR)) - np.log(np.maximum(class_thresholds(probs, labels), PROBABILITY_FLOOR))
    rows = np.arange(len(labels))
    assigned = scaled[rows, labels]
    others = scaled.copy()
    others[rows, labels] = -np.inf
    return assigned - others.max(axis=1), scaled.argmax(axis=1)


def confident_issue_count(probs: np.ndarray, labels: np.ndarray) -> int:
    """The number of wrong labels confident learning estimates from predicted probabilities (N, K).

    Northcutt et al. 2021, Sec. 3.1 (the confident joint): class j's threshold t_j is the mean
    probability of j over the samples labelled j; a sample's confident class is the one class whose
    probability reaches its threshold, or the arg-max when several do (none: it is not counted). The
    estimate is the number of samples whose confident class is not their label and whose arg-max is not
    their label either: the off-diagonal of the confident joint, as cleanlab's
    ``num_label_issues(estimation_method="off_diagonal")`` counts it. A class no sample is labelled with
    has no threshold and is never confident.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"Expected probabilities (N, K) and labels (N,), but got {probs.shape} and {labels.shape}")
    counts = np.bincount(labels, minlength=probs.shape[1])
    thresholds = np.where(counts > 0, class_thresholds(probs, labels), np.inf)
    confident = probs >= thresholds - CONFIDENCE_TOLERANCE
    several = confident.sum(axis=1) > 1
    guess = np.where(several, probs.argmax(axis=1), confident.argmax(axis=1))
    boosted = probs.copy()
    boosted[np.arange(len(labels)), labels] += CONFIDENCE_TOLERANCE
    wrong = confident.any(axis=1) & (guess != labels) & (boosted.argmax(axis=1) != labels)
    return int(wrong.sum())


def most_suspect(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` most suspect samples (:func:`suspect_order`; never NaN scores)."""
    scores = np.asarray(scores, dtype=float)
    mask = np.zeros(len(scores), dtype=bool)
    order = suspect_order(scores)[: max(int(count), 0)]
    mask[order[~np.isnan(scores[order])]] = True
    return mask


@dataclass(frozen=True)
class LabelIssueReport:
    """The report's content, by training index.

    Attributes:
        score: (N,) float64, low = suspect (see ``source``); NaN for a sample no record saw.
        observed: (N,) int64 observed labels (-1 where no record saw the sample).
        suggested: (N,) int64 suggested labels (-1 where unknown).
        epochs: (N,) int64 number of epochs whose records entered the score.
        suspected: (N,) bool, the samples flagged for review (see ``flag_rule``).
        source: one line saying what the score is (printed, and in the figures' titles).
        flag_rule: one line saying which samples are flagged.
    """

    score: np.ndarray
    observed: np.ndarray
    suggested: np.ndarray
    epochs: np.ndarray
    suspected: np.ndarray
    source: str
    flag_rule: str

    @property
    def order(self) -> np.ndarray:
        return suspect_order(self.score)

    @property
    def flag_threshold(self) -> float | None:
        """The highest score among the flagged samples (None when none is flagged)."""
        flagged = self.score[self.suspected]
        return float(flagged.max()) if len(flagged) else None

    def rows(self, *, path_of: Callable[[int], str | None] | None = None,
             class_names: Sequence[str] = ()) -> list[list[object]]:
        """The CSV rows (:data:`COLUMNS`), most suspect first."""

        def name(label: int) -> str:
            return str(class_names[label]) if 0 <= label < len(class_names) else ""

        rows = []
        suspected = self.suspected
        for rank, i in enumerate(self.order.tolist(), start=1):
            observed, suggested = int(self.observed[i]), int(self.suggested[i])
            path = path_of(i) if path_of is not None else None
            rows.append([
                i, path or "", observed if observed >= 0 else "", name(observed),
                suggested if suggested >= 0 else "", name(suggested), format_float(self.score[i]), rank,
                int(suspected[i]), int(self.epochs[i]),
            ])
        return rows

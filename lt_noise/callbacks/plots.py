"""Matplotlib figures of the diagnostics (pure functions: data in, ``Figure`` out).

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so callbacks and tools can make
them in any process and hand them to TensorBoard or save them as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["per_class_accuracy_figure", "reliability_diagram_figure"]


def per_class_accuracy_figure(
    per_class_acc: Sequence[float],
    class_counts: Sequence[int],
    *,
    class_names: Sequence[str] | None = None,
    title: str = "Per-class accuracy vs training class size",
) -> Figure:
    """Bars of each class's test accuracy, classes ordered by training count (largest first), with the
    count on a log-scale second axis: the long-tail picture (head classes left, tail classes right)."""
    acc = np.asarray(per_class_acc, dtype=float)
    counts = np.asarray(class_counts, dtype=float)
    order = np.argsort(-counts, kind="stable")
    positions = np.arange(len(order))
    figure = Figure(figsize=(max(6.0, 0.12 * len(order) + 3), 4.0), layout="constrained")
    axis = figure.add_subplot()
    axis.bar(positions, np.nan_to_num(acc[order]) * 100, color="tab:blue", alpha=0.8, label="test accuracy")
    axis.set_ylim(0, 100)
    axis.set_ylabel("test accuracy (%)")
    axis.set_xlabel("class (sorted by training count)")
    if len(order) <= 20:
        labels = [class_names[i] if class_names else str(i) for i in order]
        axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    count_axis = axis.twinx()
    count_axis.plot(positions, counts[order], color="tab:red", marker="o", markersize=3, label="training count")
    count_axis.set_yscale("log")
    count_axis.set_ylabel("training samples (log)", color="tab:red")
    axis.set_title(title)
    return figure


def reliability_diagram_figure(
    bin_confidence: Sequence[float], bin_accuracy: Sequence[float], bin_count: Sequence[int], *, ece: float,
    title: str = "Reliability diagram",
) -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration (Guo et al. 2017, Fig. 1),
    with the gap between accuracy and mean confidence drawn so that its sign reads at a glance.

    Each bin's bar is solid up to the lower of its accuracy and its mean confidence; the gap between the
    two is a hatched segment on top: red above the accuracy where the model is over-confident
    (confidence > accuracy), green below it where it is under-confident (accuracy > confidence), so the
    bar's outline still ends at the accuracy. Empty bins draw nothing.
    """
    count = np.asarray(bin_count, dtype=float)
    n_bins = len(count)
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = count > 0
    accuracy = np.where(filled, np.asarray(bin_accuracy, dtype=float), 0.0)
    confidence = np.where(filled, np.asarray(bin_confidence, dtype=float), 0.0)
    width = 1 / n_bins
    over = filled & (confidence > accuracy)
    under = filled & (confidence < accuracy)
    figure = Figure(figsize=(4.5, 4.5), layout="constrained")
    axis = figure.add_subplot()
    axis.bar(centres[filled], np.minimum(accuracy, confidence)[filled], width=width, color="tab:blue",
             edgecolor="black", linewidth=0.6, label="accuracy")
    axis.bar(centres[over], (confidence - accuracy)[over], bottom=accuracy[over], width=width, color="white",
             edgecolor="tab:red", hatch="///", linewidth=0.8, label="over-confident (confidence > accuracy)")
    axis.bar(centres[under], (accuracy - confidence)[under], bottom=confidence[under], width=width, color="white",
             edgecolor="tab:green", hatch="\\\\\\", linewidth=0.8, label="under-confident (accuracy > confidence)")
    axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.legend(loc="upper left", fontsize=7)
    axis.set_title(f"{title} (ECE = {100 * ece:.2f}%)")
    return figure

"""Figures of Dynamic Loss's diagnostics (pure functions: arrays in, ``Figure`` out).

Paper (papers/002): Fig. 3 (learned label weights g(r|y) per class against the loss bin, with the
fraction of noisy labels per bin), Fig. 4/8 (learned margins q per class against the class count) and
Fig. 6 (accuracy of the corrected labels over the epochs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "corrected_label_accuracy_figure",
    "label_weight_figure",
    "label_weights_over_epochs_figure",
    "margin_figure",
    "noisy_fraction_per_bin",
]

# Subplot columns of the per-class grid of Fig. 3.
_GRID_COLUMNS = 5


def noisy_fraction_per_bin(bins: np.ndarray, labels: np.ndarray, is_noisy: np.ndarray, num_classes: int,
                           num_bins: int) -> np.ndarray:
    """(K, R) fraction of noisy labels among the samples of observed class k in loss bin r (NaN if empty)."""
    cells = np.asarray(labels, dtype=np.int64) * num_bins + np.asarray(bins, dtype=np.int64)
    size = num_classes * num_bins
    total = np.bincount(cells, minlength=size).astype(float)
    noisy = np.bincount(cells, weights=np.asarray(is_noisy, dtype=float), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, noisy / total, np.nan)
    return fraction.reshape(num_classes, num_bins)


def label_weight_figure(
    weights: np.ndarray,
    noisy_fraction: np.ndarray | None = None,
    *,
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Label corrector g(r|y) per class (paper Fig. 3)",
) -> Figure:
    """One panel per class: the learned weight g(r|y) over the loss bins r (line, left axis) and the
    fraction of noisy labels per bin (bars, right axis) when the diagnostics mask is known.

    Args:
        weights: (R, K) table g[r, y].
        noisy_fraction: (K, R) noisy fraction per bin (NaN for empty bins), or None.
        classes: which classes to draw (default: all, at most 20 evenly spaced).
    """
    weights = np.asarray(weights, dtype=float)
    num_bins, num_classes = weights.shape
    if classes is None:
        shown = min(num_classes, 20)
        classes = np.unique(np.linspace(0, num_classes - 1, shown).round().astype(int)).tolist()
    rows = math.ceil(len(classes) / _GRID_COLUMNS)
    columns = min(len(classes), _GRID_COLUMNS)
    figure = Figure(figsize=(3.0 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    positions = np.arange(num_bins)
    for axis, c in zip(axes.flat, classes):
        if noisy_fraction is not None:
            twin = axis.twinx()
            twin.bar(positions, np.nan_to_num(noisy_fraction[c]), width=1.0, color="tab:red", alpha=0.3)
            twin.set_ylim(0, 1)
            twin.tick_params(labelright=False)
        axis.plot(positions, weights[:, c], color="tab:blue", linewidth=1.5)
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(class_names[c] if class_names else f"class {c}", fontsize=9)
    for axis in axes.flat[len(classes):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("loss bin r (low -> high loss)")
    for axis in axes[:, 0]:
        axis.set_ylabel("g(r|y)")
    subtitle = " (blue: g; red bars: noisy fraction)" if noisy_fraction is not None else ""
    figure.suptitle(title + subtitle, fontsize=10)
    return figure


def margin_figure(
    margins: Sequence[float],
    class_counts: Sequence[int],
    *,
    clean_counts: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Learned margins q per class (paper Fig. 4)",
) -> Figure:
    """Bars of the learned q_j by class index, with the observed (and clean) training counts on a
    log-scale second axis: q should grow with the class count (the margin is -q_j)."""
    margins = np.asarray(margins, dtype=float)
    positions = np.arange(len(margins))
    figure = Figure(figsize=(max(6.0, 0.12 * len(margins) + 3), 4.0), layout="constrained")
    axis = figure.add_subplot()
    axis.bar(positions, margins, color="tab:blue", alpha=0.8, label="q")
    axis.set_xlabel("class")
    axis.set_ylabel("learned margin q_j")
    if len(margins) <= 20:
        labels = [class_names[i] if class_names else str(i) for i in positions]
        axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    counts = axis.twinx()
    counts.plot(positions, np.asarray(class_counts, dtype=float), color="tab:red", marker="o", markersize=3,
                label="observed count")
    if clean_counts is not None:
        counts.plot(positions, np.asarray(clean_counts, dtype=float), color="tab:gray", marker="x", markersize=3,
                    linestyle="--", label="clean count")
    counts.set_yscale("log")
    counts.set_ylabel("training samples (log)", color="tab:red")
    counts.legend(loc="upper right", fontsize=8)
    axis.set_title(title)
    return figure


def corrected_label_accuracy_figure(
    epochs: Sequence[int],
    corrected: Sequence[float],
    observed: Sequence[float],
    *,
    corrected_noisy: Sequence[float] | None = None,
    corrected_clean: Sequence[float] | None = None,
    warmup_epochs: int | None = None,
    title: str = "Accuracy of the corrected labels (paper Fig. 6)",
) -> Figure:
    """Per-epoch accuracy (vs the clean labels) of the labels the corrector assigns, against that of the
    observed labels; optionally the fraction of noisy samples the corrector fixes and of clean samples it
    keeps."""
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    axis = figure.add_subplot()
    axis.plot(epochs, 100 * np.asarray(corrected, dtype=float), marker="o", markersize=3, label="corrected labels")
    axis.plot(epochs, 100 * np.asarray(observed, dtype=float), linestyle="--", color="tab:gray", label="observed labels")
    if corrected_noisy is not None:
        axis.plot(epochs, 100 * np.asarray(corrected_noisy, dtype=float), marker=".", color="tab:green",
                  label="noisy samples corrected")
    if corrected_clean is not None:
        axis.plot(epochs, 100 * np.asarray(corrected_clean, dtype=float), marker=".", color="tab:purple",
                  label="clean samples kept")
    if warmup_epochs:
        axis.axvspan(-0.5, warmup_epochs - 0.5, color="tab:orange", alpha=0.1, label="warm-up")
    axis.set_xlabel("epoch")
    axis.set_ylabel("label accuracy (%)")
    axis.set_ylim(0, 100)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title)
    return figure


def label_weights_over_epochs_figure(
    epochs: Sequence[int],
    tables: np.ndarray,
    *,
    classes: Sequence[int],
    class_names: Sequence[str] | None = None,
    title: str = "Label corrector g(r|y) over the epochs (paper Fig. 7)",
) -> Figure:
    """One panel per class: g(r|y) over the loss bins, one line per recorded epoch (light = early, dark =
    late), so a reader sees when and for which bins the corrector stops trusting the observed label.

    Args:
        epochs: (E,) the epochs of the records.
        tables: (E, R, K) the table g[r, y] at each record.
        classes: the classes to draw (e.g. the largest ones, where the paper's Fig. 7 looks).
    """
    tables = np.asarray(tables, dtype=float)
    figure = Figure(figsize=(3.2 * len(classes), 2.8), layout="constrained")
    axes = figure.subplots(1, len(classes), squeeze=False, sharey=True)[0]
    positions = np.arange(tables.shape[1])
    shades = np.linspace(0.25, 1.0, len(epochs))
    for axis, c in zip(axes, classes):
        for shade, epoch, table in zip(shades, epochs, tables):
            axis.plot(positions, table[:, c], color=(0.1, 0.2, 0.6, float(shade)), linewidth=1.0,
                      label=f"epoch {epoch}" if epoch in (epochs[0], epochs[-1]) else None)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("loss bin r (low -> high loss)")
        axis.set_title(class_names[c] if class_names else f"class {c}", fontsize=9)
    axes[0].set_ylabel("g(r|y)")
    axes[-1].legend(fontsize=7, loc="lower left")
    figure.suptitle(title, fontsize=10)
    return figure

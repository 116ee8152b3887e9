"""Figure of ABSGD's attentional weights per class (pure function: data in, ``Figure`` out).

The paper's Fig. 4 (right two panels) plots, over training, the average attentional weight of the
samples of each class of CIFAR-100-LT/ST: minority classes get larger weights than majority classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

__all__ = ["class_weight_figure"]

# Up to this many classes get one curve each; more classes are drawn as this many groups of classes of
# neighbouring training counts (one curve per group), so that CIFAR-100 or ImageNet-LT stay readable.
MAX_CURVES = 10


def _groups(order: np.ndarray, max_curves: int) -> list[np.ndarray]:
    if len(order) <= max_curves:
        return [order[i : i + 1] for i in range(len(order))]
    return [part for part in np.array_split(order, max_curves) if len(part)]


def class_weight_figure(
    epochs: Sequence[int],
    mean_weights: Sequence[Sequence[float]],
    class_counts: Sequence[int],
    *,
    class_names: Sequence[str] | None = None,
    title: str = "ABSGD: average attentional weight per class",
) -> Figure:
    """Left: the mean attentional weight of each class's training samples per epoch (classes ordered by
    training count, head dark to tail light; groups of classes when there are many). Right: the last
    epoch's per-class mean weight against the class's training count (log scale).

    Args:
        epochs: the (0-based) epochs of the rows of ``mean_weights``.
        mean_weights: ``(epochs, C)``; NaN where a class had no sample in that epoch.
        class_counts: training samples per class (C,).
        class_names: optional names of the C classes (legend, when each class has its own curve).
    """
    weights = np.asarray(mean_weights, dtype=float).reshape(len(epochs), -1)
    counts = np.asarray(class_counts, dtype=float)
    if weights.shape[1] != len(counts):
        raise ValueError(f"Expected {len(counts)} classes in `mean_weights`, but got {weights.shape[1]}")
    order = np.argsort(-counts, kind="stable")
    groups = _groups(order, MAX_CURVES)
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(groups)))
    figure = Figure(figsize=(11.0, 4.2), layout="constrained")
    over_time, by_count = figure.subplots(1, 2)
    x = np.asarray(epochs, dtype=float)
    for colour, group in zip(colours, groups):
        present = ~np.isnan(weights[:, group])
        with np.errstate(invalid="ignore"):
            curve = np.nansum(np.nan_to_num(weights[:, group]) * present, axis=1) / present.sum(axis=1)
        if len(group) == 1:
            name = class_names[group[0]] if class_names else f"class {group[0]}"
            label = f"{name} (n={int(counts[group[0]])})"
        else:
            label = f"n={int(counts[group].max())}..{int(counts[group].min())} ({len(group)} classes)"
        over_time.plot(x, curve, color=colour, marker="o" if len(x) <= 30 else None, markersize=3, label=label)
    over_time.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    over_time.set_xlabel("epoch")
    over_time.set_ylabel("mean attentional weight $\\tilde p_i$")
    over_time.set_title("per class over training (head dark, tail light)")
    over_time.legend(fontsize=7, loc="best")
    last = weights[-1] if len(weights) else np.full(len(counts), np.nan)
    shown = ~np.isnan(last)
    by_count.scatter(counts[shown], last[shown], c=np.log(np.maximum(counts[shown], 1)), cmap="viridis_r", s=14)
    by_count.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    by_count.set_xscale("log")
    by_count.set_xlabel("training samples of the class (log)")
    by_count.set_ylabel("mean attentional weight, last epoch")
    by_count.set_title(f"epoch {int(x[-1]) if len(x) else '-'}: weight vs class size")
    figure.suptitle(title)
    return figure

"""Figures of the prototype diagnostics (pure functions: data in, ``Figure`` out).

PAL paper (papers/000): Fig. 3 (a) prototype norms per class and (b) the histogram of feature norms;
Fig. 5 (b) the minimum angle between prototypes over training. (Fig. 2's reliability diagram is
:func:`lt_noise.callbacks.plots.reliability_diagram_figure`, logged by ``EvaluationFigures``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["feature_norm_histogram_figure", "min_angle_figure", "prototype_norms_figure"]


def prototype_norms_figure(
    norms: Sequence[float],
    class_counts: Sequence[int] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "Prototype norms",
) -> Figure:
    """Bars of each class's prototype norm ``||w_j||``; classes ordered by training count (largest
    first, the long-tail order of Fig. 3a) when ``class_counts`` are given, by index otherwise."""
    norms = np.asarray(norms, dtype=float)
    if class_counts is not None and len(class_counts) != len(norms):
        raise ValueError(f"Expected {len(norms)} class counts, but got {len(class_counts)}")
    order = np.arange(len(norms)) if class_counts is None else np.argsort(-np.asarray(class_counts, float), kind="stable")
    positions = np.arange(len(order))
    figure = Figure(figsize=(max(5.0, 0.1 * len(order) + 3), 3.5), layout="constrained")
    axis = figure.add_subplot()
    axis.bar(positions, norms[order], color="tab:blue", alpha=0.8)
    axis.set_ylabel("prototype norm")
    axis.set_xlabel("class" + (" (sorted by training count)" if class_counts is not None else ""))
    if len(order) <= 20:
        labels = [class_names[i] if class_names else str(i) for i in order]
        axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    axis.set_title(title)
    return figure


def feature_norm_histogram_figure(
    bin_edges: Sequence[float], counts: Sequence[float], *, title: str = "Feature norms"
) -> Figure:
    """Histogram of feature norms ``||z||`` from precomputed bins (``len(bin_edges) == len(counts) + 1``)."""
    edges = np.asarray(bin_edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if edges.ndim != 1 or len(edges) != len(counts) + 1:
        raise ValueError(f"Expected len(bin_edges) == len(counts) + 1, but got {len(edges)} and {len(counts)}")
    figure = Figure(figsize=(5.0, 3.5), layout="constrained")
    axis = figure.add_subplot()
    axis.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:orange", edgecolor="black", linewidth=0.3)
    axis.set_xlabel("feature norm ||z||")
    axis.set_ylabel("samples")
    axis.set_title(title)
    return figure


def min_angle_figure(
    epochs: Sequence[int], angles: Sequence[float], *, optimum: float | None = None,
    title: str = "Minimum angle between prototypes",
) -> Figure:
    """The minimum pairwise angle (degrees) between the classifier's prototypes per epoch (Fig. 5b), with
    the simplex optimum ``arccos(-1/(k-1))`` as a dashed line when given."""
    if len(epochs) != len(angles):
        raise ValueError(f"Expected as many epochs as angles, but got {len(epochs)} and {len(angles)}")
    figure = Figure(figsize=(5.0, 3.5), layout="constrained")
    axis = figure.add_subplot()
    axis.plot(np.asarray(epochs), np.asarray(angles, dtype=float), marker="o", markersize=3, label="min angle")
    if optimum is not None:
        axis.axhline(optimum, color="gray", linestyle="--", label=f"simplex optimum {optimum:.1f}°")
    axis.set_xlabel("epoch")
    axis.set_ylabel("degrees")
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title)
    return figure

"""Figures of the curriculum view (papers/003): pure functions, data in, ``matplotlib.figure.Figure`` out.

- :func:`margin_distributions_figure`: how the Δ_y distributions of noisy and clean training samples
  move over epochs, one row per epoch, each histogram scaled to its own peak, with the sample-weighting
  function drawn over them (the paper's Fig. 3 and Figs. 9-10);
- :func:`weighting_function_figure`: sample-weighting functions w(Δ_y) (unit maximum) with the Δ_y
  distribution of the training samples at initialisation and E[Δ_y] (Figs. 2, 5 and 7).

Built on ``Figure`` (no pyplot state), like :mod:`lt_noise.callbacks.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["margin_distributions_figure", "weighting_function_figure"]

# The paper's colours: noisy samples green, clean samples orange (Fig. 3).
NOISY_COLOR = "tab:green"
CLEAN_COLOR = "tab:orange"
WEIGHT_COLOR = "0.3"
# Height of one epoch's row in the ridge plot, in inches (readable for up to ~12 rows).
ROW_HEIGHT = 0.75
# Bins of the initial-margin histogram: about 10 samples a bin, between 10 and 40 bins (readable for a
# batch of a few dozen samples as for a few thousand).
INITIAL_HISTOGRAM_BINS = 40
MIN_INITIAL_BINS = 10
SAMPLES_PER_BIN = 10
# A weighting function below this (of its unit maximum) is invisible in the plot: the x-range leaves it out.
VISIBLE_WEIGHT = 1e-3


def _occupied_range(edges: np.ndarray, counts: np.ndarray, curve_grid: np.ndarray | None) -> tuple[float, float]:
    """The x-range that holds every non-empty bin (plus one bin of margin), for a tight plot."""
    occupied = np.flatnonzero(counts.reshape(-1, counts.shape[-1]).sum(axis=0) > 0)
    if occupied.size == 0:
        return float(edges[0]), float(edges[-1])
    low = edges[max(occupied[0] - 1, 0)]
    high = edges[min(occupied[-1] + 2, len(edges) - 1)]
    return float(low), float(high)


def margin_distributions_figure(
    edges: Sequence[float],
    epochs: Sequence[int],
    clean_counts: Sequence[Sequence[float]],
    noisy_counts: Sequence[Sequence[float]],
    *,
    weight_grid: Sequence[float] | None = None,
    weight_curve: Sequence[float] | None = None,
    title: str = "Δ_y of noisy (green) and clean (orange) training samples",
) -> Figure:
    """Ridge plot of the Δ_y histograms of each listed epoch (papers/003, Fig. 3).

    Args:
        edges: the histogram's bin edges (n_bins + 1,).
        epochs: the epoch of each row, top to bottom.
        clean_counts, noisy_counts: (n_epochs, n_bins) counts of clean / noisy samples per bin.
        weight_grid, weight_curve: the sample-weighting function (unit maximum) to draw in every row.
        title: the figure's title.

    Each histogram is scaled to its own peak, as in the paper ("vertical axes ... scaled to the peak of
    histograms for readability"); the peak densities (noisy / clean) are written on the right.
    """
    edges = np.asarray(edges, dtype=float)
    clean = np.atleast_2d(np.asarray(clean_counts, dtype=float))
    noisy = np.atleast_2d(np.asarray(noisy_counts, dtype=float))
    if clean.shape != noisy.shape or clean.shape != (len(epochs), len(edges) - 1):
        raise ValueError(
            f"Expected clean and noisy counts of shape ({len(epochs)}, {len(edges) - 1}), but got "
            f"{clean.shape} and {noisy.shape}"
        )
    grid = None if weight_grid is None else np.asarray(weight_grid, dtype=float)
    rows = max(len(epochs), 1)
    figure = Figure(figsize=(7.0, 1.0 + ROW_HEIGHT * rows), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    widths = np.diff(edges)
    low, high = _occupied_range(edges, np.stack([clean, noisy]), grid)
    for axis, epoch, clean_row, noisy_row in zip(axes, epochs, clean, noisy):
        labels = []
        for counts, color, name in ((noisy_row, NOISY_COLOR, "noisy"), (clean_row, CLEAN_COLOR, "clean")):
            total = counts.sum()
            if total == 0:
                labels.append(f"{name} -")
                continue
            density = counts / (total * widths)
            peak = density.max()
            axis.stairs(density / peak, edges, fill=True, alpha=0.45, color=color, label=name)
            labels.append(f"{name} {peak:.2g}")
        if grid is not None and weight_curve is not None:
            axis.plot(grid, np.asarray(weight_curve, dtype=float), color=WEIGHT_COLOR, linestyle="--",
                      linewidth=1.0, label="w(Δ)")
        axis.set_ylim(0, 1.08)
        axis.set_yticks([])
        axis.text(1.01, 0.5, f"epoch {epoch}\n" + "\n".join(labels), transform=axis.transAxes,
                  fontsize=7, va="center")
    axes[0].legend(loc="upper left", fontsize=7, ncol=3, frameon=False)
    axes[-1].set_xlim(low, high)
    axes[-1].set_xlabel("Δ_y (soft margin)")
    figure.suptitle(title, fontsize=10)
    return figure


def weighting_function_figure(
    grid: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    initial_margins: Sequence[float] | None = None,
    *,
    expected_margin: float | None = None,
    title: str = "Sample-weighting function and the initial Δ_y distribution",
) -> Figure:
    """w(Δ_y) curves with the histogram of Δ_y at initialisation (papers/003, Figs. 2 and 7).

    Args:
        grid: Δ values (n,) at which the curves are given.
        curves: label -> w on ``grid`` (unit maximum, e.g. the vanilla and the scaled/shifted function).
        initial_margins: Δ_y of training samples seen by the freshly initialised network, or None.
        expected_margin: E[Δ_y] (Eq. (4) or measured), drawn as a vertical line, or None.
        title: the figure's title.
    """
    grid = np.asarray(grid, dtype=float)
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axis = figure.add_subplot()
    # x-range: where some curve is visibly above zero, the initial margins and E[Δ_y] lie (plus a margin)
    shown = [float(grid[0]), float(grid[-1])]
    visible = np.zeros(len(grid), dtype=bool)
    for label, curve in curves.items():
        values = np.asarray(curve, dtype=float)
        axis.plot(grid, values, linewidth=1.5, label=label)
        visible |= values > VISIBLE_WEIGHT
    points = list(grid[visible])
    if initial_margins is not None and len(initial_margins):
        points += [float(np.min(initial_margins)), float(np.max(initial_margins))]
    if expected_margin is not None:
        points.append(float(expected_margin))
    if points:
        shown = [max(shown[0], min(points) - 1.0), min(shown[1], max(points) + 1.0)]
    axis.set_xlim(*shown)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("Δ_y (soft margin)")
    axis.set_ylabel("w(Δ_y) / max w")
    if initial_margins is not None and len(initial_margins):
        margins = np.asarray(initial_margins, dtype=float)
        density_axis = axis.twinx()
        bins = int(np.clip(len(margins) // SAMPLES_PER_BIN, MIN_INITIAL_BINS, INITIAL_HISTOGRAM_BINS))
        density_axis.hist(margins, bins=bins, density=True, color="tab:gray", alpha=0.35,
                          label=f"initial Δ_y (n={len(margins)}, mean {margins.mean():.2f})")
        density_axis.set_ylabel("density of initial Δ_y")
        density_axis.legend(loc="upper right", fontsize=8, frameon=False)
    if expected_margin is not None:
        axis.axvline(expected_margin, color="k", linestyle=":", linewidth=1.0,
                     label=f"E[Δ_y] = {expected_margin:.3f}")
    axis.legend(loc="center left", fontsize=8, frameon=False)
    axis.set_title(title, fontsize=10)
    return figure

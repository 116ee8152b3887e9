"""Figures of the label-issue report (pure functions: arrays in, ``Figure`` out).

- :func:`score_histogram_figure`: the score of truly clean and truly noisy training samples (where the
  datamodule knows the noise mask: synthetic noise), the picture of how well the score separates them;
- :func:`precision_recall_figure`: precision and recall of "the n most suspect samples" for every n;
- :func:`suspects_grid_figure`: the most suspect images with their observed and suggested labels, what
  a reviewer looks at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["precision_recall_figure", "score_histogram_figure", "suspects_grid_figure"]

# Histogram bins over the range of the finite scores.
HISTOGRAM_BINS = 60
# Characters of a class name kept in a grid caption (long names would overlap the next image).
CAPTION_NAME_CHARS = 12


def score_histogram_figure(
    scores: np.ndarray, noisy: np.ndarray, *, threshold: float | None = 0.0, score_name: str = "score",
    title: str = "Label-issue score of clean and noisy training samples",
) -> Figure:
    """Histograms (densities, shared bins) of ``scores`` of the clean and of the noisy samples
    (``noisy``: bool mask); a dashed line at ``threshold`` (the highest score the report flags)."""
    scores = np.asarray(scores, dtype=float)
    noisy = np.asarray(noisy, dtype=bool)
    if scores.shape != noisy.shape:
        raise ValueError(f"Expected scores and noise mask of one shape, but got {scores.shape} and {noisy.shape}")
    finite = np.isfinite(scores)
    figure = Figure(figsize=(6.0, 3.8), layout="constrained")
    axis = figure.add_subplot()
    if finite.any():
        edges = np.histogram_bin_edges(scores[finite], bins=HISTOGRAM_BINS)
        for mask, label, color in ((~noisy, "clean", "tab:blue"), (noisy, "noisy", "tab:red")):
            values = scores[finite & mask]
            if len(values):
                axis.hist(values, bins=edges, density=True, alpha=0.55, color=color,
                          label=f"{label} (n = {len(values):,})")
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"suspected up to {threshold:.3g}")
    axis.set_xlabel(f"{score_name} (lower = more suspect)")
    axis.set_ylabel("density")
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(title, fontsize=10)
    return figure


def precision_recall_figure(
    precision: np.ndarray, recall: np.ndarray, *, average_precision: float, noisy_fraction: float,
    k: int | None = None, title: str = "Finding the noisy labels: precision and recall",
) -> Figure:
    """The precision-recall curve of flagging the n most suspect samples (n = 1 .. N), with the
    precision of a random order (``noisy_fraction``) and the point n = ``k`` (the true number of noisy
    samples, where precision equals recall) marked."""
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall, dtype=float)
    figure = Figure(figsize=(4.8, 4.2), layout="constrained")
    axis = figure.add_subplot()
    axis.plot(recall, precision, color="tab:blue", label=f"report (AP = {average_precision:.3f})")
    axis.axhline(noisy_fraction, color="gray", linestyle=":", label=f"random order ({noisy_fraction:.3f})")
    if k is not None and 0 < k <= len(precision):
        axis.plot([recall[k - 1]], [precision[k - 1]], "o", color="tab:red",
                  label=f"top {k:,} (= number noisy): P = R = {precision[k - 1]:.3f}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall (share of the noisy labels found)")
    axis.set_ylabel("precision (share of flagged that are noisy)")
    axis.legend(loc="lower left", fontsize=8)
    axis.set_title(title, fontsize=10)
    return figure


def _short(name: str) -> str:
    return name if len(name) <= CAPTION_NAME_CHARS else name[: CAPTION_NAME_CHARS - 1] + "…"


def suspects_grid_figure(
    images: Sequence[np.ndarray], observed: Sequence[str], suggested: Sequence[str], scores: Sequence[float], *,
    noisy: Sequence[bool] | None = None, columns: int = 8, title: str = "Most suspect training labels",
) -> Figure:
    """A grid of images (uint8 (H, W) grey or (H, W, 3) RGB), each captioned ``observed → suggested`` and
    its score, most suspect first. With ``noisy`` (the true noise mask, where known) a caption is red
    for a truly noisy label and black for a clean one."""
    count = len(images)
    if not (len(observed) == len(suggested) == len(scores) == count):
        raise ValueError(
            f"Expected one caption part per image ({count}), but got {len(observed)}, {len(suggested)}, {len(scores)}"
        )
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(1.6 * columns, 1.85 * rows + 0.4), layout="constrained")
    figure.suptitle(title, fontsize=10)
    for i in range(rows * columns):
        axis = figure.add_subplot(rows, columns, i + 1)
        axis.set_axis_off()
        if i >= count:
            continue
        image = np.asarray(images[i])
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        color = "black" if noisy is None else ("tab:red" if noisy[i] else "black")
        axis.set_title(f"{_short(observed[i])} → {_short(suggested[i])}\n{float(scores[i]):.2f}", fontsize=7, color=color)
    return figure

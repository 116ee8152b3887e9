"""Figures of a sweep, saved as PNG by tools/reproduce.py: accuracy against the column setting per method
(e.g. accuracy vs noise rate), and per-class test accuracy against the training class count."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from lt_noise.sweep import Run, Table, aggregate, report_columns

__all__ = ["accuracy_by_column_figure", "epoch_curves_figure", "per_class_figure"]


def _as_number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


_MARKERS = "osD^v<>ph*"


def _style(index: int) -> dict[str, Any]:
    """Colour and marker of the index-th method: 20 colours x 9 markers, so 14 rows stay distinguishable."""
    # tab20 pairs a dark and a light shade of each hue: the ten dark ones first, then the light ones.
    shade = (2 * index) % 20 + (index // 10) % 2
    return {"color": colormaps["tab20"](shade), "marker": _MARKERS[index % len(_MARKERS)]}


def accuracy_by_column_figure(table: Table, records: Sequence[dict[str, Any]], metric: str | None = None) -> Figure:
    """One line (mean ± std over seeds) per method across the table's columns; numeric column labels
    (noise rates, imbalance ratios) are placed on a numeric axis, others evenly."""
    metric = metric or table.metric
    cells = aggregate(table, records, metric)
    columns = report_columns(table, records)
    if table.x_values:  # the table maps (some) columns to numbers: plot those on that axis
        columns = [c for c in columns if c in table.x_values]
        numeric = [table.x_values[c] for c in columns]
    else:
        numeric = [_as_number(c) for c in columns]
    xs = numeric if all(x is not None for x in numeric) else list(range(len(columns)))
    figure = Figure(figsize=(9, 5), layout="constrained")
    axis = figure.add_subplot()
    for index, row in enumerate(table.rows):
        points = [(x, cells[(row, c)]) for x, c in zip(xs, columns) if cells[(row, c)]["n"]]
        if not points:
            continue
        x = [p[0] for p in points]
        mean = np.array([p[1]["mean"] for p in points])
        std = np.array([p[1]["std"] for p in points])
        axis.errorbar(x, mean, yerr=std, capsize=3, label=row, **_style(index))
    if xs != numeric:
        axis.set_xticks(xs, columns, rotation=20, ha="right")
    axis.set_xlabel(table.x_label or "setting")
    axis.set_ylabel(f"{metric} (%)")
    # The caption is a paragraph; the title names the table and the metric, the legend sits outside the axes.
    axis.set_title(f"{table.name}: {metric}, mean ± std over seeds", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def per_class_figure(runs: Sequence[Run], *, title: str) -> Figure:
    """Per-class test accuracy against the training class count (log x), one line per method through
    its classes sorted by count; the classes of one count are averaged (over classes of equal size and
    over the given runs' seeds). Runs need a ``test`` section with ``per_class_acc``. Methods are styled in the order they first appear in ``runs``."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axis = figure.add_subplot()
    by_row: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        path = run.directory / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        per_class = (results.get("test") or {}).get("per_class_acc")
        counts = (results.get("data") or {}).get("class_counts")
        if not per_class or not counts:
            continue
        by_row.setdefault(run.row, []).extend((c, 100 * a) for c, a in zip(counts, per_class) if a is not None)
    for index, (row, points) in enumerate(by_row.items()):
        by_count: dict[float, list[float]] = {}
        for count, acc in points:
            by_count.setdefault(count, []).append(acc)
        counts = sorted(by_count)
        axis.plot(counts, [float(np.mean(by_count[c])) for c in counts], label=row, alpha=0.8, markersize=4,
                  **_style(index))
    axis.set_xscale("log")
    axis.set_xlabel("training samples of the class (log)")
    axis.set_ylabel("test accuracy of the class (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def epoch_curves_figure(runs: Sequence[Run], *, title: str, metric: str = "acc") -> Figure:
    """Test accuracy per epoch (the ``fit.history`` of results.json), one line per method: the mean over
    the given runs' seeds, with the band of their minimum and maximum when there are several. The papers'
    point about memorisation is the gap between a line's peak (best epoch) and its end (last epoch)."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axis = figure.add_subplot()
    by_row: dict[str, list[list[float]]] = {}
    for run in runs:
        path = run.directory / "results.json"
        if not path.is_file():
            continue
        history = ((json.loads(path.read_text()).get("fit") or {}).get("history")) or []
        curve = [100 * r[metric] for r in history if r.get(metric) is not None]
        if curve:
            by_row.setdefault(run.row, []).append(curve)
    for index, (row, curves) in enumerate(by_row.items()):
        length = min(len(c) for c in curves)
        values = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        style = _style(index)
        label = row if len(curves) == 1 else f"{row} ({len(curves)} seeds)"
        axis.plot(epochs, values.mean(axis=0), label=label, color=style["color"], linewidth=1.5)
        if len(curves) > 1:
            axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=style["color"], alpha=0.2)
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"test {metric} (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure

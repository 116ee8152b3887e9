"""Output files of the callbacks that a person reads: CSV tables and figures, written atomically.

A table is written to a temporary file beside its destination and renamed onto it, so that a reader
(or a run interrupted while writing) never sees a half-written file: either the previous file or the
complete new one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["format_float", "run_directory", "save_figure", "write_csv", "write_lines"]

# Significant digits of probabilities and scores in CSV files: enough to rank and to reproduce a
# threshold, short enough to read.
FLOAT_DIGITS = 6


def format_float(value: float) -> str:
    """A float for a CSV cell: ``FLOAT_DIGITS`` significant digits; NaN as an empty cell."""
    value = float(value)
    return "" if value != value else f"{value:.{FLOAT_DIGITS}g}"


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_csv(path: Path | str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write ``header`` and ``rows`` to ``path`` atomically (temporary file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)
    return path


def write_lines(path: Path | str, lines: Iterable[str]) -> Path:
    """Write one line per item to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)
    return path


def save_figure(figure: Figure, path: Path | str, *, dpi: int = 100) -> Path:
    """Save ``figure`` as an image at ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        figure.savefig(tmp, dpi=dpi)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)
    return path


def run_directory(ckpt_path: str | os.PathLike | None, log_dir: str | os.PathLike | None) -> Path:
    """Where a run's outputs belong: the run directory of ``ckpt_path`` (the parent of its ``checkpoints/``
    folder, else the folder holding it) when given, otherwise ``log_dir``."""
    if ckpt_path:
        folder = Path(ckpt_path).expanduser().resolve().parent
        return folder.parent if folder.name == "checkpoints" else folder
    if log_dir is None:
        raise ValueError("Expected a checkpoint path or a log directory for the output, but got neither")
    return Path(log_dir)
